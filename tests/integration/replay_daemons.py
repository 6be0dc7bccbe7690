"""The daemons of one case file in one shape of the replayer
(case_replay.py): a DNS server answering each case's `dns:` lines,
policyd (gRPC, or --milter) with --test-clock-stdin, and the fronts. Every
process is stopped by PID in stop(); loopback only."""

import ipaddress
import os
import subprocess

import harness
from dnsserver import DnsServer
from replay_cases import CaseError

HOSTNAME = "mx.test"  # --test's local host name; the front gets --hostname mx.test


def zone_of(case, for_front=False):
    """A case's `dns:` lines as a dnsserver.py zone. FakeDns answers only
    exact names (everything else NXDOMAIN); so does this zone, except that
    dnsserver follows CNAMEs inside the zone."""
    zone, behaviour = {}, {}
    for line in case.dns:
        words = line.split(None, 2)
        name = words[0].rstrip(".").lower()
        kind = words[1].upper()
        rest = words[2] if len(words) > 2 else ""
        if kind in ("NXDOMAIN",):
            continue
        if kind in ("SERVFAIL", "REFUSED"):
            behaviour[name] = kind.lower()
            continue
        if kind == "TIMEOUT":
            behaviour[name] = "drop"
            continue
        rec = {"type": kind}
        if kind in ("A", "AAAA"):
            rec["address"] = rest
        elif kind == "MX":
            pref, host = rest.split()
            rec.update(preference=int(pref), host=host)
        elif kind == "TXT":
            rec["text"] = [rest[i:i + 255] for i in range(0, len(rest), 255)] or [""]
        else:
            rec["host"] = rest.rstrip(".")
        zone.setdefault(name, []).append(rec)
    if for_front and case.host:
        # The front has no way to state a PTR name: policyd looks it up
        # (forward-confirmed), so the zone says what the case's host= says.
        ptr = reverse_name(case.address)
        zone.setdefault(ptr, []).append({"type": "PTR", "host": case.host})
        zone.setdefault(case.host.lower(), []).append(
            {"type": "AAAA" if ":" in case.address else "A", "address": case.address})
    if behaviour:
        zone["_behaviour"] = behaviour
    return zone


def reverse_name(address):
    return ipaddress.ip_address(address).reverse_pointer


class StdinProcess(harness.Process):
    """harness.Process with a pipe on stdin (policyd --test-clock-stdin)."""

    def __init__(self, args, log_path, env=None):
        self.log_path = log_path
        self.args = args
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env)

    def stop(self, timeout=10):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return super().stop(timeout)


class Daemons:
    """A DNS server, and policyd (gRPC, or --milter) for one case file,
    plus the fronts in the front shape; everything stopped in stop()."""

    def __init__(self, cf, flags, work, shape):
        self.cf, self.flags, self.work, self.shape = cf, list(flags), work, shape
        self.procs = []
        self.dns = DnsServer({})
        self.dns.start()
        self.clock_acks = 0

    def start_policyd(self):
        self.policyd_port = harness.free_port()
        args = [harness.POLICYD, "--listen", "127.0.0.1:%d" % self.policyd_port, "--workers", "1",
                "--log-stderr", "--temp-dir", os.path.join(self.work, "tmp-" + self.shape),
                "--dns-server", "127.0.0.1:%d" % self.dns.port, "--dns-cache-entries", "0",
                "--test-clock-stdin"]
        for s in self.cf.scripts:
            args += ["--script", s]
        for d in self.cf.read_dirs:
            args += ["--lua-read-dir", d]
        env = dict(os.environ)
        for k, v in self.cf.env:
            env[k] = v
            args += ["--lua-env", k]
        if self.shape == "milter":
            self.milter_port = harness.free_port()
            args += ["--milter", "inet:%d@127.0.0.1" % self.milter_port]
        # --test's DNS never waits: a TIMEOUT answer is at once. Keep the
        # dropped queries short here too, unless the file's flags say.
        if "--dns-timeout" not in self.flags:
            args += ["--dns-timeout", "300ms"]
        args += self.flags
        p = StdinProcess(args, os.path.join(self.work, "policyd-%s.log" % self.shape), env)
        self.procs.append(p)
        self.policyd = p
        want = "milter listening on" if self.shape == "milter" else "listening on"
        harness.wait_for(lambda: want in p.output() or not p.alive(), what="policyd listening")
        if not p.alive():
            raise CaseError("policyd did not start: " + p.output()[-2000:])

    def start_front(self, listen):
        port = harness.free_port()
        spec = "[::]:%d" % port if listen == "v6" else "127.0.0.1:%d" % port
        spool = os.path.join(self.work, "spool-" + listen)
        p = harness.Process([harness.FRONT, "--listen", spec, "--policyd", "127.0.0.1:%d" % self.policyd_port,
                             "--queue-dir", spool, "--hostname", HOSTNAME, "--log-stderr", "--log-level", "info",
                             "--io-threads", "1", "--auth-plaintext", "--greet-pause", "0"],
                            os.path.join(self.work, "front-%s.log" % listen))
        self.procs.append(p)
        harness.wait_for(lambda: "listening on" in p.output() or not p.alive(), what="front listening")
        if not p.alive():
            raise CaseError("mailhook-front did not start: " + p.output()[-2000:])
        return p, port

    def set_clock(self, step):
        """clock:/advance: through --test-clock-stdin; awaits policyd's
        "test clock" line so the next command sees the new time."""
        verb = "set" if step.kind == "clock" else "advance"
        self.policyd.proc.stdin.write(("%s %d\n" % (verb, step.seconds)).encode())
        self.policyd.proc.stdin.flush()
        self.clock_acks += 1
        want = self.clock_acks
        harness.wait_for(lambda: self.policyd.output().count("test clock: scripts now see") >= want,
                         what="policyd taking the clock line")

    def stop(self):
        # Fronts first: policyd's drain waits for their streams.
        for p in sorted(self.procs, key=lambda p: p.args[0] != harness.FRONT):
            p.stop()
        self.dns.stop()

#!/usr/bin/env python3
"""mailhook benchmarks, each beside a baseline measured in the same run.

  roundtrip   per-event round trip front -> policyd -> front: 10,000 NOOPs on
              one session with hook.noop defined (every NOOP crosses to
              policyd), beside the same NOOPs when no script listens to NOOP
              (the front answers alone) and against Postfix's smtp-sink.
  throughput  messages/s for 2,000 messages over 20 concurrent sessions
              (Postfix's smtp-source, one message per connection) into the
              front with the default policy and the spool (fsync'd), beside
              smtp-source straight into smtp-sink.
  dnsbl       sessions/s at 200 concurrent sessions (smtp-source, one
              message per connection) when hook.accept runs one DNSBL
              lookup per session against a DNS server that answers after
              50 ms (lua/examples/dnsbl.lua, tests/integration/dnsserver.py),
              beside the same run with no lookup; policyd's thread count
              and RSS sampled during both.

  milter      messages/s through a private Postfix (tests/integration/
              postfix_instance.py, relaying to smtp-sink): 2,000 messages
              over 20 sessions with smtp-source, first with no milter (the
              baseline), then with the no-op C libmilter milter of
              bench/peers (skipped with the reason without cc/libmilter),
              then with mailhook-policyd --milter and an empty script,
              bench/compare's policy and the default policy (rate limit
              lifted); with the milter process's own CPU per message.

  scale       messages/s with one front and policyd as 1 process with
              --workers 1, 1 with --workers 2, and 2 and 3 replicas (each
              --workers 1) behind --policyd ipv4:a,b,c (gRPC round robin),
              beside smtp-sink; 4,000 messages over 40 sessions, default
              policy, spool with fsync. Prints the CPU seconds the front and
              the policyd processes used, which is what sets the ceiling on
              a 2-core machine.

policyd runs with --ptr-lookup no everywhere (client.host would add a PTR
lookup per session against the machine's resolver, which smtp-sink does not
do either).

Loopback only; every process started here is stopped by PID at the end.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MAILHOOK_BUILD", os.path.join(ROOT, "build"))
FRONT = os.path.join(BUILD, "frontend", "mailhook-front")
POLICYD = os.path.join(BUILD, "policyd", "mailhook-policyd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d never opened" % port)


class Stack:
    """policyd + front, or smtp-sink, on free ports; stopped by PID."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, args, port):
        log = open(os.path.join(self.tmp, "proc-%d.log" % len(self.procs)), "wb")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        wait_port(port)

    def mailhook(self, script_text, spool, policyd_args=(), front_args=()):
        script = os.path.join(self.tmp, "bench-%d.lua" % len(self.procs))
        with open(script, "w") as f:
            f.write(script_text)
        pport, fport = free_port(), free_port()
        self.start([POLICYD, "--listen", "127.0.0.1:%d" % pport, "--script", script, "--log-stderr",
                    "--temp-dir", os.path.join(self.tmp, "ptmp"), "--ptr-lookup", "no"] + list(policyd_args), pport)
        self.policyd_pid = self.procs[-1].pid
        self.start([FRONT, "--listen", "127.0.0.1:%d" % fport, "--policyd", "127.0.0.1:%d" % pport,
                    "--queue-dir", spool, "--hostname", "bench.test", "--log-stderr"] + list(front_args), fport)
        return fport

    def replicas(self, script_text, spool, n, workers):
        """n policyd processes with `workers` each, one front balancing over them."""
        script = os.path.join(self.tmp, "bench-%d.lua" % len(self.procs))
        with open(script, "w") as f:
            f.write(script_text)
        self.policyd_pids, targets = [], []
        for _ in range(n):
            pport = free_port()
            self.start([POLICYD, "--listen", "127.0.0.1:%d" % pport, "--script", script, "--log-stderr",
                        "--temp-dir", os.path.join(self.tmp, "ptmp"), "--ptr-lookup", "no",
                        "--workers", str(workers)], pport)
            self.policyd_pids.append(self.procs[-1].pid)
            targets.append("127.0.0.1:%d" % pport)
        fport = free_port()
        self.start([FRONT, "--listen", "127.0.0.1:%d" % fport, "--policyd", "ipv4:" + ",".join(targets),
                    "--queue-dir", spool, "--hostname", "bench.test", "--log-stderr"], fport)
        self.front_pid = self.procs[-1].pid
        return fport

    def sink(self):
        port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root
        self.start(["smtp-sink"] + user + ["-c", "127.0.0.1:%d" % port, "256"], port)
        return port

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def noop_latencies(port, n):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO bench.test\r\n")
    while True:
        line = f.readline()
        if line[3:4] == b" ":
            break
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        s.sendall(b"NOOP\r\n")
        f.readline()
        out.append(time.perf_counter_ns() - t)
    s.sendall(b"QUIT\r\n")
    f.readline()
    s.close()
    return sorted(out)


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))] / 1000.0


def roundtrip(n=10000):
    tmp = tempfile.mkdtemp(prefix="mailhook-bench-")
    rows = []
    try:
        for name, script in (("mailhook, hook.noop (event crosses to policyd)", "function hook.noop() end"),
                             ("mailhook, no NOOP hook (front answers alone)", "function hook.rcpt(r) end")):
            st = Stack(tmp)
            port = st.mailhook(script, os.path.join(tmp, "spool"))
            noop_latencies(port, 500)  # warm up
            rows.append((name, noop_latencies(port, n)))
            st.stop()
        st = Stack(tmp)
        port = st.sink()
        noop_latencies(port, 500)
        rows.append(("baseline: Postfix smtp-sink", noop_latencies(port, n)))
        st.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("roundtrip: %d sequential NOOPs on one session, client-observed latency (us)" % n)
    print("%-50s %8s %8s" % ("system", "p50", "p99"))
    for name, v in rows:
        print("%-50s %8.1f %8.1f" % (name, pct(v, 0.5), pct(v, 0.99)))
    hook, alone, sink = rows[0][1], rows[1][1], rows[2][1]
    print("policy round trip front->policyd->front (hook minus no-hook): p50 %.1f us, p99 %.1f us" %
          (pct(hook, 0.5) - pct(alone, 0.5), pct(hook, 0.99) - pct(alone, 0.99)))
    print("ratio p50 mailhook-with-hook / smtp-sink: %.2f" % (pct(hook, 0.5) / pct(sink, 0.5)))


def smtp_source(port, messages, sessions):
    t = time.monotonic()
    r = subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", "2048", "-f",
                        "sender@example.com", "-t", "rcpt@example.com", "-M", "bench.test",
                        "127.0.0.1:%d" % port], capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % r.stderr.decode())
    return time.monotonic() - t


def throughput(messages=2000, sessions=20):
    tmp = tempfile.mkdtemp(prefix="mailhook-bench-")
    try:
        with open(os.path.join(ROOT, "lua", "policy.lua")) as f:
            policy = f.read().replace("local RATE_LIMIT = 60", "local RATE_LIMIT = 1e9")
        st = Stack(tmp)
        spool = os.path.join(tmp, "spool")
        port = st.mailhook(policy, spool)
        mh = smtp_source(port, messages, sessions)
        spooled = len([x for x in os.listdir(spool) if x.endswith(".eml")])
        st.stop()
        st = Stack(tmp)
        port = st.sink()
        base = smtp_source(port, messages, sessions)
        st.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("throughput: smtp-source, %d messages of 2 KiB, %d sessions, one message per connection" %
          (messages, sessions))
    print("mailhook (default policy, rate limit lifted; spool with fsync): %7.0f msgs/s (%d spooled)" %
          (messages / mh, spooled))
    print("baseline: Postfix smtp-sink (no policy, no disk):             %7.0f msgs/s" % (messages / base))
    print("ratio mailhook / smtp-sink: %.2f" % (base / mh))


def cpu_seconds(pid):
    """User + system CPU seconds a process used so far (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scale(messages=4000, sessions=40):
    tmp = tempfile.mkdtemp(prefix="mailhook-bench-")
    rows = []
    try:
        with open(os.path.join(ROOT, "lua", "policy.lua")) as f:
            policy = f.read().replace("local RATE_LIMIT = 60", "local RATE_LIMIT = 1e9")
        st = Stack(tmp)
        base = messages / smtp_source(st.sink(), messages, sessions)
        st.stop()
        for name, n, workers in (("1 policyd, --workers 1", 1, 1), ("1 policyd, --workers 2", 1, 2),
                                 ("2 policyd replicas, --workers 1 each", 2, 1),
                                 ("3 policyd replicas, --workers 1 each", 3, 1)):
            st = Stack(tmp)
            spool = os.path.join(tmp, "spool-%d-%d" % (n, workers))
            port = st.replicas(policy, spool, n, workers)
            elapsed = smtp_source(port, messages, sessions)
            front_cpu = cpu_seconds(st.front_pid)
            policyd_cpu = sum(cpu_seconds(p) for p in st.policyd_pids)
            spooled = len([x for x in os.listdir(spool) if x.endswith(".eml")])
            st.stop()
            rows.append((name, messages / elapsed, front_cpu, policyd_cpu, spooled, elapsed))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("scale: smtp-source, %d messages of 2 KiB, %d sessions, one message per connection; one front, "
          "default policy (rate limit lifted), spool with fsync; %d cores" % (messages, sessions, os.cpu_count()))
    print("%-40s %9s %8s %12s %14s" % ("", "msgs/s", "vs sink", "front CPU s", "policyd CPU s"))
    for name, rate, fcpu, pcpu, spooled, elapsed in rows:
        print("%-40s %9.0f %8.2f %12.2f %14.2f   (%d spooled; CPU busy %.0f%% of %d cores)" %
              (name, rate, rate / base, fcpu, pcpu, spooled, 100 * (fcpu + pcpu) / elapsed / os.cpu_count(),
               os.cpu_count()))
    print("%-40s %9.0f" % ("baseline: smtp-sink", base))


class ProcSampler:
    """Samples a process's thread count and RSS every 50 ms while running."""

    def __init__(self, pid):
        import threading
        self.pid, self.threads, self.rss_kb = pid, 0, 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.05):
            try:
                with open("/proc/%d/status" % self.pid) as f:
                    text = f.read()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("Threads:"):
                    self.threads = max(self.threads, int(line.split()[1]))
                elif line.startswith("VmRSS:"):
                    self.rss_kb = max(self.rss_kb, int(line.split()[1]))

    def stop(self):
        self.stopped.set()
        self.thread.join()


def dnsbl(messages=4000, sessions=200, delay_ms=50):
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from dnsserver import DnsServer
    zone = {"bl.test": [{"type": "SOA", "mname": "ns.bl.test", "rname": "h.bl.test", "serial": 1, "refresh": 1,
                         "retry": 1, "expire": 1, "minimum": 1}],
            "_behaviour": {"bl.test": {"delay_ms": delay_ms}}}
    dns = DnsServer(zone)
    dns.start()
    tmp = tempfile.mkdtemp(prefix="mailhook-bench-")
    rows = []
    try:
        with open(os.path.join(ROOT, "lua", "examples", "dnsbl.lua")) as f:
            script = f.read()
        for name, zones in (("no DNS lookup (baseline)", ""), ("one DNSBL lookup per session", "bl.test")):
            os.environ["MAILHOOK_DNSBL_ZONES"] = zones
            st = Stack(tmp)
            spool = os.path.join(tmp, "spool-%d" % len(rows))
            # --dns-cache-entries 0: every session's lookup goes to the server
            port = st.mailhook(script, spool, ["--dns-server", "127.0.0.1:%d" % dns.port, "--workers", "2",
                                               "--dns-cache-entries", "0"],
                               ["--max-connections", "2000", "--max-connections-per-ip", "2000"])
            sampler = ProcSampler(st.policyd_pid)
            before = len(dns.queries)
            elapsed = smtp_source(port, messages, sessions)
            sampler.stop()
            spooled = len([x for x in os.listdir(spool) if x.endswith(".eml")])
            rows.append((name, messages / elapsed, len(dns.queries) - before, spooled, sampler.threads,
                         sampler.rss_kb))
            st.stop()
    finally:
        os.environ.pop("MAILHOOK_DNSBL_ZONES", None)
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("dnsbl: smtp-source, %d messages, %d concurrent sessions, one message per connection; "
          "DNS server answers after %d ms; policyd --workers 2" % (messages, sessions, delay_ms))
    print("%-34s %10s %8s %8s %9s %10s" % ("run", "sessions/s", "queries", "spooled", "threads", "RSS MiB"))
    for name, rate, queries, spooled, threads, rss in rows:
        print("%-34s %10.0f %8d %8d %9d %10.1f" % (name, rate, queries, spooled, threads, rss / 1024.0))
    print("ratio with-DNSBL / without: %.2f (the ideal at %d sessions x %d ms is at most %.0f sessions/s)" %
          (rows[1][1] / rows[0][1], sessions, delay_ms, sessions * 1000.0 / delay_ms))


def milter(messages=2000, sessions=20):
    """Postfix alone, with the no-op C libmilter milter of bench/peers
    (the protocol's cost through libmilter; a baseline) and with
    mailhook-policyd --milter: msgs/s and the milter process's own CPU per
    message."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from postfix_instance import PrivatePostfix
    tmp = tempfile.mkdtemp(prefix="mailhook-bench-")
    os.chmod(tmp, 0o711)  # Postfix's daemons run as user postfix
    rows, skipped = [], []
    try:
        with open(os.path.join(ROOT, "lua", "policy.lua")) as f:
            policy = f.read().replace("local RATE_LIMIT = 60", "local RATE_LIMIT = 1e9")
        with open(os.path.join(ROOT, "bench", "peers", "mailhook", "policy.lua")) as f:
            stamp = f.read()
        noop = os.path.join(tmp, "noop_milter")
        built = subprocess.run(["cc", "-O2", "-o", noop, os.path.join(ROOT, "bench", "peers", "c_milter", "noop_milter.c"),
                                "-lmilter", "-lpthread"], capture_output=True) if shutil.which("cc") else None
        runs = [("Postfix, no milter (baseline)", None, None)]
        if built is not None and built.returncode == 0:
            runs.append(("Postfix + no-op C milter (libmilter)", "noop", None))
        else:
            skipped.append("no-op C milter: cannot build it (cc and libmilter-dev, bench/peers/install.sh)")
        runs += [("Postfix + mailhook milter, empty script", "mailhook", "-- no hooks\n"),
                 ("Postfix + mailhook milter, bench/compare policy", "mailhook", stamp),
                 ("Postfix + mailhook milter, default policy", "mailhook", policy)]
        for name, kind, script in runs:
            st = Stack(tmp)
            sink = st.sink()
            milter_spec, milter_pid = None, None
            if kind is not None:
                mport = free_port()
                if kind == "noop":
                    st.start([noop, "inet:%d@127.0.0.1" % mport], mport)
                else:
                    path = os.path.join(tmp, "milter-%d.lua" % len(rows))
                    with open(path, "w") as f:
                        f.write(script)
                    st.start([POLICYD, "--listen", "127.0.0.1:%d" % free_port(), "--script", path, "--log-stderr",
                              "--ptr-lookup", "no", "--temp-dir", os.path.join(tmp, "ptmp"),
                              "--milter", "inet:%d@127.0.0.1" % mport], mport)
                milter_spec = "inet:127.0.0.1:%d" % mport
                milter_pid = st.procs[-1].pid
            port = free_port()
            pf = PrivatePostfix(os.path.join(tmp, "pf-%d" % len(rows)), port, sink, milter=milter_spec)
            pf.start()
            try:
                cpu0 = cpu_seconds(milter_pid) if milter_pid else None
                elapsed = smtp_source(port, messages, sessions)
                cpu = cpu_seconds(milter_pid) - cpu0 if milter_pid else None
            finally:
                pf.stop()
                st.stop()
            rows.append((name, messages / elapsed, None if cpu is None else 1000.0 * cpu / messages))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("milter: smtp-source, %d messages of 2 KiB, %d sessions, one message per connection, into a private "
          "Postfix relaying to smtp-sink" % (messages, sessions))
    print("%-50s %9s %9s %20s" % ("run", "msgs/s", "x base", "milter CPU ms/msg"))
    for name, rate, cpu in rows:
        print("%-50s %9.0f %9.2f %20s" % (name, rate, rate / rows[0][1], "-" if cpu is None else "%.3f" % cpu))
    for reason in skipped:
        print("skipped: " + reason)

if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("roundtrip", "all"):
        roundtrip()
    if what in ("throughput", "all"):
        throughput()
    if what in ("dnsbl", "all"):
        dnsbl()
    if what in ("milter", "all"):
        milter()
    if what in ("scale", "all"):
        scale()

#!/usr/bin/env python3
"""Benchmark: sender authentication (lua/examples/auth_check.lua: SPF + DKIM
+ DMARC) against the default policy (lua/policy.lua), same load, same run.

It measures messages/s end to end (the client's 250 after the final dot)
and CPU per message of the front and policyd (/proc/PID/stat), in
interleaved rounds (default, auth, default, auth...), and prints the ratio.
It never asserts a speed; it only refuses to report a run whose messages
were not all accepted, or whose auth run did not pass SPF, DKIM and DMARC.

The DNS the checks need (SPF for 127.0.0.1, the DKIM key, a DMARC p=reject
record) is served on loopback by tests/integration/dnsserver.py. The message
is lua/examples/auth_check.eml, signed once up front (ed25519-sha256,
example.org, selector s1); every session sends it unchanged, to both
policies. Each round then sends the same load into a private Postfix
relaying to smtp-sink: with no milter, with mailhook-policyd --milter running
auth_check.lua, and with rspamd's milter proxy running its spf, dkim and
dmarc modules (bench/peers/rspamd/auth_check.conf.in), when installed.
Loopback only; every process started here is stopped by PID.

  python3 bench/auth_check.py [--rounds 3] [--messages 2000] [--sessions 20]
                              [--no-cache] [--quick] [--no-milters]
"""

import argparse
import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from bench import POLICYD, FRONT, Stack, cpu_seconds, free_port, wait_port  # noqa: E402
from dnsserver import DnsServer  # noqa: E402

EXAMPLES = os.path.join(ROOT, "lua", "examples")
HELO, SENDER, RCPT = "mail.example.org", "bounce@example.org", "bob@example.net"
RSPAMD_START_S = 120  # how long rspamd may take to listen on its milter port
# The public half of the key auth_check.eml was signed with (auth_check.case).
DKIM_KEY = "v=DKIM1; k=ed25519; p=5y1Rb78IIbA5TCDVkW3Fmowwaq8okZOCV/6bMs+uXyE="


def zone():
    return {
        "example.org": [{"type": "TXT", "text": ["v=spf1 ip4:127.0.0.1 -all"]}],
        "s1._domainkey.example.org": [{"type": "TXT", "text": [DKIM_KEY]}],
        "_dmarc.example.org": [{"type": "TXT", "text": ["v=DMARC1; p=reject"]}],
    }


def message_bytes():
    """auth_check.eml with CRLF line ends, dot-stuffed (RFC 5321 4.5.2),
    followed by the end-of-data line."""
    with open(os.path.join(EXAMPLES, "auth_check.eml"), "rb") as f:
        lines = f.read().replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


async def reply(reader):
    """One SMTP reply (multi-line ones too); its code."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def one_message(port, data):
    """One session, one message; True when the final dot got a 250."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        ok = await reply(reader) == 220
        for cmd, want in ((b"EHLO " + HELO.encode(), 250), (b"MAIL FROM:<" + SENDER.encode() + b">", 250),
                          (b"RCPT TO:<" + RCPT.encode() + b">", 250), (b"DATA", 354)):
            if not ok:
                break
            writer.write(cmd + b"\r\n")
            ok = await reply(reader) == want
        if ok:
            writer.write(data)
            ok = await reply(reader) == 250
        writer.write(b"QUIT\r\n")
        await writer.drain()
        return ok
    finally:
        writer.close()


async def load(port, messages, sessions, data):
    """`sessions` concurrent clients, one message per connection, until
    `messages` were sent; returns (accepted, seconds)."""
    left, accepted = [messages], [0]

    async def client():
        while left[0] > 0:
            left[0] -= 1
            if await asyncio.wait_for(one_message(port, data), 60):
                accepted[0] += 1

    t = time.monotonic()
    await asyncio.gather(*(client() for _ in range(sessions)))
    return accepted[0], time.monotonic() - t


def spooled(spool):
    return sorted(os.path.join(spool, x) for x in os.listdir(spool) if x.endswith(".eml"))


def run_one(tmp, name, script_text, dns, args, data, rnd):
    spool = os.path.join(tmp, "spool-%s-%d" % (name, rnd))
    policyd_args = ["--dns-server", "127.0.0.1:%d" % dns.port]
    if args.no_cache:
        policyd_args += ["--dns-cache-entries", "0"]
    st = Stack(tmp)
    try:
        port = st.mailhook(script_text, spool, policyd_args,
                           ["--max-connections-per-ip", str(args.sessions + 50)])
        front_pid = st.procs[-1].pid
        # One warm-up message (connections to policyd, Lua state), not counted.
        asyncio.run(load(port, 1, 1, data))
        for path in spooled(spool):
            os.unlink(path)
        queries0 = len(dns.queries)
        cpu0 = cpu_seconds(front_pid) + cpu_seconds(st.policyd_pid)
        accepted, elapsed = asyncio.run(load(port, args.messages, args.sessions, data))
        cpu = cpu_seconds(front_pid) + cpu_seconds(st.policyd_pid) - cpu0
        queries = len(dns.queries) - queries0
        files = spooled(spool)
        verdict = ""
        if name == "auth" and files:
            with open(files[0], "rb") as f:
                head = f.read().split(b"\r\n\r\n", 2)[1]
            verdict = "dmarc=pass" if (b"spf=pass" in head and b"dkim=pass" in head and b"dmarc=pass" in head) \
                else "NOT PASSING"
    finally:
        st.stop()
    return {"name": name, "round": rnd, "accepted": accepted, "spooled": len(files), "seconds": elapsed,
            "rate": args.messages / elapsed, "cpu_ms": 1000.0 * cpu / args.messages, "queries": queries,
            "verdict": verdict}


def tree_cpu_seconds(pid):
    """CPU seconds of a process and its live descendants (rspamd's workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
        todo += children.get(p, [])
    return total


def fill(template, out, **values):
    with open(template) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    with open(out, "w") as f:
        f.write(text)


def start_rspamd(st, tmp, dns_port):
    """rspamd's milter proxy with its SPF, DKIM and DMARC modules
    (bench/peers/rspamd/auth_check.conf.in); returns its milter address."""
    mport = free_port()
    conf = os.path.join(tmp, "rspamd-%d" % mport)
    os.makedirs(conf)
    fill(os.path.join(HERE, "peers", "rspamd", "auth_check.conf.in"), os.path.join(conf, "rspamd.conf"),
         DIR=conf, PORT=mport, COUNT=os.cpu_count(), DNSPORT=dns_port)
    shutil.copy(os.path.join(HERE, "peers", "rspamd", "auth_check_require.lua"), conf)
    user = pwd.getpwnam("_rspamd")
    for name in ("", "rspamd.conf", "auth_check_require.lua"):
        os.chown(os.path.join(conf, name), user.pw_uid, user.pw_gid)
    # Not Stack.start: rspamd loads its rules and maps before it listens,
    # which takes longer than Stack's 10 s when other work shares the cores.
    log = open(os.path.join(tmp, "rspamd-%d.out" % mport), "wb")
    st.procs.append(subprocess.Popen(["rspamd", "-f", "-c", os.path.join(conf, "rspamd.conf"), "-u", "_rspamd",
                                      "-g", "_rspamd"], stdout=log, stderr=subprocess.STDOUT))
    try:
        wait_port(mport, timeout=RSPAMD_START_S)
    except RuntimeError:
        with open(os.path.join(tmp, "rspamd-%d.out" % mport), errors="replace") as f:
            sys.stderr.write("rspamd did not listen within %d s; its output:\n%s" % (RSPAMD_START_S, f.read()[-3000:]))
        raise
    return "inet:127.0.0.1:%d" % mport


def run_milter(tmp, name, kind, script_text, dns, args, data, rnd):
    """The same load into a private Postfix relaying to smtp-sink, with no
    milter, mailhook-policyd --milter running auth_check.lua, or rspamd."""
    from postfix_instance import PrivatePostfix
    st = Stack(tmp)
    milter, milter_pid = None, None
    try:
        sink = st.sink()
        if kind == "mailhook":
            mport = free_port()
            path = os.path.join(tmp, "milter-%s-%d.lua" % (name, rnd))
            with open(path, "w") as f:
                f.write(script_text)
            policyd_args = ["--dns-server", "127.0.0.1:%d" % dns.port]
            if args.no_cache:
                policyd_args += ["--dns-cache-entries", "0"]
            st.start([POLICYD, "--listen", "127.0.0.1:%d" % free_port(), "--script", path, "--log-stderr",
                      "--ptr-lookup", "no", "--temp-dir", os.path.join(tmp, "ptmp"),
                      "--milter", "inet:%d@127.0.0.1" % mport] + policyd_args, mport)
            milter, milter_pid = "inet:127.0.0.1:%d" % mport, st.procs[-1].pid
        elif kind == "rspamd":
            milter = start_rspamd(st, tmp, dns.port)
            milter_pid = st.procs[-1].pid
        port = free_port()
        pf = PrivatePostfix(os.path.join(tmp, "pf-%s-%d" % (name, rnd)), port, sink, milter=milter)
        pf.start()
        try:
            asyncio.run(load(port, 1, 1, data))  # warm-up, not counted
            queries0 = len(dns.queries)
            cpu0 = tree_cpu_seconds(milter_pid) if milter_pid else 0.0
            accepted, elapsed = asyncio.run(load(port, args.messages, args.sessions, data))
            cpu = tree_cpu_seconds(milter_pid) - cpu0 if milter_pid else None
            queries = len(dns.queries) - queries0
        finally:
            pf.stop()
        if accepted != args.messages and kind == "rspamd":
            # Say why: the end of rspamd's own log (level error).
            for d in os.listdir(tmp):
                log = os.path.join(tmp, d, "rspamd.log")
                if d.startswith("rspamd-") and os.path.exists(log):
                    with open(log, errors="replace") as f:
                        sys.stderr.write("rspamd.log (%s):\n%s" % (d, "".join(f.readlines()[-15:])))
    finally:
        st.stop()
    return {"name": name, "round": rnd, "accepted": accepted, "spooled": -1, "seconds": elapsed,
            "rate": args.messages / elapsed, "cpu_ms": None if cpu is None else 1000.0 * cpu / args.messages,
            "queries": queries, "verdict": "accepted => passed" if kind == "rspamd" else
            ("accepted => dmarc=pass" if kind == "mailhook" else "")}


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000, help="messages per run")
    ap.add_argument("--sessions", type=int, default=20, help="concurrent client sessions")
    ap.add_argument("--no-cache", action="store_true",
                    help="policyd --dns-cache-entries 0: every check asks the DNS server")
    ap.add_argument("--quick", action="store_true", help="2 rounds x 300 messages")
    ap.add_argument("--no-milters", action="store_true",
                    help="skip the private-Postfix rows (no milter, mailhook milter, rspamd milter)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.messages = 2, 300
    for path in (FRONT, POLICYD):
        if not os.access(path, os.X_OK):
            sys.exit("%s not built (./dev build)" % path)

    with open(os.path.join(ROOT, "lua", "policy.lua")) as f:
        default = f.read().replace("local RATE_LIMIT = 60", "local RATE_LIMIT = 1e9")
    with open(os.path.join(EXAMPLES, "auth_check.lua")) as f:
        auth = f.read()
    data = message_bytes()
    dns = DnsServer(zone())
    dns.start()
    tmp = tempfile.mkdtemp(prefix="mailhook-bench-auth-")
    os.chmod(tmp, 0o711)  # Postfix's and rspamd's users reach their dirs in it
    rows, skipped = [], []
    milters = []
    if args.no_milters:
        skipped.append("the private-Postfix rows: --no-milters")
    elif not shutil.which("postconf"):
        skipped.append("the private-Postfix rows: Postfix is not installed (bench/peers/install.sh)")
    else:
        milters = [("pf", None), ("pf_mailhook", "mailhook")]
        try:
            pwd.getpwnam("_rspamd")
            if shutil.which("rspamd"):
                milters.append(("pf_rspamd", "rspamd"))
            else:
                raise KeyError
        except KeyError:
            skipped.append("rspamd as a milter: rspamd is not installed (bench/peers/install.sh installs it)")
    def attempt(name, rnd, run, *run_args):
        """One run; a run that broke (a daemon that never listened) is a
        row saying so, so the other runs' figures are still printed."""
        try:
            return run(*run_args)
        except Exception as e:  # noqa: BLE001 - reported in the table and on stderr
            traceback.print_exc()
            return {"name": name, "round": rnd, "accepted": 0, "spooled": -1, "seconds": 0.0, "rate": 0.0,
                    "cpu_ms": None, "queries": 0, "verdict": "ERROR: %s" % e, "failed": True}

    try:
        for rnd in range(1, args.rounds + 1):
            for name, script in (("default", default), ("auth", auth)):
                rows.append(attempt(name, rnd, run_one, tmp, name, script, dns, args, data, rnd))
            for name, kind in milters:
                rows.append(attempt(name, rnd, run_milter, tmp, name, kind, auth, dns, args, data, rnd))
    finally:
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print("auth_check: %d messages of %d bytes (lua/examples/auth_check.eml, DKIM-signed once up front), "
          "%d concurrent sessions, one message per connection, %d interleaved rounds; policyd DNS cache %s; "
          "DNS from tests/integration/dnsserver.py on loopback; %d cores" %
          (args.messages, len(data), args.sessions, args.rounds, "off" if args.no_cache else "on",
           os.cpu_count()))
    print("%-44s %5s %9s %12s %9s %8s %9s  %s" % ("policy", "round", "msgs/s", "CPU ms/msg", "accepted",
                                                  "spooled", "DNS qry", "check"))
    labels = {"default": "default (lua/policy.lua, rate limit lifted)",
              "auth": "auth (lua/examples/auth_check.lua)",
              "pf": "Postfix, no milter",
              "pf_mailhook": "Postfix + mailhook milter, auth_check.lua",
              "pf_rspamd": "Postfix + rspamd milter, spf+dkim+dmarc"}
    def cpu(v):
        return "%12s" % "-" if v is None else "%12.3f" % v
    for r in rows:
        print("%-44s %5d %9.0f %s %9d %8s %9d  %s" % (labels[r["name"]], r["round"], r["rate"], cpu(r["cpu_ms"]),
                                                     r["accepted"], "-" if r["spooled"] < 0 else r["spooled"],
                                                     r["queries"], r["verdict"]))
    good = [r for r in rows if not r.get("failed")]
    names = [n for n in labels if any(r["name"] == n for r in good)]
    med = {}
    for n in names:
        cpus = [r["cpu_ms"] for r in good if r["name"] == n and r["cpu_ms"] is not None]
        rates = [r["rate"] for r in good if r["name"] == n]
        med[n] = (median(rates), median(cpus) if cpus else None)
        print("%-44s %5s %9.0f %s   (median of %d)" % (labels[n], "med", med[n][0], cpu(med[n][1]), len(rates)))
    print("CPU ms/msg: front + policyd for the first two rows; the milter process (tree) alone behind Postfix")
    if "auth" in med and "default" in med:
        print("ratio auth / default: msgs/s %.2f, CPU per message %.2f" %
              (med["auth"][0] / med["default"][0], med["auth"][1] / med["default"][1]))
    if "pf_mailhook" in med and "pf_rspamd" in med:
        print("ratio behind Postfix, rspamd / mailhook milter: msgs/s %.2f, milter CPU per message %.2f" %
              (med["pf_rspamd"][0] / med["pf_mailhook"][0], med["pf_rspamd"][1] / med["pf_mailhook"][1]))
    for line in skipped:
        print("skipped: " + line)
    bad = [r for r in rows if r["accepted"] != args.messages or (r["name"] == "auth" and r["verdict"] != "dmarc=pass")]
    if bad:
        print("WARNING: %d run(s) did not accept every message or did not pass the checks; "
              "the figures above are not comparable" % len(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()

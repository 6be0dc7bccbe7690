#!/usr/bin/env python3
"""bench/compare: mailhook against its peers, the same workload on each.

Every system runs the same policy (refuse HELO/EHLO bad.example, refuse
RCPT blocked@dest.example, add one header at the end of the message) and
relays what it accepts to Postfix's smtp-sink. The load is Postfix's
smtp-source: N messages of about 2 KiB, one recipient, 50 concurrent
sessions; pass A sends one message per connection, pass B keeps sessions
open (smtp-source -d). Systems are interleaved: round 1 runs every system,
then round 2, ... (default 3 rounds); the medians are compared.

Systems (fixed keys): mailhook, postfix, postfix_mailhook_milter,
postfix_noop_milter, postfix_c_policy_milter, postfix_rspamd_milter,
haraka, qpsmtpd, ceiling. Their configurations are in bench/peers/; what
bench/peers/install.sh could not install is skipped, with the reason.

Per system and pass it reports:
  msgs_per_s             smtp-source's messages / smtp-source's run time
  end_to_end_msgs_per_s  smtp-source's messages / the time until the sink
                         (smtp-sink -c, its running count) held them all
  p50_ms, p99_ms         time per message as a client sees it, sampled by a
                         latency probe: one more client session running
                         beside the 50 of smtp-source for the whole run,
                         sending one 2 KiB message after another, at most
                         one every 20 ms (pass A:
                         connect to the 250 after the final dot; pass B: MAIL
                         FROM to that 250, on one kept session)
  cpu_s                  CPU seconds of the system's processes over the
                         run, every thread of every process of their trees
                         in nanoseconds (bench/cpuclock.py: schedstat, with
                         /proc/PID/stat's ticks for threads that ended;
                         children that exited are counted through their
                         parent's cutime/cstime); ms/msg divides it by every
                         message taken (smtp-source's and the probe's)
  peak_rss_mb            the peak, over samples every 0.25 s, of the sum of
                         VmRSS over those processes (peak_pss_mb: the same
                         with Pss, which splits shared pages between forked
                         processes fairly)
  delivered              messages the sink received (smtp-source's plus the
                         probe's)

Before measuring, each system gets one functional check (Python smtplib,
against an instance relaying to a capturing sink): HELO and EHLO
bad.example are refused, RCPT blocked@dest.example is refused, and a
delivered message carries the header. A system failing it is reported and
not measured.

Loopback only. Every process is started here, kept by PID and stopped at
the end (also on Ctrl-C or an error); every wait has a deadline.
Writes bench/results/compare-DATE.json, copies it to latest.json, and
draws compare-DATE.png with gnuplot.
"""

import argparse
import datetime
import json
import os
import platform
import pwd
import re
import shutil
import signal
import smtplib
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
BUILD = os.environ.get("MAILHOOK_BUILD", os.path.join(ROOT, "build"))
FRONT = os.path.join(BUILD, "frontend", "mailhook-front")
POLICYD = os.path.join(BUILD, "policyd", "mailhook-policyd")
PEERS_DIR = os.environ.get("MAILHOOK_PEERS_DIR", "/var/tmp/mailhook-peers")
HARAKA = os.path.join(PEERS_DIR, "haraka", "node_modules", "Haraka", "bin", "haraka")
CPUS = os.cpu_count() or 1

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from postfix_instance import PrivatePostfix  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpuclock import Meter, tree  # noqa: E402  (CPU in ns per thread; process trees)

SYSTEMS = ["mailhook", "postfix", "postfix_mailhook_milter", "postfix_noop_milter",
           "postfix_c_policy_milter", "postfix_rspamd_milter", "haraka", "qpsmtpd", "ceiling"]
# Systems with no policy: the functional check only asks that mail gets through.
BASELINES = {"postfix", "postfix_noop_milter", "ceiling"}
PASSES = {"A": "one message per connection", "B": "messages on kept sessions (smtp-source -d)"}
SLOW = {"qpsmtpd": 2000}  # at most this many messages for slow peers (the issue allows it)
# Why a refusal may come later than the command it is about.
LATE = {"MAIL": "Postfix passes a milter's HELO refusal on at the next command",
        "end of DATA": "this system decides once it has the whole message"}
SESSIONS = 50
MESSAGE_BYTES = 2048
SENDER, RECIPIENT, HELO = "sender@example.com", "rcpt@dest.example", "bench.test"
HEADER = "X-Bench-Policy"
# msgs/s assumed for the time estimate when no earlier result exists.
GUESS_RATE = {"ceiling": 2000, "mailhook": 800, "postfix": 250, "postfix_mailhook_milter": 120,
              "postfix_noop_milter": 140, "postfix_c_policy_milter": 130, "postfix_rspamd_milter": 120,
              "haraka": 250, "qpsmtpd": 70}
START_SECONDS = {"postfix_rspamd_milter": 20}  # rspamd compiles its URL matchers at start


# ------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("exited with status %d before listening on %d" % (proc.returncode, port))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listened on 127.0.0.1:%d within %d s" % (port, timeout))


def memory_kb(pid):
    """(VmRSS, Pss) of one process in KiB (0 where unreadable)."""
    rss = pss = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


class MemorySampler:
    """Peak of the summed VmRSS and Pss of the trees under roots, every 0.25 s."""

    def __init__(self, roots):
        self.roots, self.rss_kb, self.pss_kb = roots, 0, 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            rss = pss = 0
            for pid in tree(self.roots):
                r, p = memory_kb(pid)
                rss, pss = rss + r, pss + p
            self.rss_kb, self.pss_kb = max(self.rss_kb, rss), max(self.pss_kb, pss)
            if self.stopped.wait(0.25):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join(10)


class Processes:
    """Every process bench/compare starts, each in its own session so a
    Ctrl-C reaches only this script, which then stops them by PID (their
    descendants too) from a finally block."""

    def __init__(self, logdir):
        self.logdir, self.procs = logdir, []

    def spawn(self, name, argv, env=None, cwd=None, stdout=None):
        log = open(os.path.join(self.logdir, "%s-%d.log" % (name, len(self.procs))), "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or log, stderr=log,
                                env=env, cwd=cwd, start_new_session=True)
        proc.bench_log = log.name
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=15):
        if proc not in self.procs:
            return
        self.procs.remove(proc)
        family = tree([proc.pid])
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # A child that outlived its parent (e.g. a worker of a killed
        # master) is killed by PID, if it is still the process we saw.
        deadline = time.monotonic() + 5
        while True:
            left = [p for p in family if p != proc.pid and p in tree(family)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop_all(self):
        for proc in reversed(list(self.procs)):
            self.stop(proc)


# ------------------------------------------------------------------ sinks

class CountingSink:
    """smtp-sink -c: its running count ("sess=N quit=N mesg=N\\r") read
    from its stdout tells when it holds every message."""

    def __init__(self, procs):
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root
        self.proc = procs.spawn("smtp-sink", ["smtp-sink"] + user + ["-c", "127.0.0.1:%d" % self.port, "1024"],
                                stdout=subprocess.PIPE)
        self.count, self.changed = 0, threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_port(self.port, 10, self.proc)

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            buf = (buf + chunk)[-4096:]
            found = re.findall(rb"mesg=(\d+)", buf)
            if found:
                with self.changed:
                    self.count = int(found[-1])
                    self.changed.notify_all()

    def wait_for(self, target, stall_seconds, limit_seconds):
        """Monotonic time when count reached target, or None if it stopped
        growing for stall_seconds (or limit_seconds passed)."""
        deadline = time.monotonic() + limit_seconds
        with self.changed:
            last, last_change = self.count, time.monotonic()
            while self.count < target:
                now = time.monotonic()
                if now - last_change > stall_seconds or now > deadline:
                    return None
                self.changed.wait(0.5)
                if self.count != last:
                    last, last_change = self.count, time.monotonic()
            return time.monotonic()


class CapturingSink(socketserver.ThreadingTCPServer):
    """A tiny SMTP server that keeps every message, for the functional check."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.messages, self.lock = [], threading.Lock()
        super().__init__(("127.0.0.1", 0), _CaptureSession)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    def find(self, tag, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if tag.encode() in m:
                        return m
            time.sleep(0.1)
        return None

    def close(self):
        self.shutdown()
        self.server_close()


class _CaptureSession(socketserver.StreamRequestHandler):
    timeout = 60

    def handle(self):
        self.wfile.write(b"220 capture.test ESMTP\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-capture.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                data = []
                while True:
                    line = self.rfile.readline()
                    if line in (b".\r\n", b".\n", b""):
                        break
                    data.append(line[1:] if line.startswith(b"..") else line)
                with self.server.lock:
                    self.server.messages.append(b"".join(data))
                self.wfile.write(b"250 2.0.0 captured\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


# ---------------------------------------------------------------- systems

def message_body(tag, size=MESSAGE_BYTES):
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: bench %s\r\nMessage-ID: <%s@bench.test>\r\n\r\n"
            % (SENDER, RECIPIENT, tag, tag))
    line = "La la la, bench/compare's latency probe and functional check.\r\n"
    body = (line * (size // len(line) + 1))[:max(0, size - len(head))]
    return (head + body.rsplit("\r\n", 1)[0] + "\r\n").encode()


def fill(template_path, out_path, **values):
    with open(template_path) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("@%s@" % key, str(value))
    with open(out_path, "w") as f:
        f.write(text)


def read_main_cf(path):
    cf = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                key, value = line.split("=", 1)
                cf[key.strip()] = value.strip()
    return cf


class System:
    """One system under test, started to relay to sink_port. port is
    where clients connect; roots() the PIDs whose process trees are the
    system's server processes (for CPU and memory)."""

    def __init__(self, name, procs, workdir, tools):
        self.name, self.procs, self.workdir, self.tools = name, procs, workdir, tools
        self.mine, self.port = [], None

    def spawn(self, name, argv, **kw):
        proc = self.procs.spawn(name, argv, **kw)
        self.mine.append(proc)
        return proc

    def start(self, sink_port):
        raise NotImplementedError

    def roots(self):
        return [p.pid for p in self.mine]

    def stop(self):
        for proc in reversed(self.mine):
            self.procs.stop(proc)
        self.mine = []


class Mailhook(System):
    # Which binaries, and flags added after this script's own (bench/link_targets.py
    # sets them per build); None: the build in MAILHOOK_BUILD.
    front_binary = policyd_binary = None
    front_flags = policyd_flags = ()

    def start(self, sink_port):
        pport, self.port = free_port(), free_port()
        policyd = self.spawn("policyd", [
            self.policyd_binary or POLICYD, "--listen", "127.0.0.1:%d" % pport,
            "--script", os.path.join(PEERS, "mailhook", "policy.lua"),
            "--ptr-lookup", "no", "--temp-dir", os.path.join(self.workdir, "policyd-tmp"), "--log-stderr"]
            + list(self.policyd_flags))
        wait_port(pport, 20, policyd)
        # --max-connections-per-ip: the default 50 would refuse the probe,
        # the 51st session from 127.0.0.1.
        front = self.spawn("front", [
            self.front_binary or FRONT, "--listen", "127.0.0.1:%d" % self.port, "--policyd", "127.0.0.1:%d" % pport,
            "--smart-host", "127.0.0.1:%d" % sink_port, "--hostname", "mailhook.test",
            "--max-connections-per-ip", "1000", "--log-stderr"] + list(self.front_flags))
        wait_port(self.port, 20, front)


class Postfix(System):
    """A private Postfix relaying to the sink, with an optional milter."""

    def start(self, sink_port):
        milter = self.start_milter()
        self.port = free_port()
        self.postfix = PrivatePostfix(os.path.join(self.workdir, "postfix-%d" % self.port), self.port, sink_port,
                                      milter=milter,
                                      extra_main_cf=read_main_cf(os.path.join(PEERS, "postfix", "main.cf")))
        self.postfix.start()

    def start_milter(self):
        return None

    def roots(self):
        return super().roots() + ([self.postfix.master_pid] if self.postfix.master_pid else [])

    def stop(self):
        if getattr(self, "postfix", None) is not None:
            self.postfix.stop()
            self.postfix = None
        super().stop()


class PostfixMailhookMilter(Postfix):
    policyd_binary, policyd_flags = None, ()  # as Mailhook's

    def start_milter(self):
        mport = free_port()
        proc = self.spawn("policyd-milter", [
            self.policyd_binary or POLICYD, "--listen", "127.0.0.1:%d" % free_port(),
            "--milter", "inet:%d@127.0.0.1" % mport,
            "--script", os.path.join(PEERS, "mailhook", "policy.lua"), "--ptr-lookup", "no",
            "--temp-dir", os.path.join(self.workdir, "policyd-tmp"), "--log-stderr"] + list(self.policyd_flags))
        wait_port(mport, 20, proc)
        return "inet:127.0.0.1:%d" % mport


class PostfixCMilter(Postfix):
    program = None  # "noop_milter" or "policy_milter", compiled by Tools

    def start_milter(self):
        mport = free_port()
        proc = self.spawn(self.program, [self.tools.milter(self.program), "inet:%d@127.0.0.1" % mport])
        wait_port(mport, 10, proc)
        return "inet:127.0.0.1:%d" % mport


class PostfixNoopMilter(PostfixCMilter):
    program = "noop_milter"


class PostfixCPolicyMilter(PostfixCMilter):
    program = "policy_milter"


class PostfixRspamdMilter(Postfix):
    def start_milter(self):
        mport = free_port()
        conf = os.path.join(self.workdir, "rspamd-%d" % mport)
        os.makedirs(conf)
        fill(os.path.join(PEERS, "rspamd", "rspamd.conf.in"), os.path.join(conf, "rspamd.conf"),
             DIR=conf, PORT=mport, COUNT=CPUS, DNSPORT=free_port())
        shutil.copy(os.path.join(PEERS, "rspamd", "bench_policy.lua"), conf)
        user = pwd.getpwnam("_rspamd")
        for path in (conf, os.path.join(conf, "rspamd.conf"), os.path.join(conf, "bench_policy.lua")):
            os.chown(path, user.pw_uid, user.pw_gid)
        proc = self.spawn("rspamd", ["rspamd", "-f", "-c", os.path.join(conf, "rspamd.conf"),
                                     "-u", "_rspamd", "-g", "_rspamd"])
        wait_port(mport, 180, proc)
        return "inet:127.0.0.1:%d" % mport


class Haraka(System):
    def start(self, sink_port):
        self.port = free_port()
        home = os.path.join(self.workdir, "haraka-%d" % self.port)
        config = os.path.join(home, "config")
        # Haraka's shipped defaults (connection.ini...), then ours on top.
        shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(HARAKA)), "config"), config)
        shutil.copytree(os.path.join(PEERS, "haraka"), home, dirs_exist_ok=True)
        fill(os.path.join(config, "smtp.ini.in"), os.path.join(config, "smtp.ini"), PORT=self.port, NODES=CPUS)
        fill(os.path.join(config, "smtp_forward.ini.in"), os.path.join(config, "smtp_forward.ini"), SINK=sink_port)
        proc = self.spawn("haraka", ["node", HARAKA, "-c", home], cwd=home)
        wait_port(self.port, 60, proc)
        # In cluster mode the master listens first; wait for every worker.
        deadline = time.monotonic() + 30
        while len(tree([proc.pid])) < CPUS + 1 and time.monotonic() < deadline:
            time.sleep(0.1)


class Qpsmtpd(System):
    def start(self, sink_port):
        self.port = free_port()
        home = os.path.join(self.workdir, "qpsmtpd-%d" % self.port)
        config, spool = os.path.join(home, "config"), os.path.join(home, "spool")
        shutil.copytree(os.path.join(PEERS, "qpsmtpd", "config"), config)
        fill(os.path.join(config, "plugins.in"), os.path.join(config, "plugins"), SINK=sink_port)
        with open(os.path.join(config, "plugin_dirs"), "w") as f:
            f.write("%s\n/usr/share/qpsmtpd/plugins\n" % os.path.join(PEERS, "qpsmtpd", "plugins"))
        with open(os.path.join(config, "spool_dir"), "w") as f:
            f.write(spool + "\n")
        user = pwd.getpwnam("qpsmtpd")
        os.makedirs(spool, 0o700)
        os.chown(spool, user.pw_uid, user.pw_gid)
        env = dict(os.environ, QPSMTPD_CONFIG=config)
        # qpsmtpd-prefork, the faster of Debian's two qpsmtpd servers (the
        # fork-per-connection qpsmtpd-forkserver reached about a third of
        # its rate in pass A here), through prefork-nordns: no PTR lookup of
        # the client, as forkserver's -H. Its defaults (15 children, 5 idle,
        # 10 per address) would refuse or queue the load: 100 children, 60
        # kept idle, no per-address limit.
        proc = self.spawn("qpsmtpd", [os.path.join(PEERS, "qpsmtpd", "prefork-nordns"),
                                      "--interface", "127.0.0.1", "--port", str(self.port),
                                      "--children", "100", "--idle-children", "60", "--max-from-ip", "0",
                                      "--user", "qpsmtpd"], env=env)
        wait_port(self.port, 60, proc)


class Ceiling(System):
    """smtp-source straight into smtp-sink: the loopback ceiling."""

    def start(self, sink_port):
        self.port = sink_port

    def roots(self):
        return []  # the sink is the server; measure() adds it


CLASSES = {"mailhook": Mailhook, "postfix": Postfix, "postfix_mailhook_milter": PostfixMailhookMilter,
           "postfix_noop_milter": PostfixNoopMilter, "postfix_c_policy_milter": PostfixCPolicyMilter,
           "postfix_rspamd_milter": PostfixRspamdMilter, "haraka": Haraka, "qpsmtpd": Qpsmtpd, "ceiling": Ceiling}


class Tools:
    """What the systems need, found or built once; missing() says why a
    system cannot run here."""

    def __init__(self, workdir):
        self.workdir, self.built = workdir, {}

    def missing(self, name):
        need = {"smtp-source": "smtp-source", "smtp-sink": "smtp-sink"}
        if name.startswith("postfix"):
            need["postfix"] = "postfix"
        if name == "qpsmtpd":
            need["qpsmtpd-prefork"] = "qpsmtpd-prefork (Debian package qpsmtpd)"
        if name == "postfix_rspamd_milter":
            need["rspamd"] = "rspamd (Debian package rspamd)"
        if name == "haraka":
            need["node"] = "node (nodejs)"
        for program, what in need.items():
            if shutil.which(program) is None:
                return "%s is not installed (bench/peers/install.sh)" % what
        if name in ("mailhook", "postfix_mailhook_milter"):
            for binary in (FRONT, POLICYD) if name == "mailhook" else (POLICYD,):
                if not os.access(binary, os.X_OK):
                    return "%s is not built (./dev build)" % binary
        if name.startswith("postfix") and os.geteuid() != 0:
            return "a private Postfix instance needs root"
        if name == "haraka" and not os.path.exists(HARAKA):
            return "Haraka is not installed in %s (bench/peers/install.sh)" % PEERS_DIR
        if name == "qpsmtpd":
            try:
                pwd.getpwnam("qpsmtpd")
            except KeyError:
                return "no user qpsmtpd (Debian package qpsmtpd)"
        if name == "postfix_rspamd_milter":
            try:
                pwd.getpwnam("_rspamd")
            except KeyError:
                return "no user _rspamd (Debian package rspamd)"
        if name in ("postfix_noop_milter", "postfix_c_policy_milter"):
            program = "noop_milter" if name == "postfix_noop_milter" else "policy_milter"
            try:
                self.milter(program)
            except RuntimeError as e:
                return str(e)
        return None

    def milter(self, program):
        """The C milter, compiled with cc into the work directory once."""
        if program not in self.built:
            out = os.path.join(self.workdir, program)
            src = os.path.join(PEERS, "c_milter", program + ".c")
            if shutil.which("cc") is None:
                raise RuntimeError("no C compiler (cc) to build %s" % src)
            r = subprocess.run(["cc", "-O2", "-o", out, src, "-lmilter", "-lpthread"], capture_output=True,
                               timeout=120)
            if r.returncode != 0:
                raise RuntimeError("cannot compile %s (libmilter-dev?): %s" %
                                   (src, r.stderr.decode(errors="replace").strip()[:300]))
            self.built[program] = out
        return self.built[program]


# ------------------------------------------------------------------ check

def refusal(port, helo_name, rcpt, ehlo, tag):
    """Send one message; the first refusal as (stage, 'code text'), or
    (None, final reply) if the message was accepted."""
    s = smtplib.SMTP(timeout=30)
    try:
        code, text = s.connect("127.0.0.1", port)
        if code >= 400:
            return "greeting", "%d %s" % (code, text.decode(errors="replace"))
        code, text = s.ehlo(helo_name) if ehlo else s.helo(helo_name)
        if code >= 400:
            return ("EHLO" if ehlo else "HELO"), "%d %s" % (code, text.decode(errors="replace"))
        for stage, call in (("MAIL", lambda: s.mail(SENDER)), ("RCPT", lambda: s.rcpt(rcpt)),
                            ("DATA", lambda: s.docmd("DATA"))):
            code, text = call()
            if code >= 400:
                return stage, "%d %s" % (code, text.decode(errors="replace"))
        s.send(message_body(tag).replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, text = s.getreply()
        if code >= 400:
            return "end of DATA", "%d %s" % (code, text.decode(errors="replace"))
        return None, "%d %s" % (code, text.decode(errors="replace"))
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def functional_check(name, port, capture):
    """{'ok': bool, 'lines': [...]} for one system relaying to capture."""
    lines, ok = [], True
    stamp = "%d" % (time.time() * 1000)
    if name not in BASELINES:
        for label, helo_name, rcpt, ehlo, want in (
                ("HELO bad.example", "bad.example", RECIPIENT, False, "HELO"),
                ("EHLO bad.example", "bad.example", RECIPIENT, True, "EHLO"),
                ("RCPT blocked@dest.example", HELO, "blocked@dest.example", False, "RCPT")):
            tag = "check-%s-%s" % (want.lower(), stamp)
            stage, reply = refusal(port, helo_name, rcpt, ehlo, tag)
            leaked = capture.find(tag, 2 if stage is None else 0.5) is not None
            if stage is None or leaked:
                ok = False
                lines.append("%s: NOT refused (%s)%s" % (label, reply, ", delivered" if leaked else ""))
            else:
                note = "" if stage == want else " (at %s, not at %s: %s)" % (stage, want, LATE.get(
                    stage, "reported late"))
                lines.append("%s: refused at %s: %s%s" % (label, stage, reply.strip(), note))
    tag = "check-good-%s" % stamp
    stage, reply = refusal(port, HELO, RECIPIENT, False, tag)
    if stage is not None:
        return {"ok": False, "lines": lines + ["a good message was refused at %s: %s" % (stage, reply)]}
    got = capture.find(tag, 20)
    if got is None:
        ok = False
        lines.append("a good message was accepted (%s) but never reached the sink" % reply.strip())
    elif name in BASELINES:
        lines.append("a good message was relayed to the sink (no policy: nothing to refuse)")
    else:
        head = got.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
        found = re.search(r"^%s:[ \t]*(.*)$" % HEADER, head, re.M | re.I)
        if found:
            lines.append("a good message was relayed with %s: %s" % (HEADER, found.group(1).strip()))
        else:
            ok = False
            lines.append("a good message was relayed WITHOUT the %s header" % HEADER)
    return {"ok": ok, "lines": lines}


# ---------------------------------------------------------------- measure

class LatencyProbe(threading.Thread):
    """One more client session beside smtp-source's, sending one message
    after another and timing each as the client sees it: pass A from
    connect() to the 250 after the final dot (a new connection each time),
    pass B from MAIL FROM to that 250 on one kept session."""

    PACE = 0.02

    def __init__(self, port, keep_session):
        super().__init__(daemon=True)
        self.port, self.keep = port, keep_session
        self.samples, self.accepted, self.errors = [], 0, []
        self.stopped = threading.Event()
        self.body = message_body("probe").replace(b"\r\n.", b"\r\n..") + b".\r\n"

    def run(self):
        conn, next_start = None, time.monotonic()
        while not self.stopped.is_set():
            # At most one message every PACE seconds, so the probe adds little
            # load to a fast system (it waits on slow ones anyway).
            if self.stopped.wait(max(0.0, next_start - time.monotonic())):
                break
            next_start = time.monotonic() + self.PACE
            try:
                t0 = time.perf_counter()
                if conn is None:
                    conn = _ProbeConnection(self.port)
                if self.keep:
                    t0 = time.perf_counter()
                conn.transaction(self.body)
                self.samples.append((time.perf_counter() - t0) * 1000.0)
                self.accepted += 1
                if not self.keep:
                    conn.close()
                    conn = None
            except (OSError, RuntimeError) as e:
                self.errors.append(str(e))
                if conn is not None:
                    conn.close(abrupt=True)
                    conn = None
                self.stopped.wait(0.1)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stopped.set()
        self.join(40)


class _ProbeConnection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.expect(b"2")
        self.command(b"HELO %s\r\n" % HELO.encode(), b"2")

    def expect(self, first):
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line[3:4] != b"-":
                if not line.startswith(first):
                    raise RuntimeError("probe got: %s" % line.decode(errors="replace").strip())
                return

    def command(self, line, first):
        self.sock.sendall(line)
        self.expect(first)

    def transaction(self, body):
        self.command(b"MAIL FROM:<%s>\r\n" % SENDER.encode(), b"2")
        self.command(b"RCPT TO:<%s>\r\n" % RECIPIENT.encode(), b"2")
        self.command(b"DATA\r\n", b"3")
        self.command(body, b"2")

    def close(self, abrupt=False):
        try:
            if not abrupt:
                self.sock.sendall(b"QUIT\r\n")
                self.file.readline()
        except OSError:
            pass
        self.file.close()
        self.sock.close()


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] if v else None


def smtp_source_argv(port, messages, pass_name):
    """The load of one pass: smtp-source, SESSIONS sessions, kept (-d) in pass B."""
    return (["smtp-source", "-s", str(SESSIONS), "-m", str(messages), "-l", str(MESSAGE_BYTES), "-f", SENDER,
             "-t", RECIPIENT, "-M", HELO] + (["-d"] if pass_name == "B" else []) + ["127.0.0.1:%d" % port])


def measure(system, sink, pass_name, round_no, messages, args):
    """One pass of smtp-source against a started system; one run record."""
    run = {"system": system.name, "pass": pass_name, "round": round_no, "messages": messages}
    roots = system.roots() or [sink.proc.pid]
    before = sink.count
    memory = MemorySampler(roots)
    cpu, sink_cpu = Meter(roots), Meter([sink.proc.pid])
    probe = LatencyProbe(system.port, pass_name == "B")
    argv = smtp_source_argv(system.port, messages, pass_name)
    t0 = time.monotonic()
    probe.start()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=args.run_timeout)
        t1 = time.monotonic()
        error = None if r.returncode == 0 else "smtp-source: " + r.stderr.decode(errors="replace").strip()[-300:]
    except subprocess.TimeoutExpired:
        t1, error = time.monotonic(), "smtp-source did not finish within %d s" % args.run_timeout
    finally:
        probe.stop()
    expected = before + messages + probe.accepted
    reached = sink.wait_for(expected, stall_seconds=60, limit_seconds=args.run_timeout) if error is None else None
    cpu, sink_cpu = cpu.seconds(), sink_cpu.seconds()
    memory.stop()
    run.update({
        "msgs_per_s": None if error else round(messages / (t1 - t0), 1),
        "end_to_end_msgs_per_s": round(messages / (reached - t0), 1) if reached else None,
        "p50_ms": _round(percentile(probe.samples, 0.50)),
        "p99_ms": _round(percentile(probe.samples, 0.99)),
        "cpu_s": round(cpu, 4),
        "peak_rss_mb": round(memory.rss_kb / 1024.0, 1),
        "delivered": sink.count - before,
        "expected": messages + probe.accepted,
        "peak_pss_mb": round(memory.pss_kb / 1024.0, 1),
        "sink_cpu_s": round(sink_cpu, 2),
        "elapsed_s": round(t1 - t0, 2),
        "probe_samples": len(probe.samples),
        "probe_errors": len(probe.errors),
    })
    if error is None and reached is None:
        error = "the sink got %d of %d messages (no progress for 60 s)" % (run["delivered"], run["expected"])
    if probe.errors:
        run["probe_first_error"] = probe.errors[0][:200]
    if error:
        run["error"] = error
    return run


def _round(v):
    return None if v is None else round(v, 2)


# ---------------------------------------------------------------- results

METRICS = ["msgs_per_s", "end_to_end_msgs_per_s", "p50_ms", "p99_ms", "cpu_s", "peak_rss_mb"]


def medians(runs):
    """{system: {pass: {metric: median}}} over the runs without error."""
    out = {}
    for run in runs:
        if run.get("error"):
            continue
        per = out.setdefault(run["system"], {}).setdefault(run["pass"], {})
        for m in METRICS + ["cpu_ms_per_msg", "peak_pss_mb", "delivered", "expected", "messages"]:
            # CPU per message over every message the system took (the probe's too).
            value = run.get(m) if m != "cpu_ms_per_msg" else 1000.0 * run["cpu_s"] / run.get("expected",
                                                                                           run["messages"])
            if value is not None:
                per.setdefault(m, []).append(value)
    return {s: {p: {m: round(statistics.median(v), 3 if m == "cpu_ms_per_msg" else 2) for m, v in ms.items()}
                for p, ms in ps.items()}
            for s, ps in out.items()}


def ratios(med):
    """Each system's median / mailhook's median, per pass and metric. CPU is
    compared per message (cpu_ms_per_msg), since slow peers send fewer."""
    ref = med.get("mailhook", {})
    out = {}
    for system, passes in med.items():
        for p, values in passes.items():
            base = ref.get(p)
            if not base:
                continue
            row = {}
            for m in METRICS[:4] + ["cpu_ms_per_msg", "peak_rss_mb", "peak_pss_mb"]:
                if values.get(m) is not None and base.get(m):
                    row[m] = round(values[m] / base[m], 2)
            out.setdefault(system, {})[p] = row
    return out


# Issue 10's targets, all on pass A's end-to-end medians of one run:
# (name, system, what it is compared with, the least ratio that holds).
TARGETS = [
    ("mailhook >= 50% of the ceiling", "mailhook", ["ceiling"], 0.5),
    ("mailhook >= 4x Postfix alone", "mailhook", ["postfix"], 4.0),
    ("mailhook >= 5x Haraka", "mailhook", ["haraka"], 5.0),
    ("mailhook >= 50x qpsmtpd", "mailhook", ["qpsmtpd"], 50.0),
    ("mailhook's milter >= 95% of the best other milter", "postfix_mailhook_milter",
     ["postfix_noop_milter", "postfix_c_policy_milter", "postfix_rspamd_milter"], 0.95),
]


def targets(med, pass_="A", metric="end_to_end_msgs_per_s"):
    """Each target with its ratio and whether it holds; a target whose
    systems were not measured says so (never a pass)."""
    out = []
    for name, system, others, least in TARGETS:
        mine = med.get(system, {}).get(pass_, {}).get(metric)
        theirs = {o: med.get(o, {}).get(pass_, {}).get(metric) for o in others}
        measured = {o: v for o, v in theirs.items() if v}
        if not mine or not measured:
            out.append({"target": name, "status": "not measured"})
            continue
        against, value = max(measured.items(), key=lambda kv: kv[1])
        ratio = mine / value
        out.append({"target": name, "pass": pass_, "metric": metric, "system": system, "value": mine,
                    "against": against, "against_value": value, "ratio": round(ratio, 3), "needed": least,
                    "status": "holds" if ratio >= least else "does not hold"})
    return out


def print_targets(result, out=sys.stdout):
    rows = result.get("targets") or targets(result["medians"])
    print("\ntargets (pass A, end-to-end msgs/s, medians of this run):", file=out)
    for t in rows:
        if t["status"] == "not measured":
            print("  %-52s not measured" % t["target"], file=out)
        else:
            print("  %-52s %7.0f / %7.0f (%s) = %6.2f, needs %5.2f: %s" % (
                t["target"], t["value"], t["against_value"], t["against"], t["ratio"], t["needed"], t["status"]),
                file=out)


def machine():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {"cpus": CPUS, "model": model, "memory_gb": round(mem_gb, 1), "kernel": platform.release()}


def versions():
    def out(argv):
        try:
            r = subprocess.run(argv, capture_output=True, timeout=20)
            return (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return None

    v = {"mailhook": out(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
         "postfix": out(["postconf", "-dh", "mail_version"]),
         "rspamd": out(["rspamd", "--version"]),
         "qpsmtpd": out(["dpkg-query", "-W", "-f", "${Version}", "qpsmtpd"]),
         "node": out(["node", "--version"])}
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(HARAKA)), "package.json")) as f:
            v["haraka"] = json.load(f).get("version")
    except (OSError, ValueError):
        v["haraka"] = None
    return v


def fmt(v, width, digits=0):
    return ("%*.*f" % (width, digits, v)) if isinstance(v, (int, float)) else "%*s" % (width, "-")


def print_table(result, out=sys.stdout):
    med, rat = result["medians"], result["ratios"]
    wl = result["workload"]
    for p, what in PASSES.items():
        print("\npass %s: %s; %d messages of %d bytes, 1 recipient, %d sessions (%s); median of %d round(s)"
              % (p, what, wl["messages"], MESSAGE_BYTES, SESSIONS,
                 ", ".join("%s %d" % kv for kv in wl["messages_per_system"].items() if kv[1] != wl["messages"])
                 or "same count for all", wl["rounds"]), file=out)
        print("%-24s %9s %9s %8s %8s %7s %7s %7s %7s %13s | x mailhook: %5s %5s %5s %5s %6s %5s %5s" %
              ("system", "accept/s", "e2e/s", "p50 ms", "p99 ms", "CPU s", "ms/msg", "RSS MB", "PSS MB",
               "delivered", "acc", "e2e", "p50", "p99", "cpu/m", "rss", "pss"), file=out)
        for system in result["systems_order"]:
            info = result["systems"][system]
            if info["status"] != "measured":
                continue
            m = med.get(system, {}).get(p)
            if not m:
                errs = [r.get("error") for r in result["runs"] if r["system"] == system and r["pass"] == p]
                print("%-24s every run failed: %s" % (system, (errs or ["?"])[0]), file=out)
                continue
            r = rat.get(system, {}).get(p, {})
            print("%-24s %9s %9s %8s %8s %7s %7s %7s %7s %13s | %11s %5s %5s %5s %5s %6s %5s %5s" % (
                system, fmt(m.get("msgs_per_s"), 9), fmt(m.get("end_to_end_msgs_per_s"), 9),
                fmt(m.get("p50_ms"), 8, 1), fmt(m.get("p99_ms"), 8, 1), fmt(m.get("cpu_s"), 7, 2),
                fmt(m.get("cpu_ms_per_msg"), 7, 3), fmt(m.get("peak_rss_mb"), 7, 0), fmt(m.get("peak_pss_mb"), 7, 0),
                "%d/%d" % (m.get("delivered", 0), m.get("expected", 0)), "",
                fmt(r.get("msgs_per_s"), 5, 2), fmt(r.get("end_to_end_msgs_per_s"), 5, 2),
                fmt(r.get("p50_ms"), 5, 2), fmt(r.get("p99_ms"), 5, 2), fmt(r.get("cpu_ms_per_msg"), 6, 2),
                fmt(r.get("peak_rss_mb"), 5, 2), fmt(r.get("peak_pss_mb"), 5, 2)), file=out)
        failed = [r for r in result["runs"] if r["pass"] == p and r.get("error")]
        for r in failed:
            print("  round %d %s failed: %s" % (r["round"], r["system"], r["error"]), file=out)
    for system in result["systems_order"]:
        info = result["systems"][system]
        if info["status"] != "measured":
            print("%s: %s: %s" % (system, info["status"], info["reason"]), file=out)


def draw(result, png_path):
    """Bars per system, passes A and B side by side: accepted and
    end-to-end msgs/s (log scale), with gnuplot."""
    if shutil.which("gnuplot") is None:
        return "gnuplot is not installed (bench/peers/install.sh); no chart"
    med = result["medians"]
    rows = [s for s in result["systems_order"] if s in med]
    if not rows:
        return "nothing measured; no chart"
    data = png_path[:-4] + ".dat"
    with open(data, "w") as f:
        for s in rows:
            vals = [med[s].get(p, {}).get(m) for m in ("msgs_per_s", "end_to_end_msgs_per_s") for p in "AB"]
            f.write("%s %s\n" % (s.replace("_", "\\\\_"), " ".join("NaN" if v is None else str(v) for v in vals)))
    top = max([v for s in rows for p in med[s].values() for v in (p.get("msgs_per_s"), p.get("end_to_end_msgs_per_s"))
               if v] or [1])
    script = """
set terminal pngcairo size 1300,900 font ',10'
set output '%(png)s'
set multiplot layout 2,1 title 'bench/compare %(date)s: %(msgs)d msgs of 2 KiB, 50 sessions, median of %(rounds)d rounds (%(cpus)d cores, %(model)s)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [1:%(ymax)g]
set xrange [-0.6:%(xmax)g]
set grid ytics
set xtics rotate by -20 scale 0 font ',9'
set key top left
set ylabel 'messages/s'
set title 'accepted (client side)'
plot '%(data)s' using 2:xtic(1) title 'pass A: one message per connection', \
     '' using 3 title 'pass B: kept sessions (-d)', \
     '' using ($0-0.15):2:(sprintf('%%.0f',$2)) with labels offset 0,0.7 font ',8' notitle, \
     '' using ($0+0.15):3:(sprintf('%%.0f',$3)) with labels offset 0,0.7 font ',8' notitle
set title 'end to end (until the sink holds them all)'
plot '%(data)s' using 4:xtic(1) title 'pass A: one message per connection', \
     '' using 5 title 'pass B: kept sessions (-d)', \
     '' using ($0-0.15):4:(sprintf('%%.0f',$4)) with labels offset 0,0.7 font ',8' notitle, \
     '' using ($0+0.15):5:(sprintf('%%.0f',$5)) with labels offset 0,0.7 font ',8' notitle
unset multiplot
""" % {"png": png_path, "data": data, "date": result["date"], "msgs": result["workload"]["messages"],
       "rounds": result["workload"]["rounds"], "cpus": result["machine"]["cpus"],
       "model": result["machine"]["model"].replace("'", ""), "ymax": top * 4, "xmax": len(rows) - 0.4}
    r = subprocess.run(["gnuplot"], input=script.encode(), capture_output=True, timeout=60)
    os.unlink(data)
    if r.returncode != 0:
        return "gnuplot failed: %s" % r.stderr.decode(errors="replace").strip()[:300]
    return None


# ------------------------------------------------------------------- main

def estimate_seconds(systems, args):
    rates = {}
    try:
        with open(os.path.join(args.out, "latest.json")) as f:
            for s, ps in json.load(f).get("medians", {}).items():
                rates[s] = min(v.get("end_to_end_msgs_per_s") or v.get("msgs_per_s") or 1 for v in ps.values())
    except (OSError, ValueError, AttributeError):
        pass
    total = 0.0
    for s in systems:
        n = min(args.messages, SLOW.get(s, args.messages))
        total += 2 * args.rounds * (n / rates.get(s, GUESS_RATE[s]) + 2) + (args.rounds + 1) * START_SECONDS.get(s, 2)
    return total


def _interrupt(signum, frame):
    """SIGTERM, SIGHUP and SIGINT (also when inherited as ignored) unwind
    like Ctrl-C, through the finally blocks of main()."""
    raise KeyboardInterrupt()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000, help="messages per pass (default 20000; "
                    "qpsmtpd at most %d)" % SLOW["qpsmtpd"])
    ap.add_argument("--rounds", type=int, default=3, help="rounds, systems interleaved in each (default 3)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of: " + ",".join(SYSTEMS))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="where compare-DATE.json/.png and latest.json go (default bench/results)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the work directory (every process's log)")
    ap.add_argument("--run-timeout", type=int, default=900, help="seconds one pass may take (default 900)")
    ap.add_argument("--show", metavar="JSON", help="print the tables of an earlier result file and exit")
    args = ap.parse_args()
    if args.show:
        with open(args.show) as f:
            result = json.load(f)
        print("bench/compare %s, %d cores (%s)" % (result["date"], result["machine"]["cpus"],
                                                  result["machine"]["model"]))
        print_table(result)
        print_targets(result)
        return
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown or args.messages < 1 or args.rounds < 1:
        ap.error("unknown system(s) %s" % ",".join(unknown) if unknown else "--messages and --rounds must be >= 1")
    chosen = [s for s in SYSTEMS if s in chosen]
    if "mailhook" not in chosen:
        print("note: mailhook is not among --systems; no ratios will be computed")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    work = tempfile.mkdtemp(prefix="mailhook-compare-")
    os.chmod(work, 0o711)  # Postfix's, rspamd's and qpsmtpd's users reach their dirs in it
    procs = Processes(work)
    tools = Tools(work)
    now = datetime.datetime.now(datetime.timezone.utc)
    result = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "workload": {"load": "smtp-source", "messages": args.messages,
                           "messages_per_system": {s: min(args.messages, SLOW.get(s, args.messages))
                                                   for s in chosen},
                           "message_bytes": MESSAGE_BYTES, "recipients": 1, "sessions": SESSIONS,
                           "passes": PASSES, "rounds": args.rounds, "sink": "smtp-sink -c",
                           "latency": "one probe session beside smtp-source's, one message after another: "
                                      "pass A connect to the 250 after the dot, pass B MAIL FROM to that 250",
                           "postfix_raised": read_main_cf(os.path.join(PEERS, "postfix", "main.cf"))},
              "versions": versions(), "systems_order": chosen, "systems": {}, "runs": []}
    started = time.monotonic()
    try:
        for s in chosen:
            reason = tools.missing(s)
            result["systems"][s] = {"status": "skipped", "reason": reason} if reason else {"status": "measured"}
        runnable = [s for s in chosen if result["systems"][s]["status"] == "measured"]
        print("bench/compare: %s; %d rounds x 2 passes; %d messages (qpsmtpd %d), %d sessions; "
              "estimated %.0f min" % (", ".join(runnable) or "nothing to run", args.rounds, args.messages,
                                      min(args.messages, SLOW["qpsmtpd"]), SESSIONS,
                                      estimate_seconds(runnable, args) / 60))
        for s in chosen:
            if s not in runnable:
                print("  %s: skipped: %s" % (s, result["systems"][s]["reason"]))
        sys.stdout.flush()

        print("\nfunctional check (one smtplib session per rule, relaying to a capturing sink):")
        for s in list(runnable):
            if s == "ceiling":
                continue
            capture, system = CapturingSink(), CLASSES[s](s, procs, work, tools)
            try:
                system.start(capture.port)
                check = functional_check(s, system.port, capture)
            except Exception as e:  # a system that does not even start is reported, not fatal
                check = {"ok": False, "lines": ["did not start or answer: %s" % str(e).strip()[:500]]}
            finally:
                system.stop()
                capture.close()
            result["systems"][s]["check"] = check["lines"]
            print("  %s: %s" % (s, "pass" if check["ok"] else "FAIL"))
            for line in check["lines"]:
                print("      " + line)
            if not check["ok"]:
                result["systems"][s].update(status="failed check", reason="; ".join(check["lines"]))
                runnable.remove(s)
            sys.stdout.flush()

        for round_no in range(1, args.rounds + 1):
            print("\nround %d/%d" % (round_no, args.rounds))
            for s in runnable:
                messages = min(args.messages, SLOW.get(s, args.messages))
                sink = CountingSink(procs)
                system = CLASSES[s](s, procs, work, tools)
                try:
                    system.start(sink.port)
                    for p in PASSES:
                        run = measure(system, sink, p, round_no, messages, args)
                        result["runs"].append(run)
                        print("  %-24s %s %s" % (s, p, run.get("error") or
                              "%7.0f accepted/s %7s e2e/s  p50 %6.1f ms  p99 %7.1f ms  CPU %7.3f s  RSS %5.0f MB"
                              % (run["msgs_per_s"], fmt(run["end_to_end_msgs_per_s"], 7),
                                 run["p50_ms"] or 0, run["p99_ms"] or 0, run["cpu_s"], run["peak_rss_mb"])))
                        sys.stdout.flush()
                except Exception as e:
                    result["runs"].append({"system": s, "pass": "A", "round": round_no, "messages": messages,
                                           "error": "did not start: %s" % str(e).strip()[:500]})
                    print("  %-24s did not start: %s" % (s, str(e).strip()[:500]))
                finally:
                    system.stop()
                    procs.stop(sink.proc)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process started here", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        if args.keep_logs:
            print("logs kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    result["medians"] = medians(result["runs"])
    result["ratios"] = ratios(result["medians"])
    result["targets"] = targets(result["medians"])
    result["duration_s"] = round(time.monotonic() - started)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "compare-" + now.strftime("%Y-%m-%dT%H%M"))
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    shutil.copy(stem + ".json", os.path.join(args.out, "latest.json"))
    problem = draw(result, stem + ".png")
    if problem is None:
        shutil.copy(stem + ".png", os.path.join(args.out, "latest.png"))
    print_table(result)
    print_targets(result)
    print("\nwrote %s.json (and latest.json)%s; took %.0f min" %
          (stem, "" if problem else ", %s.png" % stem, result["duration_s"] / 60))
    if problem:
        print(problem)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)

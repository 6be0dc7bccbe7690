"""Integration-test harness: starts the real mailhook-policyd and
mailhook-front on free loopback ports, speaks SMTP over real sockets, and
runs a small SMTP sink for relay tests. Every process and thread it starts
is bounded in time and stopped by PID; waiting is polling a condition with
a deadline, never a bare sleep."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import weakref

FRONT = os.environ.get("MAILHOOK_FRONT", "build/frontend/mailhook-front")
POLICYD = os.environ.get("MAILHOOK_POLICYD", "build/policyd/mailhook-policyd")
LUA_DIR = os.environ.get("MAILHOOK_LUA", "lua")


_ports_given = set()


def free_port():
    """A loopback port nobody listens on, never one this process was given
    before: the kernel may hand the same free port to two bind(0) calls
    made before either port is taken (seen: a daemon's gRPC and milter
    ports equal)."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise AssertionError("no loopback port left that this test process was not given already")


def scrape(port):
    """The text of a --metrics endpoint (GET /metrics)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


def sample(text, name):
    """The value of one Prometheus sample line ('name{labels} value'), or None."""
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def total(text, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`
    (mailhook_policyd_replies_total by class, over every hook and script).
    A trailing underscore is dropped from a key: class_="5xx" is class."""
    labels = {k.rstrip("_"): v for k, v in labels.items()}
    out = 0.0
    for m in re.finditer(r"^" + re.escape(name) + r"(?:\{(.*)\})? (\S+)$", text, re.M):
        have = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:\\.|[^"\\])*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            out += float(m.group(2))
    return out


def wait_for(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Process:
    """A child process with its stderr in a file; killed at the latest in stop()."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self.args = args
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=10):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=5)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


# Every SmtpClient still open; tearDown closes them before stopping the
# front, so a session left mid-transaction does not hold the front's
# shutdown grace (and the test) for seconds.
OPEN_CLIENTS = weakref.WeakSet()


class SmtpClient:
    """`source`: the loopback address to connect from (127.0.0.2, ...), so
    a test can be a client the policy treats differently."""

    def __init__(self, port, timeout=10, source=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        OPEN_CLIENTS.add(self)

    def read_reply(self):
        """One complete reply as (code, [lines]); (None, []) on EOF."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    return (None, lines)
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode(errors="replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return (int(text[:3]), lines)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.read_reply()

    def closed(self):
        """True when the server closed the connection."""
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self):
        self.sock.close()


def reply_text(reply):
    code, lines = reply
    return lines[-1] if lines else ""


class Sink:
    """A minimal SMTP server on loopback recording what it receives.
    `fail_at` ("connect", "mail", "rcpt", "data", "dot") with `fail_reply`
    makes it refuse there; `hold` (an Event) delays the reply to the final
    dot until set."""

    def __init__(self, fail_at=None, fail_reply="451 4.3.0 sink says later", hold=None, ehlo=()):
        self.port = free_port()
        self.fail_at = fail_at
        self.fail_reply = fail_reply
        self.hold = hold
        self.ehlo = list(ehlo)        # extension keywords to offer
        self.commands = []            # every MAIL and RCPT line as received
        self.sessions = 0             # connections accepted
        self.open = set()             # their sockets
        self.messages = []
        self.dot_received = threading.Event()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        deadline = time.monotonic() + 120
        while self.running and time.monotonic() < deadline:
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.open.add(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _reply(self, f, stage, ok):
        f.write(((self.fail_reply if self.fail_at == stage else ok) + "\r\n").encode())
        f.flush()
        return self.fail_at != stage

    def _session(self, conn):
        self.sessions += 1
        conn.settimeout(30)
        f = conn.makefile("rwb")
        try:
            if not self._reply(f, "connect", "220 sink ESMTP"):
                return
            sender, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    lines = ["sink"] + self.ehlo
                    f.write("".join("250%s%s\r\n" % ("-" if i + 1 < len(lines) else " ", l)
                                    for i, l in enumerate(lines)).encode())
                    f.flush()
                elif verb == b"MAIL":
                    self.commands.append(line.strip().decode())
                    if self._reply(f, "mail", "250 ok"):
                        sender = line.strip()[10:].decode()
                elif verb == b"RCPT":
                    self.commands.append(line.strip().decode())
                    if self._reply(f, "rcpt", "250 ok"):
                        rcpts.append(line.strip()[8:].decode())
                elif verb == b"DATA":
                    if not self._reply(f, "data", "354 go"):
                        continue
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data += l[1:] if l.startswith(b"..") else l
                    self.dot_received.set()
                    if self.hold is not None:
                        self.hold.wait(20)
                    if self._reply(f, "dot", "250 queued"):
                        self.messages.append((sender, rcpts, data))
                    sender, rcpts = None, []
                elif verb == b"QUIT":
                    f.write(b"221 bye\r\n"); f.flush()
                    return
                else:
                    f.write(b"250 ok\r\n"); f.flush()
        except OSError:
            pass
        finally:
            self.open.discard(conn)
            conn.close()

    def stop(self):
        self.running = False
        self.server.close()
        self.thread.join(5)

    def drop_connections(self):
        """Closes every open session (a smart host restarting); the next
        session the front opens is served as before."""
        for c in list(self.open):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class MailhookTest(unittest.TestCase):
    """Starts policyd with `SCRIPT` and a front per test (or per class)."""

    SCRIPT = ""
    POLICYD_ARGS = []
    FRONT_ARGS = []
    POLICYD_WORKERS = "1"  # None: policyd's own default (one Lua worker per core)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mailhook-it-")
        self.spool = os.path.join(self.dir, "spool")
        self.processes = []
        self.policyd = None
        self.front = None

    def tearDown(self):
        for c in list(OPEN_CLIENTS):
            c.close()
        # Fronts first: policyd's SIGTERM drain waits for their open streams.
        fronts = [p for p in self.processes if p.args[0] == FRONT]
        for p in fronts + [p for p in self.processes if p not in fronts]:
            p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_script(self, text, name="policy.lua"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_policyd(self, script=None, args=(), wait=True, port=None):
        self.policyd_port = port or free_port()
        path = self.write_script(script if script is not None else self.SCRIPT)
        self.script_path = path
        extra = list(self.POLICYD_ARGS) + list(args)
        # No PTR lookups against the machine's resolver unless a test asks
        # (the DNS tests point --dns-server at their own server).
        if "--ptr-lookup" not in extra:
            extra += ["--ptr-lookup", "no"]
        if "--workers" not in extra and self.POLICYD_WORKERS is not None:
            extra += ["--workers", self.POLICYD_WORKERS]
        p = Process([POLICYD, "--listen", "127.0.0.1:%d" % self.policyd_port, "--script", path, "--log-stderr",
                     "--temp-dir", os.path.join(self.dir, "tmp")] + extra,
                    os.path.join(self.dir, "policyd-%d.log" % len(self.processes)))
        self.processes.append(p)
        self.policyd = p
        if wait:
            wait_for(lambda: "listening on" in p.output() or not p.alive(), what="policyd listening")
            self.assertTrue(p.alive(), p.output())
        return p

    def start_front(self, args=(), policyd_target=None):
        self.front_port = free_port()
        if not hasattr(self, "policyd_port"):
            self.policyd_port = free_port()
        target = policyd_target or "127.0.0.1:%d" % self.policyd_port
        p = Process([FRONT, "--listen", "127.0.0.1:%d" % self.front_port, "--policyd",
                     target, "--queue-dir", self.spool, "--hostname", "mx.test",
                     "--log-stderr", "--io-threads", "2"] + list(self.FRONT_ARGS) + list(args),
                    os.path.join(self.dir, "front-%d.log" % len(self.processes)))
        self.processes.append(p)
        self.front = p
        # Await the log line, not a probe connection: a probe would be a
        # session of its own and hold a connection slot for a moment.
        wait_for(lambda: "listening on" in p.output() or not p.alive(), what="front listening")
        self.assertTrue(p.alive(), p.output())
        return p

    def start_both(self, script=None, policyd_args=(), front_args=()):
        self.start_policyd(script, policyd_args)
        self.start_front(front_args)

    def client(self, expect_greeting=220, source=None, port=None):
        """A client of the front, from `source` (a 127.0.0.x address) if
        given; its greeting is checked and kept in c.greeting."""
        c = SmtpClient(port or self.front_port, source=source)
        code, c.greeting = c.read_reply()
        if expect_greeting is not None:
            self.assertEqual(code, expect_greeting, c.greeting)
        self.addCleanup(c.close)
        return c

    def spooled(self):
        if not os.path.isdir(self.spool):
            return []
        return sorted(os.path.join(self.spool, f) for f in os.listdir(self.spool) if f.endswith(".eml"))

    def send_message(self, c, sender="a@example.com", rcpts=("b@example.com",), body="Subject: t\r\n\r\nhello\r\n"):
        """A whole transaction; returns the reply to the final dot."""
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender)[0], 250)
        for r in rcpts:
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(body + ".\r\n")
        return c.read_reply()

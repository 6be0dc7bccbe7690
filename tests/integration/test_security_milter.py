"""The milter socket as a hostile MTA sees it (THREATS.md, "milter
socket"): the real mailhook-policyd --milter, spoken to over real loopback
and unix sockets by a small milter-protocol client (packets: 4-byte length,
command letter, data). Memory and disk per connection stay bounded
(macros, headers, lines, message size), nothing of one SMTP session
reaches the next on a reused connection, running out of file descriptors
is no busy loop, connections are capped, a peer that does not read is cut,
and the socket itself is opened safely (mode, spec, a busy port or path)."""

import os
import re
import resource
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import POLICYD, MailhookTest, free_port, sample, scrape, wait_for

# mfdef.h: every action and every protocol step an MTA may offer.
ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF
NR_STEPS = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000 | 0x80


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def connect_data(address="192.0.2.9", host=b"client.example"):
    return host + b"\x00" + b"4" + struct.pack(">H", 4000) + address.encode() + b"\x00"


def macros(stage, pairs):
    """SMFIC_MACRO: the stage's letter, then name/value pairs."""
    return packet(b"D", stage + b"".join(n + b"\x00" + v + b"\x00" for n, v in pairs))


class MilterClient:
    """One MTA connection to policyd's milter socket."""

    def __init__(self, address, family=socket.AF_INET, timeout=20, rcvbuf=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def reply(self):
        """The next reply as (letter, data), progress packets skipped; None on EOF."""
        while True:
            if not self._fill(4):
                return None
            length = struct.unpack(">I", self.buf[:4])[0]
            if not self._fill(4 + length):
                return None
            letter, data = self.buf[4:5], self.buf[5:4 + length]
            self.buf = self.buf[4 + length:]
            if letter != b"p":
                return letter, data

    def command(self, data):
        self.send(data)
        return self.reply()

    def negotiate(self, actions=ALL_ACTIONS, steps=ALL_STEPS):
        r = self.command(packet(b"O", struct.pack(">III", 6, actions, steps)))
        assert r and r[0] == b"O", r
        return struct.unpack(">III", r[1][:12])

    def closed(self):
        """True when policyd closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def cpu_seconds(pid):
    """utime + stime of the process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass  # removed meanwhile
    return total


class Peaks:
    """Samples policyd's RSS and the bytes under a directory every few
    milliseconds while a message streams in, keeping the highest of each:
    after the end of message the temp file is gone, and any in-order
    command mid-body would end the transaction (out of order, as libmilter
    has it), so the bounds are read from the peaks seen meanwhile."""

    def __init__(self, pid, path):
        self.pid, self.path = pid, path
        self.rss_kb = rss_kb(pid)
        self.disk = tree_bytes(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.005):
            self.rss_kb = max(self.rss_kb, rss_kb(self.pid))
            self.disk = max(self.disk, tree_bytes(self.path))

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self


class SecurityMilterTest(MailhookTest):
    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        # MTA connections first: policyd's SIGTERM drain waits for open sessions.
        for c in self.clients:
            c.close()
        super().tearDown()

    def start_milter(self, script, args=(), socket_spec=None):
        self.milter_port = free_port()
        self.metrics_port = free_port()
        spec = socket_spec or "inet:%d@127.0.0.1" % self.milter_port
        self.start_policyd(script, args=["--milter", spec, "--metrics", "127.0.0.1:%d" % self.metrics_port] + list(args))
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")

    def trips(self, flag):
        """mailhook_policyd_milter_limit_trips_total for one flag."""
        return sample(scrape(self.metrics_port), 'mailhook_policyd_milter_limit_trips_total{flag="%s"}' % flag)

    def mta(self, **kw):
        c = MilterClient(("127.0.0.1", self.milter_port), **kw)
        self.clients.append(c)
        return c

    def unix_mta(self, path):
        c = MilterClient(path, family=socket.AF_UNIX)
        self.clients.append(c)
        return c

    def session(self, c, steps=ALL_STEPS):
        """Negotiation and CONNECT; the reply to CONNECT, if one is due."""
        c.negotiate(steps=steps)
        c.send(packet(b"C", connect_data()))

    def message(self, c, headers=(), body=b"", eob_data=b""):
        """MAIL, RCPT, the header fields, end of header, body in 64 KiB
        packets and end of body; returns the reply to end of body."""
        c.send(packet(b"M", b"<a@example.com>\x00"))
        assert c.command(packet(b"R", b"<b@example.com>\x00"))[0] == b"c"
        for name, value in headers:
            c.send(packet(b"L", name + b"\x00" + value + b"\x00"))
        c.send(packet(b"N"))
        for i in range(0, len(body), 65535):
            c.send(packet(b"B", body[i:i + 65535]))
        return c.command(packet(b"E", eob_data))


# ------------------------------------------------- finding 3: memory, disk

HELO_ANSWERS = r'''
function hook.helo(h) end
'''

LINES_AND_FILE = r'''
function hook.helo(h) end
function hook.rcpt(r) end
function hook.body(line) end
function hook.unknown(line) return "502 5.5.2 pong\r\n" end
function hook.dot(path) end
'''


class MacroBounds(SecurityMilterTest):
    def test_300_distinct_macros_of_100k_keep_memory_bounded(self):
        # Each SMFIC_MACRO for a stage replaces that stage's macros: 300
        # distinct names of 100 KiB hold one of them, not 30 MB.
        self.start_milter(HELO_ANSWERS)
        c = self.mta()
        self.session(c)
        self.assertEqual(c.command(packet(b"H", b"warm.example\x00"))[0], b"c")
        before = rss_kb(self.policyd.proc.pid)
        value = b"v" * (100 * 1024)
        for i in range(300):
            c.send(macros(b"H", [(b"{m%d}" % i, value)]))
        # The reply to HELO comes after every macro before it was taken.
        self.assertEqual(c.command(packet(b"H", b"good.example\x00"))[0], b"c")
        grown = rss_kb(self.policyd.proc.pid) - before
        self.assertLess(grown, 15 * 1024, "policyd grew by %d kB for 300 macros" % grown)

    def test_macros_across_stages_are_capped_in_bytes_at_the_edge(self):
        self.start_milter(HELO_ANSWERS, args=["--milter-max-macro-bytes", "1000"])
        c = self.mta()
        self.session(c)
        # Name and value bytes: 5 + 495 in stage H, 5 + 495 in stage M = 1000.
        c.send(macros(b"H", [(b"{aaa}", b"x" * 495)]))
        c.send(macros(b"M", [(b"{bbb}", b"x" * 495)]))
        self.assertEqual(c.command(packet(b"H", b"good.example\x00"))[0], b"c")  # at the limit: served
        c.send(macros(b"R", [(b"c", b"")]))  # one byte more, in a third stage
        c.send(packet(b"H", b"good.example\x00"))
        self.assertTrue(c.closed())
        wait_for(lambda: "--milter-max-macro-bytes" in self.policyd.output(), what="the log names the flag")

    def test_macros_are_capped_in_count_at_the_edge(self):
        self.start_milter(HELO_ANSWERS, args=["--milter-max-macros", "3"])
        c = self.mta()
        self.session(c)
        c.send(macros(b"C", [(b"{x}", b"1"), (b"{y}", b"2")]))
        c.send(macros(b"H", [(b"{z}", b"3")]))
        self.assertEqual(c.command(packet(b"H", b"good.example\x00"))[0], b"c")  # 3: served
        c.send(macros(b"H", [(b"{z}", b"3"), (b"{w}", b"4")]))  # replaces H: 4 in all
        c.send(packet(b"H", b"good.example\x00"))
        self.assertTrue(c.closed())
        wait_for(lambda: "--milter-max-macros" in self.policyd.output(), what="the log names the flag")
        self.assertEqual(self.trips("--milter-max-macros"), 1)


class MessageBounds(SecurityMilterTest):
    def test_a_body_without_line_ends_is_refused_and_not_kept(self):
        # 30 MiB without a line end: before, the runtime held it as one
        # partial line in RAM and the temp file grew with it.
        self.start_milter(LINES_AND_FILE)
        c = self.mta()
        self.session(c)
        self.assertEqual(c.command(packet(b"H", b"good.example\x00"))[0], b"c")
        before = rss_kb(self.policyd.proc.pid)
        c.send(packet(b"M", b"<a@example.com>\x00"))
        self.assertEqual(c.command(packet(b"R", b"<b@example.com>\x00"))[0], b"c")
        c.send(packet(b"L", b"Subject\x00long\x00"))
        c.send(packet(b"N"))
        peaks = Peaks(self.policyd.proc.pid, os.path.join(self.dir, "tmp"))
        chunk = packet(b"B", b"x" * 65535)
        for _ in range(30 * 1024 * 1024 // 65535):
            c.send(chunk)
        r = c.command(packet(b"E"))  # answered once every body packet before it was handled
        peaks.stop()
        self.assertLessEqual(peaks.disk, 2 * 1024 * 1024, "the temp file grew to %d bytes" % peaks.disk)
        self.assertLess(peaks.rss_kb - before, 15 * 1024, "policyd grew by %d kB" % (peaks.rss_kb - before))
        self.assertEqual(r[0], b"y", r)
        self.assertTrue(r[1].startswith(b"550 5.6.0 "), r)
        self.assertIn("--milter-max-line", self.policyd.output())
        self.assertEqual(self.trips("--milter-max-line"), 1)
        # The connection goes on: the next message is served.
        self.assertEqual(self.message(c, [(b"Subject", b"ok")], b"fine\r\n")[0], b"c")

    def test_message_size_limit_at_the_edge_and_nothing_stored_past_it(self):
        self.start_milter(LINES_AND_FILE, args=["--milter-max-message-size", "100000"])
        c = self.mta()
        self.session(c)
        head = [(b"Subject", b"x")]  # "Subject: x\r\n" = 12 bytes, the blank line 2
        line = b"y" * 98 + b"\r\n"
        body = line * 999 + b"y" * (100000 - 14 - 99900 - 2) + b"\r\n"
        self.assertEqual(len(body), 100000 - 14)
        self.assertEqual(self.message(c, head, body)[0], b"c")  # exactly the limit: taken
        r = self.message(c, head, body + b"z")  # one byte more
        self.assertEqual(r[0], b"y", r)
        self.assertTrue(r[1].startswith(b"552 5.3.4 "), r)
        wait_for(lambda: "--milter-max-message-size" in self.policyd.output(), what="the log names the flag")
        self.assertEqual(self.trips("--milter-max-message-size"), 1)
        # Far past it: the temp file stays at the limit.
        c.send(packet(b"M", b"<a@example.com>\x00"))
        self.assertEqual(c.command(packet(b"R", b"<b@example.com>\x00"))[0], b"c")
        c.send(packet(b"N"))
        peaks = Peaks(self.policyd.proc.pid, os.path.join(self.dir, "tmp"))
        for _ in range(200):
            c.send(packet(b"B", line * 600))
        r = c.command(packet(b"E"))
        peaks.stop()
        self.assertLessEqual(peaks.disk, 100000 + 65536)
        self.assertTrue(r[1].startswith(b"552 5.3.4 "), r)

    def test_a_reply_to_each_body_packet_refuses_there(self):
        # An MTA that offers no NR_* steps reads a reply to every body
        # packet: the first past the limit gets the refusal.
        self.start_milter(LINES_AND_FILE, args=["--milter-max-message-size", "100000"])
        c = self.mta()
        c.negotiate(steps=ALL_STEPS & ~NR_STEPS)
        self.assertEqual(c.command(packet(b"C", connect_data()))[0], b"c")
        self.assertEqual(c.command(packet(b"M", b"<a@example.com>\x00"))[0], b"c")
        self.assertEqual(c.command(packet(b"R", b"<b@example.com>\x00"))[0], b"c")
        self.assertEqual(c.command(packet(b"N"))[0], b"c")
        self.assertEqual(c.command(packet(b"B", b"a" * 65534 + b"\r\n"))[0], b"c")
        r = c.command(packet(b"B", b"a" * 65534 + b"\r\n"))
        self.assertEqual(r[0], b"y", r)
        self.assertTrue(r[1].startswith(b"552 5.3.4 "), r)

    def test_line_limit_at_the_edge(self):
        self.start_milter(LINES_AND_FILE, args=["--milter-max-line", "1000"])
        c = self.mta()
        self.session(c)
        self.assertEqual(self.message(c, [], b"x" * 998 + b"\r\n")[0], b"c")  # 1000 with its CRLF
        r = self.message(c, [], b"x" * 999 + b"\r\n")
        self.assertEqual(r[0], b"y", r)
        self.assertTrue(r[1].startswith(b"550 5.6.0 "), r)
        # A CRLF split over two packets is one line end.
        self.assertEqual(self.message(c, [], b"x" * 998 + b"\r", b"\n")[0], b"c")

    def test_header_count_at_the_edge(self):
        self.start_milter(LINES_AND_FILE, args=["--milter-max-headers", "5"])
        c = self.mta()
        self.session(c)
        five = [(b"X-H%d" % i, b"v") for i in range(5)]
        self.assertEqual(self.message(c, five, b"b\r\n")[0], b"c")
        r = self.message(c, five + [(b"X-H5", b"v")], b"b\r\n")
        self.assertEqual(r[0], b"y", r)
        self.assertTrue(r[1].startswith(b"552 5.3.4 "), r)
        wait_for(lambda: "--milter-max-headers" in self.policyd.output(), what="the log names the flag")

    def test_header_bytes_at_the_edge(self):
        self.start_milter(LINES_AND_FILE, args=["--milter-max-header-bytes", "1000"])
        c = self.mta()
        self.session(c)
        # "X-Big: " + value + "\r\n": 9 bytes around the value.
        self.assertEqual(self.message(c, [(b"X-Big", b"v" * 991)], b"b\r\n")[0], b"c")
        r = self.message(c, [(b"X-Big", b"v" * 992)], b"b\r\n")
        self.assertEqual(r[0], b"y", r)
        self.assertTrue(r[1].startswith(b"552 5.3.4 "), r)
        wait_for(lambda: "--milter-max-header-bytes" in self.policyd.output(), what="the log names the flag")


# ----------------------------------- finding 4: a reused MTA connection

REPORTS_AUTH = r'''
function hook.helo(h)
  return "550 5.7.1 " .. h .. " auth=" .. (client.auth_user or "none") ..
         " macro=" .. (client.macros["{auth_authen}"] or "none") .. "\r\n"
end
function hook.rcpt(r)
  if client.auth_user then return end  -- relaying for a logged-in user
  return "554 5.7.1 relay denied auth=" .. (client.macros["{auth_authen}"] or "none") .. "\r\n"
end
'''


class ReusedConnection(SecurityMilterTest):
    def login_session(self, c):
        c.send(macros(b"C", [(b"j", b"mx.example"), (b"{daemon_name}", b"mx")]))
        c.send(packet(b"C", connect_data("192.0.2.1")))
        c.send(macros(b"H", [(b"{tls_version}", b"TLSv1.3")]))
        r = c.command(packet(b"H", b"one.example\x00"))
        self.assertEqual(r[1], b"550 5.7.1 one.example auth=none macro=none\x00")
        c.send(macros(b"M", [(b"{auth_authen}", b"bob"), (b"{auth_type}", b"PLAIN")]))
        c.send(packet(b"M", b"<bob@example.com>\x00"))
        self.assertEqual(c.command(packet(b"R", b"<far@example.net>\x00"))[0], b"c")  # bob may relay
        c.send(packet(b"A"))

    def anonymous_session(self, c):
        # The next SMTP session sends its connect macros, and no MAIL-stage
        # macros at all: nothing of bob's may be left.
        c.send(macros(b"C", [(b"j", b"mx.example")]))
        c.send(packet(b"C", connect_data("198.51.100.7")))
        r = c.command(packet(b"H", b"two.example\x00"))
        self.assertEqual(r[1], b"550 5.7.1 two.example auth=none macro=none\x00")
        c.send(packet(b"M", b"<anon@example.com>\x00"))
        r = c.command(packet(b"R", b"<far@example.net>\x00"))
        self.assertEqual(r[0], b"y", r)
        self.assertEqual(r[1], b"554 5.7.1 relay denied auth=none\x00")

    def test_quit_nc_leaves_nothing_for_the_next_session(self):
        self.start_milter(REPORTS_AUTH)
        c = self.mta()
        c.negotiate()
        self.login_session(c)
        c.send(packet(b"K"))  # SMFIC_QUIT_NC: the MTA keeps the connection
        self.anonymous_session(c)

    def test_a_second_connect_leaves_nothing_for_the_next_session(self):
        self.start_milter(REPORTS_AUTH)
        c = self.mta()
        c.negotiate()
        self.login_session(c)
        self.anonymous_session(c)  # CONNECT again, without QUIT_NC

    def test_a_second_connect_without_connect_macros_drops_the_old_ones(self):
        self.start_milter(r'''
function hook.helo(h)
  return "550 5.7.1 j=" .. (client.macros["j"] or "none") .. "\r\n"
end
''')
        c = self.mta()
        c.negotiate()
        c.send(macros(b"C", [(b"j", b"old.example")]))
        c.send(packet(b"C", connect_data()))
        self.assertEqual(c.command(packet(b"H", b"a\x00"))[1], b"550 5.7.1 j=old.example\x00")
        c.send(packet(b"K"))
        c.send(packet(b"C", connect_data()))
        self.assertEqual(c.command(packet(b"H", b"a\x00"))[1], b"550 5.7.1 j=none\x00")


# ------------------------------------------ finding 5: out of descriptors

class OutOfDescriptors(SecurityMilterTest):
    def fds_of(self, pid):
        return len(os.listdir("/proc/%d/fd" % pid))

    def test_emfile_backs_off_and_service_resumes(self):
        # How many descriptors policyd needs idle, then a limit a few above.
        self.start_milter(HELO_ANSWERS)
        idle = self.fds_of(self.policyd.proc.pid)
        self.policyd.stop()
        limit = idle + 6

        def low_nofile():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.milter_port = free_port()
        port = free_port()
        log = os.path.join(self.dir, "policyd-emfile.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen([POLICYD, "--listen", "127.0.0.1:%d" % port, "--script",
                                     self.write_script(HELO_ANSWERS), "--log-stderr", "--workers", "1",
                                     "--ptr-lookup", "no", "--spool-dir", os.path.join(self.dir, "tmp"),
                                     "--milter", "inet:%d@127.0.0.1" % self.milter_port],
                                    stdout=out, stderr=subprocess.STDOUT, preexec_fn=low_nofile)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait(timeout=10)))

        def output():
            with open(log, "rb") as f:
                return f.read().decode(errors="replace")

        wait_for(lambda: "milter listening on" in output() or proc.poll() is not None, what="policyd up")
        self.assertIsNone(proc.poll(), output())
        clients = []
        for _ in range(limit):  # more than policyd can take
            clients.append(MilterClient(("127.0.0.1", self.milter_port), timeout=5))
        self.clients.extend(clients)
        wait_for(lambda: re.search(r"milter: accept failed: .*(open files|descriptor)", output()), timeout=15,
                 what="accept failing for want of descriptors")
        lines_before, cpu_before = len(re.findall("milter: accept failed:", output())), cpu_seconds(proc.pid)
        time.sleep(3)  # a window to count log lines and CPU in, not a synchronisation
        lines = len(re.findall("milter: accept failed:", output())) - lines_before
        cpu = cpu_seconds(proc.pid) - cpu_before
        self.assertLessEqual(lines, 4, "%d accept log lines in 3 s" % lines)
        self.assertLess(cpu, 1.0, "%.2f s of CPU in 3 s while out of descriptors" % cpu)
        for c in clients:
            c.close()
        # Descriptors free again: a new MTA connection is served.
        def served():
            try:
                c = MilterClient(("127.0.0.1", self.milter_port), timeout=3)
                try:
                    c.negotiate()
                    return True
                finally:
                    c.close()
            except (OSError, AssertionError):
                return False
        wait_for(served, timeout=15, what="service after descriptors came back")


class MaxConnections(SecurityMilterTest):
    def test_the_connection_past_the_limit_is_closed_at_once(self):
        self.start_milter(HELO_ANSWERS, args=["--milter-max-connections", "3"])
        served = [self.mta() for _ in range(3)]
        for c in served:
            self.session(c)  # N: each is served
        extra = self.mta()
        extra.send(packet(b"O", struct.pack(">III", 6, ALL_ACTIONS, ALL_STEPS)))
        self.assertTrue(extra.closed())  # N + 1: closed
        wait_for(lambda: "--milter-max-connections 3" in self.policyd.output(), what="the log names the flag")
        self.assertEqual(self.trips("--milter-max-connections"), 1)
        # A burst past the limit: each closed, the log at most a line a second.
        started = time.monotonic()
        for _ in range(20):
            burst = self.mta()
            self.assertTrue(burst.closed())
            burst.close()
        seconds = time.monotonic() - started
        wait_for(lambda: self.trips("--milter-max-connections") == 21, what="every refusal counted")
        lines = self.policyd.output().count("(--milter-max-connections 3)")
        self.assertLessEqual(lines, 2 + int(seconds), "%d log lines for 21 refusals in %.1f s" % (lines, seconds))
        for c in served:  # the three go on
            self.assertEqual(c.command(packet(b"H", b"good.example\x00"))[0], b"c")
        served[0].close()

        def one_more_served():
            c = MilterClient(("127.0.0.1", self.milter_port), timeout=3)
            try:
                c.negotiate()
                return True
            except (OSError, AssertionError):
                return False
            finally:
                c.close()
        wait_for(one_more_served, what="a connection served once one closed")


# ---------------------------------------- finding 11: writes time out

BIG_REPLY = r'''
function hook.dot(path)
  message.replace_body(string.rep("0123456789abcdef", 512 * 1024))  -- 8 MiB of REPLBODY
end
'''


class WriteTimeout(SecurityMilterTest):
    def test_an_mta_that_never_reads_is_cut_after_the_timeout(self):
        self.start_milter(BIG_REPLY, args=["--milter-timeout", "2"])
        c = self.mta(rcvbuf=4096)
        self.session(c)
        c.send(packet(b"M", b"<a@example.com>\x00"))
        c.send(packet(b"R", b"<b@example.com>\x00"))
        c.send(packet(b"N"))
        c.send(packet(b"B", b"body\r\n"))
        c.send(packet(b"E"))  # ... and never read the 8 MiB answer
        wait_for(lambda: "not reading our replies for 2 s (--milter-timeout); closing" in self.policyd.output(),
                 timeout=20, what="the write timeout")
        self.assertEqual(self.trips("--milter-timeout"), 1)
        wait_for(lambda: re.search(r"session=\S+ client=192\.0\.2\.9 .* end", self.policyd.output()),
                 what="the session ended")


# ------------------------------------ findings 12 and 13: the socket itself

class SocketSetup(SecurityMilterTest):
    def start_unix(self, path, args=()):
        old = os.umask(0)  # the mode must not come from the umask
        try:
            self.start_milter(HELO_ANSWERS, args=args, socket_spec="unix:" + path)
        finally:
            os.umask(old)

    def test_unix_socket_is_0660_by_default(self):
        path = os.path.join(self.dir, "milter.sock")
        self.start_unix(path)
        self.assertEqual(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o660))

    def test_unix_socket_mode_flag(self):
        path = os.path.join(self.dir, "milter.sock")
        self.start_unix(path, args=["--milter-socket-mode", "0600"])
        self.assertEqual(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o600))
        c = self.unix_mta(path)
        c.negotiate()

    def test_a_bad_socket_mode_is_a_start_up_error(self):
        r = subprocess.run([POLICYD, "--milter", "unix:" + os.path.join(self.dir, "s"), "--milter-socket-mode",
                            "0968", "--script", self.write_script("")], capture_output=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--milter-socket-mode", r.stderr.decode())

    def run_second(self, spec):
        """Another policyd with --milter `spec`; it must refuse to start."""
        proc = subprocess.Popen([os.path.abspath(POLICYD), "--listen", "127.0.0.1:%d" % free_port(), "--script",
                                 self.write_script("", "second.lua"), "--log-stderr", "--workers", "1",
                                 "--ptr-lookup", "no", "--milter", spec],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.dir)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            self.fail("policyd --milter %s started and served:\n%s" % (spec, err.decode(errors="replace")[-2000:]))
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def test_a_spec_without_its_kind_is_a_start_up_error(self):
        r = self.run_second("bogus")
        self.assertNotEqual(r.returncode, 0)
        err = r.stderr.decode()
        self.assertIn("--milter bogus", err)
        self.assertIn("unix:PATH", err)
        self.assertFalse(os.path.lexists(os.path.join(self.dir, "bogus")))

    def test_a_busy_inet_port_is_a_start_up_error(self):
        self.start_milter(HELO_ANSWERS)
        r = self.run_second("inet:%d@127.0.0.1" % self.milter_port)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot listen", r.stderr.decode())
        c = self.mta()
        c.negotiate()  # the first policyd still serves its port

    def test_a_live_unix_socket_is_not_taken_over(self):
        path = os.path.join(self.dir, "milter.sock")
        self.start_unix(path)
        r = self.run_second("unix:" + path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already answers on " + path, r.stderr.decode())
        c = self.unix_mta(path)  # still the first policyd's
        c.negotiate()

    def test_a_stale_unix_socket_is_replaced(self):
        path = os.path.join(self.dir, "milter.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()  # its file stays; nobody answers on it
        self.start_unix(path)
        c = self.unix_mta(path)
        c.negotiate()


if __name__ == "__main__":
    unittest.main()

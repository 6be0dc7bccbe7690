"""mailhook-policyd --milter: miltertest scripts for every callback, reply
and message change; hostile and vanishing MTAs; and a real, private Postfix
calling the milter (postfix_instance.py) in front of a loopback sink."""

import os
import re
import signal
import socket
import struct
import subprocess
import unittest

from harness import MailhookTest, Sink, SmtpClient, free_port, sample, scrape, wait_for
from postfix_instance import PrivatePostfix
from test_security_milter import ALL_STEPS, NR_STEPS, MilterClient, connect_data, macros

HERE = os.path.dirname(os.path.abspath(__file__))
MILTER = os.path.join(HERE, "milter")


def read(path):
    with open(path) as f:
        return f.read()


class MilterTest(MailhookTest):
    def start_milter(self, script, args=()):
        self.milter_port = free_port()
        self.metrics_port = free_port()
        self.start_policyd(script, args=["--milter", "inet:%d@127.0.0.1" % self.milter_port,
                                         "--metrics", "127.0.0.1:%d" % self.metrics_port] + list(args))
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")

    def miltertest(self, name):
        r = subprocess.run(["miltertest", "-s", os.path.join(MILTER, name)], capture_output=True, timeout=60,
                           env=dict(os.environ, PORT=str(self.milter_port)))
        self.assertEqual(r.returncode, 0, "%s failed:\n%s%s\npolicyd:\n%s" % (
            name, r.stdout.decode(), r.stderr.decode(), self.policyd.output()[-3000:]))

    def sessions_open(self):
        return sample(scrape(self.metrics_port), "mailhook_policyd_sessions_open")


class Miltertest(MilterTest):
    def test_replies_of_every_callback(self):
        self.start_milter(read(os.path.join(MILTER, "policy.lua")))
        self.miltertest("replies.mt.lua")

    def test_message_changes_and_discard(self):
        self.start_milter(read(os.path.join(MILTER, "policy.lua")))
        self.miltertest("changes.mt.lua")

    def test_negotiation_asks_only_for_what_the_scripts_use(self):
        self.start_milter(read(os.path.join(MILTER, "rcpt_only.lua")))
        self.miltertest("negotiation.mt.lua")

    def test_a_dot_hook_without_a_parameter_asks_for_no_message(self):
        self.start_milter(read(os.path.join(MILTER, "dot_stamp.lua")))
        self.miltertest("dot_stamp.mt.lua")


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def negotiate(s):
    # SMFIC_OPTNEG: version 6, every action, every protocol step offered.
    s.sendall(packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
    head = s.recv(5)
    length = struct.unpack(">I", head[:4])[0]
    s.recv(length - 1)


class HostileMta(MilterTest):
    def setUp(self):
        super().setUp()
        self.start_milter(read(os.path.join(MILTER, "policy.lua")))

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.milter_port), timeout=10)
        self.addCleanup(s.close)
        return s

    def still_serving(self):
        self.miltertest("replies.mt.lua")
        wait_for(lambda: self.sessions_open() == 0, what="every milter session ended")

    def test_malformed_and_truncated_packets_end_only_that_session(self):
        s = self.connect()
        s.sendall(struct.pack(">I", 0x7FFFFFF0) + b"O")  # a length past any limit
        s.settimeout(10)
        self.assertEqual(s.recv(1), b"")  # libmilter closes it
        t = self.connect()
        negotiate(t)
        t.sendall(struct.pack(">I", 100) + b"C" + b"client.example\x00")  # 100 announced, 16 sent
        t.close()
        u = self.connect()
        u.sendall(b"\x00\x00\x00\x05Zjunk")  # an unknown command
        u.close()
        self.still_serving()

    def test_an_mta_that_disconnects_mid_message(self):
        s = self.connect()
        negotiate(s)
        s.sendall(packet(b"C", b"client.example\x00" + b"4" + struct.pack(">H", 4000) + b"192.0.2.9\x00"))
        s.recv(64)
        s.sendall(packet(b"H", b"good.example\x00"))
        s.recv(64)
        s.sendall(packet(b"M", b"<a@example.com>\x00"))
        s.sendall(packet(b"R", b"<b@example.com>\x00"))
        s.recv(64)
        s.sendall(packet(b"L", b"Subject\x00half a message\x00"))
        s.sendall(packet(b"N"))
        s.sendall(packet(b"B", b"the body, and then nothing"))
        wait_for(lambda: "client=client.example[192.0.2.9]" in self.policyd.output(), what="the session opened")
        s.close()
        wait_for(lambda: re.search(r"session=\S+ client=client\.example\[192\.0\.2\.9\] helo=good\.example .* end", self.policyd.output()),
                 what="the session ended in policyd")
        self.still_serving()


WAITS_ON_DNS = r'''
function hook.rcpt(r)
  dns.query(dns.class.IN, dns.type.A, "slow.example")
  dns.wait(true)
  syslog.info("rcpt answered after DNS")
end
'''


class MilterDrain(MilterTest):
    def test_a_command_waiting_on_a_hook_gets_tempfail_when_policyd_stops(self):
        # A DNS server that never answers: the RCPT hook waits in dns.wait
        # (the worker stays free) until policyd is told to stop.
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(10)  # a query that never comes fails the test, not hangs it
        self.addCleanup(silent.close)
        self.start_milter(WAITS_ON_DNS, args=["--dns-server", "127.0.0.1:%d" % silent.getsockname()[1],
                                              "--dns-timeout", "60000", "--drain-timeout", "1"])
        s = socket.create_connection(("127.0.0.1", self.milter_port), timeout=20)
        self.addCleanup(s.close)
        negotiate(s)
        s.sendall(packet(b"C", b"client.example\x00" + b"4" + struct.pack(">H", 4000) + b"192.0.2.9\x00"))
        s.sendall(packet(b"M", b"<a@example.com>\x00"))
        s.sendall(packet(b"R", b"<b@example.com>\x00"))
        wait_for(lambda: silent.recv(512, socket.MSG_PEEK), what="the hook's DNS query")
        self.policyd.signal(signal.SIGTERM)
        replies = b""
        while len(replies) < 5:
            chunk = s.recv(64)
            if not chunk:
                break
            replies += chunk
        self.assertEqual(replies[4:5], b"t", replies)  # tempfail: never accepted blind
        self.assertEqual(self.policyd.proc.wait(timeout=20), 0, self.policyd.output()[-2000:])
        self.assertNotIn("rcpt answered after DNS", self.policyd.output())


# What later hooks see of the HELO name and of the MTA, with no hook.helo
# or hook.ehlo defined.
FACTS_AT_MAIL = r'''
function hook.mail(sender)
  return "550 5.7.1 helo=" .. (client.helo or "nil") .. " host=" .. (smtpe.host or "nil")
         .. " j=" .. (client.macros["j"] or "nil") .. "\r\n"
end
'''

NO_HELO, NR_HELO = 0x2, 0x2000  # SMFIP_NOHELO, SMFIP_NR_HELO (mfdef.h)


class MilterSessionFacts(MilterTest):
    """client.helo and smtpe.host behind a milter, whatever hooks the
    script defines: the HELO step is always taken (without a reply when no
    script listens to it) and smtpe.host is the MTA's macro j."""

    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        for c in self.clients:  # first: policyd's SIGTERM drain waits for open sessions
            c.close()
        super().tearDown()

    def mta(self, steps=ALL_STEPS):
        m = MilterClient(("127.0.0.1", self.milter_port))
        self.clients.append(m)
        _, _, protocol = m.negotiate(steps=steps)
        return m, protocol

    def session_without_helo(self):
        m, _ = self.mta()
        m.send(packet(b"C", connect_data()))
        return m.command(packet(b"M", b"<a@example.org>\x00"))

    def defaults(self):
        return sample(scrape(self.metrics_port), "mailhook_policyd_default_replies_total") or 0

    def test_helo_reaches_later_hooks_and_the_log_without_a_helo_hook(self):
        self.start_milter(FACTS_AT_MAIL)
        m, protocol = self.mta()
        self.assertFalse(protocol & NO_HELO, "HELO must not be negotiated away")
        self.assertTrue(protocol & NR_HELO, "no script listens to HELO: it needs no reply")
        m.send(macros(b"C", [(b"j", b"mx.example")]))
        m.send(packet(b"C", connect_data()))
        m.send(packet(b"H", b"client.example\x00"))  # no reply: the next one is MAIL's
        r = m.command(packet(b"M", b"<a@example.org>\x00"))
        self.assertEqual(r, (b"y", b"550 5.7.1 helo=client.example host=mx.example j=mx.example\x00"))
        wait_for(lambda: re.search(r"notice: reject: .* client=client\.example\[192\.0\.2\.9\] helo=client\.example "
                                   r"from=<a@example\.org> .*hook=mail", self.policyd.output()),
                 what="the refusal logged with the HELO name")
        # HELO ran no hook: no event went to the scripts to be left to
        # the default reply. A session without HELO adds as many defaults
        # (its start) as this one did.
        one = self.defaults()
        self.assertEqual(self.session_without_helo(), (b"y", b"550 5.7.1 helo=nil host= j=nil\x00"))
        self.assertEqual(self.defaults(), 2 * one)

    def test_an_mta_without_nr_helo_gets_continue_at_helo(self):
        self.start_milter(FACTS_AT_MAIL)
        m, protocol = self.mta(steps=ALL_STEPS & ~NR_STEPS)  # an MTA before SMFIP_NR_*
        self.assertFalse(protocol & (NO_HELO | NR_HELO))
        m.send(macros(b"C", [(b"j", b"mx.example")]))
        self.assertEqual(m.command(packet(b"C", connect_data())), (b"c", b""))
        self.assertEqual(m.command(packet(b"H", b"old.example\x00")), (b"c", b""))
        r = m.command(packet(b"M", b"<a@example.org>\x00"))
        self.assertEqual(r, (b"y", b"550 5.7.1 helo=old.example host=mx.example j=mx.example\x00"))
        one = self.defaults()
        self.session_without_helo()
        self.assertEqual(self.defaults(), 2 * one)

    def test_smtpe_host_is_the_connect_macro_j_of_each_session(self):
        self.start_milter(FACTS_AT_MAIL)
        m, _ = self.mta()  # no HELO here: smtpe.host alone is under test
        m.send(macros(b"C", [(b"j", b"mx.example"), (b"{daemon_name}", b"smtpd")]))
        m.send(packet(b"C", connect_data()))
        r = m.command(packet(b"M", b"<a@example.org>\x00"))
        self.assertEqual(r, (b"y", b"550 5.7.1 helo=nil host=mx.example j=mx.example\x00"))
        # The next session on the connection (QUIT_NC) sends j only at a
        # later stage: it started without one, so smtpe.host is empty
        # (nothing of the last session's), client.macros has the late j.
        m.send(packet(b"K"))
        m.send(packet(b"C", connect_data()))
        m.send(macros(b"M", [(b"j", b"late.example")]))
        r = m.command(packet(b"M", b"<a@example.org>\x00"))
        self.assertEqual(r, (b"y", b"550 5.7.1 helo=nil host= j=late.example\x00"))
        # A second CONNECT with its own j.
        m.send(macros(b"C", [(b"j", b"mx2.example")]))
        m.send(packet(b"C", connect_data()))
        r = m.command(packet(b"M", b"<a@example.org>\x00"))
        self.assertEqual(r, (b"y", b"550 5.7.1 helo=nil host=mx2.example j=mx2.example\x00"))


class MilterLimits(MilterTest):
    def test_max_packet_is_the_largest_packet_taken(self):
        self.start_milter(read(os.path.join(MILTER, "policy.lua")), args=["--milter-max-packet", "65536"])

        def session(macro_bytes):
            s = socket.create_connection(("127.0.0.1", self.milter_port), timeout=10)
            self.addCleanup(s.close)
            negotiate(s)
            s.sendall(packet(b"C", b"client.example\x00" + b"4" + struct.pack(">H", 4000) + b"192.0.2.9\x00"))
            s.recv(64)
            # A macro packet (no reply) whose length field is exactly macro_bytes.
            name = b"{big}\x00"
            try:
                s.sendall(packet(b"D", b"H" + name + b"x" * (macro_bytes - 1 - 1 - len(name) - 1) + b"\x00"))
                s.sendall(packet(b"H", b"good.example\x00"))
            except (ConnectionResetError, BrokenPipeError):
                pass  # a packet past the limit: policyd may close before the rest is sent
            return s

        s = session(65536)  # at the limit: served
        head = s.recv(5)
        self.assertEqual(len(head), 5, "no reply to HELO after a packet at the limit")
        t = session(65537)  # one byte over: that connection closes
        try:
            data = t.recv(4096)  # EOF, or a reset: the rest of our packet was never read
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        wait_for(lambda: "--milter-max-packet 65536" in self.policyd.output(), what="the log names the flag")
        s.close()  # before tearDown's SIGTERM, whose drain waits for open MTA connections
        t.close()

    def test_max_packet_below_the_protocol_minimum_is_refused(self):
        r = subprocess.run([os.environ["MAILHOOK_POLICYD"], "--milter", "inet:%d@127.0.0.1" % free_port(),
                            "--milter-max-packet", "1000", "--script", self.write_script("")],
                           capture_output=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--milter-max-packet", r.stderr.decode())


POSTFIX_SCRIPT = r'''
function hook.rcpt(r)
  if r == "no@example.com" then return "550-5.1.1 no such user here\r\n550 5.1.1 ask postmaster\r\n" end
end
function hook.dot(path)
  message.add_header("X-Mailhook", "checked")
  message.change_header("X-Remove", 1, nil)
end
'''

MESSAGE = ("From: a@example.org\r\nTo: b@example.com\r\nSubject: shapes\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
           "Message-ID: <shapes@example.org>\r\nX-Remove: secret\r\n\r\nthe same body\r\n")


def headers_and_body(data):
    """The message without Received lines, as (header names, header dict, body)."""
    text = data.decode() if isinstance(data, bytes) else data
    head, _, body = text.partition("\r\n\r\n")
    fields = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += "\r\n" + line
        else:
            fields.append(line)
    fields = [f for f in fields if not f.lower().startswith("received:")]
    return [f.split(":", 1)[0] for f in fields], {f.split(":", 1)[0]: f.split(":", 1)[1].strip() for f in fields}, body


def snippet_settings():
    """deploy/postfix/main.cf.snippet as a dict: the test runs what the README tells admins to use."""
    settings = {}
    with open(os.path.join(HERE, "..", "..", "deploy", "postfix", "main.cf.snippet")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, _, value = line.partition("=")
                settings[name.strip()] = value.strip()
    return settings


class RealPostfix(MilterTest):
    def start_postfix(self, milter_action="tempfail"):
        self.sink = Sink()
        self.addCleanup(self.sink.stop)
        self.start_postfix_with(self.sink, milter_action)

    def start_postfix_with(self, sink, milter_action="tempfail"):
        self.smtp_port = free_port()
        os.chmod(self.dir, 0o711)  # Postfix's daemons (user postfix) must reach their directories
        self.postfix = PrivatePostfix(os.path.join(self.dir, "pf"), self.smtp_port, sink.port,
                                      milter="inet:127.0.0.1:%d" % self.milter_port,
                                      extra_main_cf=dict(snippet_settings(), **{
                                          # The snippet's per-milter group, its address and
                                          # default_action changed: Postfix honours them.
                                          "smtpd_milters": snippet_settings()["smtpd_milters"]
                                          .replace("inet:127.0.0.1:8890", "inet:127.0.0.1:%d" % self.milter_port)
                                          .replace("default_action=tempfail", "default_action=" + milter_action)}))
        self.postfix.start()

    def tearDown(self):
        # Before the harness removes the instance's directories.
        if getattr(self, "postfix", None):
            self.postfix.stop()
        super().tearDown()

    def send(self, rcpts=("b@example.com",)):
        c = SmtpClient(self.smtp_port)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        c.cmd("EHLO client.example")
        mail = c.cmd("MAIL FROM:<a@example.org>")
        if mail[0] != 250:
            return mail, []
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        if any(r[0] == 250 for r in replies):
            c.cmd("DATA")
            replies.append(c.cmd(MESSAGE + "."))
        c.cmd("QUIT")
        return mail, replies

    def test_lua_refuses_a_recipient_and_changes_the_delivered_message(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_postfix()
        _, replies = self.send(rcpts=("no@example.com", "b@example.com"))
        self.assertEqual(replies[0], (550, ["550-5.1.1 no such user here", "550 5.1.1 ask postmaster"]))
        self.assertEqual(replies[1][0], 250)
        self.assertEqual(replies[2][0], 250)
        wait_for(lambda: self.sink.messages, timeout=30, what="the message at the sink")
        sender, rcpts, data = self.sink.messages[0]
        self.assertEqual(rcpts, ["<b@example.com>"])
        names, fields, body = headers_and_body(data)
        self.assertEqual(fields["X-Mailhook"], "checked")
        self.assertNotIn("X-Remove", names)
        self.assertEqual(body, "the same body\r\n")

    def test_the_same_script_delivers_the_same_message_in_both_shapes(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_postfix()
        self.send()
        wait_for(lambda: self.sink.messages, timeout=30, what="the message at the sink")
        via_postfix = headers_and_body(self.sink.messages[0][2])
        # The same script behind mailhook's own front, delivering to its spool.
        self.start_front()
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        self.assertEqual(c.cmd(MESSAGE + ".")[0], 250)
        spooled = self.spooled()
        self.assertEqual(len(spooled), 1)
        with open(spooled[0], "rb") as f:
            raw = f.read()
        via_front = headers_and_body(raw[raw.index(b"\r\n\r\n") + 4:] if raw.startswith(b"X-Mailhook-Spool")
                                     else raw)
        self.assertEqual(via_front[1]["X-Mailhook"], via_postfix[1]["X-Mailhook"])
        self.assertEqual([n for n in via_front[0] if n in ("X-Mailhook", "X-Remove", "Subject", "From", "To")],
                         [n for n in via_postfix[0] if n in ("X-Mailhook", "X-Remove", "Subject", "From", "To")])
        self.assertEqual(via_front[2], via_postfix[2])

    def test_a_recipient_added_with_esmtp_arguments_in_both_shapes(self):
        script = 'function hook.dot(p) message.add_rcpt("added@example.com", "NOTIFY=NEVER") end'
        self.start_milter(script)
        self.sink = Sink(ehlo=["DSN"])
        self.addCleanup(self.sink.stop)
        self.start_postfix_with(self.sink)
        self.send()
        wait_for(lambda: self.sink.messages, timeout=30, what="the message at the sink")
        added = [c for c in self.sink.commands if c.startswith("RCPT TO:<added@example.com>")]
        self.assertEqual(len(added), 1, self.sink.commands)
        self.assertIn(" NOTIFY=NEVER", added[0])  # smfi_addrcpt_par; Postfix adds its own ORCPT
        self.start_front()
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        self.assertEqual(c.cmd(MESSAGE + ".")[0], 250)
        with open(self.spooled()[0], "rb") as f:
            self.assertIn(b"X-Mailhook-To: <added@example.com> NOTIFY=NEVER\r\n", f.read())

    def test_helo_name_and_myhostname_reach_a_rcpt_hook_behind_postfix(self):
        # No hook.helo: Postfix still sends HELO (policyd does not
        # negotiate it away) and j ($myhostname) at connect by default.
        self.start_milter(r'''
function hook.rcpt(r)
  return "550 5.7.1 helo=" .. (client.helo or "nil") .. " host=" .. (smtpe.host or "nil") .. "\r\n"
end
''')
        self.start_postfix()
        _, replies = self.send()
        self.assertEqual(replies, [(550, ["550 5.7.1 helo=client.example host=mx.test"])])
        wait_for(lambda: re.search(r"notice: reject: .* helo=client\.example from=<a@example\.org> "
                                   r"to=<b@example\.com> hook=rcpt", self.policyd.output()),
                 what="policyd's refusal line names the HELO name")

    def test_a_stopped_policyd_gives_milter_default_action(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_postfix("tempfail")
        self.policyd.stop()
        mail, _ = self.send()
        self.assertEqual(mail[0], 451)
        self.assertEqual(self.sink.messages, [])

    def test_milter_default_action_accept_delivers_unchanged(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_postfix("accept")
        self.policyd.stop()
        _, replies = self.send()
        self.assertEqual(replies[-1][0], 250)
        wait_for(lambda: self.sink.messages, timeout=30, what="the message at the sink")
        names, _, _ = headers_and_body(self.sink.messages[0][2])
        self.assertIn("X-Remove", names)
        self.assertNotIn("X-Mailhook", names)


if __name__ == "__main__":
    unittest.main()

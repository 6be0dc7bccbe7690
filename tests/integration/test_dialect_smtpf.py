"""smtpf scripts (seed 001) run unchanged: every call-back, variable,
constant and return form through the front, and through the milter where
the milter carries it (miltertest)."""

import os
import socket
import struct
import subprocess
import unittest

from harness import MailhookTest, SmtpClient, free_port, wait_for
from test_milter_oracle import NR_OF, PLAIN_PROTOCOL, optneg, packet

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "dialects", "smtpf_policy.lua")


def read(path):
    with open(path) as f:
        return f.read()


class SmtpfFront(MailhookTest):
    def setUp(self):
        super().setUp()
        self.start_both(read(SCRIPT_PATH))
        self.c = self.client()
        self.addCleanup(self.c.close)

    def test_the_dialect_is_recognised(self):
        self.assertRegex(self.policyd.output(), r"policy=\S+policy\.lua \(smtpf\)")

    def test_do_connect_refuses_with_code_and_reply(self):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", self.front_port))
        s.settimeout(10)
        self.addCleanup(s.close)
        self.assertEqual(s.recv(4096), b"554 5.7.1 no service for 127.0.0.2\r\n")

    def test_do_helo_and_sess_helo(self):
        self.assertEqual(self.c.cmd("HELO bad.example"), (550, ["550 5.7.1 bad helo bad.example"]))
        self.assertEqual(self.c.cmd("EHLO good.example")[0], 250)  # nothing returned: continue

    def test_every_code_constant(self):
        self.assertEqual(self.c.cmd("HELO codes.example")[1], [
            "250 codes ok=250 closing=421 busy=450 again=451 storage=452 bad_syntax=500 bad_arg=501 "
            "bad_command=502 bad_sequence=503 bad_param=504 reject=550 bad_user=551 over_quota=552 "
            "bad_address=553 failed=554"])

    def test_session_and_transaction_variables_and_their_lifetimes(self):
        code, lines = self.c.cmd("HELO vars.example")
        m = lines[0].split()
        self.assertEqual(m[1].split("=")[1], m[2].split("=")[1])  # sess.id == client.id_log
        self.assertEqual(m[3:], ["tran.id=nil", "tran.sender=nil"])  # between transactions
        self.c.cmd("MAIL FROM:<s@example.com>")
        self.assertEqual(self.c.cmd("RCPT TO:<who@example.com>")[1], ["250 2.1.5 sender=s@example.com tran=true"])
        self.c.cmd("RSET")
        wait_for(lambda: "smtpf rset for" in self.policyd.output(), what="smtp.rset() ran")

    def test_return_forms_that_are_errors_give_the_default_reply_and_a_log_line(self):
        self.assertEqual(self.c.cmd("HELO long.example")[0], 250)
        self.assertEqual(self.c.cmd("HELO multi.example")[0], 250)
        self.assertEqual(self.c.cmd("HELO nonsense.example")[0], 250)
        self.assertEqual(self.c.cmd("HELO zero.example")[0], 250)
        log = self.policyd.output()
        self.assertIn("smtp.do_helo: reply of 999 octets; smtpf allows 998", log)
        self.assertIn("smtp.do_helo: multi-line replies are not supported by smtpf", log)
        self.assertIn("smtp.do_helo returned soon: expected 0 or an SMTP code", log)

    def test_do_mail_with_parameters_and_do_rcpt(self):
        self.c.cmd("EHLO c.example")
        self.assertEqual(self.c.cmd("MAIL FROM:<temp@example.com>"), (451, ["451 4.7.1 greylisted, come back"]))
        self.assertEqual(self.c.cmd("MAIL FROM:<params@example.com> SIZE=100 BODY=8BITMIME")[1],
                         ["250 2.1.0 params 2: SIZE=100,BODY=8BITMIME"])
        self.assertEqual(self.c.cmd("RCPT TO:<no@example.com>"), (551, ["551 5.1.1 no no@example.com"]))
        self.assertEqual(self.c.cmd("RCPT TO:<yes@example.com>")[0], 250)

    def test_do_data(self):
        self.c.cmd("EHLO c.example")
        self.c.cmd("MAIL FROM:<nodata@example.com>")
        self.c.cmd("RCPT TO:<yes@example.com>")
        self.assertEqual(self.c.cmd("DATA"), (554, ["554 5.7.1 no data from you"]))

    def message(self, text):
        self.c.cmd("EHLO c.example")
        self.c.cmd("MAIL FROM:<a@example.com>")
        self.c.cmd("RCPT TO:<yes@example.com>")
        self.assertEqual(self.c.cmd("DATA")[0], 354)
        return self.c.cmd(text + "\r\n.")

    def test_do_headers_do_chunk_and_do_dot(self):
        self.assertEqual(self.message("Subject: a\r\nX-Spam: yes\r\n\r\nhi"),
                         (550, ["550 5.7.1 spam header (2 headers)"]))
        self.assertEqual(self.message("Subject: b\r\n\r\nthis has a VIRUS inside")[0], 550)
        self.assertEqual(self.message("Subject: c\r\n\r\nREFUSE me"), (550, ["550 5.7.1 refused at dot"]))
        self.assertEqual(self.message("Subject: d\r\n\r\nfine")[0], 250)
        self.assertEqual(len(self.spooled()), 1)

    def test_close_callback(self):
        self.c.cmd("QUIT")
        wait_for(lambda: "smtpf close for" in self.policyd.output(), what="smtp.close() ran")


class SmtpfLoading(MailhookTest):
    def test_a_script_mixing_dialects_is_refused_at_start(self):
        p = self.start_policyd("function hook.rcpt(r) end\nfunction smtp.do_rcpt(r) return 0 end\n", wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("defines both hook.* (smtpe) and smtp.do_* call-backs (smtpf)", p.output())

    def test_explicit_dialect_smtpf_on_an_smtpe_script_is_refused(self):
        p = self.start_policyd("function hook.rcpt(r) end\n", args=["--dialect", "smtpf"], wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("--dialect smtpf, but the script defines no smtp.do_* call-back", p.output())

    def test_scripts_of_different_dialects_chain(self):
        smtpe = self.write_script('function hook.rcpt(r) if r == "a@example.com" then '
                                  'return "550 5.1.1 smtpe says no\\r\\n" end end', name="first.lua")
        self.start_policyd('function smtp.do_rcpt(r) if r == "b@example.com" then '
                           'return 550, "5.1.1 smtpf says no" end end', args=["--script", smtpe])
        self.start_front()
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<x@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<a@example.com>")[1], ["550 5.1.1 smtpe says no"])
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[1], ["550 5.1.1 smtpf says no"])
        self.assertEqual(c.cmd("RCPT TO:<c@example.com>")[0], 250)


class SmtpfExample(MailhookTest):
    def test_relay_control_rbl_and_header_stamp(self):
        from dnsserver import DnsServer
        dns = DnsServer({"1.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}]})
        dns.start()
        self.addCleanup(dns.stop)
        for name, value in (("MAILHOOK_RELAY_NETS", "127.0.0.3"), ("MAILHOOK_RBL_ZONE", "bl.test")):
            os.environ[name] = value
            self.addCleanup(os.environ.pop, name)
        lua = os.environ.get("MAILHOOK_LUA", "../../lua")
        self.start_both(read(os.path.join(lua, "examples", "smtpf", "relay_rbl.lua")),
                        policyd_args=["--dns-server", "127.0.0.1:%d" % dns.port,
                                      "--lua-env", "MAILHOOK_RELAY_NETS", "--lua-env", "MAILHOOK_RBL_ZONE"])

        listed = self.client(554, source="127.0.0.1")
        self.assertEqual(listed.greeting, ["554 5.7.1 127.0.0.1 is listed by bl.test"])
        outsider = self.client(source="127.0.0.2")
        outsider.cmd("EHLO c.example")
        outsider.cmd("MAIL FROM:<a@elsewhere.example>")
        self.assertEqual(outsider.cmd("RCPT TO:<x@elsewhere.example>")[1],
                         ["550 5.7.1 relaying denied for x@elsewhere.example"])
        self.assertEqual(outsider.cmd("RCPT TO:<user@example.com>")[0], 250)
        outsider.cmd("DATA")
        self.assertEqual(outsider.cmd("Subject: hi\r\n\r\nhello\r\n.")[0], 250)
        relay = self.client(source="127.0.0.3")
        relay.cmd("EHLO c.example")
        relay.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(relay.cmd("RCPT TO:<x@elsewhere.example>")[0], 250)
        with open(self.spooled()[0], "rb") as f:
            self.assertIn(b"X-Relay-Checked: smtpf script on mx.test\r\n", f.read())


class MilterPeer:
    """The MTA's side of one milter connection, over loopback: each step
    returns policyd's answer as (letter, data) packets up to the final one
    (continue, reject, tempfail, reply code, accept or discard); the steps
    negotiated to need no reply return []."""
    FINAL = set(b"cartyd")

    def __init__(self, port, ip):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.sock.sendall(optneg(protocol=PLAIN_PROTOCOL))
        letter, data = self.read()
        assert letter == b"O", (letter, data)
        self.protocol = struct.unpack(">III", data[:12])[2]
        self.connect = self.step(b"C", b"client.example\0" + b"4" + struct.pack(">H", 4000) + ip.encode() + b"\0")

    def read(self):
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("policyd closed the milter connection")
            self.buf += chunk
        n = struct.unpack(">I", self.buf[:4])[0]
        letter, data, self.buf = self.buf[4:5], self.buf[5:4 + n], self.buf[4 + n:]
        return letter, data

    def step(self, letter, data=b""):
        self.sock.sendall(packet(letter, data))
        if self.protocol & NR_OF.get(letter, 0):
            return []
        answer = []
        while not answer or answer[-1][0][0] not in self.FINAL:
            got = self.read()
            if got[0] != b"p":  # SMFIR_PROGRESS: still working, not an answer
                answer.append(got)
        return answer

    def message(self, headers, body):
        for name, value in headers:
            self.step(b"L", name + b"\0" + value + b"\0")
        self.step(b"N")
        self.step(b"B", body)
        return self.step(b"E")

    def close(self):
        self.sock.close()


def refusal(text):
    """A SMFIR_REPLYCODE answer carrying `text`."""
    return [(b"y", text.encode() + b"\0")]


CONTINUE = [(b"c", b"")]


class SmtpfMilter(MailhookTest):
    def start_milter(self):
        self.port = free_port()
        self.start_policyd(read(SCRIPT_PATH), args=["--milter", "inet:%d@127.0.0.1" % self.port])
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")

    def peer(self, ip):
        p = MilterPeer(self.port, ip)
        self.addCleanup(p.close)
        return p

    def test_the_same_script_through_miltertest(self):
        # miltertest (the MTA side from OpenDKIM): the reply kinds, and the
        # texts it can see (end of message).
        self.start_milter()
        r = subprocess.run(["miltertest", "-s", os.path.join(HERE, "dialects", "smtpf.mt.lua")], capture_output=True,
                           timeout=60, env=dict(os.environ, PORT=str(self.port)))
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode() + self.policyd.output()[-3000:])

    def test_each_call_back_reaches_the_mta_with_its_code_text_and_effect(self):
        # The exact SMFIR_REPLYCODE of every refusal (miltertest shows only
        # that there was one), and what each answer did to the session.
        self.start_milter()
        refused = self.peer("127.0.0.2")
        self.assertEqual(refused.connect, [(b"r", b"")])  # no text at connect: the MTA's own reply
        wait_for(lambda: "no service for 127.0.0.2" in self.policyd.output(), what="the connect refusal logged")

        p = self.peer("192.0.2.1")
        self.assertEqual(p.connect, CONTINUE)
        self.assertEqual(p.step(b"H", b"bad.example\0"), refusal("550 5.7.1 bad helo bad.example"))
        self.assertEqual(p.step(b"H", b"good.example\0"), CONTINUE)
        self.assertEqual(p.step(b"M", b"<temp@example.com>\0"), refusal("451 4.7.1 greylisted, come back"))
        self.assertEqual(p.step(b"M", b"<nodata@example.com>\0SIZE=10\0"), CONTINUE)
        self.assertEqual(p.step(b"R", b"<no@example.com>\0"), refusal("551 5.1.1 no no@example.com"))
        self.assertEqual(p.step(b"R", b"<yes@example.com>\0"), CONTINUE)
        # The refused MAIL left no trace: do_data sees the sender that was
        # taken (smtp.tran.sender), and refuses by it.
        self.assertEqual(p.step(b"T"), refusal("554 5.7.1 no data from you"))

        # Content: do_headers counts the headers the MTA passed, do_dot
        # reads the body from the message file; a clean message continues
        # with no change asked for.
        for headers, body, answer in (
                ([(b"Subject", b"a"), (b"X-Spam", b"yes")], b"hi\r\n", refusal("550 5.7.1 spam header (2 headers)")),
                ([(b"Subject", b"b")], b"REFUSE this\r\n", refusal("550 5.7.1 refused at dot")),
                ([(b"Subject", b"c")], b"fine\r\n", CONTINUE)):
            self.assertEqual(p.step(b"H", b"good.example\0"), CONTINUE)
            self.assertEqual(p.step(b"M", b"<a@example.com>\0"), CONTINUE)
            self.assertEqual(p.step(b"R", b"<yes@example.com>\0"), CONTINUE)
            self.assertEqual(p.step(b"T"), CONTINUE)
            self.assertEqual(p.message(headers, body), answer)
        # QUIT ends the session: smtp.close() runs.
        p.sock.sendall(packet(b"Q"))
        wait_for(lambda: "smtpf close for" in self.policyd.output(), what="smtp.close() ran")


if __name__ == "__main__":
    unittest.main()

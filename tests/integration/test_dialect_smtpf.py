"""smtpf scripts (seed 001) run unchanged: every call-back, variable,
constant and return form through the front, and through the milter where
the milter carries it (miltertest)."""

import os
import socket
import subprocess
import unittest

from harness import MailhookTest, SmtpClient, free_port, wait_for

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


class SmtpfMilter(MailhookTest):
    def test_the_same_script_through_miltertest(self):
        port = free_port()
        self.start_policyd(read(SCRIPT_PATH), args=["--milter", "inet:%d@127.0.0.1" % port])
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")
        r = subprocess.run(["miltertest", "-s", os.path.join(HERE, "dialects", "smtpf.mt.lua")], capture_output=True,
                           timeout=60, env=dict(os.environ, PORT=str(port)))
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode() + self.policyd.output()[-3000:])


if __name__ == "__main__":
    unittest.main()

"""VPOP3 SMTPSVR.LUA scripts (seed 002) run unchanged: every call-back
when the seed says, its arguments and returns, the IN and IN/OUT globals
(per session), ProcessMessage's MIME structure and actions, and the
Enterprise RBL globals on the dns module; through the front and, where the
milter carries it, through miltertest."""

import os
import subprocess
import unittest

from dnsserver import DnsServer
from harness import MailhookTest, SmtpClient, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "dialects", "vpop3_policy.lua")

PDF_MESSAGE = (
    "From: Ann <ann@example.org>\r\n"
    "To: Bob <to@example.com>, list: x@example.com, y@example.com;\r\n"
    "Cc: cc@example.com\r\n"
    "Subject: %s\r\n"
    "X-Remove: 1\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"B\"\r\n"
    "\r\n"
    "--B\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello\r\n"
    "--B\r\n"
    "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQK\r\n"
    "--B--\r\n")


def read(path):
    with open(path) as f:
        return f.read()


class Vpop3Front(MailhookTest):
    def setUp(self):
        super().setUp()
        self.dns = DnsServer({"1.0.0.127.bl2.test": [{"type": "A", "address": "127.0.0.4"}],
                              "5.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}],
                              "5.0.0.127.bl2.test": [{"type": "A", "address": "127.0.0.3"}],
                              "8.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}],
                              "9.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}],
                              "9.0.0.127.bl2.test": [{"type": "A", "address": "127.0.0.3"}],
                              "10.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}],
                              "11.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}],
                              "12.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}],
                              "13.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}]})
        self.dns.start()
        self.addCleanup(self.dns.stop)
        self.start_both(read(SCRIPT_PATH), policyd_args=["--dns-server", "127.0.0.1:%d" % self.dns.port])

    def log(self):
        return self.policyd.output()

    def spooled_text(self):
        self.assertEqual(len(self.spooled()), 1)
        with open(self.spooled()[0], "rb") as f:
            return f.read().decode()

    def test_the_dialect_is_recognised_and_globals_are_per_session(self):
        for _ in range(2):
            c = self.client()
            c.cmd("QUIT")
        wait_for(lambda: self.log().count("vpop3 End for 127.0.0.1") == 2, what="End() twice")
        self.assertRegex(self.log(), r"policy=\S+policy\.lua \(vpop3\)")
        self.assertEqual(self.log().count("vpop3 Start count=1 ip=127.0.0.1"), 2)  # a fresh instance each time

    def test_start_welcome_and_refusals(self):
        lines = self.client(554, source="127.0.0.2").greeting
        self.assertEqual(lines, ["554 5.7.1 go away 127.0.0.2"])
        lines = self.client(554, source="127.0.0.3").greeting  # ValidClientAddress = false
        self.assertEqual(lines, ["554 5.7.1 Access denied"])
        lines = self.client(220, source="127.0.0.4").greeting
        self.assertEqual(lines, ["220 vpop3 custom welcome"])

    def test_rbl_globals_all_servers(self):
        c = self.client(source="127.0.0.5")
        wait_for(lambda: "vpop3 RBLResults" in self.log(), what="RBLResults")
        self.assertIn("vpop3 RBLResults found=true bl.test=0x0200007f,bl2.test=0x0300007f", self.log())
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<x@example.com>"), (550, ["550 5.7.1 listed in bl2.test"]))

    def test_rbl_stops_at_the_first_match_and_whitelist(self):
        self.client(source="127.0.0.9")
        wait_for(lambda: "vpop3 RBLResults" in self.log(), what="RBLResults")
        self.assertIn("vpop3 RBLResults found=true bl.test=0x0200007f\n", self.log())  # bl2.test not asked
        self.client(source="127.0.0.8")
        c = self.client(source="127.0.0.1")
        c.cmd("QUIT")
        wait_for(lambda: "vpop3 End for 127.0.0.1" in self.log(), what="End()")
        self.assertEqual(self.log().count("vpop3 RBLResults"), 1)  # 127.0.0.8 is whitelisted

    def test_get_max_message_size_and_ehlo_capabilities(self):
        c = self.client()
        code, lines = c.cmd("EHLO caps.example")
        self.assertEqual(code, 250)
        self.assertIn("250 X-VPOP3", lines)
        self.assertNotIn("250-DSN", lines)
        code, lines = c.cmd("EHLO small.example")
        self.assertIn("250-SIZE 100", lines)
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: big\r\n\r\n" + "x" * 200 + "\r\n.")[0], 552)  # enforced

    def test_do_helo_forms_and_in_variables(self):
        c = self.client()
        self.assertEqual(c.cmd("HELO custom.example"), (250, ["250 custom hello HELO"]))
        self.assertEqual(c.cmd("EHLO custom.example"), (250, ["250 custom hello EHLO"]))
        self.assertEqual(c.cmd("HELO vars.example"),
                         (250, ["250 vars server=mx.test id=1 enc=false details=[] auth=[] smtpauth=[] valid=true"]))
        self.assertEqual(c.cmd("HELO refuse.example"), (554, ["554 5.7.1 refused helo"]))
        self.assertTrue(c.closed())

    def test_force_disconnect(self):
        c = self.client()
        self.assertEqual(c.cmd("HELO force.example")[0], 250)
        self.assertTrue(c.closed())

    def test_help_quit_noop_rset_vrfy_expn_unrecognised(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("HELP"), (214, ["214 vpop3 help: 2.0.0 See RFC 5321"]))
        self.assertEqual(c.cmd("NOOP"), (250, ["250 vpop3 noop"]))
        self.assertEqual(c.cmd("RSET"), (250, ["250 vpop3 reset"]))
        self.assertEqual(c.cmd("VRFY postmaster"), (250, ["250 postmaster@mx.test"]))
        self.assertEqual(c.cmd("VRFY other")[0], 252)  # current response returned: the default
        self.assertEqual(c.cmd("EXPN staff"), (550, ["550 5.7.1 no EXPN for staff"]))
        self.assertEqual(c.cmd("FROB x"), (502, ["502 5.5.1 vpop3 does not know FROB x"]))
        self.assertEqual(c.cmd("QUIT"), (221, ["221 vpop3 bye"]))

    def test_do_mailfrom_and_do_rcptto(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<spam@example.com>"), (550, ["550 5.7.1 no spam"]))
        self.assertEqual(c.cmd("MAIL FROM:<p@example.com> SIZE=10"),
                         (250, ["250 size 10 data=<p@example.com> SIZE=10"]))
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>"), (550, ["550 5.1.1 no such user"]))
        self.assertEqual(c.cmd("RCPT TO:<a@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<count@example.com>"), (250, ["250 count=1"]))

    def test_mailfrom_parameter_is_a_new_return_path(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<rewrite@example.com>")[0], 250)
        c.cmd("RCPT TO:<to@example.com>")
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: r\r\n\r\nhi\r\n.")[0], 250)
        self.assertIn("X-Mailhook-From: <rewritten@example.com>", self.spooled_text())

    def test_authentication_required_and_local_limits(self):
        c = self.client(source="127.0.0.7")
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>"), (530, ["530 5.7.0 Authentication required"]))
        c = self.client(source="127.0.0.6")
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<r1@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r2@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r3@example.com>")[0], 452)  # MaxRecipientsPerLocalMessage = 2
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: one\r\n\r\nhi\r\n.")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>"), (452, ["452 4.5.3 Too many messages in this session"]))

    def test_max_line_length(self):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<lines@example.com>")  # sets MaxLineLength = 50
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: l\r\n\r\n" + "y" * 60 + "\r\n.")[0], 550)

    def test_max_recipients_per_incoming_message(self):
        c = self.client(source="127.0.0.15")
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<r1@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r2@example.com>")[0], 452)

    def rbl_message(self, ip):
        c = self.client(source=ip)
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<to@example.com>")[0], 250)
        c.cmd("DATA")
        return c.cmd("Subject: r\r\n\r\nhi\r\n.")

    def test_rbl_actions(self):
        self.assertEqual(self.rbl_message("127.0.0.10")[0], 250)  # RBLBlackhole: accepted, dropped
        self.assertEqual(self.spooled(), [])
        self.assertEqual(self.rbl_message("127.0.0.12")[0], 250)  # RBLAccept: the reject message is not used
        self.assertEqual(len(self.spooled()), 1)
        os.remove(self.spooled()[0])
        self.assertEqual(self.rbl_message("127.0.0.11")[0], 250)  # RBLRedirect and RBLHeader
        text = self.spooled_text()
        self.assertIn("X-Mailhook-To: <rbl@example.com>", text)
        self.assertNotIn("X-Mailhook-To: <to@example.com>", text)
        self.assertIn("X-RBL: listed in bl.test\r\n", text)
        self.rbl_message("127.0.0.13")  # CheckRBL = false: no lookup, no RBLResults
        self.assertEqual(self.log().count("vpop3 RBLResults"), 3)

    def test_do_data_start(self):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<nodata@example.com>")
        self.assertEqual(c.cmd("DATA"), (554, ["554 5.7.1 no data for you"]))

    def message(self, subject, sender="a@example.com", rcpts=("to@example.com", "hidden@example.com")):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<%s>" % sender)
        for r in rcpts:
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        return c.cmd(PDF_MESSAGE % subject + ".")

    def test_process_message_structure_and_header_modifiers(self):
        self.assertEqual(self.message("hello")[0], 250)
        text = self.spooled_text()
        self.assertIn("X-VPOP3-Data: 2 recipients\r\n", text)  # DoDATAStart's header lines
        self.assertIn("X-Sections: TEXT:multipart/mixed,1:text/plain,2:application/pdf\r\n", text)
        self.assertIn("X-Attachments: r.pdf/application/pdf/9/MIME/3\r\n", text)
        self.assertIn("X-Envelope: a@example.com to@example.com,hidden@example.com ", text)
        self.assertIn("Subject: [vpop3] hello\r\n", text)
        self.assertNotIn("X-Remove", text)
        log = self.log()
        self.assertIn("vpop3 EndMessage raw=19 processed=19", log)  # StartMessage, MessageLine(Raw)
        self.assertIn("vpop3 CheckRecipients to=to@example.com,x@example.com,y@example.com cc=cc@example.com "
                      "bcc=hidden@example.com ip=127.0.0.1 local=false size=", log)
        self.assertIn("vpop3 LogRecipients a@example.com -> to@example.com,hidden@example.com", log)

    def test_process_message_actions(self):
        self.assertEqual(self.message("reject"), (554, ["554 5.7.1 rejected by the script"]))
        self.assertEqual(self.message("blackhole")[0], 250)
        self.assertEqual(self.spooled(), [])
        self.assertEqual(self.message("redirect")[0], 250)
        text = self.spooled_text()
        self.assertIn("X-Mailhook-To: <other@example.com>", text)
        self.assertNotIn("X-Mailhook-To: <to@example.com>", text)

    def test_check_recipients_monitor_bcc_and_blocked_log(self):
        self.assertEqual(self.message("nobcc"), (550, ["550 5.7.1 no Bcc allowed"]))
        self.assertEqual(self.message("m", sender="monitored@example.com")[0], 250)
        self.assertIn("X-Mailhook-To: <monitor@example.com>", self.spooled_text())
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<no@example.com>")
        c.cmd("RCPT TO:<to@example.com>")
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: s\r\n\r\nhi\r\n.")[0], 250)
        self.assertIn("vpop3 LogRecipientsBlocked no@example.com", self.log())


class Vpop3Auth(MailhookTest):
    def test_authenticated_user_and_allowed_users(self):
        import base64
        self.start_both(read(SCRIPT_PATH), policyd_args=["--script", os.path.join(HERE, "dialects", "vpop3_auth.lua")],
                        front_args=["--auth-plaintext"])

        def login(user):
            c = SmtpClient(self.front_port, source="127.0.0.14")
            self.addCleanup(c.close)
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO c.example")
            self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0secret").decode())[0], 235)
            return c

        c = login(b"alice")
        self.assertEqual(c.cmd("HELO vars.example")[1],
                         ["250 vars server=mx.test id=1 enc=false details=[] auth=[alice] smtpauth=[alice] valid=true"])
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com>")[0], 250)
        c = login(b"carol")  # authenticated, not in AllowedUsers
        self.assertEqual(c.cmd("MAIL FROM:<carol@example.com>"),
                         (550, ["550 5.7.1 User not allowed to send from this address"]))


class Vpop3Example(MailhookTest):
    def test_relay_control_rbl_and_header_stamp(self):
        dns = DnsServer({"1.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}]})
        dns.start()
        self.addCleanup(dns.stop)
        for name, value in (("MAILHOOK_RELAY_NETS", "127.0.0.3"), ("MAILHOOK_RBL_ZONE", "bl.test"),
                            ("MAILHOOK_LOCAL_DOMAINS", "example.com")):
            os.environ[name] = value
            self.addCleanup(os.environ.pop, name)
        lua = os.environ.get("MAILHOOK_LUA", "../../lua")
        self.start_both(read(os.path.join(lua, "examples", "vpop3", "smtpsvr.lua")),
                        policyd_args=["--dns-server", "127.0.0.1:%d" % dns.port, "--lua-env", "MAILHOOK_RELAY_NETS",
                                      "--lua-env", "MAILHOOK_RBL_ZONE", "--lua-env", "MAILHOOK_LOCAL_DOMAINS"])

        listed = self.client(554, source="127.0.0.1")
        self.assertEqual(listed.greeting, ["554 5.7.1 127.0.0.1 is listed by bl.test"])
        outsider = self.client(source="127.0.0.2")
        self.assertIn("250-SIZE 10485760", outsider.cmd("EHLO c.example")[1])
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
            self.assertIn(b"X-Checked-By: mx.test (incoming, 0 attachment(s))\r\n", f.read())


class Vpop3Loading(MailhookTest):
    def test_explicit_dialect_on_a_script_without_vpop3_functions_is_refused(self):
        p = self.start_policyd("function hook.rcpt(r) end\n", args=["--dialect", "vpop3"], wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("--dialect vpop3, but the script defines no VPOP3 global functions", p.output())

    def test_a_script_of_two_dialects_is_refused(self):
        p = self.start_policyd("function Start() return '' end\nfunction hook_rcpt(self, tx, r) return OK end\n",
                               wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("defines both", p.output())
        self.assertIn("one script, one dialect", p.output())


class Vpop3Milter(MailhookTest):
    def test_the_same_script_through_miltertest(self):
        port = free_port()
        self.start_policyd(read(SCRIPT_PATH), args=["--milter", "inet:%d@127.0.0.1" % port])
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")
        r = subprocess.run(["miltertest", "-s", os.path.join(HERE, "dialects", "vpop3.mt.lua")], capture_output=True,
                           timeout=60, env=dict(os.environ, PORT=str(port)))
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode() + self.policyd.output()[-3000:])


if __name__ == "__main__":
    unittest.main()

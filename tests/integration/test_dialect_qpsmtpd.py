"""qpsmtpd plugins (seeds 003 and 004) run unchanged: every hook in
qpsmtpd's order, its arguments, the plugin / connection / transaction
objects, every return code, chaining over --script, through the front
and, where the milter carries it, through miltertest."""

import os
import socket
import subprocess
import unittest

from harness import MailhookTest, SmtpClient, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS = os.path.join(HERE, "dialects", "qpsmtpd")


def read(path):
    with open(path) as f:
        return f.read()


class QpsmtpdFront(MailhookTest):
    def setUp(self):
        super().setUp()
        os.environ["QPSMTPD_CONFIG"] = os.path.join(PLUGINS, "config")
        self.addCleanup(os.environ.pop, "QPSMTPD_CONFIG")
        self.start_policyd(read(os.path.join(PLUGINS, "first.lua")),
                           args=["--script", os.path.join(PLUGINS, "second.lua")])
        self.start_front(["--auth-plaintext"])

    def log(self):
        return self.policyd.output()

    def test_both_scripts_are_qpsmtpd_plugins_and_post_fork_ran(self):
        self.client()
        wait_for(lambda: "policy=" in self.log(), what="session line")
        self.assertRegex(self.log(), r"policy=\S+policy\.lua \(qpsmtpd\),\S+second\.lua \(qpsmtpd\)")
        self.assertIn("post_fork ran", self.log())

    def test_pre_connection_and_connect(self):
        lines = self.client(550, source="127.0.0.2").greeting
        self.assertEqual(lines, ["550 pre-connection says no"])
        lines = self.client(450, source="127.0.0.3").greeting
        self.assertEqual(lines, ["450 not now"])
        lines = self.client(220, source="127.0.0.4").greeting  # DONE: the plugin's own greeting
        self.assertEqual(lines, ["220 custom greeting from a plugin"])

    def test_helo_parse_config_file_and_return_codes(self):
        c = self.client()
        self.assertEqual(c.cmd("HELO bad.example"), (550, ["550 bad helo bad.example"]))  # config/badhelo
        self.assertEqual(c.cmd("HELO worse.example")[0], 550)
        self.assertEqual(c.cmd("HELO UPPER.EXAMPLE"), (250, ["250 hello upper.example (parsed)"]))
        self.assertEqual(c.cmd("EHLO SOFT.EXAMPLE"), (450, ["450 try later"]))  # ehlo_parse
        self.assertEqual(c.cmd("HELO answer.example"), (250, ["250 answer 42"]))  # hook_config of the second
        self.assertEqual(c.cmd("HELO fine.example")[0], 250)  # all DECLINED: the default
        self.assertEqual(c.cmd("HELO disc.example"), (550, ["550 go away"]))  # DENY_DISCONNECT
        self.assertTrue(c.closed())
        wait_for(lambda: "disconnect hook for 127.0.0.1" in self.log(), what="hook_disconnect after DENY_DISCONNECT")
        wait_for(lambda: "post_connection hook for 127.0.0.1" in self.log(), what="hook_post_connection")

    def test_mail_parse_pre_and_parameters(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<x@bad.parse>"), (501, ["501 5.5.4 cannot parse that"]))
        self.assertEqual(c.cmd("MAIL FROM:<spam@example.com>"), (550, ["550 5.7.1 no spam"]))
        self.assertEqual(c.cmd("MAIL FROM:<p@example.com> SIZE=100 BODY=8BITMIME"),
                         (250, ["250 size=100 body=8BITMIME"]))
        c.cmd("RSET")
        self.assertEqual(c.cmd("MAIL FROM:<rewrite@example.com>"), (250, ["250 sender rewritten@example.com"]))
        self.assertEqual(c.cmd("RCPT TO:<ok@example.com>")[0], 250)
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: s\r\n\r\nhi\r\n.")[0], 250)
        with open(self.spooled()[0], "rb") as f:
            self.assertIn(b"X-Mailhook-From: <rewritten@example.com>", f.read())  # mail_pre's address

    def test_mail_denysoft_disconnect(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<bye@example.com>"), (450, ["450 4.7.1 bye"]))
        self.assertTrue(c.closed())

    def test_rcpt_chain_and_the_soft_deny_default(self):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>"), (550, ["550 5.1.1 no such user"]))  # the first stops
        self.assertEqual(c.cmd("RCPT TO:<later@example.com>"), (450, ["450 relaying denied"]))
        self.assertEqual(c.cmd("RCPT TO:<second@example.com>")[0], 250)  # the first declined, the second said OK
        self.assertEqual(c.cmd("RCPT TO:<nobody@example.com>"),
                         (450, ["450 4.7.1 No plugin decided if relaying is allowed"]))
        self.assertEqual(c.cmd("RCPT TO:<who@example.com>"),
                         (250, ["250 127.0.0.1 c.example 127.0.0.1 relay=nil"]))
        self.assertEqual(c.cmd("RCPT TO:<level@example.com>"), (550, ["550 level level:5"]))  # hook_user_config
        self.assertIn("deny hook saw policy return 901", self.log())

    def test_rcpt_parse_and_rcpt_pre(self):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<x@bad.parse>"), (501, ["501 5.5.4 cannot parse that recipient"]))
        self.assertEqual(c.cmd("RCPT TO:<alias@example.com>")[0], 250)  # rcpt_pre: alias -> ok
        self.assertIn("ok hook saw policy return 900", self.log())
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: a\r\n\r\nhi\r\n.")[0], 250)
        with open(self.spooled()[0], "rb") as f:
            text = f.read()
        self.assertIn(b"X-Mailhook-To: <ok@example.com>", text)
        self.assertNotIn(b"alias@example.com", text)

    def test_queue_pre_done_means_no_queuing(self):
        c = self.client()
        self.assertEqual(self.message(c, "Subject: noqueue\r\n\r\nbody")[0], 250)
        self.assertEqual(self.spooled(), [])

    def test_relay_client_set_in_connect(self):
        c = self.client(source="127.0.0.5")
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<anyone@elsewhere.example>")[0], 250)

    def test_data_hook_with_transaction_notes(self):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<greylist@example.com>")
        c.cmd("RCPT TO:<ok@example.com>")
        self.assertEqual(c.cmd("DATA"), (451, ["451 4.7.1 greylisted"]))

    def message(self, c, body, rcpts=("ok@example.com",)):
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        for r in rcpts:
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        return c.cmd(body + "\r\n.")

    def test_data_post_headers_body_and_received_line(self):
        c = self.client()
        reply = self.message(c, "Subject: hello\r\nX-Remove-Me: 1\r\n\r\nline one\r\nline two\r\nADD BCC\r\nREMOVE OK")
        self.assertEqual(reply[0], 250, reply)
        with open(self.spooled()[0], "rb") as f:
            text = f.read()
        self.assertIn(b"X-Mailhook-To: <bcc@example.com>", text)      # transaction:add_recipient
        self.assertNotIn(b"X-Mailhook-To: <ok@example.com>", text)    # transaction:remove_recipient
        self.assertIn(b"X-Post-Headers: yes\r\n", text)               # data_post_headers
        self.assertIn(b"X-Body-Lines: 4\r\n", text)                   # body_getline
        self.assertIn(b"Subject: [tagged] hello\r\n", text)           # header:replace
        self.assertNotIn(b"X-Remove-Me", text)                        # header:delete
        self.assertIn(b"Received: from plugin-test by first.lua with ESMTP\r\n", text)  # received_line
        self.assertIn(b"Received: from c.example", text)              # and mailhook's own (RFC 5321 4.4)
        self.assertIn("queue_post ran", self.log())

    def test_data_post_deny(self):
        c = self.client()
        self.assertEqual(self.message(c, "Subject: v\r\n\r\na VIRUS here"), (554, ["554 5.7.1 virus found"]))
        self.assertEqual(self.spooled(), [])

    def test_data_headers_end_deny_disconnect(self):
        c = self.client()
        self.assertEqual(self.message(c, "Subject: d\r\nX-Drop: 1\r\n\r\nbody"), (554, ["554 Message denied"]))
        self.assertTrue(c.closed())

    def test_queue_ok_means_the_plugin_took_the_message(self):
        c = self.client()
        self.assertEqual(self.message(c, "Subject: q\r\n\r\nbody", rcpts=("drop@example.com",)),
                         (250, ["250 2.0.0 dropped by queue plugin"]))
        self.assertEqual(self.spooled(), [])

    def test_reset_transaction_quit_and_disconnect(self):
        c = self.client(source="127.0.0.6")
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RSET")
        self.assertEqual(c.cmd("QUIT"), (221, ["221 plugin says goodbye"]))  # DONE: no hook_disconnect
        wait_for(lambda: "post_connection hook for 127.0.0.6" in self.log(), what="post_connection")
        self.assertIn("reset_transaction ran", self.log())
        self.assertNotIn("disconnect hook for 127.0.0.6", self.log())
        c2 = self.client(source="127.0.0.7")
        self.assertEqual(c2.cmd("QUIT")[0], 221)
        wait_for(lambda: "disconnect hook for 127.0.0.7" in self.log(), what="hook_disconnect after QUIT")

    def test_unrecognized_command_help_vrfy_noop(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("XYZZY a b"), (250, ["250 nothing happens (a,b)"]))
        self.assertEqual(c.cmd("FOO"), (500, ["500 Unrecognized command"]))
        self.assertEqual(c.cmd("HELP mail"), (214, ["214 plugin help for mail"]))
        self.assertEqual(c.cmd("VRFY postmaster"), (250, ["250 User OK"]))
        self.assertEqual(c.cmd("VRFY someone")[0], 252)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("NOOP"), (421, ["421 too many NOOPs"]))  # register_hook'd method, DENY_DISCONNECT
        self.assertTrue(c.closed())
        c2 = self.client()
        self.assertEqual(c2.cmd("EVIL"), (521, ["521 Unrecognized command"]))
        self.assertTrue(c2.closed())

    def test_auth_hook(self):
        import base64
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(b"\0demo\0wrong").decode())[0], 535)
        self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(b"\0demo\0demo").decode())[0], 235)

    def test_logging_hook_swallows_what_it_logs(self):
        c = self.client()
        c.cmd("HELO secret.example")
        c.cmd("HELO answer.example")
        self.assertNotIn("a secret line", self.log())
        self.assertIn("post_fork ran", self.log())


class QpsmtpdExamples(MailhookTest):
    """The Lua ports of qpsmtpd's hosts_allow, badmailfrom, dnsbl,
    greylisting and rcpt_ok (lua/examples/qpsmtpd/), chained."""

    def setUp(self):
        super().setUp()
        from dnsserver import DnsServer
        self.dns = DnsServer({"4.0.0.127.bl.test": [{"type": "A", "address": "127.0.0.2"}]})
        self.dns.start()
        self.addCleanup(self.dns.stop)
        config = os.path.join(self.dir, "config")
        os.makedirs(config)
        for name, text in (("hosts_allow", "127.0.0.2 DENY no thanks\n"), ("max_conn_ip", "2\n"),
                           ("badmailfrom", "bad@example.net\n@spam.example go away spammer\n"),
                           ("rcpthosts", "example.com\n"), ("dnsbl_zones", "bl.test\n"),
                           ("greylisting", "black_timeout 0\n")):
            with open(os.path.join(config, name), "w") as f:
                f.write(text)
        os.environ["QPSMTPD_CONFIG"] = config
        self.addCleanup(os.environ.pop, "QPSMTPD_CONFIG")
        examples = os.path.join(os.environ.get("MAILHOOK_LUA", "../../lua"), "examples", "qpsmtpd")
        more = []
        for name in ("badmailfrom", "dnsbl", "greylisting", "rcpt_ok"):
            more += ["--script", os.path.join(examples, name + ".lua")]
        self.start_both(read(os.path.join(examples, "hosts_allow.lua")),
                        policyd_args=more + ["--dns-server", "127.0.0.1:%d" % self.dns.port])

    def test_hosts_allow(self):
        self.assertEqual(self.client(550, source="127.0.0.2").greeting, ["550 no thanks"])
        first = self.client(source="127.0.0.3")
        self.client(source="127.0.0.3")
        self.assertEqual(self.client(451, source="127.0.0.3").greeting,
                         ["451 Sorry, too many connections from 127.0.0.3, try again later"])
        ends = self.policyd.output().count(" end\n")
        first.cmd("QUIT")
        wait_for(lambda: self.policyd.output().count(" end\n") > ends, what="the first session's end")
        self.client(source="127.0.0.3")

    def test_badmailfrom_and_rcpt_ok(self):
        c = self.client(source="127.0.0.1")
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<x@spam.example>")[0], 250)  # noted, refused per recipient
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>"), (550, ["550 go away spammer"]))
        c.cmd("RSET")
        c.cmd("MAIL FROM:<bad@example.net>")
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>"),
                         (550, ["550 Mail from bad@example.net not accepted here"]))
        c.cmd("RSET")
        c.cmd("MAIL FROM:<good@example.net>")
        self.assertEqual(c.cmd("RCPT TO:<user@elsewhere.example>"), (550, ["550 Relaying denied"]))
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>")[0], 250)

    def test_dnsbl(self):
        c = self.client(source="127.0.0.4")
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.net>")
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>"),
                         (550, ["550 Mail from 127.0.0.4 rejected: listed in bl.test"]))
        self.assertEqual(c.cmd("RCPT TO:<postmaster@example.com>")[0], 250)

    def test_greylisting(self):
        c = self.client(source="127.0.0.1")
        c.cmd("EHLO c.example")
        for attempt in range(2):
            c.cmd("MAIL FROM:<a@example.net>")
            self.assertEqual(c.cmd("RCPT TO:<user@example.com>")[0], 250)
            if attempt == 0:
                self.assertEqual(c.cmd("DATA"), (451, ["451 4.7.1 This mail is temporarily denied"]))
                c.cmd("RSET")
        self.assertEqual(c.cmd("DATA")[0], 354)  # the retry passes (black_timeout 0)
        self.assertEqual(c.cmd("Subject: g\r\n\r\nhi\r\n.")[0], 250)


class QpsmtpdReturnForms(MailhookTest):
    """Each hook's return codes and what the client sees, table-driven:
    (hook, code) -> (reply code, the connection closes)."""

    # The reply codes of seeds 003/004 for each hook and return code.
    TABLE = [
        ("mail", "DENY", 550, False), ("mail", "DENYSOFT", 450, False),
        ("mail", "DENY_DISCONNECT", 550, True), ("mail", "DENYSOFT_DISCONNECT", 450, True),
        ("mail", "OK", 250, False),
        ("rcpt", "DENY", 550, False), ("rcpt", "DENYSOFT", 450, False),
        ("rcpt", "DENY_DISCONNECT", 550, True), ("rcpt", "DENYSOFT_DISCONNECT", 450, True),
        ("rcpt", "DECLINED", 450, False),
        ("data", "DENY", 554, False), ("data", "DENYSOFT", 451, False),
        ("data", "DENY_DISCONNECT", 554, True), ("data", "DENYSOFT_DISCONNECT", 451, True),
        ("data_headers_end", "DENY_DISCONNECT", 554, True), ("data_headers_end", "DENYSOFT_DISCONNECT", 421, True),
        ("data_headers_end", "DECLINED", 250, False),
        ("data_post_headers", "DENY", 554, False), ("data_post_headers", "DENYSOFT_DISCONNECT", 451, True),
        ("data_post", "DENY", 554, False), ("data_post", "DENYSOFT", 451, False),
        ("data_post", "DENY_DISCONNECT", 554, True),
        ("queue", "DENY", 552, False), ("queue", "DENYSOFT", 452, False), ("queue", "OK", 250, False),
        ("unrecognized_command", "DENY", 500, False), ("unrecognized_command", "DENY_DISCONNECT", 521, True),
        ("help", "DENY", 501, False),
        ("vrfy", "DENY", 554, False), ("vrfy", "OK", 250, False),
        ("noop", "DENY", 500, False), ("noop", "DENY_DISCONNECT", 421, True),
    ]

    def test_every_return_form(self):
        self.start_both(read(os.path.join(PLUGINS, "returns.lua")))
        for hook, rc, code, closes in self.TABLE:
            with self.subTest(hook=hook, rc=rc):
                c = self.client()
                c.cmd("HELO %s.%s.example" % (hook, rc.lower()))
                reply = self.drive(c, hook, rc)
                self.assertEqual(reply[0], code, reply)
                if code >= 400 and rc != "DECLINED" and hook != "rcpt" or (hook == "rcpt" and rc != "DECLINED"):
                    self.assertIn("said " + rc, reply[1][0])
                if closes:
                    self.assertTrue(c.closed())
                else:
                    self.assertEqual(c.cmd("RSET")[0], 250)  # the session goes on
                c.close()

    def drive(self, c, hook, rc):
        """The SMTP dialogue up to the command that runs `hook`; its reply."""
        if hook == "unrecognized_command":
            return c.cmd("FROB x")
        if hook in ("help", "vrfy", "noop"):
            return c.cmd({"help": "HELP", "vrfy": "VRFY someone", "noop": "NOOP"}[hook])
        reply = c.cmd("MAIL FROM:<a@example.com>")
        if hook == "mail":
            return reply
        reply = c.cmd("RCPT TO:<b@example.com>")
        if hook == "rcpt":
            return reply
        reply = c.cmd("DATA")
        if hook == "data":
            return reply
        self.assertEqual(reply[0], 354, reply)
        return c.cmd("Subject: r\r\n\r\nbody\r\n.")


class QpsmtpdLoading(MailhookTest):
    def test_explicit_dialect_on_a_script_without_hooks_is_refused(self):
        p = self.start_policyd("function hook.rcpt(r) end\n", args=["--dialect", "qpsmtpd"], wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("--dialect qpsmtpd, but the script defines no hook_* functions", p.output())

    def test_a_plugin_that_also_defines_smtpe_hooks_is_refused(self):
        p = self.start_policyd("function hook.rcpt(r) end\nfunction hook_rcpt(self, tx, r) return OK end\n",
                               wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("defines both hook.* (smtpe) and hook_* functions (qpsmtpd)", p.output())

    def test_the_plugin_group_answers_before_a_later_smtpe_script(self):
        smtpe = self.write_script('function hook.rcpt(r) if r == "vip@example.com" then '
                                  'return "250 2.1.5 smtpe knows vip\\r\\n" end end', name="first.lua")
        self.start_policyd("function hook_rcpt(self, tx, r) if r:host() == 'example.com' then return OK end "
                           "return DECLINED end", args=["--script", smtpe])
        self.start_front()
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<x@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<vip@elsewhere.example>")[0], 450)   # the group is first: its soft-deny default answers
        self.assertEqual(c.cmd("RCPT TO:<someone@example.com>")[0], 250)


class QpsmtpdMilter(MailhookTest):
    def test_the_same_plugins_through_miltertest(self):
        port = free_port()
        os.environ["QPSMTPD_CONFIG"] = os.path.join(PLUGINS, "config")
        self.addCleanup(os.environ.pop, "QPSMTPD_CONFIG")
        self.start_policyd(read(os.path.join(PLUGINS, "first.lua")),
                           args=["--script", os.path.join(PLUGINS, "second.lua"), "--milter",
                                 "inet:%d@127.0.0.1" % port])
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")
        r = subprocess.run(["miltertest", "-s", os.path.join(HERE, "dialects", "qpsmtpd.mt.lua")],
                           capture_output=True, timeout=60, env=dict(os.environ, PORT=str(port)))
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode() + self.policyd.output()[-3000:])


if __name__ == "__main__":
    unittest.main()

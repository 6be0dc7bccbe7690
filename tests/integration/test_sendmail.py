"""policyd as the milter of a real, private Sendmail 8.17 (deploy/sendmail/mailhook.mc).

The same checks as test_milter.RealPostfix: a Lua RCPT refusal reaches the
SMTP client with its exact text, the delivered message carries the header
Lua added and not the one it removed, a body replaced by Lua is delivered,
policyd stopped gives the F=T tempfail, and the same script delivers the
same message through Sendmail, Postfix and mailhook's own front.
Sendmail is unpacked from its Debian packages (sendmail_instance.py), never
installed: it conflicts with Postfix.
"""

import os
import unittest

from harness import Sink, SmtpClient, free_port, wait_for
from postfix_instance import PrivatePostfix
from sendmail_instance import PrivateSendmail
from test_milter import MESSAGE, POSTFIX_SCRIPT, MilterTest, headers_and_body, snippet_settings

BODY_SCRIPT = POSTFIX_SCRIPT + '''
local dot = hook.dot
function hook.dot(path)
  dot(path)
  message.replace_body("replaced by policy\\r\\n")
end
'''

MACRO_SCRIPT = '''
function hook.dot(path)
  local names = {}
  for k in pairs(client.macros) do names[#names + 1] = k end
  table.sort(names)
  message.add_header("X-Macro-Names", table.concat(names, " "))
  message.add_header("X-Macro-j", client.macros.j or "-")
  message.add_header("X-Macro-Client", client.macros["{client_addr}"] or "-")
  message.add_header("X-Macro-Daemon", client.macros["{daemon_name}"] or "-")
  message.add_header("X-Macro-Rcpt", client.macros["{rcpt_addr}"] or "-")
end
'''


class RealSendmail(MilterTest):
    def start_sendmail(self):
        self.sink = Sink()
        self.addCleanup(self.sink.stop)
        self.smtp_port = free_port()
        os.chmod(self.dir, 0o755)  # Sendmail refuses a cf or queue under a group/world-writable path
        self.sendmail = PrivateSendmail(self.dir, self.smtp_port, self.sink.port, self.milter_port)
        self.sendmail.start()

    def tearDown(self):
        # Before the harness removes the instance's directories.
        if getattr(self, "sendmail", None):
            self.sendmail.stop()
        if getattr(self, "postfix", None):
            self.postfix.stop()
        super().tearDown()

    def send(self, port=None, rcpts=("b@example.com",)):
        c = SmtpClient(port or self.smtp_port, timeout=60)
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

    def delivered(self, sink):
        wait_for(lambda: sink.messages, timeout=60,
                 what="the message at the sink\n" + (self.sendmail.log() if getattr(self, "sendmail", None) else ""))
        return sink.messages[0]

    def test_lua_refuses_a_recipient_and_changes_the_delivered_message(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_sendmail()
        mail, replies = self.send(rcpts=("no@example.com", "b@example.com"))
        self.assertEqual(mail[0], 250, self.policyd.output())
        # Sendmail keeps the milter's multi-line reply, but puts the address
        # ("<addr>... ") before the first line's text, as for its own RCPT
        # errors (Postfix passes the lines unchanged).
        self.assertEqual(replies[0], (550, ["550-5.1.1 <no@example.com>... no such user here",
                                            "550 5.1.1 ask postmaster"]))
        self.assertEqual(replies[1][0], 250)
        self.assertEqual(replies[2][0], 250)
        _, rcpts, data = self.delivered(self.sink)
        self.assertEqual(rcpts, ["<b@example.com>"])
        names, fields, body = headers_and_body(data)
        self.assertEqual(fields["X-Mailhook"], "checked")
        self.assertNotIn("X-Remove", names)
        self.assertEqual(body, "the same body\r\n")

    def test_the_macros_sendmail_sends_reach_lua(self):
        self.start_milter(MACRO_SCRIPT)
        self.start_sendmail()
        _, replies = self.send()
        self.assertEqual(replies[-1][0], 250)
        _, fields, _ = headers_and_body(self.delivered(self.sink)[2])
        names = fields["X-Macro-Names"].split()
        # mailhook.mc's confMILTER_MACROS_* lists, as far as this session has them
        # (no TLS, no AUTH), plus the macros Sendmail always sends.
        for name in ("j", "_", "{daemon_name}", "{client_addr}", "{client_name}", "i",
                     "{mail_mailer}", "{mail_addr}", "{rcpt_mailer}", "{rcpt_addr}"):
            self.assertIn(name, names)
        self.assertEqual(fields["X-Macro-j"], "mta.mailhook.test")
        self.assertEqual(fields["X-Macro-Client"], "127.0.0.1")
        self.assertEqual(fields["X-Macro-Daemon"], "MTA-test")
        self.assertEqual(fields["X-Macro-Rcpt"], "b@example.com")

    def test_a_body_replaced_by_lua_is_delivered(self):
        self.start_milter(BODY_SCRIPT)
        self.start_sendmail()
        _, replies = self.send()
        self.assertEqual(replies[-1][0], 250)
        names, fields, body = headers_and_body(self.delivered(self.sink)[2])
        self.assertEqual(body, "replaced by policy\r\n")
        self.assertEqual(fields["X-Mailhook"], "checked")

    def test_a_stopped_policyd_gives_the_F_T_tempfail(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_sendmail()
        self.policyd.stop()
        c = SmtpClient(self.smtp_port, timeout=60)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        # F=T: Sendmail cannot reach the milter at connect; EHLO still passes, MAIL is tempfailed.
        self.assertEqual(c.cmd("EHLO client.example")[0], 250)
        mail = c.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(mail, (451, ["451 4.3.2 Please try again later"]))
        c.cmd("QUIT")
        self.assertEqual(self.sink.messages, [])

    def test_the_same_script_delivers_the_same_message_through_sendmail_postfix_and_the_front(self):
        self.start_milter(POSTFIX_SCRIPT)
        self.start_sendmail()
        self.send()
        via_sendmail = headers_and_body(self.delivered(self.sink)[2])
        # Postfix with deploy/postfix/main.cf.snippet, the same policyd.
        pf_sink = Sink()
        self.addCleanup(pf_sink.stop)
        pf_port = free_port()
        os.chmod(self.dir, 0o711)
        self.postfix = PrivatePostfix(os.path.join(self.dir, "pf"), pf_port, pf_sink.port,
                                      milter="inet:127.0.0.1:%d" % self.milter_port,
                                      extra_main_cf=dict(snippet_settings(), **{
                                          "smtpd_milters": snippet_settings()["smtpd_milters"]
                                          .replace("inet:127.0.0.1:8890", "inet:127.0.0.1:%d" % self.milter_port)}))
        self.postfix.start()
        self.send(port=pf_port)
        via_postfix = headers_and_body(self.delivered(pf_sink)[2])
        # mailhook's own front, delivering to its spool.
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
        wanted = ("X-Mailhook", "X-Remove", "Subject", "From", "To", "Message-ID", "Date")
        for shape, got in (("postfix", via_postfix), ("front", via_front)):
            self.assertEqual([n for n in got[0] if n in wanted], [n for n in via_sendmail[0] if n in wanted], shape)
            for name in wanted:
                self.assertEqual(got[1].get(name), via_sendmail[1].get(name), shape + " " + name)
            self.assertEqual(got[2], via_sendmail[2], shape)


if __name__ == "__main__":
    unittest.main()

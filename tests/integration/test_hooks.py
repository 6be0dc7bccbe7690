"""Each smtpe hook's effect over real SMTP, through front and policyd."""

import os
import re
import unittest

from harness import MailhookTest, SmtpClient, free_port, sample, scrape, wait_for

SCRIPT = r'''
function hook.accept(ip, ptr)
  if ip == "127.0.0.2" then return "554 5.7.1 go away " .. ip .. "\r\n" end
  return "220 mx.test ESMTP welcome " .. ip .. " port " .. client.port .. "\r\n"
end
function hook.helo(h) if h == "bad.example" then return "550 5.7.1 helo " .. h .. "\r\n" end end
function hook.ehlo(h) if h == "bad.example" then return "550 5.7.1 ehlo " .. h .. "\r\n" end end
function hook.mail(s) if s == "spam@x.example" then return "550 5.7.1 sender " .. s .. " " .. client.input .. "\r\n" end end
function hook.rcpt(r)
  if r == "who@x.example" then return "250 2.1.5 trans=" .. client.id_trans .. " log=" .. client.id_log .. "\r\n" end
  if r:sub(1, 7) == "blocked" then return "550 5.1.1 no " .. r .. "\r\n" end
end
function hook.data() if client.id_trans and seen_refuse_data then return "554 5.7.1 no data\r\n" end end
function hook.unknown(line) return "502 5.5.2 what is " .. line .. "\r\n" end
function hook.noop() return "250 2.0.0 noop hook\r\n" end
function hook.help() return "214-help hook\r\n214 2.0.0 end\r\n" end
function hook.rset() return "250 2.0.0 rset hook\r\n" end
function hook.quit() return "221 2.0.0 quit hook\r\n" end
headers = {}
function hook.header(h) headers[client.id_log] = (headers[client.id_log] or 0) + 1 end
function hook.dot(path)
  local f = io.open(path, "rb"); local m = f:read("a"); f:close()
  if m:find("REFUSE ME", 1, true) then return "550 5.7.1 refused at dot\r\n" end
  message.add_header("X-Headers-Seen", tostring(headers[client.id_log]))
  message.change_header("X-Remove", 1, nil)
end
function hook.reset() syslog.info("reset hook ran") end
function hook.close() syslog.info("close hook ran for " .. client.id_log) end
'''


class HookEffects(MailhookTest):
    def setUp(self):
        super().setUp()
        self.start_both(SCRIPT)

    def test_accept_reply_replaces_greeting(self):
        c = SmtpClient(self.front_port)
        code, lines = c.read_reply()
        self.assertEqual(code, 220)
        self.assertIn("welcome 127.0.0.1 port", lines[0])
        c.close()

    def test_accept_refusal_is_sent_instead_of_greeting_and_closes(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", self.front_port))
        data = s.recv(4096).decode()
        self.assertEqual(data, "554 5.7.1 go away 127.0.0.2\r\n")
        self.assertEqual(s.recv(1), b"")
        s.close()

    def test_helo_ehlo_mail_rcpt_refusals_carry_the_scripts_code_and_text(self):
        c = self.client()
        self.assertEqual(c.cmd("HELO bad.example"), (550, ["550 5.7.1 helo bad.example"]))
        self.assertEqual(c.cmd("EHLO bad.example"), (550, ["550 5.7.1 ehlo bad.example"]))
        self.assertEqual(c.cmd("EHLO good.example")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<spam@x.example>"),
                         (550, ["550 5.7.1 sender spam@x.example MAIL FROM:<spam@x.example>"]))
        self.assertEqual(c.cmd("MAIL FROM:<a@x.example>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<blocked@x.example>"), (550, ["550 5.1.1 no blocked@x.example"]))
        code, lines = c.cmd("RCPT TO:<who@x.example>")
        self.assertEqual(code, 250)
        self.assertRegex(lines[0], r"trans=\w+T1 log=\w+")

    def test_command_hooks_reply(self):
        c = self.client()
        self.assertEqual(c.cmd("NOOP"), (250, ["250 2.0.0 noop hook"]))
        self.assertEqual(c.cmd("HELP"), (214, ["214-help hook", "214 2.0.0 end"]))
        self.assertEqual(c.cmd("RSET"), (250, ["250 2.0.0 rset hook"]))
        self.assertEqual(c.cmd("WIBBLE x"), (502, ["502 5.5.2 what is WIBBLE x"]))
        self.assertEqual(c.cmd("QUIT"), (221, ["221 2.0.0 quit hook"]))
        self.assertTrue(c.closed())

    def test_dot_refusal_spools_nothing(self):
        c = self.client()
        c.cmd("EHLO c.example")
        code, lines = self.send_message(c, body="Subject: x\r\n\r\nREFUSE ME\r\n")
        self.assertEqual((code, lines), (550, ["550 5.7.1 refused at dot"]))
        self.assertEqual(self.spooled(), [])

    def test_accepted_message_is_spooled_once_with_changes_and_received_header(self):
        c = self.client()
        c.cmd("EHLO c.example")
        code, lines = self.send_message(c, body="Subject: x\r\nX-Remove: me\r\nFrom: a@example.com\r\n\r\n..dot\r\n")
        self.assertEqual(code, 250, lines)
        files = self.spooled()
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            text = f.read().decode()
        envelope, message = text.split("\r\n\r\n", 1)
        self.assertIn("X-Mailhook-From: <a@example.com>", envelope)
        self.assertIn("X-Mailhook-To: <b@example.com>", envelope)
        self.assertTrue(message.startswith("Received: from c.example (unknown [127.0.0.1])"), message)
        self.assertIn("X-Headers-Seen: 3\r\n", message)
        self.assertNotIn("X-Remove", message)
        self.assertIn("\r\n\r\n.dot\r\n", message)  # dot-unstuffed
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_pipelined_commands_get_replies_in_order(self):
        c = self.client()
        c.send("EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<blocked1@x.example>\r\n"
               "RCPT TO:<ok@x.example>\r\nDATA\r\n")
        replies = [c.read_reply()[0] for _ in range(5)]
        self.assertEqual(replies, [250, 250, 550, 250, 354])
        c.send("Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual([c.read_reply()[0] for _ in range(3)], [250, 250, 221])
        self.assertEqual(len(self.spooled()), 1)

    def test_reset_and_close_hooks_run(self):
        c = self.client()
        c.cmd("EHLO c.example")
        self.send_message(c)
        c.cmd("QUIT")
        wait_for(lambda: "close hook ran" in self.policyd.output(), what="close hook log")
        self.assertIn("reset hook ran", self.policyd.output())


DOT_READS_PATH = r'''
function hook.dot(path)
  local f = io.open(path, "rb")
  if not f then return "451 4.3.0 no message file\r\n" end
  local m = f:read("a"); f:close()
  if m:find("REFUSE ME", 1, true) then return "550 5.7.1 refused at dot\r\n" end
  message.add_header("X-Size", tostring(#m))
end
'''

DOT_WITHOUT_PARAMETER = r'''
function hook.dot()
  message.add_header("X-Stamp", "stamped")
end
'''

DOT_READS_CLIENT_MSG_FILE = r'''
function hook.dot()
  local f = io.open(client.msg_file, "rb")
  local m = f:read("a"); f:close()
  if m:find("REFUSE ME", 1, true) then return "550 5.7.1 refused at dot\r\n" end
end
'''


class DotAlone(MailhookTest):
    """hook.dot is the only hook: the message reaches policyd only when the
    script asks for it (a parameter, or client.msg_file in its text)."""

    def message_bytes(self):
        return sample(scrape(self.metrics_port), "mailhook_policyd_message_bytes_total")

    def start(self, script):
        self.metrics_port = free_port()
        self.start_both(script, policyd_args=["--metrics", "127.0.0.1:%d" % self.metrics_port])

    def test_a_dot_hook_with_a_parameter_reads_the_whole_message(self):
        self.start(DOT_READS_PATH)
        c = self.client()
        c.cmd("EHLO c.example")
        body = "Subject: x\r\n\r\nhello\r\n"
        self.assertEqual(self.send_message(c, body=body)[0], 250)
        self.assertEqual(self.send_message(c, body="Subject: x\r\n\r\nREFUSE ME\r\n"),
                         (550, ["550 5.7.1 refused at dot"]))
        with open(self.spooled()[0], "rb") as f:
            self.assertIn(b"X-Size: %d\r\n" % len(body), f.read())
        self.assertEqual(self.message_bytes(), len(body) + len("Subject: x\r\n\r\nREFUSE ME\r\n"))

    def test_a_dot_hook_without_a_parameter_gets_no_message_and_still_changes_it(self):
        self.start(DOT_WITHOUT_PARAMETER)
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(self.send_message(c)[0], 250)
        with open(self.spooled()[0], "rb") as f:
            self.assertIn(b"X-Stamp: stamped\r\n", f.read())
        self.assertEqual(self.message_bytes(), 0)

    def test_client_msg_file_in_the_script_asks_for_the_message(self):
        self.start(DOT_READS_CLIENT_MSG_FILE)
        c = self.client()
        c.cmd("EHLO c.example")
        self.assertEqual(self.send_message(c, body="Subject: x\r\n\r\nREFUSE ME\r\n"),
                         (550, ["550 5.7.1 refused at dot"]))
        self.assertEqual(self.send_message(c)[0], 250)


class MalformedSmtp(MailhookTest):
    def setUp(self):
        super().setUp()
        self.start_both("function hook.rcpt(r) end", front_args=["--max-recipients", "2",
                                                                 "--max-message-size", "1000"])
        self.c = self.client()
        self.c.cmd("EHLO c.example")

    def test_line_over_512_octets_gets_500(self):
        self.assertEqual(self.c.cmd("NOOP " + "x" * 600)[0], 500)
        self.assertEqual(self.c.cmd("NOOP")[0], 250)  # still in sync

    def test_commands_out_of_sequence_get_503(self):
        self.assertEqual(self.c.cmd("RCPT TO:<a@example.com>")[1], ["503 5.5.1 Bad sequence of commands"])
        self.assertEqual(self.c.cmd("DATA")[0], 503)

    def test_too_many_recipients_get_452_at_the_limit(self):
        self.c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(self.c.cmd("RCPT TO:<1@example.com>")[0], 250)
        self.assertEqual(self.c.cmd("RCPT TO:<2@example.com>")[0], 250)
        self.assertEqual(self.c.cmd("RCPT TO:<3@example.com>")[1], ["452 4.5.3 Too many recipients"])

    def test_bare_lf_in_data_refuses_the_message_and_no_second_message_appears(self):
        code, lines = self.send_message(self.c, body="Subject: x\r\n\r\na\n.\nMAIL FROM:<evil@x>\r\nb\r\n")
        self.assertEqual(code, 550)
        self.assertIn("5.5.2", lines[0])
        self.assertEqual(self.spooled(), [])
        self.assertEqual(self.c.cmd("NOOP")[0], 250)

    def test_nul_in_data_refuses_the_message(self):
        code, _ = self.send_message(self.c, body="Subject: x\r\n\r\na\0b\r\n")
        self.assertEqual(code, 554)
        self.assertEqual(self.spooled(), [])

    def test_size_limit_at_its_edge(self):
        self.assertEqual(self.c.cmd("MAIL FROM:<a@example.com> SIZE=1001")[1], ["552 5.3.4 Message size exceeds fixed limit"])
        body = "Subject: x\r\n\r\n" + "y" * (1000 - 16) + "\r\n"
        self.assertEqual(len(body), 1000)
        self.assertEqual(self.send_message(self.c, body=body)[0], 250)
        self.assertEqual(self.send_message(self.c, body=body + "z\r\n")[0], 552)
        self.assertEqual(len(self.spooled()), 1)


if __name__ == "__main__":
    unittest.main()

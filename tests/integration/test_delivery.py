"""Delivery: relay to a smart host (250 only after its 250; 4xx, 5xx and a
dead smart host), and the spool holding each message exactly once."""

import socket
import threading
import unittest

from harness import MailhookTest, Sink, free_port, wait_for

SCRIPT = 'function hook.dot(p) message.add_header("X-Policy", "seen") end'


class SmartHostRelay(MailhookTest):
    def relay_to(self, sink_port):
        self.start_both(SCRIPT, front_args=["--smart-host", "127.0.0.1:%d" % sink_port])
        c = self.client()
        c.cmd("EHLO client.example")
        return c

    def test_client_gets_250_only_after_the_smart_hosts_250(self):
        hold = threading.Event()
        sink = Sink(hold=hold)
        self.addCleanup(sink.stop)
        c = self.relay_to(sink.port)
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("DATA")
        c.send("Subject: relay\r\n\r\n..leading dot\r\n.\r\n")
        self.assertTrue(sink.dot_received.wait(10))
        c.sock.settimeout(0.5)  # the sink holds its 250: the client must hear nothing yet
        with self.assertRaises(socket.timeout):
            c.sock.recv(1)
        c.sock.settimeout(10)
        hold.set()
        code, lines = c.read_reply()
        self.assertEqual(code, 250, lines)
        wait_for(lambda: len(sink.messages) == 1, what="sink message")
        sender, rcpts, data = sink.messages[0]
        self.assertEqual(sender, "<a@example.com>")
        self.assertEqual(rcpts, ["<b@example.com>"])
        text = data.decode()
        self.assertTrue(text.startswith("Received: from client.example"), text)
        self.assertIn("X-Policy: seen\r\n", text)
        self.assertIn("\r\n.leading dot\r\n", text)
        self.assertEqual(self.spooled(), [])

    def test_smart_host_4xx_gives_451_4_4_1(self):
        sink = Sink(fail_at="rcpt", fail_reply="450 4.2.0 busy")
        self.addCleanup(sink.stop)
        c = self.relay_to(sink.port)
        self.assertEqual(self.send_message(c)[1], ["451 4.4.1 Smart host unavailable, try again later"])

    def test_smart_host_5xx_is_passed_on(self):
        sink = Sink(fail_at="dot", fail_reply="554 5.7.1 sink refuses this")
        self.addCleanup(sink.stop)
        c = self.relay_to(sink.port)
        self.assertEqual(self.send_message(c)[1], ["554 5.7.1 sink refuses this"])
        self.assertEqual(sink.messages, [])

    def test_connections_to_the_smart_host_are_reused_and_pipelined(self):
        sink = Sink(ehlo=["PIPELINING"])
        self.addCleanup(sink.stop)
        c = self.relay_to(sink.port)
        for i in range(3):
            self.assertEqual(self.send_message(c, rcpts=("b@example.com", "c@example.com"))[0], 250)
        wait_for(lambda: len(sink.messages) == 3, what="three messages at the sink")
        self.assertEqual(sink.sessions, 1)  # one connection for all three
        self.assertEqual([m[1] for m in sink.messages], [["<b@example.com>", "<c@example.com>"]] * 3)

    def test_a_kept_connection_the_smart_host_closed_is_replaced(self):
        sink = Sink(ehlo=["PIPELINING"])
        self.addCleanup(sink.stop)
        c = self.relay_to(sink.port)
        self.assertEqual(self.send_message(c)[0], 250)
        sink.drop_connections()  # the kept connection dies while idle
        wait_for(lambda: not sink.open, what="the sink dropped its sessions")
        self.assertEqual(self.send_message(c)[0], 250)  # a fresh connection, no error for the client
        wait_for(lambda: len(sink.messages) == 2, what="both messages at the sink")
        self.assertEqual(sink.sessions, 2)

    def test_without_pipelining_one_command_at_a_time(self):
        sink = Sink(fail_at="rcpt", fail_reply="550 5.1.1 no such user")
        self.addCleanup(sink.stop)
        c = self.relay_to(sink.port)
        self.assertEqual(self.send_message(c)[1], ["550 5.1.1 no such user"])
        self.assertEqual([x.split(":")[0] for x in sink.commands], ["MAIL FROM", "RCPT TO"])

    def test_smart_host_down_gives_451_4_4_1(self):
        c = self.relay_to(free_port())
        self.assertEqual(self.send_message(c)[0], 451)


class EsmtpParameters(MailhookTest):
    def test_dsn_body_and_smtputf8_reach_a_smart_host_that_offers_them(self):
        sink = Sink(ehlo=["8BITMIME", "SMTPUTF8", "DSN"])
        self.addCleanup(sink.stop)
        self.start_both(SCRIPT, front_args=["--smart-host", "127.0.0.1:%d" % sink.port])
        c = self.client()
        code, lines = c.cmd("EHLO client.example")
        for ext in ("250-SMTPUTF8", "250-DSN", "250-8BITMIME"):
            self.assertTrue(any(l.startswith(ext) or l == ext.replace("-", " ") for l in lines), (ext, lines))
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159 SIZE=100")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send("Subject: t\r\n\r\n8bit \xc3\xa9\r\n.\r\n")
        self.assertEqual(c.read_reply()[0], 250)
        self.assertEqual(sink.commands, ["MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159",
                                         "RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com"])

    def test_parameters_a_smart_host_does_not_offer_are_left_out(self):
        sink = Sink(ehlo=["8BITMIME"])
        self.addCleanup(sink.stop)
        self.start_both(SCRIPT, front_args=["--smart-host", "127.0.0.1:%d" % sink.port])
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME RET=FULL")
        c.cmd("RCPT TO:<b@example.com> NOTIFY=NEVER")
        c.cmd("DATA")
        c.send("Subject: t\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.read_reply()[0], 250)
        self.assertEqual(sink.commands, ["MAIL FROM:<a@example.com> BODY=8BITMIME", "RCPT TO:<b@example.com>"])

    def test_unknown_or_malformed_parameters_get_555(self):
        self.start_both(SCRIPT)
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com> FOO=bar")[1], ["555 5.5.4 Unsupported or malformed parameter"])
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com> BODY=BINARYMIME")[0], 555)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com> body=8bitmime")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@example.com> NOTIFY=SOMETIMES")[0], 555)


class SmugglingThroughTheRelay(MailhookTest):
    """SMTP smuggling (CVE-2023-51764) end to end: each bare-line-end
    variant refuses the message, and no second message reaches the smart host."""

    def test_no_variant_ever_relays_a_smuggled_message(self):
        sink = Sink()
        self.addCleanup(sink.stop)
        self.start_both(SCRIPT, front_args=["--smart-host", "127.0.0.1:%d" % sink.port])
        smuggled = "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
        for end in ("\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n"):
            c = self.client()
            c.cmd("EHLO client.example")
            c.cmd("MAIL FROM:<a@example.com>")
            c.cmd("RCPT TO:<b@example.com>")
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send("Subject: outer\r\n\r\nhello" + end + smuggled + ".\r\n")
            code, lines = c.read_reply()
            self.assertEqual(code, 550, (repr(end), lines))
            self.assertIn("5.5.2", lines[0])
            self.assertEqual(c.cmd("NOOP")[0], 250)  # in sync: nothing of the payload ran as commands
            self.assertEqual(c.cmd("QUIT")[0], 221)
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c)[0], 250)
        wait_for(lambda: len(sink.messages) == 1, what="the one clean message")
        self.assertEqual(len(sink.messages), 1)
        self.assertEqual(sink.commands, ["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"])


class Spool(MailhookTest):
    def test_each_accepted_message_is_spooled_exactly_once(self):
        self.start_both(SCRIPT)
        c = self.client()
        c.cmd("EHLO client.example")
        for i in range(5):
            self.assertEqual(self.send_message(c, body="Subject: %d\r\n\r\nbody %d\r\n" % (i, i))[0], 250)
        self.assertEqual(self.send_message(c, rcpts=("x@example.com", "y@example.com"))[0], 250)
        files = self.spooled()
        self.assertEqual(len(files), 6)
        subjects = []
        for path in files:
            with open(path, "rb") as f:
                text = f.read().decode()
            self.assertIn("X-Policy: seen", text)
            subjects += [l for l in text.split("\r\n") if l.startswith("Subject:")]
        self.assertEqual(sorted(subjects), sorted(["Subject: %d" % i for i in range(5)] + ["Subject: t"]))

    def test_unwritable_spool_gives_452_4_3_1(self):
        self.start_both(SCRIPT)
        import os, shutil
        shutil.rmtree(self.spool)
        with open(self.spool, "w") as f:  # a file where the directory was
            f.write("x")
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c)[1], ["452 4.3.1 Insufficient system storage, try again later"])


if __name__ == "__main__":
    unittest.main()

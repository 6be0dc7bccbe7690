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

    def test_smart_host_down_gives_451_4_4_1(self):
        c = self.relay_to(free_port())
        self.assertEqual(self.send_message(c)[0], 451)


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

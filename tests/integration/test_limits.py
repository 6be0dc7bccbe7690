"""Front limits at their edges: connections per client address and in
total, and the idle timeouts between commands and inside DATA."""

import time
import unittest

from harness import MailhookTest, SmtpClient


class ConnectionLimits(MailhookTest):
    def admitted_client(self):
        """A session once the front admits one (the start-up probe's
        connection may still hold a slot for a moment)."""
        deadline = time.monotonic() + 5
        while True:
            c = SmtpClient(self.front_port)
            code, lines = c.read_reply()
            if code == 220:
                self.addCleanup(c.close)
                return c
            c.close()
            self.assertLess(time.monotonic(), deadline, lines)

    def test_connections_per_ip_at_the_limit(self):
        self.start_both("function hook.rcpt(r) end", front_args=["--max-connections-per-ip", "2"])
        first = self.admitted_client()
        second = self.client()
        third = SmtpClient(self.front_port)
        self.assertEqual(third.read_reply(), (421, ["421 4.7.0 Too many connections, try again later"]))
        self.assertTrue(third.closed())
        first.cmd("QUIT")
        self.assertTrue(first.closed())
        self.admitted_client()  # the slot is free again once the first session ended

    def test_total_connections_at_the_limit(self):
        self.start_both("function hook.rcpt(r) end", front_args=["--max-connections", "1"])
        self.admitted_client()
        extra = SmtpClient(self.front_port)
        self.assertEqual(extra.read_reply()[0], 421)


class IdleTimeouts(MailhookTest):
    def test_command_timeout_closes_with_421_4_4_2(self):
        self.start_both("function hook.rcpt(r) end", front_args=["--command-timeout", "1"])
        c = self.client()
        self.assertEqual(c.read_reply(), (421, ["421 4.4.2 Timeout exceeded, closing connection"]))
        self.assertTrue(c.closed())

    def test_data_timeout_closes_and_spools_nothing(self):
        self.start_both("function hook.rcpt(r) end", front_args=["--data-timeout", "1"])
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<b@example.com>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send("Subject: half a message\r\n")
        self.assertEqual(c.read_reply()[0], 421)
        self.assertTrue(c.closed())
        self.assertEqual(self.spooled(), [])


if __name__ == "__main__":
    unittest.main()

"""The front balances sessions over several policyd replicas (--policyd
ipv4:a,b,c, gRPC round robin): a session stays on one replica for its
whole life; a replica that dies fails only its own open sessions (451
4.3.0) while new sessions go to the others; a replica that comes back
gets sessions again. Three policyd processes on loopback."""

import re
import signal
import unittest

from harness import MailhookTest, SmtpClient, free_port, wait_for

SCRIPT = 'function hook.rcpt(r) return "250 2.1.5 ok from replica %s\\r\\n" end\n'


class Balancing(MailhookTest):
    def setUp(self):
        super().setUp()
        self.ports = {name: free_port() for name in "ABC"}
        self.replicas = {}
        for name, port in self.ports.items():
            self.start_replica(name)
        target = "ipv4:" + ",".join("127.0.0.1:%d" % p for p in self.ports.values())
        self.start_front(policyd_target=target)

    def start_replica(self, name):
        self.replicas[name] = self.start_policyd(SCRIPT % name, port=self.ports[name])

    def session(self):
        """An open session after EHLO and MAIL; returns (client, replica)."""
        c = SmtpClient(self.front_port)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
        return c, self.replica_of(c)

    def replica_of(self, c):
        code, lines = c.cmd("RCPT TO:<r@example.com>")
        self.assertEqual(code, 250, lines)
        return re.match(r"250 2\.1\.5 ok from replica (\w)", lines[0]).group(1)

    def test_sessions_spread_stick_fail_over_and_come_back(self):
        sessions = [self.session() for _ in range(9)]
        self.assertEqual({r for _, r in sessions}, set("ABC"))  # round robin reaches every replica
        for c, r in sessions:
            for _ in range(3):
                self.assertEqual(self.replica_of(c), r)  # sticky: every event of a session on one replica

        self.replicas["B"].kill()
        for c, r in sessions:
            code, lines = c.cmd("RCPT TO:<again@example.com>")
            if r == "B":
                self.assertEqual((code, lines), (451, ["451 4.3.0 Policy service unavailable, try again later"]))
            else:
                self.assertEqual(code, 250, lines)
                self.assertIn("replica " + r, lines[0])  # the others' sessions go on, on their replica

        fresh = [self.session() for _ in range(12)]  # none fails: new sessions go to A and C
        self.assertEqual({r for _, r in fresh}, {"A", "C"})
        for c, _ in sessions + fresh:
            c.cmd("QUIT")

        self.start_replica("B")  # the same address comes back

        def reaches_b():
            c, r = self.session()
            c.cmd("QUIT")
            return r == "B"

        wait_for(reaches_b, timeout=20, what="a session on the restarted replica")


if __name__ == "__main__":
    unittest.main()

"""The link's promises with --policy-streams (sessions share long-lived
gRPC streams, issue 22): the balancing, failover and scale-out suites and
the SMTP-level failure tests run unchanged, through the shared streams,
and a pipelined burst of sessions all get their own replies."""

import threading
import unittest

import test_balancing
import test_failures
from harness import MailhookTest

MUX = ("--policy-streams", "4", "--policy-stream-age", "2")


class MuxBalancing(test_balancing.Balancing):
    FRONT_ARGS = MUX


class MuxScaleOut(test_balancing.ScaleOut):
    FRONT_ARGS = MUX


class MuxPolicydDown(test_failures.PolicydDown):
    FRONT_ARGS = MUX


class ManySessionsShareStreams(MailhookTest):
    FRONT_ARGS = ("--policy-streams", "2")

    def test_concurrent_sessions_each_get_their_own_reply(self):
        self.start_both('function hook.rcpt(r) return "250 2.1.5 ok " .. client.id_log .. " " .. r .. "\\r\\n" end\n')
        errors = []

        def one(i):
            try:
                c = self.client()
                c.cmd("EHLO c%d.example" % i)
                self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
                for k in range(3):
                    code, lines = c.cmd("RCPT TO:<r%d-%d@example.com>" % (i, k))
                    self.assertEqual(code, 250, lines)
                    self.assertIn("r%d-%d@example.com" % (i, k), lines[0])
                c.cmd("QUIT")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("session %d: %r" % (i, e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])


class LargeMessageOnASharedStream(MailhookTest):
    """One stream (--policy-streams 1) and a window of 4 events
    (--max-pending-events 4): a 5 MiB message crosses as about 80 chunks,
    paced by policyd's credit, while another session on the same stream is
    answered; nothing is ended for being over its window."""
    FRONT_ARGS = ("--policy-streams", "1")

    def test_a_large_message_is_paced_and_the_neighbour_answered(self):
        self.start_both('n = 0\nfunction hook.content(c) n = n + #c end\n'
                        'function hook.noop() return "250 2.0.0 alive\\r\\n" end\n',
                        policyd_args=["--max-pending-events", "4"],
                        front_args=["--max-message-size", "20M"])
        big, small = self.client(), self.client()
        big.cmd("EHLO big.example")
        small.cmd("EHLO small.example")
        body = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 5000
        result = {}

        def send_big():
            result["reply"] = self.send_message(big, body=body)

        t = threading.Thread(target=send_big)
        t.start()
        answered = 0
        while t.is_alive() or answered == 0:
            self.assertEqual(small.cmd("NOOP"), (250, ["250 2.0.0 alive"]))
            answered += 1
        t.join(60)
        self.assertEqual(result["reply"][0], 250, result)
        self.assertEqual(len(self.spooled()), 1)
        self.assertNotIn("ended by policyd", self.policyd.output())


if __name__ == "__main__":
    unittest.main()

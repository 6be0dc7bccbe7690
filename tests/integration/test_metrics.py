"""The front's Prometheus metrics (--metrics): a real scrape after real
SMTP traffic shows the sessions, replies, deliveries and policy figures."""

import re
import urllib.request
import unittest

from harness import MailhookTest, free_port


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


def value(text, sample):
    m = re.search(r"^" + re.escape(sample) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


class FrontMetrics(MailhookTest):
    def test_a_scrape_counts_what_happened(self):
        port = free_port()
        self.start_both('function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\\r\\n" end end',
                        front_args=["--metrics", "127.0.0.1:%d" % port])
        before = scrape(port)
        self.assertEqual(value(before, 'mailhook_front_messages_total{delivery="spool"}'), 0)
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c)[0], 250)
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 550)
        text = scrape(port)
        self.assertIn("# TYPE mailhook_front_policy_seconds histogram", text)
        self.assertEqual(value(text, 'mailhook_front_messages_total{delivery="spool"}'), 1)
        self.assertGreater(value(text, 'mailhook_front_message_bytes_total{delivery="spool"}'), 0)
        self.assertEqual(value(text, "mailhook_front_sessions_open"), 1)
        self.assertGreaterEqual(value(text, "mailhook_front_sessions_total"), 1)
        self.assertEqual(value(text, 'mailhook_front_replies_total{class="5xx"}'), 1)
        self.assertGreaterEqual(value(text, 'mailhook_front_replies_total{class="2xx"}'), 5)
        self.assertEqual(value(text, "mailhook_front_policy_seconds_count"), 2)  # two RCPTs crossed to policyd
        self.assertEqual(value(text, "mailhook_policy_failures_total"), 0)
        with self.assertRaises(urllib.error.HTTPError):
            urllib.request.urlopen("http://127.0.0.1:%d/other" % port, timeout=5)


if __name__ == "__main__":
    unittest.main()

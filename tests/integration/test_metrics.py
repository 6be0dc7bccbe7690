"""The front's Prometheus metrics (--metrics): a real scrape after real
SMTP traffic shows the sessions, replies, deliveries and policy figures."""

import urllib.error
import unittest

from harness import MailhookTest, free_port, sample, scrape, total, wait_for


class FrontMetrics(MailhookTest):
    def test_a_scrape_counts_what_happened(self):
        port = free_port()
        self.start_both('function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\\r\\n" end end',
                        front_args=["--metrics", "127.0.0.1:%d" % port])
        before = scrape(port)
        self.assertEqual(sample(before, 'mailhook_front_messages_total{delivery="spool"}'), 0)
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c)[0], 250)
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 550)
        text = scrape(port)
        self.assertIn("# TYPE mailhook_front_policy_seconds histogram", text)
        self.assertEqual(sample(text, 'mailhook_front_messages_total{delivery="spool"}'), 1)
        self.assertGreater(sample(text, 'mailhook_front_message_bytes_total{delivery="spool"}'), 0)
        self.assertEqual(sample(text, "mailhook_front_sessions_open"), 1)
        self.assertGreaterEqual(sample(text, "mailhook_front_sessions_total"), 1)
        self.assertEqual(sample(text, 'mailhook_front_replies_total{class="5xx"}'), 1)
        self.assertGreaterEqual(sample(text, 'mailhook_front_replies_total{class="2xx"}'), 5)
        self.assertEqual(sample(text, "mailhook_front_policy_seconds_count"), 2)  # two RCPTs crossed to policyd
        self.assertEqual(sample(text, "mailhook_policy_failures_total"), 0)
        with self.assertRaises(urllib.error.HTTPError):
            urllib.request.urlopen("http://127.0.0.1:%d/other" % port, timeout=5)


POLICY = r'''
function hook.mail(s) if s == "oops@example.com" then error("script bug") end end
function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\r\n" end end
function hook.data() if client.input == "DATA" and slow then while true do end end end
function hook.noop() slow = true end
'''


class PolicydMetricsAndLog(MailhookTest):
    def test_hook_latency_errors_timeouts_and_the_transaction_line(self):
        port = free_port()
        self.start_both(POLICY, policyd_args=["--metrics", "127.0.0.1:%d" % port, "--hook-timeout", "200"])
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("MAIL FROM:<oops@example.com>")[0], 250)  # error: default reply
        c.cmd("RSET")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 550)
        c.cmd("NOOP")
        self.assertEqual(c.cmd("DATA")[0], 451)  # the hook ran past --hook-timeout
        text = scrape(port)
        self.assertIn("# TYPE mailhook_policyd_hook_seconds histogram", text)
        self.assertEqual(sample(text, 'mailhook_policyd_hook_seconds_count{hook="rcpt"}'), 2)
        self.assertEqual(sample(text, 'mailhook_policyd_hook_errors_total{hook="mail"}'), 1)
        self.assertEqual(sample(text, 'mailhook_policyd_hook_timeouts_total{hook="data"}'), 1)
        self.assertEqual(total(text, "mailhook_policyd_replies_total", class_="5xx"), 1)
        self.assertEqual(total(text, "mailhook_policyd_replies_total", hook="rcpt", class_="5xx"), 1)
        self.assertEqual(total(text, "mailhook_policyd_replies_total", hook="data", class_="4xx"), 1)
        self.assertEqual(sample(text, "mailhook_policyd_sessions_open"), 1)
        self.assertEqual(sample(text, "mailhook_policyd_sessions_total"), 1)
        self.assertEqual(text.count("# TYPE mailhook_policyd_hook_seconds "), 1)  # one family, one TYPE line
        c.cmd("QUIT")
        c.close()
        log = lambda: self.policyd.output()
        wait_for(lambda: "transactions=2" in log(), what="the session line")
        self.assertRegex(log(), r"session=\S+ trans=\S+ client=127\.0\.0\.1 from=<a@example\.com> mail=- "
                                r"rcpt=<b@example\.com>:-,<no@example\.com>:550 data=451 eom=- size=0 changes=0")
        self.assertRegex(log(), r"session=\S+ trans=\S+ client=127\.0\.0\.1 from=<oops@example\.com> mail=- rcpt=- ")
        self.assertRegex(log(), r"session=\S+ client=127\.0\.0\.1 helo=client\.example auth=- transactions=2 ")
        wait_for(lambda: sample(scrape(port), "mailhook_policyd_sessions_open") == 0, what="session closed")


if __name__ == "__main__":
    unittest.main()

"""Shadow mode (--shadow, --shadow-script) and session traces (--trace,
client.trace), in both shapes: behind the front, and behind a milter
(miltertest)."""

import os
import subprocess
import unittest

from harness import MailhookTest, SmtpClient, free_port, sample, scrape, total, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))

REFUSER = r'''
function hook.rcpt(r)
  if r:find("@blocked%.example$") then return "550 5.7.1 " .. r .. " is blocked\r\n" end
end
function hook.dot(path) message.add_header("X-Shadow-Test", "changed") end
'''

ENFORCER = r'''
function hook.rcpt(r) if r == "a@example.com" then return "550 5.1.1 enforced\r\n" end end
'''

MILTER_SCRIPT = os.path.join(HERE, "milter", "shadow.mt.lua")


class ShadowFront(MailhookTest):
    def transaction(self, rcpts):
        c = self.client()
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<s@example.com>")
        return c, [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]

    def test_shadow_logs_what_it_would_do_and_lets_the_mail_through(self):
        metrics = free_port()
        self.start_both(REFUSER, policyd_args=["--shadow", "--metrics", "127.0.0.1:%d" % metrics])
        c, replies = self.transaction(["x@blocked.example"])
        self.assertEqual(replies[0][0], 250)  # not refused
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: s\r\n\r\nhi\r\n.")[0], 250)
        with open(self.spooled()[0], "rb") as f:
            self.assertNotIn(b"X-Shadow-Test", f.read())  # no change made
        log = self.policyd.output()
        self.assertIn("hook.rcpt: would reply 550 5.7.1 x@blocked.example is blocked (shadow)", log)
        self.assertIn("hook.dot: would make 1 message change(s) (shadow)", log)
        self.assertRegex(log, r"policy=\S+ \(shadow\)")
        self.assertEqual(total(scrape(metrics), "mailhook_policyd_shadow_replies_total", hook="rcpt"), 1)

    def test_a_shadow_script_beside_an_enforcing_one(self):
        shadow = self.write_script(REFUSER, name="new.lua")
        self.start_both(ENFORCER, policyd_args=["--shadow-script", shadow])
        c, replies = self.transaction(["a@example.com", "x@blocked.example", "ok@example.com"])
        self.assertEqual(replies[0], (550, ["550 5.1.1 enforced"]))  # the enforcing script still decides
        self.assertEqual(replies[1][0], 250)                          # the new script only says what it would do
        self.assertEqual(replies[2][0], 250)
        self.assertIn("new.lua hook.rcpt: would reply 550 5.7.1 x@blocked.example is blocked (shadow)",
                      self.policyd.output())


class TraceFront(MailhookTest):
    SCRIPT = ENFORCER + r'''
function hook.ehlo(h) if h == "debug.example" then client.trace = true end end
'''

    def test_trace_cidr_logs_only_matching_sessions(self):
        self.start_both(policyd_args=["--trace", "127.0.0.2/32"])
        for ip in ("127.0.0.2", "127.0.0.1"):
            c = SmtpClient(self.front_port, source=ip)
            self.addCleanup(c.close)
            c.read_reply()
            c.cmd("EHLO c.example")
            c.cmd("MAIL FROM:<s@example.com>")
            self.assertEqual(c.cmd("RCPT TO:<a@example.com>")[0], 550)
            c.cmd("QUIT")
        wait_for(lambda: self.policyd.output().count(" end\n") == 2, what="both sessions ended")
        log = self.policyd.output()
        traced = [l for l in log.splitlines() if "trace session=" in l]
        self.assertTrue(any('event rcpt seq=' in l and 'input="RCPT TO:<a@example.com>"' in l and
                            'default="250 2.1.5 Ok"' in l for l in traced), traced)
        self.assertTrue(any('hook.rcpt("a@example.com") -> 550 5.1.1 enforced in ' in l for l in traced), traced)
        sessions = {l.split("trace session=")[1].split()[0] for l in traced}
        self.assertEqual(len(sessions), 1)  # 127.0.0.1 is not traced

    def test_a_script_turns_the_trace_on(self):
        self.start_both()
        c = self.client()
        c.cmd("EHLO quiet.example")
        c.cmd("EHLO debug.example")
        c.cmd("MAIL FROM:<s@example.com>")
        c.cmd("RCPT TO:<a@example.com>")
        log = self.policyd.output()
        self.assertNotIn('hook.ehlo("quiet.example")', log)
        self.assertIn('hook.rcpt("a@example.com") -> 550 5.1.1 enforced', log)


class ShadowTraceMilter(MailhookTest):
    def test_shadow_and_trace_behind_a_milter(self):
        port = free_port()
        self.start_policyd(REFUSER, args=["--milter", "inet:%d@127.0.0.1" % port, "--shadow",
                                          "--trace", "192.0.2.0/24"])
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="milter listening")
        r = subprocess.run(["miltertest", "-s", MILTER_SCRIPT], capture_output=True, timeout=60,
                           env=dict(os.environ, PORT=str(port)))
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode() + self.policyd.output()[-3000:])
        log = self.policyd.output()
        self.assertIn("would reply 550 5.7.1 x@blocked.example is blocked (shadow)", log)
        self.assertIn('hook.rcpt("x@blocked.example") -> 550 5.7.1 x@blocked.example is blocked in ', log)


if __name__ == "__main__":
    unittest.main()

"""Issue 19, finding 8(d): a catastrophic Lua pattern over client data.

Stock Lua matches patterns in C, where the count hook behind
--hook-timeout never fires: one string.find over a recipient held the
only worker for minutes while every other session waited. policyd's own
string.find/match/gmatch/gsub count their steps and stop at the hook's
deadline. Real policyd (--workers 1) behind a real front, over loopback."""

import unittest

from harness import MailhookTest, wait_for

# 2^28-ish steps of backtracking for stock Lua on the recipient below:
# minutes (about 100 s here); a 500 ms hook timeout must stop it.
SCRIPT = r'''
local CATASTROPHE = string.rep("a?", 28) .. string.rep("a", 28) .. "$"
function hook.rcpt(r)
  syslog.info("matching the recipient")
  if string.find(r, CATASTROPHE) then return "550 5.7.1 matched\r\n" end
end
function hook.helo(h)
  syslog.info("matching the helo")
  local ok = pcall(string.gsub, h, CATASTROPHE, "x")  -- a pcall must not swallow the stop
  return "250 helo survived " .. tostring(ok) .. "\r\n"
end
function hook.noop() return "250 alive\r\n" end
'''

HOSTILE = "a" * 28 + "@example.com"
OVERRUN = ["451 4.3.0 Policy temporarily unavailable, try again later"]


class CatastrophicPattern(MailhookTest):
    def setUp(self):
        super().setUp()
        # The front's own wait for policyd (8 s) is far beyond the hook
        # timeout: an answer from it instead of policyd's means the worker hung.
        self.start_both(SCRIPT, policyd_args=["--workers", "1", "--hook-timeout", "500"],
                        front_args=["--policy-timeout", "8000"])

    def test_find_over_the_recipient_gets_451_while_another_session_is_served(self):
        first = self.client()
        self.assertEqual(first.cmd("EHLO client.example")[0], 250)
        self.assertEqual(first.cmd("MAIL FROM:<a@example.com>")[0], 250)
        first.send("RCPT TO:<%s>\r\n" % HOSTILE)
        wait_for(lambda: "matching the recipient" in self.policyd.output(), what="hook.rcpt matching")
        # The only worker is matching: another session's hook is served as
        # soon as the match stops, long before the front gives up on policyd.
        second = self.client()
        self.assertEqual(second.cmd("NOOP"), (250, ["250 alive"]))
        self.assertEqual(first.read_reply()[1], OVERRUN)
        self.assertIn("hook=rcpt: stopped after --hook-timeout", self.policyd.output())
        self.assertIn("hook ran past --hook-timeout (500 ms)", self.policyd.output())
        # The session goes on, on the same worker.
        self.assertEqual(first.cmd("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(first.cmd("NOOP"), (250, ["250 alive"]))

    def test_pcall_around_gsub_over_the_helo_cannot_keep_the_worker(self):
        c = self.client()
        self.assertEqual(c.cmd("HELO " + "a" * 28 + ".example.com")[1], OVERRUN)
        self.assertIn("hook=helo: stopped after --hook-timeout", self.policyd.output())
        self.assertEqual(self.client().cmd("NOOP"), (250, ["250 alive"]))


if __name__ == "__main__":
    unittest.main()

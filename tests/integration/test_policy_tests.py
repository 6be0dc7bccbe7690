"""mailhook-policyd --test as administrators use it: one line per case,
a summary, the exit status, and clear errors for bad case files."""

import os
import subprocess
import tempfile
import unittest

from harness import POLICYD

SCRIPT = 'function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\\r\\n" end end\n'


class PolicyTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mailhook-cases-")
        with open(os.path.join(self.dir, "policy.lua"), "w") as f:
            f.write(SCRIPT)

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.dir])

    def run_cases(self, text, *args):
        path = os.path.join(self.dir, "t.case")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([POLICYD, "--test", path, "--script", os.path.join(self.dir, "policy.lua"),
                               "--temp-dir", os.path.join(self.dir, "spool")] + list(args),
                              capture_output=True, timeout=60, text=True)

    def test_pass_and_fail_lines_summary_and_exit_status(self):
        r = self.run_cases("case: refused\nsend: EHLO c\nsend: MAIL FROM:<a@b.example>\nsend: RCPT TO:<no@example.com>\n"
                           "expect: 550 5.1.1 no\n\ncase: wrong on purpose\nsend: EHLO c\n"
                           "send: MAIL FROM:<a@b.example>\nsend: RCPT TO:<yes@example.com>\nexpect: 550*\n")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("PASS ") and lines[0].endswith("t.case:1 refused"), lines)
        self.assertRegex(lines[1], r"^FAIL \S+t\.case:7 wrong on purpose: line 11: expected 550\*, got 250 2\.1\.5 Ok$")
        self.assertEqual(lines[-1], "1 passed, 1 failed")

    def test_all_passing_exits_0(self):
        r = self.run_cases("case: ok\nsend: EHLO c\nexpect: 250\n")
        self.assertEqual((r.returncode, r.stdout.splitlines()[-1]), (0, "1 passed, 0 failed"), r.stderr)

    def test_expect_no_line_fails_on_a_line_of_the_reply(self):
        r = self.run_cases("case: a default keyword\nsend: EHLO c\nexpect-no-line: 250 8BIT*\n\n"
                           "case: no such keyword\nsend: EHLO c\nexpect-no-line: 250 XPLAIN\n")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^FAIL \S+t\.case:1 a default keyword: line 3: expected no line 250 8BIT\* in "
                                   r"the reply, got 250 8BITMIME$")
        self.assertTrue(lines[1].startswith("PASS ") and lines[1].endswith("t.case:5 no such keyword"), lines)

    def test_a_malformed_file_names_file_and_line(self):
        for text, line, what in (("case: x\nsend EHLO c\n", 2, 'expected "keyword: value"'),
                                 ("send: EHLO c\n", 1, 'send: before the first "case:" line'),
                                 ("case: x\ndns: a.example BOGUS 1\n", 2, "dns: unknown DNS type BOGUS"),
                                 ("case: x\nfrobnicate: 1\n", 2, 'unknown keyword "frobnicate"'),
                                 ("case: x\nmessage: missing.eml\n", 2, "message: cannot read"),
                                 ("case: x\nclock: 2026-02-30T00:00:00Z\n", 2, "clock: expected a UTC time"),
                                 ("case: x\nclock: 2026-12-01 10:00:00\n", 2, "clock: expected a UTC time"),
                                 ("case: x\nadvance: 5m\n", 2, 'advance: needs a "clock:" line before it'),
                                 ("case: x\nclock: 2026-12-01T10:00:00Z\nadvance: -5m\n", 3,
                                  "advance: expected a positive duration"),
                                 ("case: x\nclock: 2026-12-01T10:00:00Z\nadvance: 5w\n", 3,
                                  "advance: expected a positive duration")):
            r = self.run_cases(text)
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn("t.case:%d: %s" % (line, what), r.stdout)

    def test_scripts_that_do_not_load_are_reported(self):
        with open(os.path.join(self.dir, "broken.lua"), "w") as f:
            f.write("function hook.rcpt(\n")
        r = self.run_cases("script: broken.lua\ncase: x\nsend: EHLO c\nexpect: 250\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("broken.lua:2", r.stdout)


if __name__ == "__main__":
    unittest.main()

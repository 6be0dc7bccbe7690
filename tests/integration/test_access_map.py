"""lua/examples/access_map.lua through the front: its shipped map refuses
over real SMTP, and an edit of the map file takes effect for every worker
without a reload; a broken edit keeps the last good map, logged once."""

import os
import shutil
import unittest

from harness import LUA_DIR, MailhookTest, wait_for


class AccessMapExample(MailhookTest):
    def setUp(self):
        super().setUp()
        maps = os.path.join(self.dir, "maps")
        os.mkdir(maps)
        self.map = os.path.join(maps, "access")
        shutil.copy(os.path.join(LUA_DIR, "examples", "access_map.txt"), self.map)
        os.environ["MAILHOOK_ACCESS_MAP"] = self.map
        self.addCleanup(os.environ.pop, "MAILHOOK_ACCESS_MAP")
        with open(os.path.join(LUA_DIR, "examples", "access_map.lua")) as f:
            script = f.read()
        # Two workers: the map is parsed once per change for both.
        self.start_both(script, policyd_args=["--lua-read-dir", maps, "--lua-env", "MAILHOOK_ACCESS_MAP",
                                              "--workers", "2"])

    def session(self, source=None):
        c = self.client(source=source)
        self.assertEqual(c.cmd("EHLO c.example")[0], 250)
        return c

    def append(self, text):
        with open(self.map, "a") as f:
            f.write(text)

    def test_the_shipped_map_refuses_senders_and_recipients(self):
        c = self.session()
        self.assertEqual(c.cmd("MAIL FROM:<spammer@example.net>"), (554, ["554 5.7.1 Sender blocked"]))
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<closed@example.com>"), (550, ["550 5.1.1 This mailbox is closed"]))
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)

    def test_an_edited_map_applies_to_the_next_lookup_on_every_worker(self):
        self.assertEqual(self.session(source="127.0.0.2").cmd("MAIL FROM:<a@example.org>")[0], 250)
        self.append("127.0.0.2    REJECT Loopback two is listed now\n")
        # Two sessions open at once land on the two workers.
        first, second = self.session(source="127.0.0.2"), self.session(source="127.0.0.2")
        for c in (first, second):
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org>"), (554, ["554 5.7.1 Loopback two is listed now"]))
        self.assertEqual(self.session(source="127.0.0.3").cmd("MAIL FROM:<a@example.org>")[0], 250)

    def test_a_broken_edit_keeps_the_last_good_map_and_is_logged_once(self):
        self.append("127.0.0.2\n")  # a key without a value
        for _ in range(3):
            c = self.session(source="127.0.0.2")
            self.assertEqual(c.cmd("MAIL FROM:<spammer@example.net>"), (554, ["554 5.7.1 Sender blocked"]))
        wait_for(lambda: "a key without a value" in self.policyd.output(), what="the reload error logged")
        self.assertEqual(self.policyd.output().count("a key without a value"), 1, self.policyd.output())
        self.append("  REJECT fixed now\n")  # the continuation gives the key its value
        self.assertEqual(self.session(source="127.0.0.2").cmd("MAIL FROM:<a@example.org>"),
                         (554, ["554 5.7.1 fixed now"]))


if __name__ == "__main__":
    unittest.main()

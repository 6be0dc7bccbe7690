"""Failures: policyd down or slow under both --policy-failure modes, killed
mid-session, hook timeout, memory cap, broken scripts at start and at
reload, --check."""

import os
import signal
import subprocess
import time
import unittest

from harness import POLICYD, MailhookTest, SmtpClient, wait_for, port_open

RCPT_AND_DOT = r'''
function hook.rcpt(r) if r == "no@example.com" then return "550 5.1.1 no\r\n" end end
function hook.dot(p) end
'''


class PolicydDown(MailhookTest):
    def test_tempfail_answers_421_at_connect(self):
        self.start_front()  # nothing listens on the policyd port
        c = SmtpClient(self.front_port)
        self.assertEqual(c.read_reply(), (421, ["421 4.3.0 Policy service unavailable, try again later"]))
        self.assertTrue(c.closed())

    def test_accept_mode_uses_default_replies_and_delivers(self):
        self.start_front(["--policy-failure", "accept"])
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c, rcpts=("no@example.com",))[0], 250)
        self.assertEqual(len(self.spooled()), 1)

    def test_policyd_killed_mid_session_tempfails_the_transaction_and_nothing_is_spooled(self):
        self.start_both(RCPT_AND_DOT)
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
        self.policyd.kill()
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.read_reply()[1], ["451 4.3.0 Policy service unavailable, try again later"])
        self.assertEqual(self.spooled(), [])

    def test_front_reconnects_when_policyd_comes_back(self):
        self.start_both(RCPT_AND_DOT)
        port = self.policyd_port
        self.policyd.kill()
        self.start_policyd(RCPT_AND_DOT, port=port)
        def works():
            c = SmtpClient(self.front_port)
            ok = c.read_reply()[0] == 220
            c.close()
            return ok
        wait_for(works, timeout=15, what="a session after policyd restarted")
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(self.send_message(c)[0], 250)

    def test_policy_timeout_tempfails_the_event(self):
        slow = 'function hook.rcpt(r) local t = os.clock() while os.clock() - t < 2 do end end'
        self.start_both(slow, front_args=["--policy-timeout", "300"])
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[1], ["451 4.3.0 Policy service unavailable, try again later"])


class LuaLimits(MailhookTest):
    ALIVE = 'function hook.noop() return "250 alive\\r\\n" end\n'

    def assert_rcpt_overruns(self, rcpt_hook, policyd_args, log_text):
        """hook.rcpt overruns a limit: that event gets 451, policyd logs it,
        and the next session on the same worker is served."""
        self.start_both(rcpt_hook + "\n" + self.ALIVE, policyd_args=policyd_args)
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[1], ["451 4.3.0 Policy temporarily unavailable, try again later"])
        self.assertIn(log_text, self.policyd.output())
        self.assertEqual(self.client().cmd("NOOP"), (250, ["250 alive"]))

    def test_hook_timeout_gives_451_and_the_next_session_works(self):
        self.assert_rcpt_overruns("function hook.rcpt(r) while true do end end", ["--hook-timeout", "200"],
                                  "--hook-timeout")

    def test_memory_cap_fails_the_hook_only(self):
        self.assert_rcpt_overruns(
            'function hook.rcpt(r) local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end end',
            ["--lua-memory", "8"], "out of --lua-memory")


class Scripts(MailhookTest):
    def test_broken_script_at_start_names_file_and_line(self):
        p = self.start_policyd("function hook.helo(h)\n  return 1 +\nend\n", wait=False)
        p.proc.wait(timeout=10)
        self.assertNotEqual(p.proc.returncode, 0)
        self.assertIn("policy.lua:3:", p.output())

    def test_missing_script_refuses_to_start(self):
        r = subprocess.run([POLICYD, "--script", "/nonexistent/x.lua", "--log-stderr"], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"/nonexistent/x.lua", r.stderr)

    def test_check_exits_0_or_1(self):
        good = self.write_script("function hook.rcpt(r) end", "good.lua")
        bad = self.write_script("function hook.rcpt(r)\n", "bad.lua")
        self.assertEqual(subprocess.run([POLICYD, "--check", "--script", good], capture_output=True, timeout=10).returncode, 0)
        r = subprocess.run([POLICYD, "--check", "--script", bad], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"bad.lua:2:", r.stderr)

    def test_sighup_reloads_and_a_broken_reload_keeps_the_old_code(self):
        self.start_both('function hook.noop() return "250 old\\r\\n" end')
        self.assertEqual(self.client().cmd("NOOP")[1], ["250 old"])
        with open(self.script_path, "w") as f:
            f.write('function hook.noop() return "250 new\\r\\n" end')
        self.policyd.signal(signal.SIGHUP)
        wait_for(lambda: "reload: new sessions use the new scripts" in self.policyd.output(), what="reload")
        self.assertEqual(self.client().cmd("NOOP")[1], ["250 new"])
        with open(self.script_path, "w") as f:
            f.write('function hook.noop(\n')
        self.policyd.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, keeping the old scripts" in self.policyd.output(), what="failed reload")
        self.assertIn("policy.lua:", self.policyd.output())
        self.assertEqual(self.client().cmd("NOOP")[1], ["250 new"])

    def test_default_policy_and_examples_load(self):
        lua = os.environ.get("MAILHOOK_LUA", "../../lua")
        scripts = [os.path.join(lua, "policy.lua")]
        for root, _, files in sorted(os.walk(os.path.join(lua, "examples"))):  # examples/<dialect>/ too
            scripts += [os.path.join(root, f) for f in sorted(files) if f.endswith(".lua")]
        self.assertGreater(len(scripts), 8)
        # Run as their headers say: access_map.lua reads the map beside it.
        examples = os.path.abspath(os.path.join(lua, "examples"))
        env = dict(os.environ, MAILHOOK_ACCESS_MAP=os.path.join(examples, "access_map.txt"))
        grants = ["--lua-read-dir", examples, "--lua-env", "MAILHOOK_ACCESS_MAP"]
        # dkim_sign.lua refuses to load without its settings.
        env.update(MAILHOOK_DKIM_DOMAIN="example.org", MAILHOOK_DKIM_SELECTOR="s1",
                   MAILHOOK_DKIM_KEY=os.path.join(examples, "dkim_sign", "s1.pem"))
        grants += ["--lua-env", "MAILHOOK_DKIM_DOMAIN", "--lua-env", "MAILHOOK_DKIM_SELECTOR", "--lua-env", "MAILHOOK_DKIM_KEY"]
        for s in scripts:
            r = subprocess.run([POLICYD, "--check", "--script", s] + grants, capture_output=True, timeout=10, env=env)
            self.assertEqual(r.returncode, 0, (s, r.stderr))


class DefaultPolicy(MailhookTest):
    def test_default_policy_refuses_bare_ip_helo_and_unqualified_rcpt(self):
        with open(os.path.join(os.environ.get("MAILHOOK_LUA", "../../lua"), "policy.lua")) as f:
            self.start_both(f.read())
        c = self.client()
        self.assertEqual(c.cmd("EHLO 192.0.2.1")[0], 550)
        self.assertEqual(c.cmd("EHLO [192.0.2.1]")[0], 250)
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<postmaster>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>")[0], 250)


if __name__ == "__main__":
    unittest.main()

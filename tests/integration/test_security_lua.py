"""Issue 19, findings 8 and 7 through the real binaries: a script can
neither crash policyd (bytecode), nor escape --hook-timeout (a __gc
finalizer, a coroutine made at load time), nor hang start-up (a load-time
loop), nor read or write files outside --lua-read-dir / --lua-write-dir,
nor read the environment; and client bytes a script logs reach policyd's
log escaped, never as a line of their own."""

import base64
import os
import subprocess
import unittest

from harness import POLICYD, MailhookTest, SmtpClient

ALIVE = 'function hook.noop() return "250 2.0.0 alive\\r\\n" end\n'
OVERRUN = ["451 4.3.0 Policy temporarily unavailable, try again later"]


def b64(s):
    return base64.b64encode(s.encode()).decode()


class LuaSandbox(MailhookTest):
    def rcpt(self, c, address="b@example.com"):
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        return c.cmd("RCPT TO:<%s>" % address)

    def assert_worker_serves(self):
        """A new session on the (only) worker gets the script's reply."""
        c = self.client()
        self.assertEqual(c.cmd("NOOP")[1], ["250 2.0.0 alive"])
        self.assertTrue(self.policyd.alive(), self.policyd.output())

    # 8(a): bytecode is not verified by Lua; a corrupted chunk crashed policyd.
    def test_corrupted_bytecode_is_refused_and_policyd_lives(self):
        script = r'''
local dump = string.dump and string.dump(function(a, b) local t = {a, b, "k", 1.5} return t[1], #t end)
  or "\27Lua\84\0\25\147\r\n\26\n\4\8\8" .. string.rep("\255", 64)
function hook.rcpt(r)
  local loaded = 0
  for i = 32, #dump do
    for _, v in ipairs{0xff, 0x7f, 0x80, 0x00} do
      local f = load(dump:sub(1, i - 1) .. string.char(v) .. dump:sub(i + 1), "=bad", "b")
      if f then loaded = loaded + 1 pcall(f, 1, 2) end
    end
  end
  return "250 2.1.5 loaded " .. loaded .. " binary chunks\r\n"
end
''' + ALIVE
        self.start_both(script)
        c = self.client()
        self.assertEqual(self.rcpt(c)[1], ["250 2.1.5 loaded 0 binary chunks"])
        self.assert_worker_serves()

    # 8(b): Lua runs __gc with hooks off: a finalizer loop hung the worker.
    def test_a_gc_finalizer_loop_cannot_hang_the_worker(self):
        script = r'''
function hook.rcpt(r)
  setmetatable({}, {__gc = function() while true do end end})
  collectgarbage()
  return "250 2.1.5 finalizer set\r\n"
end
''' + ALIVE
        self.start_both(script, policyd_args=["--hook-timeout", "300"], front_args=["--policy-timeout", "3000"])
        c = self.client()
        # The script's error ("__gc metamethods are not allowed"): the default reply.
        self.assertEqual(self.rcpt(c)[1], ["250 2.1.5 Ok"])
        self.assertIn("__gc metamethods are not allowed", self.policyd.output())
        self.assert_worker_serves()

    # 8(c): a coroutine made at load time ran without the count hook.
    def test_a_coroutine_made_at_load_time_is_bounded_by_hook_timeout(self):
        script = r'''
local co = coroutine.create(function() while true do end end)
local wrapped = coroutine.wrap(function() while true do end end)
function hook.rcpt(r) coroutine.resume(co) end
function hook.mail(s) if s == "wrap@example.com" then wrapped() end end
''' + ALIVE
        self.start_both(script, policyd_args=["--hook-timeout", "300"], front_args=["--policy-timeout", "3000"])
        c = self.client()
        self.assertEqual(self.rcpt(c)[1], OVERRUN)
        self.assertIn("stopped after --hook-timeout", self.policyd.output())
        c2 = self.client()
        c2.cmd("EHLO client.example")
        self.assertEqual(c2.cmd("MAIL FROM:<wrap@example.com>")[1], OVERRUN)
        self.assert_worker_serves()

    # 8(c): a load-time loop must fail start-up with a clear error, not hang.
    def test_a_load_time_loop_fails_start_up_and_check_with_a_clear_error(self):
        path = self.write_script("x = 0\nwhile true do x = x + 1 end\n", "spin.lua")
        for mode in (["--check"], ["--listen", "127.0.0.1:0", "--log-stderr"]):
            r = subprocess.run([POLICYD, "--script", path, "--load-timeout", "300", "--workers", "1"] + mode,
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("spin.lua:2: loading ran past --load-timeout (300 ms)", r.stderr)

    # 8(e): a script read /etc/passwd and the environment.
    def test_no_file_environment_or_module_outside_the_grants(self):
        os.environ["MAILHOOK_SECRET_TEST"] = "s3cret"
        self.addCleanup(os.environ.pop, "MAILHOOK_SECRET_TEST")
        script = r'''
function hook.rcpt(r)
  local found = {}
  local f = io.open("/etc/passwd")
  if f then found[#found + 1] = "passwd:" .. (f:read("l") or ""):sub(1, 4) f:close() end
  if pcall(io.lines, "/etc/passwd") then found[#found + 1] = "lines" end
  if os.getenv("MAILHOOK_SECRET_TEST") then found[#found + 1] = "env" end
  for _, n in ipairs{"loadfile", "dofile"} do if _G[n] then found[#found + 1] = n end end
  package.path = "%s/?.lua"  -- only --lua-path counts
  if pcall(require, "module") then found[#found + 1] = "require" end
  if #found > 0 then return "550 5.7.1 reached " .. table.concat(found, " ") .. "\r\n" end
  return "250 2.1.5 sandboxed\r\n"
end
''' % self.dir + ALIVE
        with open(os.path.join(self.dir, "module.lua"), "w") as f:
            f.write("return {}\n")
        self.start_both(script)
        c = self.client()
        self.assertEqual(self.rcpt(c)[1], ["250 2.1.5 sandboxed"])

    def test_remove_and_rename_outside_a_write_dir_are_refused(self):
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("precious")
        script = r'''
local victim = "%s"
function hook.rcpt(r)
  local renamed = os.rename(victim, victim .. ".moved")
  local removed = os.remove(victim)
  local w = io.open(victim, "w")
  return "250 2.1.5 " .. tostring(renamed) .. " " .. tostring(removed) .. " " .. tostring(w) .. "\r\n"
end
''' % victim
        self.start_both(script)
        c = self.client()
        self.assertEqual(self.rcpt(c)[1], ["250 2.1.5 nil nil nil"])
        with open(victim) as f:
            self.assertEqual(f.read(), "precious")

    def test_read_and_write_dirs_grant_and_cannot_be_escaped(self):
        ro = os.path.join(self.dir, "ro")
        rw = os.path.join(self.dir, "rw")
        os.mkdir(ro)
        os.mkdir(rw)
        with open(os.path.join(ro, "list"), "w") as f:
            f.write("one\ntwo\n")
        with open(os.path.join(self.dir, "secret"), "w") as f:
            f.write("s")
        os.symlink(os.path.join(self.dir, "secret"), os.path.join(ro, "link"))
        os.symlink(self.dir, os.path.join(rw, "up"))
        script = r'''
local ro, rw = "%s", "%s"
local function yn(v) return v and "y" or "n" end
function hook.rcpt(r)
  local n = 0
  for _ in io.lines(ro .. "/list") do n = n + 1 end
  local w = io.open(rw .. "/out", "w") w:write("x") w:close()
  return "250 2.1.5 " .. n .. yn(io.open(ro .. "/../secret")) .. yn(io.open(ro .. "/link")) ..
         yn(io.open(rw .. "/up/secret")) .. yn(io.open(ro .. "/new", "w")) .. yn(io.open(rw .. "/up/ro/x", "w")) ..
         yn(os.rename(rw .. "/out", rw .. "/done")) .. "\r\n"
end
''' % (ro, rw)
        self.start_both(script, policyd_args=["--lua-read-dir", ro, "--lua-write-dir", rw])
        c = self.client()
        self.assertEqual(self.rcpt(c)[1], ["250 2.1.5 2nnnnny"])
        self.assertTrue(os.path.exists(os.path.join(rw, "done")))
        self.assertFalse(os.path.exists(os.path.join(ro, "x")))

    # 8(e): a qpsmtpd plugin reads its own config/ directory (granted by
    # policyd), and nothing a config name leads to outside it.
    def test_a_qpsmtpd_plugin_reads_its_config_dir_only(self):
        config = os.path.join(self.dir, "config")
        os.mkdir(config)
        with open(os.path.join(config, "greeting"), "w") as f:
            f.write("# comment\nhello from config\n")
        with open(os.path.join(self.dir, "secret"), "w") as f:
            f.write("the secret\n")
        os.symlink(os.path.join(self.dir, "secret"), os.path.join(config, "link"))
        script = r'''
function hook_rcpt(self, transaction, recipient)
  local qp = self:qp()
  local seen = { qp:config("greeting") or "-", qp:config("../secret") or "-", qp:config("link") or "-" }
  return DENY, table.concat(seen, "|")
end
'''
        self.start_both(script)
        c = self.client()
        self.assertEqual(self.rcpt(c)[1], ["550 hello from config|-|-"])

    # 7: a folded header (CRLF inside, legal) a script logs.
    def test_a_line_break_a_script_logs_is_escaped(self):
        script = r'''
function hook.header(h) syslog.info("saw " .. h) end
function hook.dot(p) end
'''
        self.start_both(script)
        c = self.client()
        c.cmd("EHLO client.example")
        body = "Subject: hi\r\n forged: root logged in\r\n\r\nbody\r\n"
        self.assertEqual(self.send_message(c, body=body)[0], 250)
        out = self.policyd.output()
        self.assertIn("saw Subject: hi\\r\\n forged: root logged in", out)
        self.assertFalse([l for l in out.splitlines() if l.startswith(" forged")], out)

    # 7: the AUTH user name lua/examples/auth.lua logs on a failed login.
    def test_auth_example_cannot_be_made_to_write_a_log_line(self):
        users = os.path.join(self.dir, "auth")
        os.mkdir(users)
        with open(os.path.join(users, "users"), "w") as f:
            f.write("alice:secret\n")
        os.environ["MAILHOOK_AUTH_USERS"] = os.path.join(users, "users")
        self.addCleanup(os.environ.pop, "MAILHOOK_AUTH_USERS")
        with open(os.path.join(os.environ.get("MAILHOOK_LUA", "../../lua"), "examples", "auth.lua")) as f:
            self.start_both(f.read(), policyd_args=["--lua-read-dir", users, "--lua-env", "MAILHOOK_AUTH_USERS"],
                            front_args=["--auth-plaintext"])
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[0], 235)
        c2 = self.client()
        c2.cmd("EHLO client.example")
        self.assertNotEqual(c2.cmd("AUTH PLAIN " + b64("\0x\nauthenticated user=root\0pw"))[0], 235)
        out = self.policyd.output()
        self.assertFalse([l for l in out.splitlines() if l.startswith("authenticated user=root")], out)


if __name__ == "__main__":
    unittest.main()

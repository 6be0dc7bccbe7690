"""AUTH PLAIN and LOGIN (RFC 4954, 4616): hook.auth decides, the user name
reaches later hooks and the Received header, and the RFC's error codes."""

import base64
import unittest

from harness import MailhookTest

SCRIPT = r'''
function hook.auth(arg, user, password)
  if user == "alice" and password == "secret" then return "235 2.7.0 Authentication successful\r\n" end
  if user == "later" then return "454 4.7.0 Temporary authentication failure\r\n" end
end
function hook.mail(s) return "250 2.1.0 ok user=" .. tostring(client.auth_user) .. "\r\n" end
'''


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Auth(MailhookTest):
    def setUp(self):
        super().setUp()
        self.start_both(SCRIPT, front_args=["--auth-plaintext"])
        self.c = self.client()
        code, lines = self.c.cmd("EHLO client.example")
        self.assertIn("250 AUTH PLAIN LOGIN", lines)

    def test_plain_with_initial_response_authenticates_and_reaches_later_hooks(self):
        self.assertEqual(self.c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[0], 235)
        self.assertEqual(self.c.cmd("MAIL FROM:<a@example.com>")[1], ["250 2.1.0 ok user=alice"])
        self.assertEqual(self.c.cmd("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(self.c.cmd("DATA")[0], 354)
        self.c.send("Subject: t\r\n\r\nx\r\n.\r\n")
        self.assertEqual(self.c.read_reply()[0], 250)
        with open(self.spooled()[0], "rb") as f:
            text = f.read().decode()
        self.assertIn("(Authenticated sender: alice)", text)
        self.assertIn("with ESMTPA id", text)

    def test_plain_with_a_challenge(self):
        self.assertEqual(self.c.cmd("AUTH PLAIN"), (334, ["334 "]))
        self.assertEqual(self.c.cmd(b64("\0alice\0secret"))[0], 235)

    def test_login_exchange(self):
        self.assertEqual(self.c.cmd("AUTH LOGIN"), (334, ["334 VXNlcm5hbWU6"]))
        self.assertEqual(self.c.cmd(b64("alice")), (334, ["334 UGFzc3dvcmQ6"]))
        self.assertEqual(self.c.cmd(b64("secret"))[0], 235)

    def test_wrong_password_gets_535_and_no_user(self):
        self.assertEqual(self.c.cmd("AUTH PLAIN " + b64("\0alice\0wrong"))[1], ["535 5.7.8 Authentication credentials invalid"])
        self.assertEqual(self.c.cmd("MAIL FROM:<a@example.com>")[1], ["250 2.1.0 ok user=nil"])

    def test_hook_tempfail_is_passed_on(self):
        self.assertEqual(self.c.cmd("AUTH PLAIN " + b64("\0later\0x"))[1], ["454 4.7.0 Temporary authentication failure"])

    def test_bad_base64_cancel_unknown_mechanism(self):
        self.assertEqual(self.c.cmd("AUTH PLAIN !!!!")[1], ["501 5.5.2 Cannot decode response"])
        self.c.cmd("AUTH LOGIN")
        self.assertEqual(self.c.cmd("*")[1], ["501 5.7.0 Authentication canceled"])
        self.assertEqual(self.c.cmd("AUTH CRAM-MD5")[0], 504)

    def test_second_auth_and_auth_in_a_transaction_are_out_of_sequence(self):
        self.assertEqual(self.c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[0], 235)
        self.assertEqual(self.c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[1], ["503 5.5.1 Bad sequence of commands"])
        self.c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(self.c.cmd("AUTH LOGIN")[0], 503)


class AuthNeedsTlsByDefault(MailhookTest):
    def test_auth_is_not_offered_in_the_clear(self):
        self.start_both(SCRIPT)
        c = self.client()
        code, lines = c.cmd("EHLO client.example")
        self.assertFalse(any("AUTH" in l for l in lines))
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[0], 503)


class AuthExample(MailhookTest):
    def test_the_auth_example_checks_its_users_file(self):
        import os
        users = os.path.join(self.dir, "users")
        with open(users, "w") as f:
            f.write("# comment\nalice:secret\nbob:hunter2\n")
        os.environ["MAILHOOK_AUTH_USERS"] = users
        self.addCleanup(os.environ.pop, "MAILHOOK_AUTH_USERS")
        lua = os.environ.get("MAILHOOK_LUA", "../../lua")
        with open(os.path.join(lua, "examples", "auth.lua")) as f:
            # The example reads its users file: granted, with the variable naming it.
            self.start_both(f.read(), front_args=["--auth-plaintext"],
                            policyd_args=["--lua-read-dir", self.dir, "--lua-env", "MAILHOOK_AUTH_USERS"])
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0bob\0wrong"))[0], 535)
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0bob\0hunter2"))[0], 235)


class AuthWithoutHook(MailhookTest):
    def test_no_hook_auth_means_nobody_logs_in(self):
        self.start_both("function hook.rcpt(r) end", front_args=["--auth-plaintext"])
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0alice\0secret"))[0], 535)


if __name__ == "__main__":
    unittest.main()

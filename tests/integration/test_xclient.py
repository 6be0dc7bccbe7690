"""XCLIENT (Postfix XCLIENT_README) from --xclient-hosts only: the client
facts change for the hooks and the spool; hook.xclient may refuse."""

import unittest

from harness import MailhookTest

SCRIPT = r'''
function hook.xclient()
  if client.address == "192.0.2.66" then return "550 5.7.1 not that one\r\n" end
end
function hook.noop()
  return "250 2.0.0 " .. client.address .. " " .. client.port .. " " .. client.host .. " " ..
         tostring(client.auth_user) .. "\r\n"
end
'''


class Xclient(MailhookTest):
    def setUp(self):
        super().setUp()
        self.start_both(SCRIPT, front_args=["--xclient-hosts", "10.0.0.0/8,127.0.0.0/8"])
        self.c = self.client()
        code, lines = self.c.cmd("EHLO proxy.example")
        self.assertTrue(any(l.startswith("250-XCLIENT") or l.startswith("250 XCLIENT") for l in lines), lines)

    def test_attributes_become_the_client_facts(self):
        code, lines = self.c.cmd("XCLIENT NAME=mail.example.org ADDR=192.0.2.5 PORT=4000 LOGIN=bob HELO=relay.example")
        self.assertEqual(code, 220)
        self.assertEqual(self.c.cmd("MAIL FROM:<a@example.com>")[0], 503)  # EHLO again first
        self.c.cmd("EHLO relay.example")
        self.assertEqual(self.c.cmd("NOOP")[1], ["250 2.0.0 192.0.2.5 4000 mail.example.org bob"])
        self.assertEqual(self.send_message(self.c)[0], 250)
        with open(self.spooled()[0], "rb") as f:
            text = f.read().decode()
        self.assertIn("X-Mailhook-Client: 192.0.2.5 4000 mail.example.org", text)
        self.assertIn("Received: from relay.example (mail.example.org [192.0.2.5])", text)

    def test_unavailable_values_and_xtext(self):
        self.assertEqual(self.c.cmd("XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7 LOGIN=a+2Bb")[0], 220)
        self.c.cmd("EHLO x.example")
        self.assertEqual(self.c.cmd("NOOP")[1], ["250 2.0.0 192.0.2.7 " + str(self.c.sock.getsockname()[1]) + "  a+b"])

    def test_hook_xclient_refusal_keeps_the_old_facts(self):
        self.assertEqual(self.c.cmd("XCLIENT ADDR=192.0.2.66")[1], ["550 5.7.1 not that one"])
        self.assertTrue(self.c.cmd("NOOP")[1][0].startswith("250 2.0.0 127.0.0.1 "))

    def test_malformed_and_out_of_sequence(self):
        self.assertEqual(self.c.cmd("XCLIENT ADDR=not-an-ip")[0], 501)
        self.assertEqual(self.c.cmd("XCLIENT BOGUS=1")[0], 501)
        self.c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(self.c.cmd("XCLIENT ADDR=192.0.2.5")[0], 503)


class XclientRefused(MailhookTest):
    def test_a_client_outside_xclient_hosts_gets_550_5_7_0(self):
        self.start_both(SCRIPT, front_args=["--xclient-hosts", "192.0.2.0/24"])
        c = self.client()
        code, lines = c.cmd("EHLO proxy.example")
        self.assertFalse(any("XCLIENT" in l for l in lines))
        self.assertEqual(c.cmd("XCLIENT ADDR=192.0.2.5")[1], ["550 5.7.0 Insufficient authorization"])


if __name__ == "__main__":
    unittest.main()

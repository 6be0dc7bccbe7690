"""The front <-> policyd link with mutual TLS (issue 19): a message through
front -> policyd over mTLS gets 250 and policyd's reply; a front whose
client certificate comes from another CA, or a front without TLS, is
refused by policyd and tempfails (--policy-failure tempfail). The
certificates come from deploy/tls/make-link-certs.sh, made per test."""

import os
import subprocess
import unittest

from harness import FRONT, MailhookTest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE_CERTS = os.path.join(ROOT, "deploy", "tls", "make-link-certs.sh")

SCRIPT = r'''
function hook.rcpt(r)
  if r:find("blocked@", 1, true) then return "550 5.7.1 blocked by policy over mTLS\r\n" end
end
'''


def make_certs(directory):
    subprocess.run([MAKE_CERTS, directory, "localhost", "127.0.0.1"], check=True, capture_output=True, timeout=60)
    return directory


class PolicyLinkTls(MailhookTest):

    def setUp(self):
        super().setUp()
        self.certs = make_certs(os.path.join(self.dir, "certs"))
        p = os.path.join(self.certs, "policyd")
        self.start_policyd(SCRIPT, ["--tls-cert", os.path.join(p, "tls.crt"), "--tls-key", os.path.join(p, "tls.key"),
                                    "--tls-client-ca", os.path.join(p, "ca.crt")])

    def front_tls(self, certs):
        return ["--policyd-tls-ca", os.path.join(self.certs, "ca.crt"),
                "--policyd-tls-cert", os.path.join(certs, "front", "tls.crt"),
                "--policyd-tls-key", os.path.join(certs, "front", "tls.key")]

    def test_a_message_through_the_front_over_mtls_gets_250_and_the_policy_decides(self):
        self.start_front(self.front_tls(self.certs) + ["--policy-timeout", "5000"])
        c = self.client()
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
        code, lines = c.cmd("RCPT TO:<blocked@example.com>")
        self.assertEqual((code, lines[-1]), (550, "550 5.7.1 blocked by policy over mTLS"))
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send("Subject: mtls\r\n\r\nthrough the authenticated link\r\n.\r\n")
        self.assertEqual(c.read_reply()[0], 250)
        self.assertEqual(len(self.spooled()), 1)

    def test_a_front_with_a_certificate_of_another_ca_is_refused(self):
        other = make_certs(os.path.join(self.dir, "other"))
        self.start_front(self.front_tls(other) + ["--policy-timeout", "3000"])
        c = self.client(expect_greeting=None)
        self.assertEqual(c.greeting[0][:3], "421", c.greeting)

    def test_a_front_without_tls_is_refused(self):
        self.start_front(["--policy-timeout", "3000"])
        c = self.client(expect_greeting=None)
        self.assertEqual(c.greeting[0][:3], "421", c.greeting)

    def test_the_front_refuses_partial_tls_flags(self):
        r = subprocess.run([FRONT, "--policyd-tls-ca", os.path.join(self.certs, "ca.crt")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--policyd-tls-ca, --policyd-tls-cert and --policyd-tls-key go together", r.stderr)


if __name__ == "__main__":
    unittest.main()

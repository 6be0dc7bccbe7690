"""STARTTLS (RFC 3207): the handshake, the session starting over, the TLS
facts reaching Lua and the Received header, and commands pipelined behind
STARTTLS in the clear being dropped, never executed (CVE-2011-0411), many
records each way, and the drain of an idle TLS session."""

import os
import signal
import socket
import ssl
import subprocess
import unittest

from harness import MailhookTest, SmtpClient

SCRIPT = r'''
function hook.rset() return "250 2.0.0 rset ran\r\n" end
function hook.noop() return "250 2.0.0 tls=" .. tostring(client.tls_protocol) .. "\r\n" end
'''


class StartTls(MailhookTest):
    FRONT_TLS_ARGS = []

    def setUp(self):
        super().setUp()
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=mx.test", "-keyout", self.key, "-out", self.cert], check=True, capture_output=True,
                       timeout=60)
        self.start_both(SCRIPT, front_args=["--tls-cert", self.cert, "--tls-key", self.key] + self.FRONT_TLS_ARGS)

    def wrap(self, c):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
        c.buf = b""

    def test_starttls_restarts_the_session_and_reaches_lua_and_received(self):
        c = self.client()
        code, lines = c.cmd("EHLO client.example")
        self.assertIn("250 STARTTLS", lines)
        self.assertEqual(c.cmd("STARTTLS"), (220, ["220 2.0.0 Ready to start TLS"]))
        self.wrap(c)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 503)  # EHLO again first
        code, lines = c.cmd("EHLO client.example")
        self.assertNotIn("250-STARTTLS", lines + ["x"])
        self.assertNotIn("250 STARTTLS", lines)
        code, lines = c.cmd("NOOP")
        self.assertRegex(lines[0], r"tls=TLSv1\.[23]")
        self.assertEqual(c.cmd("STARTTLS")[0], 503)  # already active
        self.assertEqual(self.send_message(c)[0], 250)
        with open(self.spooled()[0], "rb") as f:
            text = f.read().decode()
        self.assertRegex(text, r"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)")
        self.assertIn("with ESMTPS id", text)

    def test_commands_pipelined_behind_starttls_are_discarded(self):
        c = self.client()
        c.cmd("EHLO client.example")
        c.send("STARTTLS\r\nRSET\r\n")  # the injection: RSET sent in the clear
        self.assertEqual(c.read_reply()[0], 220)
        self.wrap(c)
        # The first reply inside TLS must answer NOOP, not the injected RSET.
        code, lines = c.cmd("NOOP")
        self.assertEqual(code, 250)
        self.assertIn("tls=TLSv1", lines[0])

    def tls_client(self):
        c = self.client()
        c.cmd("EHLO client.example")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        self.wrap(c)
        self.assertEqual(c.cmd("EHLO client.example")[0], 250)
        return c

    def test_a_large_message_and_a_pipelined_batch_cross_tls_whole(self):
        # Many TLS records each way: a 3 MB body read record by record, and
        # 300 pipelined commands whose replies go out together.
        c = self.tls_client()
        line = "x" * 998 + "\r\n"
        body = "Subject: big\r\n\r\n" + line * 3000
        self.assertEqual(self.send_message(c, body=body)[0], 250)
        with open(self.spooled()[0], "rb") as f:
            self.assertEqual(f.read().count(line.encode()), 3000)
        c.send("NOOP\r\n" * 300)
        replies = [c.read_reply() for _ in range(300)]
        self.assertTrue(all(code == 250 for code, _ in replies))
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_sigterm_ends_an_idle_tls_session_with_421(self):
        c = self.tls_client()
        self.front.signal(signal.SIGTERM)
        self.assertEqual(c.read_reply(), (421, ["421 4.3.2 Service shutting down"]))

    def test_starttls_inside_a_transaction_is_out_of_sequence(self):
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("STARTTLS")[0], 503)


class StartTlsTimeout(StartTls):
    FRONT_TLS_ARGS = ["--command-timeout", "1"]

    def test_an_idle_tls_session_times_out_with_421_over_tls(self):
        c = self.tls_client()
        self.assertEqual(c.read_reply(), (421, ["421 4.4.2 Timeout exceeded, closing connection"]))
        self.assertTrue(c.closed())


class NoTls(MailhookTest):
    def test_starttls_is_neither_offered_nor_accepted_without_a_certificate(self):
        self.start_both("function hook.rcpt(r) end")
        c = self.client()
        code, lines = c.cmd("EHLO client.example")
        self.assertFalse(any("STARTTLS" in l for l in lines))
        self.assertEqual(c.cmd("STARTTLS")[0], 502)


if __name__ == "__main__":
    unittest.main()

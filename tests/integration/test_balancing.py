"""The front balances sessions over several policyd replicas (--policyd
ipv4:a,b,c, gRPC round robin): a session stays on one replica for its
whole life; a replica that dies fails only its own open sessions (451
4.3.0) while new sessions go to the others; a replica that comes back
gets sessions again. Three policyd processes on loopback."""

import os
import re
import signal
import unittest

from harness import POLICYD, MailhookTest, Process, SmtpClient, free_port, wait_for

SCRIPT = 'function hook.rcpt(r) return "250 2.1.5 ok from replica %s\\r\\n" end\n'


class Balancing(MailhookTest):
    def setUp(self):
        super().setUp()
        self.ports = {name: free_port() for name in "ABC"}
        self.replicas = {}
        for name, port in self.ports.items():
            self.start_replica(name)
        target = "ipv4:" + ",".join("127.0.0.1:%d" % p for p in self.ports.values())
        self.start_front(policyd_target=target)

    def start_replica(self, name):
        self.replicas[name] = self.start_policyd(SCRIPT % name, port=self.ports[name])

    def session(self):
        """An open session after EHLO and MAIL; returns (client, replica)."""
        c = SmtpClient(self.front_port)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        c.cmd("EHLO c.example")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
        return c, self.replica_of(c)

    def replica_of(self, c):
        code, lines = c.cmd("RCPT TO:<r@example.com>")
        self.assertEqual(code, 250, lines)
        return re.match(r"250 2\.1\.5 ok from replica (\w)", lines[0]).group(1)

    def test_sessions_spread_stick_fail_over_and_come_back(self):
        sessions = [self.session() for _ in range(9)]
        self.assertEqual({r for _, r in sessions}, set("ABC"))  # round robin reaches every replica
        for c, r in sessions:
            for _ in range(3):
                self.assertEqual(self.replica_of(c), r)  # sticky: every event of a session on one replica

        self.replicas["B"].kill()
        for c, r in sessions:
            code, lines = c.cmd("RCPT TO:<again@example.com>")
            if r == "B":
                self.assertEqual((code, lines), (451, ["451 4.3.0 Policy service unavailable, try again later"]))
            else:
                self.assertEqual(code, 250, lines)
                self.assertIn("replica " + r, lines[0])  # the others' sessions go on, on their replica

        fresh = [self.session() for _ in range(12)]  # none fails: new sessions go to A and C
        self.assertEqual({r for _, r in fresh}, {"A", "C"})
        for c, _ in sessions + fresh:
            c.cmd("QUIT")

        self.start_replica("B")  # the same address comes back

        def reaches_b():
            c, r = self.session()
            c.cmd("QUIT")
            return r == "B"

        wait_for(reaches_b, timeout=20, what="a session on the restarted replica")


class ScaleOut(MailhookTest):
    """--policyd dns://SERVER/NAME:PORT: a replica added to DNS gets
    sessions once policyd's --max-connection-age makes the front reconnect
    and resolve again, and a session open across that moment is not cut."""

    def test_a_new_replica_in_dns_gets_sessions(self):
        from dnsserver import DnsServer
        port = free_port()
        zone = {"policyd.test": [{"type": "A", "address": "127.0.0.2"}]}
        dns = DnsServer(zone)
        dns.start()
        self.addCleanup(dns.stop)
        for ip, name in (("127.0.0.2", "A"), ("127.0.0.3", "B")):
            p = Process([POLICYD, "--listen", "%s:%d" % (ip, port), "--script",
                         self.write_script(SCRIPT % name, name="%s.lua" % name), "--log-stderr", "--ptr-lookup", "no",
                         "--workers", "1", "--max-connection-age", "1",
                         "--temp-dir", os.path.join(self.dir, "tmp-" + name)],
                        os.path.join(self.dir, "policyd-%s.log" % name))
            self.processes.append(p)
            wait_for(lambda: "listening on" in p.output(), what="policyd %s listening" % name)
        self.start_front(policyd_target="dns://127.0.0.1:%d/policyd.test:%d" % (dns.port, port))

        def replica():
            c = SmtpClient(self.front_port)
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO c.example")
            c.cmd("MAIL FROM:<a@example.com>")
            r = re.match(r"250 2\.1\.5 ok from replica (\w)", c.cmd("RCPT TO:<r@example.com>")[1][0]).group(1)
            c.cmd("QUIT")
            c.close()
            return r

        self.assertEqual(replica(), "A")
        long_lived = SmtpClient(self.front_port)
        self.addCleanup(long_lived.close)
        long_lived.read_reply()
        long_lived.cmd("EHLO c.example")
        long_lived.cmd("MAIL FROM:<a@example.com>")
        dns.set_zone({"policyd.test": [{"type": "A", "address": "127.0.0.2"}, {"type": "A", "address": "127.0.0.3"}]})
        wait_for(lambda: replica() == "B", timeout=30, what="a session on the replica added to DNS")
        code, lines = long_lived.cmd("RCPT TO:<still@example.com>")  # opened before, still served
        self.assertEqual((code, lines), (250, ["250 2.1.5 ok from replica A"]))


if __name__ == "__main__":
    unittest.main()

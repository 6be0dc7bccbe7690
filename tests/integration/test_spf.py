"""spf.check over real SMTP: front -> policyd -> c-ares -> the test's own
authoritative DNS server (dnsserver.py) on loopback. Each result reaches
the client as the script's reply; a slow DNS server never holds a worker."""

import asyncio
import re
import subprocess
import sys
import unittest

from dnsserver import DnsServer
from harness import POLICYD, MailhookTest, free_port, sample, scrape, wait_for

SOA = {"type": "SOA", "mname": "ns1.spf.test", "rname": "hostmaster.spf.test", "serial": 1,
       "refresh": 7200, "retry": 900, "expire": 1209600, "minimum": 300}


def txt(text):
    return [{"type": "TXT", "text": text}]


ZONE = {
    "spf.test": [SOA],
    # pass: the client is 127.0.0.1; the record arrives in two strings (RFC 7208 3.3)
    "pass.spf.test": [{"type": "TXT", "text": ["v=spf1 ip4:192.0.2.0/24 ", "ip4:127.0.0.0/8 -all"]}],
    "fail.spf.test": txt("v=spf1 ip4:192.0.2.1 -all exp=why.spf.test"),
    "why.spf.test": txt("%{i} may not send mail for %{d}"),
    "soft.spf.test": txt("v=spf1 ip4:192.0.2.1 ~all"),
    "neutral.spf.test": txt("v=spf1 ?all"),
    "mx.spf.test": txt("v=spf1 mx -all") + [{"type": "MX", "preference": 10, "host": "mail.spf.test"}],
    "mail.spf.test": [{"type": "A", "address": "127.0.0.1"}, {"type": "AAAA", "address": "2001:db8::25"}],
    "inc.spf.test": txt("v=spf1 include:mx.spf.test -all"),
    "loop.spf.test": txt("v=spf1 include:loop.spf.test -all"),
    "limit.spf.test": txt("v=spf1 " + " ".join("a:h%d.spf.test" % i for i in range(11)) + " -all"),
    "voids.spf.test": txt("v=spf1 a:nx1.spf.test a:nx2.spf.test a:nx3.spf.test -all"),
    "twice.spf.test": txt("v=spf1 -all") + txt("v=spf1 +all"),
    "broken.spf.test": txt("v=spf1 ip4:127.0.0.300 -all"),
    "slowinc.spf.test": txt("v=spf1 include:slow.spf.test -all"),
    "slow.spf.test": txt("v=spf1 ip4:127.0.0.1 -all"),
    "dropped.spf.test": txt("v=spf1 +all"),
    "helo.spf.test": txt("v=spf1 a -all") + [{"type": "A", "address": "127.0.0.1"}],
    "v6.spf.test": txt("v=spf1 ip6:2001:db8::/32 ip4:192.0.2.0/24 -all"),
    "delay.spf.test": txt("v=spf1 exists:%{ir}.x.delay.spf.test -all"),
    "1.0.0.127.x.delay.spf.test": [{"type": "A", "address": "127.0.0.2"}],
    "late.spf.test": txt("v=spf1 +all"),
    "_behaviour": {"servfail.spf.test": "servfail", "dropped.spf.test": "drop", "slow.spf.test": "drop",
                   "delay.spf.test": {"delay_ms": 100}, "late.spf.test": {"delay_ms": 1500}},
}
for i in range(11):
    ZONE["h%d.spf.test" % i] = [{"type": "A", "address": "192.0.2.%d" % (i + 10)}]

# MAIL FROM: the SPF result becomes the reply; XSPF IP SENDER checks any
# address (IPv6 included) for the same sender.
SCRIPT = r'''
local function reply(result, exp, mech)
  if result == "fail" then return "550 5.7.23 SPF fail: " .. (exp or "not permitted") .. "\r\n" end
  if result == "temperror" then return "451 4.7.24 SPF temperror\r\n" end
  if result == "permerror" then return "550 5.7.24 SPF permerror\r\n" end
  return "250 2.1.0 spf=" .. result .. " mech=" .. tostring(mech) .. "\r\n"
end
function hook.mail(sender)
  return reply(spf.check(client.address, client.helo, sender))
end
function hook.rcpt(rcpt)
  local result = spf.check(client.address, client.helo, client.sender)
  return "250 2.1.5 " .. rcpt .. " " .. result .. "\r\n"
end
function hook.unknown(line)
  local ip, sender = line:match("^XSPF (%S+) (%S+)$")
  if not ip then return "500 5.5.1 bad\r\n" end
  return reply(spf.check(ip, client.helo, sender))
end
'''


class SpfTest(MailhookTest):
    def setUp(self):
        super().setUp()
        self.dns = DnsServer(ZONE)
        self.dns.start()
        self.addCleanup(self.dns.stop)

    def dns_args(self, timeout_ms=1000, extra=()):
        return ["--dns-server", "127.0.0.1:%d" % self.dns.port, "--dns-timeout", str(timeout_ms)] + list(extra)


class Results(SpfTest):
    def setUp(self):
        super().setUp()
        self.start_both(SCRIPT, policyd_args=self.dns_args(700))
        self.c = self.client()
        self.c.cmd("EHLO client.spf.test")

    def mail(self, sender):
        code, lines = self.c.cmd("MAIL FROM:<%s>" % sender)
        self.c.cmd("RSET")
        return "%d %s" % (code, lines[-1][4:])

    def test_pass_fail_softfail_neutral_none(self):
        self.assertEqual(self.mail("a@pass.spf.test"), "250 2.1.0 spf=pass mech=ip4:127.0.0.0/8")
        self.assertEqual(self.mail("a@fail.spf.test"),
                         "550 5.7.23 SPF fail: 127.0.0.1 may not send mail for fail.spf.test")
        self.assertEqual(self.mail("a@soft.spf.test"), "250 2.1.0 spf=softfail mech=~all")
        self.assertEqual(self.mail("a@neutral.spf.test"), "250 2.1.0 spf=neutral mech=?all")
        self.assertEqual(self.mail("a@nothing.spf.test"), "250 2.1.0 spf=none mech=nil")
        self.assertEqual(self.mail("a@mx.spf.test"), "250 2.1.0 spf=pass mech=mx")
        self.assertEqual(self.mail("a@inc.spf.test"), "250 2.1.0 spf=pass mech=include:mx.spf.test")

    def test_permerror_on_loops_limits_and_broken_records(self):
        for domain in ("loop", "limit", "voids", "twice", "broken"):
            self.assertEqual(self.mail("a@%s.spf.test" % domain), "550 5.7.24 SPF permerror", domain)
        log = self.policyd.output()
        self.assertIn("more than 10 DNS-querying terms", log)
        self.assertIn("more than 2 void lookups", log)

    def test_temperror_on_servfail_and_a_server_that_never_answers(self):
        self.assertEqual(self.mail("a@servfail.spf.test"), "451 4.7.24 SPF temperror")
        self.assertEqual(self.mail("a@dropped.spf.test"), "451 4.7.24 SPF temperror")
        self.assertEqual(self.mail("a@slowinc.spf.test"), "451 4.7.24 SPF temperror")  # timeout inside include

    def test_empty_sender_checks_the_helo_name(self):
        self.c.cmd("EHLO helo.spf.test")
        self.assertEqual(self.mail(""), "250 2.1.0 spf=pass mech=a")
        self.c.cmd("EHLO other.spf.test")
        self.assertEqual(self.mail(""), "250 2.1.0 spf=none mech=nil")

    def test_ipv6_and_ipv4_mapped_addresses(self):
        def xspf(ip, sender):
            code, lines = self.c.cmd("XSPF %s %s" % (ip, sender))
            return "%d %s" % (code, lines[-1][4:])
        self.assertEqual(xspf("2001:db8::1", "a@v6.spf.test"), "250 2.1.0 spf=pass mech=ip6:2001:db8::/32")
        self.assertEqual(xspf("2001:db9::1", "a@v6.spf.test"), "550 5.7.23 SPF fail: not permitted")
        self.assertEqual(xspf("::ffff:192.0.2.9", "a@v6.spf.test"), "250 2.1.0 spf=pass mech=ip4:192.0.2.0/24")
        self.assertEqual(xspf("2001:db8::25", "a@mx.spf.test"), "250 2.1.0 spf=pass mech=mx")

    def test_the_answer_cache_serves_a_second_check(self):
        self.assertEqual(self.mail("a@mx.spf.test"), "250 2.1.0 spf=pass mech=mx")
        asked = len(self.dns.queries)
        self.assertEqual(self.mail("a@mx.spf.test"), "250 2.1.0 spf=pass mech=mx")
        self.assertEqual(len(self.dns.queries), asked)  # TXT, MX and A all cached

    def test_rcpt_hook_checks_the_transaction_sender(self):
        self.assertEqual(self.c.cmd("MAIL FROM:<a@soft.spf.test>")[0], 250)
        code, lines = self.c.cmd("RCPT TO:<b@example.com>")
        self.assertEqual((code, lines[-1]), (250, "250 2.1.5 b@example.com softfail"))


class Flags(SpfTest):
    def test_the_limits_are_flags_and_trip_past_their_value(self):
        self.start_both(SCRIPT, policyd_args=self.dns_args(3000, [
            "--spf-max-dns-lookups", "11", "--spf-max-void-lookups", "3", "--spf-timeout", "1"]))
        c = self.client()
        c.cmd("EHLO client.spf.test")
        # 11 terms and 3 void lookups are now within the limits: the record's -all decides.
        self.assertEqual(c.cmd("MAIL FROM:<a@limit.spf.test>")[1][-1][:12], "550 5.7.23 S")
        c.cmd("RSET")
        self.assertEqual(c.cmd("MAIL FROM:<a@voids.spf.test>")[1][-1][:12], "550 5.7.23 S")
        c.cmd("RSET")
        # The record comes after 1.5 s: past --spf-timeout 1, so temperror, not pass.
        self.assertEqual(c.cmd("MAIL FROM:<a@late.spf.test>")[1][-1], "451 4.7.24 SPF temperror")
        self.assertIn("the check passed its time limit (1000 ms)", self.policyd.output())

    def test_a_flag_out_of_range_is_refused(self):
        script = self.write_script(SCRIPT)
        for flag, value in (("--spf-max-dns-lookups", "0"), ("--spf-max-void-lookups", "21"), ("--spf-timeout", "0")):
            r = subprocess.run([POLICYD, "--script", script, "--check", flag, value], capture_output=True, text=True,
                               timeout=30)
            self.assertNotEqual(r.returncode, 0, flag)
            self.assertIn(flag, r.stderr + r.stdout)


class SessionEndsWhileWaiting(SpfTest):
    def test_the_check_of_an_ended_session_is_dropped_and_its_late_answer_ignored(self):
        metrics = free_port()
        # The front gives up on policyd first (300 ms), then the client
        # leaves; the check's query times out later (1500 ms).
        self.start_both(SCRIPT, policyd_args=self.dns_args(1500, ["--metrics", "127.0.0.1:%d" % metrics]),
                        front_args=["--policy-timeout", "300"])
        c = self.client()
        c.cmd("EHLO gone.spf.test")
        c.send("MAIL FROM:<a@dropped.spf.test>\r\n")
        wait_for(lambda: any(q[0] == "dropped.spf.test" for q in self.dns.queries), what="the check's query")
        c.close()
        wait_for(lambda: "session ended while waiting" in self.policyd.output(), what="the dropped hook")
        wait_for(lambda: (sample(scrape(metrics), 'mailhook_policyd_dns_answers_total{rcode="TIMEOUT"}') or 0) >= 1,
                 what="the late timeout of the dropped check's query")
        self.assertTrue(self.policyd.alive())
        self.assertEqual(sample(scrape(metrics), "mailhook_policyd_sessions_open"), 0)
        c = self.client()
        c.cmd("EHLO client.spf.test")
        self.assertEqual(c.cmd("MAIL FROM:<a@pass.spf.test>")[1][-1], "250 2.1.0 spf=pass mech=ip4:127.0.0.0/8")


async def one_session(port, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        lines = []
        while True:
            line = (await reader.readline()).decode()
            if not line:
                return lines
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return lines

    try:
        await reply()
        for cmd in ("EHLO c%d.example" % i,):
            writer.write((cmd + "\r\n").encode())
            await reply()
        writer.write(("MAIL FROM:<s%d@delay.spf.test>\r\n" % i).encode())
        return (await reply())[-1]
    finally:
        writer.close()


class ManyConcurrentChecks(SpfTest):
    SESSIONS = 200

    def test_200_sessions_check_spf_against_a_slow_server_on_fixed_threads(self):
        # No cache: each check asks the server, which answers after 100 ms.
        self.start_both(SCRIPT, policyd_args=self.dns_args(10000, ["--workers", "2", "--dns-cache-entries", "0"]),
                        front_args=["--max-connections", "1000", "--max-connections-per-ip", "1000",
                                    "--policy-timeout", "60000"])
        threads_before = self.threads()

        async def all_sessions():
            return await asyncio.gather(*(one_session(self.front_port, i) for i in range(self.SESSIONS)))

        # Two rounds: the first may start gRPC's own threads for the many
        # streams; the second must find every thread it needs already there.
        counts = [threads_before]
        for _ in range(2):
            self.dns.clear_queries()
            replies = asyncio.run(asyncio.wait_for(all_sessions(), 120))
            for line in replies:
                self.assertEqual(line, "250 2.1.0 spf=pass mech=exists:%{ir}.x.delay.spf.test")
            txt = [q for q in self.dns.queries if q[0] == "delay.spf.test" and q[1] == 16]
            self.assertEqual(len(txt), self.SESSIONS)  # no cache: every check waited on the server
            counts.append(self.threads())
        print("policyd threads: before=%d after round 1=%d after round 2=%d" % tuple(counts), file=sys.stderr)
        self.assertLessEqual(max(counts), 40, "policyd threads: %s" % counts)
        self.assertLessEqual(counts[1] - counts[0], 8)
        self.assertLessEqual(counts[2], counts[1] + 1, "policyd threads grew with the second round: %s" % counts)

    def threads(self):
        with open("/proc/%d/status" % self.policyd.proc.pid) as f:
            return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))


if __name__ == "__main__":
    unittest.main()

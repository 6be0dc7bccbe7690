"""The dns module and client.host over real SMTP: front -> policyd ->
c-ares -> the test's own DNS server (dnsserver.py) on loopback."""

import asyncio
import os
import re
import unittest

from dnsserver import DnsServer
from harness import MailhookTest, SmtpClient, free_port, sample, scrape, wait_for

SOA = {"type": "SOA", "mname": "ns1.example.test", "rname": "hostmaster.example.test", "serial": 2026112401,
       "refresh": 7200, "retry": 900, "expire": 1209600, "minimum": 300}

ZONE = {
    "example.test": [SOA, {"type": "NS", "host": "ns1.example.test"},
                     {"type": "MX", "preference": 10, "host": "mx.example.test"}],
    "ns1.example.test": [{"type": "A", "address": "192.0.2.53"}],
    "mx.example.test": [{"type": "A", "ttl": 60, "address": "192.0.2.25"},
                        {"type": "AAAA", "address": "2001:db8::25"}],
    "txt.example.test": [{"type": "TXT", "ttl": 120, "text": ["v=spf1 ", "-all"]}],
    "alias.example.test": [{"type": "CNAME", "host": "mx.example.test"}],
    "old.example.test": [{"type": "DNAME", "host": "example.test"}],
    "1.0.0.127.in-addr.arpa": [{"type": "PTR", "host": "mail.example.test"}],
    "mail.example.test": [{"type": "A", "address": "127.0.0.1"}],
    "2.0.0.127.in-addr.arpa": [{"type": "PTR", "host": "liar.example.test"}],
    "liar.example.test": [{"type": "A", "address": "192.0.2.99"}],
    "big.example.test": [{"type": "TXT", "text": [c * 150]} for c in "wxyz"],
    "slow.example.test": [{"type": "A", "address": "192.0.2.7"}],
    "fast.example.test": [{"type": "A", "address": "192.0.2.8"}],
    "_behaviour": {"servfail.example.test": "servfail", "refused.example.test": "refused",
                   "drop.example.test": "drop", "slow.example.test": {"delay_ms": 200},
                   "3.0.0.127.in-addr.arpa": "drop"},
}

# XDNS TYPE NAME [any] -> hook.unknown queries, waits, and answers with
# one reply line per RR: positional fields, then the named ones.
SCRIPT = r'''
local NAMED = {"owner", "name", "class", "type", "ttl", "address", "host", "preference", "text",
               "mname", "rname", "serial", "refresh", "retry", "expire", "minimum"}
local function dump(rr)
  local pos, named = {}, {}
  for i = 1, 11 do if rr[i] == nil then break end pos[#pos + 1] = tostring(rr[i]) end
  for _, k in ipairs(NAMED) do if rr[k] ~= nil then named[#named + 1] = k .. "=" .. tostring(rr[k]) end end
  return table.concat(pos, ",") .. " | " .. table.concat(named, " ")
end
function hook.unknown(line)
  local t, name, mode = line:match("^XDNS (%S+) (%S+) ?(%S*)$")
  if not t then return "500 5.5.1 bad\r\n" end
  dns.open()
  dns.query(dns.class.IN, dns.type[t], name)
  local rcode, rr = dns.wait(mode ~= "any")
  local lines = { "250-rcode=" .. dns.rcodename(rcode) .. " table=" .. tostring(rr ~= nil) }
  if rr then
    for _, sec in ipairs({"answer", "authority", "extra"}) do
      for _, r in ipairs(rr[sec]) do lines[#lines + 1] = "250-" .. sec .. " " .. dump(r) end
    end
  end
  lines[#lines + 1] = "250 2.0.0 after wait client=" .. client.address
  return table.concat(lines, "\r\n") .. "\r\n"
end
function hook.noop()
  -- Several queries in flight before one wait; for_all false returns
  -- what has come, the next wait the rest.
  dns.query(dns.class.IN, dns.type.A, "slow.example.test")
  dns.query(dns.class.IN, dns.type.A, "fast.example.test")
  local _, first = dns.wait(false)
  local _, second = dns.wait(true)
  local rc3, third = dns.wait(true)
  return string.format("250 2.0.0 first=%d:%s second=%d:%s third=%s:%s\r\n", #first.answer,
    first.answer[1].address, #second.answer, second.answer[1].address, dns.rcodename(rc3), tostring(third))
end
function hook.helo(h)
  if h == "coroutine.example" then
    local co = coroutine.create(function()
      dns.query(dns.class.IN, dns.type.A, "slow.example.test")
      return dns.wait(true)
    end)
    local ok, err = coroutine.resume(co)
    return "250 2.0.0 " .. tostring(ok) .. " " .. tostring(err):gsub("\r", ""):gsub("\n", "") .. "\r\n"
  end
  if h == "names.example" then
    return string.format("250 2.0.0 %s %s %s %s %d %d\r\n", dns.classname(dns.class.IN), dns.typename(dns.type.MX),
      dns.rcodename(dns.rcode.NXDOMAIN), dns.rcodename(dns.rcode.TIMEOUT), dns.type.PTR, dns.rcode.OK)
  end
end
'''


class DnsTest(MailhookTest):
    def setUp(self):
        super().setUp()
        self.dns = DnsServer(ZONE)
        self.dns.start()
        self.addCleanup(self.dns.stop)

    def dns_args(self, timeout_ms=2000):
        return ["--dns-server", "127.0.0.1:%d" % self.dns.port, "--dns-timeout", str(timeout_ms)]


class RecordLayouts(DnsTest):
    def setUp(self):
        super().setUp()
        self.start_both(SCRIPT, policyd_args=self.dns_args(300))
        self.c = self.client()
        self.addCleanup(self.c.close)
        self.c.cmd("EHLO client.example")

    def xdns(self, t, name, mode=""):
        code, lines = self.c.cmd(("XDNS %s %s %s" % (t, name, mode)).rstrip())
        self.assertEqual(code, 250, lines)
        self.assertEqual(lines[-1], "250 2.0.0 after wait client=127.0.0.1")
        return [l[4:] for l in lines[:-1]]

    def test_a_and_aaaa(self):
        self.assertEqual(self.xdns("A", "mx.example.test"), [
            "rcode=NOERROR table=true",
            "answer mx.example.test,1,1,60,192.0.2.25 | owner=mx.example.test name=mx.example.test class=1 type=1 "
            "ttl=60 address=192.0.2.25"])
        self.assertEqual(self.xdns("AAAA", "mx.example.test")[1],
                         "answer mx.example.test,1,28,300,2001:db8::25 | owner=mx.example.test name=mx.example.test "
                         "class=1 type=28 ttl=300 address=2001:db8::25")

    def test_mx_with_additional_addresses(self):
        lines = self.xdns("MX", "example.test")
        self.assertEqual(lines[1], "answer example.test,1,15,300,mx.example.test,10 | owner=example.test "
                                   "name=example.test class=1 type=15 ttl=300 host=mx.example.test preference=10")
        self.assertIn("extra mx.example.test,1,1,60,192.0.2.25 | owner=mx.example.test name=mx.example.test "
                      "class=1 type=1 ttl=60 address=192.0.2.25", lines)

    def test_ns_cname_dname(self):
        self.assertEqual(self.xdns("NS", "example.test")[1],
                         "answer example.test,1,2,300,ns1.example.test | owner=example.test name=example.test "
                         "class=1 type=2 ttl=300 host=ns1.example.test")
        cname = self.xdns("A", "alias.example.test")
        self.assertEqual(cname[1], "answer alias.example.test,1,5,300,mx.example.test | owner=alias.example.test "
                                   "name=alias.example.test class=1 type=5 ttl=300 host=mx.example.test")
        self.assertTrue(cname[2].startswith("answer mx.example.test,1,1,60,192.0.2.25 |"), cname)
        dname = self.xdns("A", "mx.old.example.test")
        self.assertEqual(dname[1], "answer old.example.test,1,39,300,example.test | owner=old.example.test "
                                   "name=old.example.test class=1 type=39 ttl=300 host=example.test")

    def test_txt_soa_ptr(self):
        self.assertEqual(self.xdns("TXT", "txt.example.test")[1],
                         "answer txt.example.test,1,16,120,v=spf1 -all | owner=txt.example.test "
                         "name=txt.example.test class=1 type=16 ttl=120 text=v=spf1 -all")
        self.assertEqual(self.xdns("SOA", "example.test")[1],
                         "answer example.test,1,6,300,ns1.example.test,hostmaster.example.test,2026112401,7200,900,"
                         "1209600,300 | owner=example.test name=example.test class=1 type=6 ttl=300 "
                         "mname=ns1.example.test rname=hostmaster.example.test serial=2026112401 refresh=7200 "
                         "retry=900 expire=1209600 minimum=300")
        # PTR = { address, class, type, ttl, name }
        self.assertEqual(self.xdns("PTR", "1.0.0.127.in-addr.arpa")[1],
                         "answer 127.0.0.1,1,12,300,mail.example.test | owner=1.0.0.127.in-addr.arpa "
                         "name=mail.example.test class=1 type=12 ttl=300 address=127.0.0.1 host=mail.example.test")

    def test_rcodes(self):
        nx = self.xdns("A", "nothing.example.test")
        self.assertEqual(nx[0], "rcode=NXDOMAIN table=true")
        self.assertTrue(nx[1].startswith("authority example.test,1,6,"), nx)
        self.assertEqual(self.xdns("A", "servfail.example.test"), ["rcode=SERVFAIL table=true"])
        self.assertEqual(self.xdns("A", "refused.example.test"), ["rcode=REFUSED table=true"])
        self.assertEqual(self.xdns("A", "drop.example.test"), ["rcode=TIMEOUT table=false"])

    def test_truncated_answer_is_retried_over_tcp(self):
        lines = self.xdns("TXT", "big.example.test")
        self.assertEqual(len([l for l in lines if l.startswith("answer big.example.test,1,16,")]), 4, lines)
        transports = [q[2] for q in self.dns.queries if q[0] == "big.example.test"]
        self.assertEqual(transports, ["udp", "tcp"])

    def test_several_queries_one_wait_for_all_false_then_true(self):
        code, lines = self.c.cmd("NOOP")
        self.assertEqual(lines, ["250 2.0.0 first=1:192.0.2.8 second=1:192.0.2.7 third=ERRNO:nil"])

    def test_constants_and_names(self):
        self.assertEqual(self.c.cmd("HELO names.example")[1], ["250 2.0.0 IN MX NXDOMAIN TIMEOUT 12 0"])

    def test_wait_inside_a_script_coroutine_is_an_error_not_a_hang(self):
        code, lines = self.c.cmd("HELO coroutine.example")
        self.assertEqual(code, 250)
        self.assertIn("false", lines[0])
        self.assertIn("dns.wait cannot wait here", lines[0])


class SocketErrors(DnsTest):
    def test_a_nameserver_that_refuses_gives_errno(self):
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()  # nothing listens there: ICMP port unreachable
        self.start_both(SCRIPT, policyd_args=["--dns-server", "127.0.0.1:%d" % dead, "--dns-timeout", "2000"])
        c = self.client()
        code, lines = c.cmd("XDNS A mx.example.test")
        self.assertEqual(lines[0], "250-rcode=ERRNO table=false")

    def test_a_bad_dns_server_flag_is_refused_at_start(self):
        p = self.start_policyd(SCRIPT, args=["--dns-server", "not an address"], wait=False)
        wait_for(lambda: not p.alive(), what="policyd exits")
        self.assertIn("--dns-server not an address", p.output())


HOST_SCRIPT = r'''
function hook.accept(ip, ptr) seen_ptr = ptr end
function hook.helo(h) return "250 2.0.0 ptr=[" .. seen_ptr .. "] host=[" .. client.host .. "]\r\n" end
'''

LAZY_SCRIPT = r'''
function hook.helo(h) return "250 2.0.0 host=[" .. client.host .. "] after=" .. client.address .. "\r\n" end
'''


class ClientHost(DnsTest):
    def helo_from(self, source_ip, script=HOST_SCRIPT, extra=()):
        self.start_both(script, policyd_args=self.dns_args(300) + ["--ptr-lookup", "yes"] + list(extra),
                        front_args=["--xclient-hosts", "127.0.0.0/8"])
        c = SmtpClient(self.front_port, source=source_ip)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        return c

    def test_forward_confirmed_ptr_is_client_host_and_accept_ptr(self):
        c = self.helo_from("127.0.0.1")
        self.assertEqual(c.cmd("HELO x.example")[1], ["250 2.0.0 ptr=[mail.example.test] host=[mail.example.test]"])

    def test_ptr_that_does_not_resolve_back_is_empty(self):
        c = self.helo_from("127.0.0.2")
        self.assertEqual(c.cmd("HELO x.example")[1], ["250 2.0.0 ptr=[] host=[]"])

    def test_timed_out_lookup_is_empty_not_a_hang(self):
        c = self.helo_from("127.0.0.3")
        self.assertEqual(c.cmd("HELO x.example")[1], ["250 2.0.0 ptr=[] host=[]"])

    def test_no_accept_hook_looks_up_only_when_read(self):
        c = self.helo_from("127.0.0.1", script=LAZY_SCRIPT)
        self.assertEqual([q for q in self.dns.queries if q[1] == 12], [])
        self.assertEqual(c.cmd("HELO x.example")[1], ["250 2.0.0 host=[mail.example.test] after=127.0.0.1"])

    def test_a_name_the_front_gives_is_not_looked_up(self):
        c = self.helo_from("127.0.0.1", script=LAZY_SCRIPT)
        self.assertEqual(c.cmd("XCLIENT NAME=given.example ADDR=192.0.2.1")[0], 220)
        self.assertEqual(c.cmd("HELO x.example")[1], ["250 2.0.0 host=[given.example] after=192.0.2.1"])
        self.assertEqual([q for q in self.dns.queries if q[1] == 12], [])


WAIT_SCRIPT = r'''
function hook.rcpt(r)
  local before = client.id_trans
  dns.query(dns.class.IN, dns.type.A, "slow.example.test")
  local rcode, rr = dns.wait(true)
  if client.id_trans ~= before then return "451 4.3.0 client changed under the hook\r\n" end
  if r == "spin@example.com" then while true do end end
  return "250 2.1.5 " .. r .. " " .. rr.answer[1].address .. " " .. client.id_trans .. "\r\n"
end
function hook.mail(s)
  if s == "long@example.com" then
    dns.query(dns.class.IN, dns.type.A, "very.slow.example.test")
    dns.wait(true)
  end
end
'''


class Suspension(DnsTest):
    def setUp(self):
        super().setUp()
        zone = dict(ZONE)
        zone["very.slow.example.test"] = [{"type": "A", "address": "192.0.2.9"}]
        zone["_behaviour"] = dict(ZONE["_behaviour"], **{"very.slow.example.test": {"delay_ms": 3000}})
        self.dns.set_zone(zone)
        self.metrics_port = free_port()
        self.start_both(WAIT_SCRIPT, policyd_args=self.dns_args(5000) + [
            "--hook-timeout", "500", "--metrics", "127.0.0.1:%d" % self.metrics_port],
                        front_args=["--policy-timeout", "1000"])

    def test_the_hook_timeout_still_holds_after_the_resume(self):
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(c.cmd("RCPT TO:<ok@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<spin@example.com>")[1], ["451 4.3.0 Policy temporarily unavailable, try again later"])
        self.assertEqual(c.cmd("RCPT TO:<ok2@example.com>")[0], 250)

    def test_a_session_that_closes_while_waiting_is_cleaned_up(self):
        c = self.client()
        c.cmd("EHLO client.example")
        c.send("MAIL FROM:<long@example.com>\r\n")
        wait_for(lambda: any(q[0] == "very.slow.example.test" for q in self.dns.queries), what="the query")
        c.close()
        wait_for(lambda: "session ended while waiting" in self.policyd.output(), what="the wait dropped")
        wait_for(lambda: sample(scrape(self.metrics_port), "mailhook_policyd_sessions_open") == 0,
                 what="no session left open")
        text = scrape(self.metrics_port)
        self.assertGreaterEqual(sample(text, "mailhook_policyd_dns_queries_total"), 1)


CACHE_SCRIPT = r'''
function hook.rcpt(r)
  dns.query(dns.class.IN, dns.type.A, r:match("@(.*)$"))
  local rcode, rr = dns.wait(true)
  return "250 2.1.5 " .. dns.rcodename(rcode) .. " ttl=" .. (rr and rr.answer[1] and rr.answer[1].ttl or "-") .. "\r\n"
end
'''


class Cache(DnsTest):
    def rcpts(self, entries, domains):
        self.start_both(CACHE_SCRIPT, policyd_args=self.dns_args(2000) + ["--dns-cache-entries", str(entries)])
        c = self.client()
        self.addCleanup(c.close)
        c.cmd("EHLO c.example")
        c.cmd("MAIL FROM:<a@example.com>")
        replies = [c.cmd("RCPT TO:<u@%s>" % d)[1][0] for d in domains]
        c.cmd("QUIT")  # no transaction left open for the front's shutdown grace
        asked = [q[0] for q in self.dns.queries]
        return replies, asked

    def test_answers_are_served_from_the_cache_within_their_ttl(self):
        replies, asked = self.rcpts(10, ["mx.example.test", "mx.example.test", "nothing.example.test",
                                         "nothing.example.test"])
        self.assertEqual(asked, ["mx.example.test", "nothing.example.test"])  # NXDOMAIN cached too (SOA minimum)
        self.assertEqual(replies[:2], ["250 2.1.5 NOERROR ttl=60", "250 2.1.5 NOERROR ttl=60"])
        self.assertEqual(replies[3], "250 2.1.5 NXDOMAIN ttl=-")

    def test_failures_are_never_cached(self):
        _, asked = self.rcpts(10, ["servfail.example.test", "servfail.example.test"])
        self.assertEqual(asked, ["servfail.example.test", "servfail.example.test"])

    def test_the_entry_limit_at_its_edge(self):
        _, asked = self.rcpts(1, ["mx.example.test", "fast.example.test", "mx.example.test"])
        self.assertEqual(asked, ["mx.example.test", "fast.example.test", "mx.example.test"])  # 1: evicted
        self.dns.clear_queries()
        self.stop_all_for_next_run()
        _, asked = self.rcpts(2, ["mx.example.test", "fast.example.test", "mx.example.test"])
        self.assertEqual(asked, ["mx.example.test", "fast.example.test"])  # 2: kept

    def test_zero_turns_the_cache_off(self):
        _, asked = self.rcpts(0, ["mx.example.test", "mx.example.test"])
        self.assertEqual(asked, ["mx.example.test", "mx.example.test"])

    def stop_all_for_next_run(self):
        for p in reversed(self.processes):
            p.stop()


def example(name):
    lua = os.environ.get("MAILHOOK_LUA", "../../lua")
    with open(os.path.join(lua, "examples", name)) as f:
        return f.read()


class Examples(DnsTest):
    def setenv(self, name, value):
        os.environ[name] = value
        self.addCleanup(os.environ.pop, name)
        # Scripts see only the variables granted with --lua-env.
        self.POLICYD_ARGS = list(self.POLICYD_ARGS) + ["--lua-env", name]

    def connect_from(self, source_ip):
        c = SmtpClient(self.front_port, source=source_ip)
        self.addCleanup(c.close)
        return c

    def test_dnsbl_refuses_a_listed_client_with_the_zone_reason(self):
        zone = dict(ZONE)
        zone["1.0.0.127.bl.test"] = [{"type": "A", "address": "127.0.0.2"},
                                     {"type": "TXT", "text": "listed for testing, see https://bl.test/"}]
        zone["_behaviour"] = dict(ZONE["_behaviour"], **{"slow-bl.test": {"delay_ms": 100}})
        self.dns.set_zone(zone)
        self.setenv("MAILHOOK_DNSBL_ZONES", "slow-bl.test,bl.test")
        self.start_both(example("dnsbl.lua"), policyd_args=self.dns_args(2000))
        listed = self.connect_from("127.0.0.1")
        self.assertEqual(listed.read_reply(), (554, [
            "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test: "
            "listed for testing, see https://bl.test/"]))
        self.assertTrue(listed.closed())
        clean = self.connect_from("127.0.0.2")
        self.assertEqual(clean.read_reply()[0], 220)
        asked = set(q[0] for q in self.dns.queries)
        self.assertTrue({"1.0.0.127.slow-bl.test", "1.0.0.127.bl.test", "2.0.0.127.bl.test"} <= asked, asked)

    def test_greylisting_defers_the_first_attempt_and_passes_a_later_retry(self):
        self.setenv("MAILHOOK_GREYLIST_DELAY", "1")
        self.start_both(example("greylist.lua"))
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<sender@example.org>")
        first = c.cmd("RCPT TO:<user@example.com>")
        self.assertEqual(first[0], 451)
        self.assertIn("4.7.1 Greylisted", first[1][0])
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>")[0], 451)  # too soon
        wait_for(lambda: c.cmd("RCPT TO:<user@example.com>")[0] == 250, timeout=10, what="the retry passes")
        self.assertEqual(c.cmd("RCPT TO:<other@example.com>")[0], 451)  # another triplet
        c.cmd("RSET")
        c.cmd("MAIL FROM:<sender@example.org>")
        self.assertEqual(c.cmd("RCPT TO:<user@example.com>")[0], 250)  # remembered


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
        for cmd in ("EHLO c%d.example" % i, "MAIL FROM:<s%d@example.com>" % i):
            writer.write((cmd + "\r\n").encode())
            await reply()
        writer.write(("RCPT TO:<r%d@example.com>\r\n" % i).encode())
        return (await reply())[-1]
    finally:
        writer.close()


class ManySessionsWaiting(DnsTest):
    SESSIONS = 500

    def test_500_sessions_wait_on_dns_with_a_fixed_small_thread_count(self):
        # No cache: every session's hook must really wait on the server.
        self.start_both(WAIT_SCRIPT, policyd_args=self.dns_args(10000) + ["--workers", "2", "--dns-cache-entries", "0"],
                        # A loaded CI machine may stretch the tail; correctness and
                        # the thread count are asserted here, not the time.
                        front_args=["--max-connections", "1000", "--max-connections-per-ip", "1000",
                                    "--policy-timeout", "60000"])
        threads_before = self.threads()

        async def all_sessions():
            return await asyncio.gather(*(one_session(self.front_port, i) for i in range(self.SESSIONS)))

        replies = asyncio.run(asyncio.wait_for(all_sessions(), 120))
        for i, line in enumerate(replies):
            self.assertRegex(line, r"^250 2\.1\.5 r%d@example\.com 192\.0\.2\.7 \S+$" % i)
        self.assertEqual(len(set(line.split()[-1] for line in replies)), self.SESSIONS)  # each its own transaction
        slow = [q for q in self.dns.queries if q[0] == "slow.example.test"]
        self.assertEqual(len(slow), self.SESSIONS)
        threads_after = self.threads()
        # 2 Lua workers + gRPC's threads: the same before and after 500
        # concurrent waits, and far below one per session.
        self.assertLessEqual(threads_after, 40, "policyd threads: %d" % threads_after)
        self.assertLessEqual(threads_after - threads_before, 8)

    def threads(self):
        with open("/proc/%d/status" % self.policyd.proc.pid) as f:
            return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))


if __name__ == "__main__":
    unittest.main()

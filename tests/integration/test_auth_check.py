"""lua/examples/auth_check.lua (SPF + DKIM + DMARC, Authentication-Results)
through the real front and through a private Postfix calling policyd's
milter. The zone (SPF, DMARC and the DKIM keys) comes from the test's own
DNS server (dnsserver.py); messages are signed with the test's Ed25519 key
by the openssl CLI (test_dkim.DkimTest.openssl_ed25519_sign).
ThousandConcurrentChecks is issue 23's load check: 1,000 concurrent
sessions against a DNS server that answers after 100 ms."""

import asyncio
import os
import re
import resource
import subprocess
import sys
import unittest

import test_dkim as td
from harness import POLICYD, Sink, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "lua", "examples")
DOMAIN = td.DOMAIN  # example.test

PASS_HEADER = ("; spf=pass smtp.mailfrom=joe@example.test; dkim=pass header.d=example.test header.s=ed;"
               " dmarc=pass header.from=example.test")
UNSIGNED = "From: Joe <joe@example.test>\r\nSubject: pay this\r\n\r\nnow\r\n"


def ar_fields(message):
    """The values of the Authentication-Results fields of a message (bytes)."""
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    return re.findall(r"(?m)^Authentication-Results: ([^\r\n]*)", head)


def script(name="auth_check.lua"):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


SIGN_ENV = ("MAILHOOK_DKIM_DOMAIN", "MAILHOOK_DKIM_SELECTOR", "MAILHOOK_DKIM_KEY", "MAILHOOK_DKIM_ALGORITHM",
            "MAILHOOK_DKIM_NETWORKS")


def sign_settings(test):
    """dkim_sign.lua's settings (the test's Ed25519 key, loopback trusted)
    in the environment, and the policyd flags that grant them."""
    values = [DOMAIN, "ed", os.path.join(test.keydir, "ed.pem"), "ed25519-sha256", "127.0.0.0/8"]
    for name, value in zip(SIGN_ENV, values):
        os.environ[name] = value
        test.addCleanup(os.environ.pop, name)
    args = ["--lua-read-dir", test.keydir]
    for name in SIGN_ENV:
        args += ["--lua-env", name]
    return args


class AuthZone(td.DkimTest):
    def zone(self):
        zone = super().zone()
        # Loopback is the only client: it may send for example.test.
        zone[DOMAIN].append({"type": "TXT", "text": ["v=spf1 ip4:127.0.0.1 -all"]})
        zone["other.test"] = [{"type": "TXT", "text": ["v=spf1 -all"]}]
        zone["_dmarc." + DOMAIN] = [{"type": "TXT", "text": ["v=DMARC1; p=reject"]}]
        return zone


class ThroughTheFront(AuthZone):
    def setUp(self):
        super().setUp()
        self.start_both(script(), policyd_args=self.dns_args())
        self.c = self.client()
        self.c.cmd("EHLO client.example")

    def spooled_message(self):
        files = self.spooled()
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            data = f.read()
        os.unlink(files[0])
        return data.split(b"\r\n\r\n", 1)[1]  # after the spool's envelope block

    def test_a_signed_message_gets_the_header_and_a_forgery_is_rejected(self):
        signed = self.openssl_ed25519_sign(td.MESSAGE, "relaxed")
        code, text = self.send(self.c, signed)
        self.assertEqual(code, 250, text)
        message = self.spooled_message()
        self.assertEqual(ar_fields(message), ["mx.test" + PASS_HEADER])
        # The signature still verifies with OpenDKIM after the header went on top.
        self.assertEqual(self.opendkim_verify(message), ["%s ed pass no signature error" % DOMAIN])

        # Unsigned, From example.test, MAIL FROM a domain whose SPF fails: p=reject.
        code, text = self.send(self.c, UNSIGNED, sender="joe@other.test")
        self.assertEqual(code, 550, text)
        self.assertIn("5.7.1 Rejected by the DMARC policy of example.test", text)
        self.assertEqual(self.spooled(), [])

    def test_a_forged_header_under_our_name_is_replaced(self):
        signed = self.openssl_ed25519_sign(td.MESSAGE, "relaxed")
        forged = "Authentication-Results: mx.test; dmarc=pass header.from=bank.example\r\n" + signed
        code, text = self.send(self.c, forged)
        self.assertEqual(code, 250, text)
        message = self.spooled_message()
        self.assertEqual(ar_fields(message), ["mx.test" + PASS_HEADER])


# policyd's transaction line (docs/logging.md): "info: queue_id=... changes=N"
# and then the checks that ran.
TRANSACTION = re.compile(r"info: queue_id=(\S+) session=.* eom=(\S+) size=\d+ changes=\d+(.*)$", re.M)


class OnTheTransactionLine(AuthZone):
    """Issue 23: the checks' results go on policyd's transaction line, each
    on the line of the transaction whose hook ran it, and nothing when no
    check ran."""

    def lines(self, count):
        wait_for(lambda: len(TRANSACTION.findall(self.policyd.output())) >= count,
                 what="%d transaction lines in policyd's log" % count)
        return {q: (eom, checks) for q, eom, checks in TRANSACTION.findall(self.policyd.output())}

    def test_spf_dkim_and_dmarc_results_end_the_line_of_their_transaction(self):
        self.start_both(script(), policyd_args=self.dns_args())
        c = self.client()
        c.cmd("EHLO client.example")
        signed = self.openssl_ed25519_sign(td.MESSAGE, "relaxed")
        code, text = self.send(c, signed)
        self.assertEqual(code, 250, text)
        queue_id = text.split()[-1]
        session = queue_id[:-2]
        # SPF passes in hook.mail; RSET before any DKIM or DMARC check.
        # The next MAIL's own SPF fail must not land on this line.
        self.assertEqual(c.cmd("MAIL FROM:<joe@example.test>")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        code, text = self.send(c, UNSIGNED, sender="joe@other.test")
        self.assertEqual(code, 550, text)
        lines = self.lines(3)
        self.assertEqual(lines[session + "T1"], ("-", " spf=pass(example.test) dkim=pass(example.test)"
                                                       " dmarc=pass(example.test,p=reject,dis=none)"))
        self.assertEqual(lines[session + "T2"], ("-", " spf=pass(example.test)"))
        self.assertEqual(lines[session + "T3"], ("550", " spf=fail(other.test) dkim=none"
                                                         " dmarc=fail(example.test,p=reject,dis=reject)"))

    def test_a_script_that_checks_nothing_adds_nothing(self):
        self.start_both("function hook.rcpt(address) end\n", policyd_args=self.dns_args())
        c = self.client()
        c.cmd("EHLO client.example")
        code, text = self.send(c, td.MESSAGE)
        self.assertEqual(code, 250, text)
        c.cmd("QUIT")  # no script listens to the end of message: the session's end writes the line
        [(eom, checks)] = self.lines(1).values()
        self.assertEqual((eom, checks), ("-", ""))
        self.assertNotRegex(self.policyd.output(), r"(spf|dkim|dmarc)=")


class SignsThroughTheFront(AuthZone):
    def setUp(self):
        super().setUp()
        self.start_both(script("dkim_sign.lua"), policyd_args=self.dns_args() + sign_settings(self))
        self.c = self.client()
        self.c.cmd("EHLO client.example")

    spooled_message = ThroughTheFront.spooled_message

    def test_mail_for_the_domain_is_signed_and_verifies_other_mail_is_not(self):
        code, text = self.send(self.c, td.MESSAGE)
        self.assertEqual(code, 250, text)
        message = self.spooled_message()
        self.assertIn(b"\r\nDKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;", message)
        self.assertIn(b"d=example.test; s=ed;", message.split(b"\r\n\r\n", 1)[0])
        self.assertEqual(self.opendkim_verify(message), ["%s ed pass no signature error" % DOMAIN])

        code, text = self.send(self.c, td.MESSAGE, sender="joe@other.test")
        self.assertEqual(code, 250, text)
        self.assertNotIn(b"DKIM-Signature", self.spooled_message())


class BehindPostfix(AuthZone, td.tm.MilterTest):
    """The milter shape: Postfix passes the message to policyd's milter and
    the header goes in through SMFIR_INSHEADER; the sink gets what Postfix
    delivers."""

    def start(self, script_text, args=()):
        self.start_milter(script_text, args=self.dns_args() + list(args))
        self.sink = Sink()
        self.addCleanup(self.sink.stop)
        self.smtp_port = free_port()
        os.chmod(self.dir, 0o711)  # Postfix's daemons (user postfix) must reach their directories
        self.postfix = td.tm.PrivatePostfix(os.path.join(self.dir, "pf"), self.smtp_port, self.sink.port,
                                            milter="inet:127.0.0.1:%d" % self.milter_port,
                                            extra_main_cf=dict(td.tm.snippet_settings(), **{
                                                "smtpd_milters": "inet:127.0.0.1:%d" % self.milter_port,
                                                "milter_default_action": "tempfail"}))
        self.postfix.start()

    def tearDown(self):
        if getattr(self, "postfix", None):
            self.postfix.stop()
        super().tearDown()

    postfix_send = td.BehindPostfix.postfix_send

    def test_the_header_reaches_the_sink_and_a_forgery_is_rejected(self):
        self.start(script())
        signed = self.openssl_ed25519_sign(td.MESSAGE, "relaxed")
        code, text = self.postfix_send(signed)
        self.assertEqual(code, 250, text)
        wait_for(lambda: len(self.sink.messages) > 0, timeout=30, what="the message at the sink")
        data = self.sink.messages[0][2]
        data = data if isinstance(data, bytes) else data.encode()
        found = ar_fields(data)
        self.assertEqual(len(found), 1, data)
        # The authserv-id is Postfix's own name (milter macro j).
        self.assertRegex(found[0], r"^[a-z0-9.-]+" + re.escape(PASS_HEADER) + "$")

        code, text = self.postfix_send(UNSIGNED, sender="joe@other.test")
        self.assertEqual(code, 550, text)
        self.assertIn("Rejected by the DMARC policy of example.test", text)
        # The milter shape's transaction lines carry the results too.
        wait_for(lambda: len(TRANSACTION.findall(self.policyd.output())) >= 2, what="two transaction lines")
        self.assertEqual([(eom, checks) for _, eom, checks in TRANSACTION.findall(self.policyd.output())],
                         [("-", " spf=pass(example.test) dkim=pass(example.test)"
                                " dmarc=pass(example.test,p=reject,dis=none)"),
                          ("550", " spf=fail(other.test) dkim=none dmarc=fail(example.test,p=reject,dis=reject)")])

    def test_signed_mail_reaches_the_sink_and_verifies(self):
        self.start(script("dkim_sign.lua"), args=sign_settings(self))
        code, text = self.postfix_send(td.MESSAGE)
        self.assertEqual(code, 250, text)
        wait_for(lambda: len(self.sink.messages) > 0, timeout=30, what="the message at the sink")
        data = self.sink.messages[0][2]
        data = data if isinstance(data, bytes) else data.encode()
        self.assertIn(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;", data)
        self.assertIn(b"d=example.test; s=ed;", data)
        self.assertEqual(self.opendkim_verify(data), ["%s ed pass no signature error" % DOMAIN])


def sysctl(name):
    with open("/proc/sys/net/core/" + name) as f:
        return int(f.read())


class DnsReceiveBuffer(AuthZone):
    """--dns-receive-buffer: the SO_RCVBUF of the resolver's sockets (a
    burst of answers past it is dropped and asked again: the retries
    ThousandConcurrentChecks saw). Read back with `ss -m` while an SPF
    lookup waits on a slow answer (c-ares closes its sockets when no query
    is left)."""

    def zone(self):
        zone = super().zone()
        zone["_behaviour"][DOMAIN] = {"delay_ms": 1500}
        return zone

    def resolver_buffers(self):
        """The rb= (receive buffer, bytes, as the kernel counts it: twice
        SO_RCVBUF) of each policyd socket to the DNS server."""
        out = subprocess.run(["ss", "-uanmp"], capture_output=True, text=True, timeout=10).stdout
        found = re.findall(r"127\.0\.0\.1:%d\s+users:\(\([^)]*pid=%d,[^)]*\)\)\s+skmem:\(r\d+,rb(\d+),"
                           % (self.dns.port, self.policyd.proc.pid), out)
        return [int(x) for x in found]

    def buffers_during_a_check(self, flag):
        self.start_both(script(), policyd_args=["--dns-server", "127.0.0.1:%d" % self.dns.port,
                                                "--dns-timeout", "10000"] + flag)
        c = self.client()
        c.cmd("EHLO client.example")
        c.sock.sendall(b"MAIL FROM:<joe@example.test>\r\n")  # hook.mail's spf.check waits 1.5 s on the answer
        wait_for(lambda: self.resolver_buffers(), what="policyd's socket to the DNS server")
        buffers = self.resolver_buffers()
        self.assertEqual(c.read_reply()[0], 250)
        return buffers

    def test_the_sockets_get_the_size_asked_for(self):
        size = min(150000, sysctl("rmem_max"))  # under a stock kernel's cap (212992)
        self.assertEqual(set(self.buffers_during_a_check(["--dns-receive-buffer", str(size)])), {2 * size})
        self.assertNotIn("--dns-receive-buffer", self.policyd.output())  # no warning

    def test_zero_leaves_the_system_default(self):
        self.assertEqual(set(self.buffers_during_a_check(["--dns-receive-buffer", "0"])), {sysctl("rmem_default")})

    def test_more_than_the_kernel_allows_is_capped_and_said_once(self):
        cap = sysctl("rmem_max")
        ask = min(cap + (1 << 20), 1 << 28)
        self.assertGreater(ask, cap, "net.core.rmem_max is at the flag's own maximum: nothing to cap")
        self.assertEqual(set(self.buffers_during_a_check(["--dns-receive-buffer", str(ask)])), {2 * cap})
        warnings = re.findall(r"warning: dns: the kernel gave the resolver's sockets a (\d+) byte receive buffer, "
                              r"not the (\d+) of --dns-receive-buffer", self.policyd.output())
        self.assertEqual(warnings, [(str(cap), str(ask))])

    def test_bad_values_are_refused(self):
        for value in ("-1", str((1 << 28) + 1), "1M"):
            r = subprocess.run([POLICYD, "--script", "/nonexistent.lua", "--dns-receive-buffer", value],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, value)
            self.assertIn("--dns-receive-buffer", r.stderr, value)


async def signed_session(port, i, data):
    """One SMTP session sending the signed message; the last line of the
    reply to its final dot."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        while True:
            line = (await reader.readline()).decode()
            if not line or line[3:4] != "-":
                return line.rstrip("\r\n")

    try:
        await reply()  # the greeting
        for cmd in ("EHLO c%d.example" % i, "MAIL FROM:<joe@example.test>", "RCPT TO:<b@example.com>", "DATA"):
            writer.write((cmd + "\r\n").encode())
            line = await reply()
            if line[:1] not in ("2", "3"):
                return "%s -> %s" % (cmd, line)
        writer.write(data)
        return await reply()
    finally:
        writer.close()


class ThousandConcurrentChecks(AuthZone):
    """Issue 23: 1,000 concurrent sessions, each checked for SPF, DKIM and
    DMARC against a DNS server that answers every name of example.test
    after 100 ms, with no answer cache, on policyd's default worker count:
    every session is answered and policyd's thread count stays fixed (a
    slow answer never holds a thread)."""

    SESSIONS = 1000
    WARM_UP = 20
    POLICYD_WORKERS = None  # policyd's own default: one Lua worker per core

    def zone(self):
        zone = super().zone()
        zone["_behaviour"][DOMAIN] = {"delay_ms": 100}  # SPF, the key and DMARC (parent_names)
        return zone

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = self.SESSIONS + 500  # this process's sockets; the daemons inherit the limit
        self.assertTrue(hard == resource.RLIM_INFINITY or hard >= want,
                        "RLIMIT_NOFILE hard limit %d is below the %d this test needs" % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        super().setUp()

    def threads(self):
        with open("/proc/%d/status" % self.policyd.proc.pid) as f:
            return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))

    def thread_names(self):
        """policyd's threads by name (for the failure message)."""
        names = {}
        task = "/proc/%d/task" % self.policyd.proc.pid
        for tid in os.listdir(task):
            try:
                with open(os.path.join(task, tid, "comm")) as f:
                    name = f.read().strip()
            except OSError:
                continue  # ended meanwhile
            names[name] = names.get(name, 0) + 1
        return names

    def round(self, count, data):
        """`count` concurrent sessions; checks every reply, the spooled
        headers and the queries the DNS server saw."""
        self.dns.clear_queries()

        async def all_sessions():
            return await asyncio.gather(*(signed_session(self.front_port, i, data) for i in range(count)))

        replies = asyncio.run(asyncio.wait_for(all_sessions(), 180))
        bad = [r for r in replies if not r.startswith("250 ")]
        self.assertEqual(bad, [], "%d of %d sessions not accepted" % (len(bad), count))
        files = self.spooled()
        self.assertEqual(len(files), count)
        for path in files:
            with open(path, "rb") as f:
                self.assertEqual(ar_fields(f.read().split(b"\r\n\r\n", 1)[1]), ["mx.test" + PASS_HEADER], path)
            os.unlink(path)
        # No cache: every session's SPF, key and DMARC lookup waited on the
        # server, once. The answers come back in a burst; with the kernel's
        # default 208 KiB receive buffer about 300 of 3,000 were dropped
        # and asked again, which --dns-receive-buffer (1 MiB) prevents.
        # Where net.core.rmem_max caps it below that, c-ares' retries are
        # allowed (at most 3 tries per query).
        retries_allowed = sysctl("rmem_max") < (1 << 20)
        asked = {}
        for name, qtype, _ in self.dns.queries:
            if qtype == 16:
                asked[name] = asked.get(name, 0) + 1
        print("TXT queries the server saw for %d sessions: %s" % (count, asked), file=sys.stderr)
        self.assertEqual(sorted(asked), sorted([DOMAIN, "ed._domainkey." + DOMAIN, "_dmarc." + DOMAIN]))
        for name, n in asked.items():
            self.assertTrue(count <= n <= (3 * count if retries_allowed else count),
                            "%d queries for %s, %d sessions" % (n, name, count))

    def test_1000_sessions_check_spf_dkim_and_dmarc_against_a_slow_server_on_fixed_threads(self):
        limit = str(self.SESSIONS + 100)
        self.start_both(script(), policyd_args=["--dns-server", "127.0.0.1:%d" % self.dns.port,
                                                "--dns-timeout", "20000", "--dns-cache-entries", "0"],
                        front_args=["--max-connections", limit, "--max-connections-per-ip", limit,
                                    "--policy-timeout", "120000"])
        self.assertIn("with %d worker(s)" % (os.cpu_count() or 1), self.policyd.output())
        signed = self.openssl_ed25519_sign(td.MESSAGE, "relaxed")  # once: every session sends it
        data = (signed.replace("\r\n.", "\r\n..") + ".\r\n").encode()
        counts = [self.threads()]
        self.round(self.WARM_UP, data)  # may start gRPC's own threads
        counts.append(self.threads())
        warm = self.thread_names()
        self.round(self.SESSIONS, data)
        counts.append(self.threads())
        after = self.thread_names()
        print("policyd threads: start=%d after %d sessions=%d after %d sessions=%d; %s -> %s"
              % (counts[0], self.WARM_UP, counts[1], self.SESSIONS, counts[2], warm, after), file=sys.stderr)
        self.assertLessEqual(counts[2], counts[1] + 2,
                             "policyd threads grew with the sessions: %s; %s -> %s" % (counts, warm, after))
        self.assertTrue(self.policyd.alive() and self.front.alive())


if __name__ == "__main__":
    unittest.main()

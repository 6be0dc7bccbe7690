"""The link's promises over shared streams (sessions share long-lived
gRPC streams, issue 22; the default, --policy-streams 4): test_balancing,
test_failures and the other suites run through them. Here: the per-call
path (--policy-streams 0) still keeps every promise of the balancing,
failover and scale-out suites; a pipelined burst of sessions all get their
own replies; a large message is paced; a front meeting an older
policyd without the Sessions RPC falls back to one call per session, and
takes shared streams again once that policyd was upgraded; replicas of
mixed versions are said to differ once, not at every flip."""

import itertools
import os
import re
import threading
import unittest

import harness
import test_balancing
import test_failures
from harness import MailhookTest, wait_for

PER_CALL = ("--policy-streams", "0")
# A policyd from before shared streams, as the front meets it: only the
# per-session RPC, passed through to a real policyd; Sessions answers
# UNIMPLEMENTED (tests/integration/session_only_proxy.cc).
SESSION_ONLY_PROXY = os.environ.get("MAILHOOK_SESSION_ONLY_PROXY", "build/tests/integration/session_only_proxy")


def start_session_only_proxy(test, seconds):
    """session_only_proxy (an older policyd: no Sessions RPC) in front of
    the test's policyd, for at most `seconds`. Returns the proxy process
    and its port."""
    port = harness.free_port()
    proxy = harness.Process([SESSION_ONLY_PROXY, "127.0.0.1:%d" % port,
                             "127.0.0.1:%d" % test.policyd_port, str(seconds)],
                            os.path.join(test.dir, "old-policyd.log"))
    test.processes.append(proxy)
    wait_for(lambda: "listening on" in proxy.output() or not proxy.alive(), what="old policyd listening")
    test.assertTrue(proxy.alive(), proxy.output())
    return proxy, port


def run_sessions(test, session, indices, seconds):
    """session(i) for each index, each on its own thread, at once; waits up
    to `seconds` for each and fails the test with every session's error."""
    errors = []

    def one(i):
        try:
            session(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("session %d: %r" % (i, e))

    threads = [threading.Thread(target=one, args=(i,)) for i in indices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds)
    test.assertEqual(errors, [])


def start_behind_older_policyd(test):
    """A real policyd behind session_only_proxy, and the test's front
    pointed at the proxy. Returns the proxy process and its port."""
    test.start_policyd('function hook.rcpt(r) return "250 2.1.5 old policyd took " .. r .. "\\r\\n" end\n')
    proxy, port = start_session_only_proxy(test, 120)
    test.start_front(policyd_target="127.0.0.1:%d" % port)
    return proxy, port


class PerCallBalancing(test_balancing.Balancing):
    FRONT_ARGS = PER_CALL


class PerCallScaleOut(test_balancing.ScaleOut):
    FRONT_ARGS = PER_CALL


class PerCallPolicydDown(test_failures.PolicydDown):
    FRONT_ARGS = PER_CALL


class OlderPolicydFallsBackToOneCallPerSession(MailhookTest):
    """The default front (shared streams) against a policyd that has no
    Sessions RPC: every session is served, one gRPC call each, and the
    front says so once, at warning, with gRPC's reason."""

    def test_sessions_are_served_one_call_each_and_it_is_said_once(self):
        start_behind_older_policyd(self)

        def one(i):
            c = self.client()
            c.cmd("EHLO c%d.example" % i)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<r%d@example.com>" % i),
                             (250, ["250 2.1.5 old policyd took r%d@example.com" % i]))
            c.cmd("QUIT")

        # A burst first (sessions racing to the first stream), then more.
        for burst in (8, 4):
            run_sessions(self, one, range(burst), 30)
        out = self.front.output()
        said = [l for l in out.splitlines() if "serves no shared streams" in l]
        self.assertEqual(len(said), 1, out)
        self.assertIn("UNIMPLEMENTED", said[0])
        self.assertIn("one gRPC call per SMTP session", said[0])
        self.assertIn("warning", said[0])


class UpgradedPolicydGetsSharedStreamsBack(MailhookTest):
    """A front that fell back to one call per session tries shared streams
    again after --policy-stream-age: the older policyd (the proxy) is
    replaced on the same port by one serving Sessions, and new sessions
    share streams again, said once at info; no restart of the front."""
    FRONT_ARGS = ("--policy-stream-age", "1")

    def test_new_sessions_share_streams_again_after_the_upgrade(self):
        proxy, port = start_behind_older_policyd(self)

        def rcpt_reply(i):
            c = self.client(expect_greeting=None)  # 421 while the port changes hands
            try:
                c.cmd("EHLO c%d.example" % i)
                c.cmd("MAIL FROM:<a@example.com>")
                return c.cmd("RCPT TO:<r%d@example.com>" % i)
            finally:
                try:
                    c.cmd("QUIT")
                except OSError:
                    pass
                c.close()

        self.assertEqual(rcpt_reply(0), (250, ["250 2.1.5 old policyd took r0@example.com"]))
        self.assertIn("serves no shared streams", self.front.output())
        self.assertNotIn("serves shared streams again", self.front.output())

        # The upgrade: the older policyd stops, a current one takes its port.
        proxy.stop()
        self.start_policyd('function hook.rcpt(r) return "250 2.1.5 new policyd took " .. r .. "\\r\\n" end\n',
                           port=port)
        tries = itertools.count(1)

        def shares_again():
            # Sessions while the port changes hands may get 421/451: only
            # the front's word that it shares streams again ends the wait.
            try:
                rcpt_reply(next(tries))
            except (OSError, AssertionError, EOFError):
                pass
            return "serves shared streams again" in self.front.output()

        wait_for(shares_again, timeout=20, what="the front sharing streams again")
        i = next(tries)
        self.assertEqual(rcpt_reply(i), (250, ["250 2.1.5 new policyd took r%d@example.com" % i]))
        out = self.front.output()
        self.assertEqual(len([l for l in out.splitlines() if "serves no shared streams" in l]), 1, out)
        again = [l for l in out.splitlines() if "serves shared streams again" in l]
        self.assertEqual(len(again), 1, out)
        self.assertIn("info", again[0])


class MixedReplicasAreSaidToDifferOnce(MailhookTest):
    """A rolling upgrade: one --policyd target (ipv4:, round robin) lists a
    current policyd and an older one (the proxy, no Sessions RPC). New
    shared streams land on both, so the front falls back, tries again a
    --policy-stream-age later, serves, falls back... It says the replicas
    differ once, at warning, not at every flip (each flip only at debug);
    once the older replica is gone and five stream ages pass with no
    fallback, one info line says every replica serves shared streams."""
    FRONT_ARGS = ("--policy-stream-age", "1", "--log-level", "debug")

    def test_the_flips_are_said_once_and_the_end_of_them_once(self):
        self.start_policyd('function hook.rcpt(r) return "250 2.1.5 took " .. r .. "\\r\\n" end\n')
        proxy, port = start_session_only_proxy(self, 60)
        self.start_front(policyd_target="ipv4:127.0.0.1:%d,127.0.0.1:%d" % (self.policyd_port, port))

        stop = threading.Event()
        older_gone = threading.Event()
        errors = []

        def sessions(k):
            # Sessions one after another, paced (load, not synchronisation),
            # at most 30 s; each must be served while both replicas run.
            # Four of these at once: a re-probe's first streams then meet
            # both replicas, whatever the round robin's turn.
            for i in range(k, 4 * 600, 4):
                if stop.wait(0.05):
                    return
                try:
                    c = harness.SmtpClient(self.front_port)
                    try:
                        c.read_reply()
                        c.cmd("EHLO c%d.example" % i)
                        c.cmd("MAIL FROM:<a@example.com>")
                        reply = c.cmd("RCPT TO:<r%d@example.com>" % i)
                        c.cmd("QUIT")
                    finally:
                        c.close()
                    if reply != (250, ["250 2.1.5 took r%d@example.com" % i]) and not older_gone.is_set():
                        errors.append("session %d: %r" % (i, reply))
                except (OSError, EOFError) as e:
                    if not older_gone.is_set():
                        errors.append("session %d: %r" % (i, e))

        loops = [threading.Thread(target=sessions, args=(k,)) for k in range(4)]
        for loop in loops:
            loop.start()
            self.addCleanup(loop.join, 35)
        self.addCleanup(stop.set)

        def lines(text):
            return [l for l in self.front.output().splitlines() if text in l]

        # Three flips after the replicas were said to differ: several
        # stream ages of switching, each said only at debug.
        try:
            wait_for(lambda: len(lines("replicas differ, switch")) >= 3, timeout=15,
                     what="three flips between shared streams and one call per session")
        except AssertionError as e:
            self.fail("%s\n%s" % (e, "\n".join(l for l in self.front.output().splitlines() if "session=" not in l)))
        self.assertEqual(errors, [])
        out = self.front.output()
        said = lines("replicas differ: some serve shared streams, some do not")
        self.assertEqual(len(said), 1, out)
        self.assertIn("warning", said[0])
        self.assertIn("UNIMPLEMENTED", said[0])
        self.assertEqual(len(lines("serves no shared streams")), 1, out)  # the first fallback's warning
        self.assertEqual(len(lines("serves shared streams again")), 1, out)
        self.assertEqual(lines("every replica it reaches serves shared streams"), [], out)
        for l in lines("replicas differ, switch"):
            self.assertIn("debug", l)

        # The upgrade completes: the older replica is gone, and five
        # stream ages serve with no fallback.
        older_gone.set()
        proxy.stop()
        wait_for(lambda: lines("every replica it reaches serves shared streams"), timeout=15,
                 what="the front saying every replica serves shared streams")
        stop.set()
        for loop in loops:
            loop.join(10)
        out = self.front.output()
        healed = lines("every replica it reaches serves shared streams")
        self.assertEqual(len(healed), 1, out)
        self.assertIn("info", healed[0])
        self.assertEqual(len(lines("replicas differ: some serve")), 1, out)


class SessionsOfOneReplicaShareOneStream(MailhookTest):
    """One replica, the default --policy-streams (4): each of the first four
    sessions opens a stream (the session that opens one goes on it), then
    every new session goes on the oldest stream of the replica and the
    other three stand by, so the sessions' messages share writes. policyd
    says at debug how many sessions each stream carried when it ended."""
    FRONT_ARGS = ("--policy-stream-age", "600")  # no stream retires during the test

    def test_one_stream_carries_the_sessions_and_the_others_stand_by(self):
        self.start_both('function hook.rcpt(r) return "250 2.1.5 took " .. r .. "\\r\\n" end\n',
                        policyd_args=["--log-level", "debug"])
        for i in range(16):
            c = self.client()
            c.cmd("EHLO c%d.example" % i)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<r%d@example.com>" % i), (250, ["250 2.1.5 took r%d@example.com" % i]))
            c.cmd("QUIT")
            self.assertTrue(c.closed())
        self.front.stop()  # its streams end; policyd logs each

        def carried():
            return [int(m.group(1)) for m in
                    re.finditer(r"sessions stream from \S+ ended after \d+s: (\d+) sessions opened on it",
                                self.policyd.output())]

        wait_for(lambda: len(carried()) == 4, what="the four streams' end in policyd's log")
        self.assertEqual(sorted(carried()), [1, 1, 1, 13])


class ManySessionsShareStreams(MailhookTest):
    FRONT_ARGS = ("--policy-streams", "2")  # 40 sessions on the replica's stream, the other standing by

    def test_concurrent_sessions_each_get_their_own_reply(self):
        self.start_both('function hook.rcpt(r) return "250 2.1.5 ok " .. client.id_log .. " " .. r .. "\\r\\n" end\n')

        def one(i):
            c = self.client()
            c.cmd("EHLO c%d.example" % i)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            for k in range(3):
                code, lines = c.cmd("RCPT TO:<r%d-%d@example.com>" % (i, k))
                self.assertEqual(code, 250, lines)
                self.assertIn("r%d-%d@example.com" % (i, k), lines[0])
            c.cmd("QUIT")

        run_sessions(self, one, range(40), 60)


class LargeMessageOnASharedStream(MailhookTest):
    """One stream (--policy-streams 1) and a window of 4 events
    (--max-pending-events 4): a 5 MiB message crosses as about 80 chunks,
    paced by policyd's credit, while another session on the same stream is
    answered; nothing is ended for being over its window."""
    FRONT_ARGS = ("--policy-streams", "1")

    def test_a_large_message_is_paced_and_the_neighbour_answered(self):
        self.start_both('n = 0\nfunction hook.content(c) n = n + #c end\n'
                        'function hook.noop() return "250 2.0.0 alive\\r\\n" end\n',
                        policyd_args=["--max-pending-events", "4"],
                        front_args=["--max-message-size", "20M"])
        big, small = self.client(), self.client()
        big.cmd("EHLO big.example")
        small.cmd("EHLO small.example")
        body = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 5000
        result = {}

        def send_big():
            result["reply"] = self.send_message(big, body=body)

        t = threading.Thread(target=send_big)
        t.start()
        answered = 0
        while t.is_alive() or answered == 0:
            self.assertEqual(small.cmd("NOOP"), (250, ["250 2.0.0 alive"]))
            answered += 1
        t.join(60)
        self.assertEqual(result["reply"][0], 250, result)
        self.assertEqual(len(self.spooled()), 1)
        self.assertNotIn("ended by policyd", self.policyd.output())


if __name__ == "__main__":
    unittest.main()

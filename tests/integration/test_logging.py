"""Logs an admin can follow (issue 20, docs/logging.md): one refusal line
per refused or deferred event in the front and in policyd (front and
milter mode), with one set of key names; the MTA's queue id beside ours
behind a real Postfix; ids unique across processes started together;
--hook-error; --log-level."""

import os
import re
import signal
import socket
import struct
import unittest

from harness import MailhookTest, Process, Sink, SmtpClient, free_port, port_open, sample, scrape, wait_for, POLICYD
from postfix_instance import PrivatePostfix
from test_milter import MilterTest, snippet_settings

# One refusal line: every key, in order (docs/logging.md).
REJECT = re.compile(r"(?P<verb>reject|would_reject): queue_id=(?P<queue_id>\S+) session=(?P<session>\S+)"
                    r"(?: mta_queue_id=(?P<mta>\S+))? client=(?P<client>\S+) helo=(?P<helo>\S+) from=(?P<from>\S+) "
                    r"to=(?P<to>\S+) hook=(?P<hook>\S+) script=(?P<script>\S+)(?: limit=(?P<limit>\S+))? "
                    r'reply="(?P<reply>(?:[^"\\]|\\.)*)"$', re.M)

POLICY = r'''
function hook.rcpt(r)
  if r == "no@example.com" then return "550-5.7.1 no such user here\r\n550 5.7.1 ask \"postmaster\"\r\n" end
  if r == "later@example.com" then return "450 4.2.0 come back later\r\n" end
end
function hook.dot(path)
  if client.sender == "spam@example.org" then return "554 5.7.1 looks like spam\r\n" end
end
'''


def refusals(text):
    return [m.groupdict() for m in REJECT.finditer(text)]


class FrontRefusals(MailhookTest):
    def test_a_refused_recipient_gets_one_line_in_each_daemon(self):
        self.start_both(POLICY)
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")  # no script listens to MAIL: the line still names the sender
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 550)
        self.assertEqual(c.cmd("RCPT TO:<later@example.com>")[0], 450)
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
        wait_for(lambda: len(refusals(self.front.output())) == 2 and len(refusals(self.policyd.output())) == 2,
                 what="two refusal lines in each daemon")
        front, policyd = refusals(self.front.output()), refusals(self.policyd.output())
        for lines in (front, policyd):
            first = lines[0]
            self.assertEqual(first["verb"], "reject")
            self.assertRegex(first["queue_id"], r"^[0-9A-Z]{21}T1$")
            self.assertEqual(first["queue_id"], first["session"] + "T1")
            self.assertEqual(first["client"], "unknown[127.0.0.1]")
            self.assertEqual(first["helo"], "client.example")
            self.assertEqual(first["from"], "<a@example.org>")
            self.assertEqual(first["to"], "<no@example.com>")
            self.assertEqual(first["hook"], "rcpt")
            self.assertEqual(first["script"], self.script_path)
            self.assertIsNone(first["mta"])  # front mode: no MTA queue id
            # The full reply: both lines, a quote escaped.
            self.assertEqual(first["reply"], r'550 5.7.1 no such user here\nask \"postmaster\"')
            self.assertEqual(lines[1]["to"], "<later@example.com>")
            self.assertEqual(lines[1]["reply"], "450 4.2.0 come back later")
        # The same message in both daemons: the lines join on queue_id and session.
        self.assertEqual([(l["queue_id"], l["session"], l["reply"]) for l in front],
                         [(l["queue_id"], l["session"], l["reply"]) for l in policyd])

    def test_a_refusal_at_end_of_message_names_every_recipient(self):
        self.start_both(POLICY)
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<spam@example.org>")
        c.cmd("RCPT TO:<b@example.com>")
        c.cmd("RCPT TO:<c@example.com>")
        c.cmd("DATA")
        self.assertEqual(c.cmd("Subject: x\r\n\r\nbody\r\n.")[0], 554)
        wait_for(lambda: refusals(self.front.output()) and refusals(self.policyd.output()), what="the refusal lines")
        for line in (refusals(self.front.output())[0], refusals(self.policyd.output())[0]):
            self.assertEqual(line["to"], "<b@example.com>,<c@example.com>")
            self.assertEqual(line["from"], "<spam@example.org>")
            self.assertEqual((line["hook"], line["script"]), ("dot", self.script_path))
            self.assertEqual(line["reply"], "554 5.7.1 looks like spam")
        # The transaction lines use the same keys.
        wait_for(lambda: re.search(r"queue_id=\S+ session=\S+ client=unknown\[127\.0\.0\.1\] helo=client\.example "
                                   r"from=<spam@example\.org> to=<b@example\.com>,<c@example\.com> size=\d+ "
                                   r'reply="554 5\.7\.1 looks like spam"', self.front.output()), what="front's line")

    def test_a_limit_names_itself_instead_of_a_script(self):
        self.start_both(POLICY, front_args=["--max-recipients", "1"])
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<c@example.com>")[0], 452)
        wait_for(lambda: refusals(self.front.output()), what="the refusal line")
        line = refusals(self.front.output())[0]
        self.assertEqual((line["hook"], line["script"], line["limit"], line["to"]),
                         ("rcpt", "limit", "--max-recipients", "<c@example.com>"))
        self.assertEqual(line["reply"], "452 4.5.3 Too many recipients")

    def test_policyd_down_at_connect_is_a_refusal_of_the_failure_mode(self):
        self.policyd_port = free_port()  # nothing listens there
        self.start_front()
        self.client(expect_greeting=421)
        wait_for(lambda: refusals(self.front.output()), what="the refusal line")
        line = refusals(self.front.output())[0]
        self.assertEqual((line["hook"], line["script"], line["queue_id"], line["from"]),
                         ("accept", "policy_failure", "-", "-"))
        self.assertTrue(line["reply"].startswith("421 4.3.0 "), line)

    def test_client_bytes_stay_inside_their_field(self):
        self.start_both(POLICY)
        c = self.client()
        c.cmd('EHLO we"ird\\name')  # the front refuses control bytes in commands; quotes pass
        c.cmd('MAIL FROM:<"x\\" hook=accept"@example.org>')
        c.cmd("RCPT TO:<no@example.com>")
        wait_for(lambda: refusals(self.front.output()) and refusals(self.policyd.output()), what="the refusal lines")
        for line in (refusals(self.front.output())[0], refusals(self.policyd.output())[0]):
            self.assertEqual(line["helo"], "we\\x22ird\\x5Cname")
            self.assertEqual(line["from"], '<\\x22x\\x5C\\x22\\x20hook=accept\\x22@example.org>')
            self.assertEqual(line["hook"], "rcpt")


SHADOW = r'''
function hook.rcpt(r) if r == "no@example.com" then return "550 5.7.1 would refuse\r\n" end end
'''


class ShadowRefusal(MailhookTest):
    def test_a_shadow_script_writes_would_reject_and_the_front_nothing(self):
        self.start_both(SHADOW, policyd_args=["--shadow"])
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual(c.cmd("RCPT TO:<no@example.com>")[0], 250)
        wait_for(lambda: refusals(self.policyd.output()), what="the would_reject line")
        line = refusals(self.policyd.output())[0]
        self.assertEqual((line["verb"], line["hook"], line["script"], line["reply"]),
                         ("would_reject", "rcpt", self.script_path, "550 5.7.1 would refuse"))
        c.cmd("QUIT")
        wait_for(lambda: "end=quit" in self.front.output(), what="the session line")
        self.assertEqual(refusals(self.front.output()), [])


ERRORS = r'''
function hook.rcpt(r)
  if r == "bug@example.com" then error("script bug") end
  if r == "bad@example.com" then return "999 not a reply\r\n" end
end
function hook.header(h) if h:find("^X%-Boom") then error("header bug") end end
'''


class HookError(MailhookTest):
    def errors(self, port, hook):
        return sample(scrape(port), 'mailhook_policyd_hook_errors_total{script="%s",hook="%s"}' % (self.script_path, hook))

    def run_errors(self, mode):
        port = free_port()
        args = ["--metrics", "127.0.0.1:%d" % port] + (["--hook-error", mode] if mode else [])
        self.start_both(ERRORS, policyd_args=args)
        self.assertEqual(self.errors(port, "rcpt"), 0)  # each script's hooks are exported before any error
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in ("bug@example.com", "bad@example.com", "ok@example.com")]
        c.cmd("DATA")
        replies.append(c.cmd("X-Boom: 1\r\nSubject: s\r\n\r\nbody\r\n."))
        self.assertEqual(self.errors(port, "rcpt"), 2)
        self.assertEqual(self.errors(port, "header"), 1)
        return replies

    def test_default_mode_answers_the_default_reply(self):
        replies = self.run_errors(None)
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 250])
        self.assertIn("error: ", self.policyd.output())
        self.assertIn("default reply sent", self.policyd.output())
        self.assertEqual(refusals(self.policyd.output()), [])

    def test_tempfail_mode_answers_451_and_logs_the_refusal(self):
        replies = self.run_errors("tempfail")
        self.assertEqual([r[0] for r in replies], [451, 451, 250, 451])
        self.assertEqual(replies[0][1], ["451 4.3.0 Policy temporarily unavailable, try again later"])
        wait_for(lambda: len(refusals(self.front.output())) == 3, what="three refusal lines in the front")
        for lines in (refusals(self.front.output()), refusals(self.policyd.output())):
            self.assertEqual([(l["hook"], l["script"]) for l in lines],
                             [("rcpt", self.script_path), ("rcpt", self.script_path), ("header", self.script_path)])
        self.assertIn("451 sent (--hook-error tempfail)", self.policyd.output())

    def test_a_bad_mode_is_refused(self):
        p = Process([POLICYD, "--hook-error", "accept", "--check"], os.path.join(self.dir, "bad.log"))
        self.processes.append(p)
        self.assertNotEqual(p.proc.wait(timeout=10), 0)
        self.assertIn("--hook-error", p.output())


class LogLevel(MailhookTest):
    def session_with_a_refusal(self):
        c = self.client()
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<no@example.com>")
        c.cmd("QUIT")
        c.close()

    def stopped_logs(self):
        """Both daemons stopped (every line written), their logs."""
        self.front.stop()
        self.policyd.stop()
        return self.front.output(), self.policyd.output()

    def test_notice_keeps_refusals_and_drops_the_session_lines(self):
        self.start_both(POLICY, policyd_args=["--log-level", "notice"], front_args=["--log-level", "notice"])
        self.session_with_a_refusal()
        wait_for(lambda: refusals(self.front.output()), what="the front's refusal line")
        front, policyd = self.stopped_logs()
        for log in (front, policyd):
            self.assertEqual(len(refusals(log)), 1, log)
            self.assertNotIn(" info: ", log)
            self.assertIn(" notice: ", log)

    def test_warning_drops_refusals_too_and_debug_adds_every_reply(self):
        # At warning policyd does not even say "listening on" (notice): await the port.
        self.start_policyd(POLICY, args=["--log-level", "warning"], wait=False)
        wait_for(lambda: port_open(self.policyd_port), what="policyd's port")
        self.start_front(["--log-level", "debug"])
        self.session_with_a_refusal()
        wait_for(lambda: "end=quit" in self.front.output(), what="the front's session line")
        front, policyd = self.stopped_logs()
        self.assertEqual(refusals(policyd), [])
        self.assertNotIn(" notice: ", policyd)
        self.assertEqual(len(refusals(front)), 1)
        self.assertIn('debug: session=', front)
        self.assertRegex(front, r'command=RCPT reply="550 5\.7\.1 no such user here\\nask')

    def test_debug_adds_every_hook_outcome_in_policyd(self):
        self.start_both(POLICY, policyd_args=["--log-level", "debug"])
        self.session_with_a_refusal()
        wait_for(lambda: " end\n" in self.policyd.output(), what="policyd's session line")
        log = self.policyd.output()
        self.assertRegex(log, r'debug: session=\S+ script=\S+policy\.lua hook=rcpt: "550 5\.7\.1 no such user here'
                              r'\\nask \\"postmaster\\"" in [\d.]+ ms')
        self.assertEqual(len(refusals(log)), 1)

    def test_an_unknown_level_is_refused(self):
        for binary in (POLICYD, self.front_binary()):
            p = Process([binary, "--log-level", "verbose", "--help"], os.path.join(self.dir, "lvl.log"))
            self.processes.append(p)
            self.assertNotEqual(p.proc.wait(timeout=10), 0)
            self.assertIn("--log-level", p.output())

    def front_binary(self):
        from harness import FRONT
        return FRONT


def milter_session(port, client_addr):
    """One milter session (negotiate, CONNECT, QUIT) against policyd's milter."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(struct.pack(">I", 13) + b"O" + struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
        head = s.recv(5)
        s.recv(struct.unpack(">I", head[:4])[0] - 1)
        data = b"client.example\x00" + b"4" + struct.pack(">H", 4000) + client_addr.encode() + b"\x00"
        s.sendall(struct.pack(">I", len(data) + 1) + b"C" + data)
        s.recv(64)
        s.sendall(struct.pack(">I", 1) + b"Q")
    finally:
        s.close()


class UniqueIds(MailhookTest):
    def test_two_policyd_milters_started_together_give_different_session_ids(self):
        script = self.write_script("function hook.accept() end\n")
        milters = []
        for i in range(2):
            port = free_port()
            p = Process([POLICYD, "--listen", "127.0.0.1:%d" % free_port(), "--script", script, "--log-stderr",
                         "--workers", "1", "--ptr-lookup", "no", "--temp-dir", os.path.join(self.dir, "tmp%d" % i),
                         "--milter", "inet:%d@127.0.0.1" % port], os.path.join(self.dir, "milter-%d.log" % i))
            self.processes.append(p)
            milters.append((port, p))
        for _, p in milters:
            wait_for(lambda: "milter listening on" in p.output() or not p.alive(), what="milter listening")
            self.assertTrue(p.alive(), p.output())
        ids = []
        for n in range(3):
            for i, (port, p) in enumerate(milters):
                milter_session(port, "192.0.2.%d" % (10 + i))
        for i, (_, p) in enumerate(milters):
            wait_for(lambda: p.output().count(" end\n") == 3, what="three sessions ended")
            ids += re.findall(r"session=(\S+) client=client\.example\[192\.0\.2\.%d\] policy=" % (10 + i), p.output())
        self.assertEqual(len(ids), 6, ids)
        self.assertEqual(len(set(ids)), 6, ids)
        for i in ids:
            self.assertRegex(i, r"^[0-9A-HJKMNP-TV-Z]{21}$")  # the front's format: Crockford base32


POSTFIX_POLICY = r'''
function hook.rcpt(r)
  if r == "no@example.com" then return "550 5.7.1 no such user here\r\n" end
end
function hook.dot(path)
  for line in io.lines(path) do
    if line:find("^Subject: refuse") then return "554 5.7.1 refused by policy\r\n" end
  end
end
'''

MESSAGE = "From: a@example.org\r\nTo: b@example.com\r\nSubject: %s\r\n\r\nbody\r\n"


class MtaQueueId(MilterTest):
    def setUp(self):
        super().setUp()
        self.start_milter(POSTFIX_POLICY)
        self.sink = Sink()
        self.addCleanup(self.sink.stop)
        self.smtp_port = free_port()
        os.chmod(self.dir, 0o711)  # Postfix's daemons (user postfix) must reach their directories
        self.postfix = PrivatePostfix(os.path.join(self.dir, "pf"), self.smtp_port, self.sink.port,
                                      milter="inet:127.0.0.1:%d" % self.milter_port,
                                      extra_main_cf=dict(snippet_settings(), **{
                                          "smtpd_milters": "inet:127.0.0.1:%d" % self.milter_port}))
        self.postfix.start()

    def tearDown(self):
        self.postfix.stop()
        super().tearDown()

    def send(self, subject, rcpts):
        c = SmtpClient(self.smtp_port)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.org>")
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        c.cmd("DATA")
        replies.append(c.cmd(MESSAGE % subject + "."))
        c.cmd("QUIT")
        return replies

    def test_policyd_lines_join_postfix_lines_on_the_mta_queue_id(self):
        # Delivered: the Received header's id is the mta_queue_id of policyd's transaction line.
        replies = self.send("pass", ["b@example.com"])
        self.assertEqual(replies[-1][0], 250)
        wait_for(lambda: self.sink.messages, timeout=30, what="the message at the sink")
        data = self.sink.messages[0][2]
        data = data.decode() if isinstance(data, bytes) else data
        qid = re.search(r"by mx\.test \(Postfix\) with E?SMTP id (\w+)", data).group(1)
        wait_for(lambda: re.search(r"queue_id=\S+ session=\S+ mta_queue_id=%s client=" % qid, self.policyd.output()),
                 what="policyd's transaction line with Postfix's queue id")
        # Refused at the end of the message: Postfix's milter-reject line and
        # policyd's refusal line carry the same queue id.
        replies = self.send("refuse", ["no@example.com", "b@example.com"])
        self.assertEqual(replies[0][0], 550)
        self.assertEqual(replies[-1][0], 554)
        wait_for(lambda: "END-OF-MESSAGE" in self.postfix.log(), timeout=20, what="Postfix's milter-reject line")
        pf = re.search(r"(\w+): milter-reject: END-OF-MESSAGE from (\S+): 5\.7\.1 refused by policy", self.postfix.log())
        self.assertIsNotNone(pf, self.postfix.log())
        wait_for(lambda: any(l["hook"] == "dot" for l in refusals(self.policyd.output())), what="policyd's line")
        ours = [l for l in refusals(self.policyd.output()) if l["hook"] == "dot"][0]
        self.assertEqual(ours["mta"], pf.group(1))
        # helo=: no script listens to HELO, yet policyd takes the step (no
        # reply, SMFIP_NR_HELO): the name is the one Postfix's line has.
        self.assertEqual((ours["from"], ours["to"], ours["client"], ours["helo"]),
                         ("<a@example.org>", "<b@example.com>", pf.group(2), "client.example"))
        # The RCPT refusal: Postfix has no queue file yet (NOQUEUE), policyd says "-".
        rcpt = [l for l in refusals(self.policyd.output()) if l["hook"] == "rcpt"][0]
        self.assertEqual((rcpt["mta"], rcpt["to"]), ("-", "<no@example.com>"))
        self.assertRegex(self.postfix.log(), r"NOQUEUE: milter-reject: RCPT from \S+: 550 5\.7\.1 no such user here; "
                                             r"from=<a@example\.org> to=<no@example\.com>")
        side_by_side = os.environ.get("MAILHOOK_LOG_SAMPLES")
        if side_by_side:  # for docs/logging.md and the lead's note
            with open(side_by_side, "a") as f:
                for line in self.postfix.log().splitlines():
                    if "milter-reject" in line:
                        f.write("postfix: " + line + "\n")
                for line in self.policyd.output().splitlines():
                    if "reject:" in line:
                        f.write("policyd-milter: " + line + "\n")


if __name__ == "__main__":
    unittest.main()

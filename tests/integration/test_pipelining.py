"""RFC 2920 pipelining against the real front and policyd: the events of
MAIL, RCPT and DATA a client sends in one write go to policyd in one frame
(--policy-pipeline-depth), and the scripts see exactly the events, in the
same order and with the same fields, as when the commands come one at a
time; a refusal skips what followed it, and the client's replies do not
change."""

import re
import unittest

from harness import MailhookTest, free_port, sample, scrape, wait_for

# Each hook logs what it saw; the test compares the lines per session.
SCRIPT = r'''
local function seen(what)
  syslog.info("SEEN " .. what .. " input=[" .. client.input .. "] trans=" .. tostring(client.id_trans) .. " rcpts=" .. table.concat(client.recipients or {}, ","))
end
function hook.mail(s)
  seen("mail " .. s)
  if s == "refused@sender.example" then return "550 5.7.1 sender refused\r\n" end
end
function hook.rcpt(r)
  seen("rcpt " .. r)
  if r == "b2-refused@rcpt.example" then return "550 5.1.1 no such user\r\n" end
end
function hook.data() seen("data") end
'''

PIPELINED = ["MAIL FROM:<%s>", "RCPT TO:<b1@rcpt.example>", "RCPT TO:<%s@rcpt.example>",
             "RCPT TO:<b3@rcpt.example>", "DATA"]


def commands(sender="a@sender.example", second="b2"):
    return [PIPELINED[0] % sender, PIPELINED[1], PIPELINED[2] % second, PIPELINED[3], PIPELINED[4]]


class Pipelining(MailhookTest):
    FRONT_DEPTH = None  # the default (16)

    def setUp(self):
        super().setUp()
        self.metrics_port = free_port()
        args = ["--metrics", "127.0.0.1:%d" % self.metrics_port]
        if self.FRONT_DEPTH is not None:
            args += ["--policy-pipeline-depth", str(self.FRONT_DEPTH)]
        self.start_both(SCRIPT, front_args=args)

    def metric(self, name):
        return sample(scrape(self.metrics_port), name) or 0

    sessions = 0

    def session(self, lines, pipelined, body=None):
        """One SMTP session: EHLO, then `lines` in one write or one at a
        time (and `body` after a 354); returns the replies (code, last
        line) and the session's SEEN lines as policyd logged them, the
        session id replaced by ID (ids differ between sessions)."""
        c = self.client()
        self.assertEqual(c.cmd("EHLO client.example")[0], 250)
        if pipelined:
            c.send("".join(line + "\r\n" for line in lines))
            replies = [c.read_reply() for _ in lines]
        else:
            replies = [c.cmd(line) for line in lines]
        if body is not None and replies[-1][0] == 354:
            c.send(body + ".\r\n")
            replies.append(c.read_reply())
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.sessions += 1
        ended = lambda: re.findall(r"session=(\S+) client=\S+ port=\d+ .* end=", self.front.output())
        wait_for(lambda: len(ended()) >= self.sessions, what="the front ended the session")
        sid = ended()[-1]
        wait_for(lambda: re.search(r"session=%s client=.* end$" % sid, self.policyd.output(), re.M),
                 what="policyd ended the session")
        seen = [re.sub(r"^.*?SEEN ", "SEEN ", l).replace(sid, "ID")
                for l in self.policyd.output().splitlines() if "SEEN" in l and "session=%s " % sid in l]
        return [(code, text[-1].replace(sid, "ID")) for code, text in replies], seen


class PipelinedEventsMatchOneAtATime(Pipelining):
    def test_the_script_sees_the_same_events_and_they_went_in_one_frame(self):
        body = "Subject: t\r\n\r\nhello\r\n"
        one_by_one = self.session(commands(), pipelined=False, body=body)
        ahead_before = self.metric("mailhook_front_policy_events_sent_ahead_total")
        self.assertEqual(ahead_before, 0)
        pipelined = self.session(commands(), pipelined=True, body=body)
        self.assertEqual(pipelined, one_by_one)
        self.assertEqual([code for code, _ in pipelined[0]], [250, 250, 250, 250, 354, 250])
        self.assertEqual([l.split(" input=")[0] for l in pipelined[1]],
                         ["SEEN mail a@sender.example", "SEEN rcpt b1@rcpt.example", "SEEN rcpt b2@rcpt.example",
                          "SEEN rcpt b3@rcpt.example", "SEEN data"])
        # RCPT x3 and DATA went with MAIL's ask, in one frame.
        self.assertEqual(self.metric("mailhook_front_policy_events_sent_ahead_total"), 4)
        self.assertEqual(self.metric("mailhook_front_policy_events_skipped_total"), 0)


class RefusedMailSkipsWhatFollowed(Pipelining):
    def test_no_rcpt_hook_runs_and_the_client_gets_503s(self):
        replies, seen = self.session(commands(sender="refused@sender.example"), pipelined=True)
        self.assertEqual([code for code, _ in replies], [550, 503, 503, 503, 503])
        self.assertEqual([l.split(" input=")[0] for l in seen], ["SEEN mail refused@sender.example"])
        self.assertEqual(self.metric("mailhook_front_policy_events_sent_ahead_total"), 4)
        # The same commands one at a time: the same replies, the same events.
        self.assertEqual(self.session(commands(sender="refused@sender.example"), pipelined=False), (replies, seen))

    def test_the_next_ask_consumes_the_skipped_answers(self):
        c = self.client()
        c.cmd("EHLO client.example")
        c.send("".join(l + "\r\n" for l in commands(sender="refused@sender.example")))
        self.assertEqual([c.read_reply()[0] for _ in range(5)], [550, 503, 503, 503, 503])
        # A new transaction on the same session: its MAIL is answered after
        # the four skipped decisions, and the hooks see it as usual.
        self.assertEqual(self.send_message(c, sender="ok@sender.example", rcpts=("b1@rcpt.example",))[0], 250)
        self.assertEqual(self.metric("mailhook_front_policy_events_skipped_total"), 4)
        self.assertEqual(self.metric("mailhook_policy_failures_total"), 0)


class RefusedRcptStillAsksTheNext(Pipelining):
    def test_the_third_rcpt_is_asked_and_data_names_the_rest(self):
        body = "Subject: t\r\n\r\nhello\r\n"
        replies, seen = self.session(commands(second="b2-refused"), pipelined=True, body=body)
        self.assertEqual([code for code, _ in replies], [250, 250, 550, 250, 354, 250])
        self.assertEqual([l.split(" input=")[0] for l in seen],
                         ["SEEN mail a@sender.example", "SEEN rcpt b1@rcpt.example", "SEEN rcpt b2-refused@rcpt.example",
                          "SEEN rcpt b3@rcpt.example", "SEEN data"])
        self.assertTrue(seen[-1].endswith("rcpts=b1@rcpt.example,b3@rcpt.example"), seen[-1])
        # MAIL's frame carried 4 ahead; after the refusal the third RCPT went
        # again with DATA ahead (policyd skipped the first two).
        self.assertEqual(self.metric("mailhook_front_policy_events_sent_ahead_total"), 5)
        self.assertEqual(self.metric("mailhook_front_policy_events_skipped_total"), 2)
        self.assertEqual(self.session(commands(second="b2-refused"), pipelined=False, body=body), (replies, seen))
        # Both messages went to the two recipients left (the front's delivery line).
        self.assertEqual(self.front.output().count("to=<b1@rcpt.example>,<b3@rcpt.example> size="), 2)


class DepthZeroGivesTheSameReplies(Pipelining):
    FRONT_DEPTH = 0

    def test_nothing_goes_ahead_and_the_replies_are_the_same(self):
        body = "Subject: t\r\n\r\nhello\r\n"
        for sender, second, codes in (("a@sender.example", "b2", [250, 250, 250, 250, 354, 250]),
                                      ("refused@sender.example", "b2", [550, 503, 503, 503, 503]),
                                      ("a@sender.example", "b2-refused", [250, 250, 550, 250, 354, 250])):
            replies, seen = self.session(commands(sender, second), pipelined=True, body=body)
            self.assertEqual([code for code, _ in replies], codes)
            self.assertEqual(self.session(commands(sender, second), pipelined=False, body=body), (replies, seen))
        self.assertEqual(self.metric("mailhook_front_policy_events_sent_ahead_total"), 0)


class OneCallPerSessionNeverBatches(MailhookTest):
    """--policy-streams 0, and a front that fell back to one call per
    session before an older policyd: the depth is ignored, the replies
    are the same."""

    def check(self, front_port, metrics_port, rcpt_reply):
        c = self.client(port=front_port)
        c.cmd("EHLO client.example")
        c.send("".join(l + "\r\n" for l in commands()))
        replies = [c.read_reply() for _ in range(5)]
        self.assertEqual([code for code, _ in replies], [250, 250, 250, 250, 354])
        self.assertEqual(replies[2][1][-1], rcpt_reply)
        self.assertEqual(sample(scrape(metrics_port), "mailhook_front_policy_events_sent_ahead_total"), 0)

    def test_per_call_streams(self):
        metrics = free_port()
        self.start_both(SCRIPT, front_args=["--policy-streams", "0", "--metrics", "127.0.0.1:%d" % metrics])
        self.check(self.front_port, metrics, "250 2.1.5 Ok")

    def test_behind_an_older_policyd(self):
        import test_policy_mux
        metrics = free_port()
        self.FRONT_ARGS = ["--metrics", "127.0.0.1:%d" % metrics]
        test_policy_mux.start_behind_older_policyd(self)
        self.check(self.front_port, metrics, "250 2.1.5 old policyd took b2@rcpt.example")


if __name__ == "__main__":
    unittest.main()

"""One case file, three shapes (issue 22, item 5): every shipped case file
(docs/policy-tests.md) replays through mailhook-policyd --test, through the
real mailhook-front + policyd over loopback, and through policyd's milter
adapter driven as an MTA would (case_replay.py, tools/case-replay), and the
shapes agree: each check line passes in every shape that can express it.
What a shape cannot express is n/a with its reason, and the exact set of
n/a lines is asserted here, so a line that starts or stops diverging fails
the test. A case file added to the tree fails it until listed below."""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import FRONT, POLICYD, free_port, wait_for
from replay_daemons import StdinProcess
from test_security_milter import MilterClient, connect_data, packet

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
REPLAY = os.path.join(HERE, "case_replay.py")

# policyd flags per file, as tests/cases/CMakeLists.txt runs them under
# --test; every other file: --ptr-lookup no (cases.examples).
FLAGS = {
    "tests/cases/hooks.case": [],
    "tests/cases/timeout.case": ["--hook-timeout=300"],
}
DEFAULT_FLAGS = ["--ptr-lookup=no"]

# Divergences no rule of the replayer can tell from a fault, each with
# its reason: that line failing in that shape is n/a, agreeing fails.
KNOWN = {
    ("lua/examples/vpop3/smtpsvr.case", 18, "milter"):
        "milter-no-limits: limits a script sets (vpop3's MaxMessageSize) bind the front; an MTA keeps its own SIZE",
    ("tests/cases/hooks.case", 29, "milter"):
        "milter-no-limits: mailhook.limits binds the front; an MTA keeps its own SIZE",
    ("tests/cases/hooks.case", 14, "milter"):
        "milter-helo-is-ehlo: the milter HELO step cannot tell HELO from EHLO; with hook.ehlo defined it runs "
        "hook.ehlo (milter_mapping.h helo_kind), not the hook.helo that answers 421",
    ("tests/cases/hooks.case", 22, "milter"):
        "milter-helo-is-ehlo: as line 14, hook.helo's mailhook.disconnect is not reached",
}

# The n/a lines of each file and shape, by reason (the word before the
# first ':' of the replayer's detail; case_replay.py says each in full).
EXPECTED_NA = {}  # filled below


def shipped_case_files():
    found = []
    for pattern in ("lua/**/*.case", "tests/cases/*.case", "bench/peers/**/*.case"):
        found += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    return sorted(os.path.relpath(f, ROOT) for f in found)


class CaseShapes(unittest.TestCase):
    maxDiff = None

    def replay(self, files, flags):
        known = ["--known=%s:%d:%s=%s" % (os.path.join(ROOT, f), n, shape, reason)
                 for (f, n, shape), reason in KNOWN.items() if f in files]
        r = subprocess.run([sys.executable, REPLAY, "--json"] + ["--policyd-flag=" + f for f in flags] + known +
                           [os.path.join(ROOT, f) for f in files],
                           capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, MAILHOOK_FRONT=FRONT, MAILHOOK_POLICYD=POLICYD))
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        doc = json.loads(r.stdout)
        return {os.path.relpath(os.path.realpath(k), ROOT): v for k, v in doc.items()}

    def test_every_shipped_case_agrees_in_all_three_shapes(self):
        files = shipped_case_files()
        self.assertEqual(sorted(EXPECTED_NA), files, "a case file without its EXPECTED_NA entry (or one gone)")
        groups = {}
        for f in files:
            groups.setdefault(tuple(FLAGS.get(f, DEFAULT_FLAGS)), []).append(f)
        results = {}
        for flags, members in groups.items():
            results.update(self.replay(members, list(flags)))
        self.assertEqual(sorted(results), files)
        problems, na = [], {}
        for f in files:
            for line, per in results[f].items():
                self.assertEqual(per.get("test", ["pass"])[0], "pass", "%s:%s under --test: %s" % (f, line, per))
                for shape, (verdict, detail) in per.items():
                    if verdict not in ("pass", "n/a"):
                        problems.append("%s:%s %s %s: %s" % (f, line, shape, verdict, detail))
                    elif verdict == "n/a":
                        key = detail.split(":", 1)[0]
                        na.setdefault(f, {}).setdefault(shape, {}).setdefault(key, []).append(int(line))
        self.assertEqual(problems, [], "shapes disagree")
        for f in files:
            got = {s: {k: sorted(v) for k, v in r.items()} for s, r in na.get(f, {}).items()}
            self.assertEqual(got, EXPECTED_NA[f], "the n/a lines of " + f)


# The scripts' clock of a policyd started with --test-clock-stdin, read
# back through the milter (a 5xx carries the script's text there).
CLOCK_SCRIPT = r'''
function hook.helo(name)
  return "550 5.7.1 now=" .. os.time() .. "\r\n"
end
'''


class ClockStdin(unittest.TestCase):
    def start(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="mailhook-clock-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        script = os.path.join(self.dir, "clock.lua")
        with open(script, "w") as f:
            f.write(CLOCK_SCRIPT)
        self.port = free_port()
        self.p = StdinProcess([POLICYD, "--listen", "127.0.0.1:%d" % free_port(), "--script", script,
                              "--workers", "1", "--log-stderr", "--ptr-lookup", "no", "--temp-dir",
                              os.path.join(self.dir, "tmp"), "--milter", "inet:%d@127.0.0.1" % self.port] + list(flags),
                             os.path.join(self.dir, "policyd.log"))
        self.addCleanup(self.p.stop)
        wait_for(lambda: "milter listening on" in self.p.output() or not self.p.alive(), what="policyd")
        self.assertTrue(self.p.alive(), self.p.output())

    def line(self, text):
        self.p.proc.stdin.write(text.encode() + b"\n")
        self.p.proc.stdin.flush()

    def awaits(self, text, count=1):
        wait_for(lambda: self.p.output().count(text) >= count, what=text)

    def now(self):
        m = MilterClient(("127.0.0.1", self.port))
        self.addCleanup(m.close)
        m.negotiate()
        m.send(packet(b"C", connect_data()))
        letter, data = m.command(packet(b"H", b"c.example\0"))
        self.assertEqual(letter, b"y", data)
        return int(data.split(b"now=")[1].split(b"\0")[0])

    def test_set_and_advance_move_the_scripts_clock_and_bad_lines_are_refused(self):
        self.start("--test-clock-stdin")
        self.assertIn("test clock: the scripts' clock follows standard input", self.p.output())
        self.line("advance 5")  # before any set
        self.awaits('needs a "set" first')
        for bad in ("set x", "set -1", "jump 5", "set 5 6"):
            self.line(bad)
        self.awaits("ignored: expected", 3)
        self.awaits("set: a time before 1970")
        self.line("set " + "9" * 80)  # over the 64-byte line bound
        self.awaits("a line over 64 bytes ignored")
        self.assertAlmostEqual(self.now(), time.time(), delta=60)  # nothing took: the system clock
        self.line("set 1796119200")
        self.awaits("scripts now see 2026-12-01T10:00:00Z (1796119200)")
        self.assertEqual(self.now(), 1796119200)
        self.line("advance 0")
        self.line("advance 316224001")  # ten years (of 366 days) and a second
        self.awaits("a positive number of seconds up to ten years", 2)
        self.line("advance 316224000")
        self.awaits("(2112343200)")
        self.assertEqual(self.now(), 1796119200 + 316224000)

    def test_without_the_flag_stdin_is_not_read(self):
        self.start()
        self.line("set 1796119200")
        self.assertAlmostEqual(self.now(), time.time(), delta=60)
        self.assertNotIn("test clock", self.p.output())

    def test_the_flag_cannot_come_from_a_config_file(self):
        conf = os.path.join(tempfile.mkdtemp(prefix="mailhook-clock-"), "policyd.conf")
        self.addCleanup(shutil.rmtree, os.path.dirname(conf), True)
        with open(conf, "w") as f:
            f.write("test-clock-stdin = true\n")
        r = subprocess.run([POLICYD, "--config", conf, "--check"], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("test-clock-stdin", r.stdout + r.stderr)


EXPECTED_NA.update({
    'bench/peers/mailhook/policy.case': {},
    'lua/examples/access_map.case': {},
    'lua/examples/auth.case': {'milter': {'milter-auth': [10, 11, 16, 17]}},
    'lua/examples/auth_check.case': {},
    'lua/examples/commands.case': {'milter': {'milter-mta-text': [11, 15], 'milter-no-command': [6, 7, 8, 9]}},
    'lua/examples/connect.case': {'milter': {'milter-connect-no-text': [6], 'milter-mta-text': [10]}},
    'lua/examples/content.case': {},
    'lua/examples/dkim_sign.case': {'milter': {'milter-auth': [71, 72]}},
    'lua/examples/dnsbl.case': {'milter': {'milter-connect-no-text': [10]}},
    'lua/examples/dot.case': {},
    'lua/examples/envelope.case': {},
    'lua/examples/greylist.case': {},
    'lua/examples/greylist_clock.case': {},
    'lua/examples/greylist_kv.case': {},
    'lua/examples/policy.case': {},
    'lua/examples/qpsmtpd/plugins.case': {'milter': {'milter-connect-no-text': [14, 67]}},
    'lua/examples/ratelimit_kv.case': {},
    'lua/examples/smtpf/relay_rbl.case': {'milter': {'milter-connect-no-text': [10]}},
    'lua/examples/vpop3/smtpsvr.case': {'milter': {'known': [18], 'milter-connect-no-text': [11]}},
    'tests/cases/clock.case': {'milter': {'milter-mta-text': [12, 18, 22, 27]}},
    'tests/cases/dmarc.case': {'milter': {'milter-mta-text': [12, 19, 26, 33, 40, 48, 55, 62, 70, 77, 84, 91, 98, 104]}},
    'tests/cases/hooks.case': {'milter': {'known': [14, 22, 29],
                                          'milter-mta-ehlo': [8, 27, 34, 35, 36, 37],
                                          'milter-mta-text': [7, 33, 44, 57, 75],
                                          'milter-no-command': [65, 66, 67, 68]}},
    'tests/cases/spf.case': {'milter': {'milter-mta-text': [10, 23, 32, 40, 47, 84, 91, 99]}},
    'tests/cases/timeout.case': {}
})

if __name__ == "__main__":
    unittest.main()

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
import subprocess
import sys
import unittest

from harness import FRONT, POLICYD

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
    ("lua/examples/access_map.case", 28, "milter"):
        "bug-milter-helo: with no hook.helo/hook.ehlo policyd negotiates SMFIP_NOHELO, so client.helo is empty "
        "in hook.mail behind a milter (policyd/milter/milter_mapping.cc negotiate)",
    ("lua/examples/auth_check.case", 131, "milter"):
        "bug-milter-helo: as access_map.case:28, spf.check gets no HELO name behind a milter",
    ("lua/examples/smtpf/relay_rbl.case", 27, "milter"):
        "bug-milter-local-host: smtpe.host is empty behind a milter (on_connect sets no local_host; "
        "docs/lua-api.md says the MTA's macro j)",
    ("lua/examples/vpop3/smtpsvr.case", 30, "milter"):
        "bug-milter-local-host: as relay_rbl.case:27, the vpop3 host name is empty behind a milter",
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
                    if verdict in ("fail", "unreached"):
                        problems.append("%s:%s %s %s: %s" % (f, line, shape, verdict, detail))
                    elif verdict == "n/a":
                        key = detail.split(":", 1)[0]
                        na.setdefault(f, {}).setdefault(shape, {}).setdefault(key, []).append(int(line))
        self.assertEqual(problems, [], "shapes disagree")
        for f in files:
            got = {s: {k: sorted(v) for k, v in r.items()} for s, r in na.get(f, {}).items()}
            self.assertEqual(got, EXPECTED_NA[f], "the n/a lines of " + f)


EXPECTED_NA.update({
    'bench/peers/mailhook/policy.case': {},
    'lua/examples/access_map.case': {'milter': {'known': [28]}},
    'lua/examples/auth.case': {'milter': {'milter-auth': [10, 11, 16, 17]}},
    'lua/examples/auth_check.case': {'milter': {'known': [131]}},
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
    'lua/examples/qpsmtpd/plugins.case': {'milter': {'milter-connect-no-text': [14]}},
    'lua/examples/ratelimit_kv.case': {},
    'lua/examples/smtpf/relay_rbl.case': {'milter': {'known': [27], 'milter-connect-no-text': [10]}},
    'lua/examples/vpop3/smtpsvr.case': {'milter': {'known': [18, 30], 'milter-connect-no-text': [11]}},
    'tests/cases/clock.case': {'milter': {'milter-mta-text': [12, 18, 22, 27]}},
    'tests/cases/dmarc.case': {'milter': {'milter-mta-text': [12, 19, 26, 33, 40, 48, 55, 62, 70, 77, 84, 91, 98, 104]}},
    'tests/cases/hooks.case': {'milter': {'known': [14, 22, 29],
                                          'milter-mta-ehlo': [8, 27, 34, 35],
                                          'milter-mta-text': [7, 33, 42, 55, 73],
                                          'milter-no-command': [63, 64, 65, 66]}},
    'tests/cases/spf.case': {'milter': {'milter-mta-text': [10, 23, 32, 40, 47, 84, 91, 99]}},
    'tests/cases/timeout.case': {}
})

if __name__ == "__main__":
    unittest.main()

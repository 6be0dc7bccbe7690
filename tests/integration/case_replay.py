#!/usr/bin/env python3
"""Replays policy test case files (docs/policy-tests.md) in three shapes:

  test    mailhook-policyd --test FILE, as administrators run it
  front   the real mailhook-front + mailhook-policyd over loopback: an SMTP
          client sends the case's `send:` lines from the case's client
          address (a private network namespace puts those addresses on its
          loopback), DNS answers come from tests/integration/dnsserver.py,
          the clock from --test-clock-stdin
  milter  mailhook-policyd --milter driven by a milter client playing the
          MTA: each SMTP command becomes its milter command, each milter
          answer the SMTP reply the MTA sends (docs/policy-tests.md, "One
          case file, three shapes", has the mapping)

Every check line (connect, expect, expect-line, expect-no-line, change,
changes) gets a verdict per shape: pass, fail, n/a (the shape cannot
express it, with the reason), unreached (an earlier line of its case failed) or missing (this
replayer read the file otherwise than --test); n/a lines are listed and
counted, never dropped. It must never touch anything but loopback, and
stops every process it starts by PID. The pieces: replay_cases.py (files,
replies, verdicts), replay_daemons.py, replay_front.py, replay_milter.py.

  tools/case-replay FILE.case... [--shape test|front|milter|all] [--json]
                    [--policyd-flag=FLAG]... [--known FILE:LINE:SHAPE=REASON]...
Exit status: 0 when every shape passed every line it can express and the
shapes agree, 1 otherwise, 2 on a malformed file or a failed start."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (after the path: the tool runs from anywhere)
from replay_cases import CHECKS, CaseError, Run, parse_case_file  # noqa: E402
from replay_front import run_front_shape  # noqa: E402
from replay_milter import run_milter_shape  # noqa: E402

SHAPES = ("test", "front", "milter")
NETNS_MARK = "MAILHOOK_CASE_REPLAY_NETNS"


# ------------------------------------------------------- shape: --test

def run_test_shape(cf, flags, work, known=None):
    """policyd --test FILE: PASS means every check line of the case passed;
    FAIL names the first failing line (the rest of that case is unreached)."""
    r = subprocess.run([harness.POLICYD, "--test", cf.path, "--temp-dir", os.path.join(work, "test-tmp")] + flags,
                       capture_output=True, text=True, timeout=300)
    out = Run()
    verdicts = {}
    for m in re.finditer(r"^(PASS|FAIL) .*?:(\d+) .*?(?:: line (\d+): (.*))?$", r.stdout, re.M):
        verdicts[int(m.group(2))] = (m.group(1), int(m.group(3) or 0), m.group(4) or "")
    if r.returncode == 2 or not verdicts:
        raise CaseError("policyd --test %s: exit %d: %s%s" % (cf.path, r.returncode, r.stdout, r.stderr[-2000:]))
    for c in cf.cases:
        if c.line not in verdicts:
            raise CaseError("policyd --test gave no verdict for %s:%d" % (cf.path, c.line))
        kind, at, what = verdicts[c.line]
        for s in c.steps:
            if kind == "FAIL" and s.line == at:
                out.put(s.line, "fail", what)
            elif kind == "FAIL" and s.line > at and s.kind in CHECKS:
                out.put(s.line, "unreached", "an earlier line of the case failed")
            elif s.kind in CHECKS:
                out.put(s.line, "pass", "")
    return out


# ------------------------------------------------------- the network

def client_addresses(files):
    """Every case's client address, as the loopback of the private
    namespace must carry it (an IPv4-mapped address is its IPv4 one)."""
    out = set()
    for cf in files:
        for c in cf.cases:
            a = c.address
            out.add(a[7:] if a.lower().startswith("::ffff:") and "." in a else a)
    return sorted(out)


def enter_netns(argv):
    """Runs this tool again in a private network namespace (unshare(1)):
    its loopback carries the cases' client addresses, so the front sees
    the case's client as its peer; nothing reaches the host's network."""
    cmd = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **{NETNS_MARK: "1"})
    return subprocess.call(cmd + [sys.executable, os.path.abspath(__file__)] + argv, env=env)


def setup_loopback(addresses):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for a in addresses:
        if ":" in a:
            subprocess.run(["ip", "-6", "addr", "add", a + "/128", "dev", "lo", "nodad"], check=True)
        else:
            subprocess.run(["ip", "addr", "add", a + "/32", "dev", "lo"], check=True)


# ------------------------------------------------------------ running

def replay(files, shapes, flags, work, known=None):
    """{file: {shape: Run}}. `known`: {(realpath, line, shape): reason}."""
    results = {}
    runners = {"test": run_test_shape, "front": run_front_shape, "milter": run_milter_shape}
    known = known or {}
    for cf in files:
        results[cf.path] = {}
        for shape in shapes:
            mine = {n: r for (f, n, sh), r in known.items() if f == os.path.realpath(cf.path) and sh == shape}
            if shape == "test" and mine:
                raise CaseError("--known: --test is the reference shape; nothing of it can be declared")
            results[cf.path][shape] = runners[shape](cf, flags.get(cf.path, []), work, mine)
    return results


def summarise(cf, runs):
    """Per check line: every shape's verdict; and whether they agree (no
    shape failed a line another passed or took as n/a: every fail is a
    disagreement, since --test itself passes every shipped case)."""
    lines = sorted(set().union(*(r.lines.keys() for r in runs.values())))
    rows, agree = [], True
    for n in lines:
        per = {shape: runs[shape].lines[n] for shape in runs if n in runs[shape].lines}
        if "test" in per:
            # A check line --test read that a shape did not replay: the two
            # parsers disagree about the file.
            for shape in runs:
                per.setdefault(shape, ("missing", "this shape did not replay the line --test checked"))
        if any(v[0] in ("fail", "unreached", "missing") for v in per.values()):
            agree = False
        rows.append((n, per))
    return rows, agree


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="case files")
    ap.add_argument("--shape", choices=SHAPES + ("all",), default="all")
    ap.add_argument("--json", action="store_true", help="one JSON document of every verdict on stdout")
    ap.add_argument("--policyd-flag", action="append", default=[], metavar="FLAG",
                    help="a flag for every policyd of every shape (--ptr-lookup=no); repeatable")
    ap.add_argument("--known", action="append", default=[], metavar="FILE:LINE:SHAPE=REASON",
                    help="a divergence known and explained: that line failing in that shape is n/a with the "
                         "reason, agreeing is a failure; repeatable")
    args = ap.parse_args(argv)
    shapes = SHAPES if args.shape == "all" else (args.shape,)
    try:
        files = [parse_case_file(f) for f in args.files]
    except (CaseError, OSError) as e:
        print("ERROR %s" % e)
        return 2
    if "front" in shapes and os.environ.get(NETNS_MARK) != "1":
        if not shutil.which("unshare") or not shutil.which("ip"):
            print("ERROR the front shape needs unshare(1) and ip(8) (util-linux, iproute2): it runs in a private "
                  "network namespace whose loopback carries the cases' client addresses")
            return 2
        return enter_netns(argv)
    if "front" in shapes:
        try:
            setup_loopback(client_addresses(files))
        except (subprocess.CalledProcessError, OSError) as e:
            print("ERROR cannot put the client addresses on the namespace's loopback: %s" % e)
            return 2
    flags = {cf.path: list(args.policyd_flag) for cf in files}
    known = {}
    for k in args.known:
        m = re.fullmatch(r"(.+):(\d+):(test|front|milter)=(.+)", k)
        if not m:
            print("ERROR --known %s: expected FILE:LINE:SHAPE=REASON" % k)
            return 2
        known[(os.path.realpath(m.group(1)), int(m.group(2)), m.group(3))] = m.group(4)
    work = tempfile.mkdtemp(prefix="mailhook-case-replay-")
    try:
        results = replay(files, shapes, flags, work, known)
    except CaseError as e:
        print("ERROR %s" % e)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    status = 0
    doc = {}
    for cf in files:
        rows, agree = summarise(cf, results[cf.path])
        status = status or (0 if agree else 1)
        doc[cf.path] = {str(n): {s: list(v) for s, v in per.items()} for n, per in rows}
        if args.json:
            continue
        counts = {s: {} for s in shapes}
        for n, per in rows:
            for s, (verdict, detail) in per.items():
                counts[s][verdict] = counts[s].get(verdict, 0) + 1
                if verdict != "pass":
                    print("%-9s %s:%d %s: %s" % (verdict.upper(), cf.path, n, s, detail))
        print("%s: %s; %s" % (cf.path, "; ".join("%s %s" % (s, ", ".join("%d %s" % (v, k) for k, v in
                                                                          sorted(counts[s].items())))
                                                 for s in shapes), "agree" if agree else "DISAGREE"))
    if args.json:
        json.dump(doc, sys.stdout, indent=1, sort_keys=True)
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())

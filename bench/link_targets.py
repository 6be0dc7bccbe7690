#!/usr/bin/env python3
"""bench/link_targets.py: issue 22's targets for the front <-> policyd link,
every build of one run side by side, each against the baselines of the same run.

  python3 bench/link_targets.py --build before=/work/main/build --build after=build \\
      [--quick] [--front-flag after=--policy-streams=4] [--policyd-flag NAME=FLAG] [--json PATH]

Rounds alternate the builds (round 1 runs before then after, round 2 after
then before, ...), because the machine is shared and noisy; each figure is
the median over the rounds. Every round measures, each build started afresh:

  passes     bench/compare.py's load (smtp-source, 50 sessions, 2 KiB) into
             front + policyd relaying to smtp-sink, pass A (one message per
             connection) and pass B (kept sessions), beside the ceiling
             (smtp-source straight into smtp-sink): CPU per message of front
             + policyd, end-to-end msgs/s.
  roundtrip  bench/scale.py's NOOP clients: 50 closed-loop sessions with
             hook.noop (every NOOP crosses to policyd) and with no NOOP hook
             (the front answers alone): CPU per policy event is the
             difference of their CPU per NOOP (front + policyd); 50 sessions
             paced 20/s (p99) and 1 closed-loop session (p50), beside
             bench/floor/pingpong.c with the same sessions and pacing.
  idle       bench/scale.py idle: 10,000 greeted idle sessions, VmRSS of
             each daemon while they are held.
  milters    bench/compare.py's private Postfix relaying to smtp-sink, pass
             A, with each build's `mailhook-policyd --milter` and with the
             other milters (C no-op, C policy, rspamd) that are installed.

CPU is read per thread in nanoseconds (bench/cpuclock.py). Loopback only;
every process started here is stopped by its PID (also on Ctrl-C); the run
stops starting measurements once its time budget is spent (--budget) and
says which were left out. Speed is reported here, never asserted: the exit
status is 1 only when a measurement failed.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import compare  # noqa: E402
import scale  # noqa: E402
from cpuclock import Meter  # noqa: E402

MILTER_PEERS = {"noop": "postfix_noop_milter", "c_policy": "postfix_c_policy_milter",
                "rspamd": "postfix_rspamd_milter"}
# (rounds, pass messages, milter messages, closed-loop NOOPs per session, paced NOOPs per session,
#  1-session NOOPs, idle sessions, budget s)
# The budget leaves room for the last measurement (rspamd alone may take a
# minute to start): full <= 15 min, --quick <= 4 min.
MODES = {"full": (4, 8000, 2000, 400, 200, 5000, 10000, 780),
         "quick": (2, 3000, 500, 200, 100, 2000, 10000, 190),
         # ctest's correctness run: every part once, tiny counts; no figure means anything.
         "smoke": (1, 100, 50, 10, 2, 50, 200, 60)}
RT_SESSIONS, RT_CLIENTS, PACED_RATE = 50, 5, 20
HOOK_NOOP, NO_NOOP_HOOK = "function hook.noop() end\n", "function hook.rcpt(r) end\n"
RT_POLICYD, RT_FRONT = ["--workers", "2"], ["--io-threads", "2", "--max-connections-per-ip", "1000"]


# ------------------------------------------------------------------ builds

class Build:
    """One build's binaries and the flags added to its daemons."""

    def __init__(self, name, directory):
        self.name, self.dir = name, os.path.abspath(directory)
        self.front = os.path.join(self.dir, "frontend", "mailhook-front")
        self.policyd = os.path.join(self.dir, "policyd", "mailhook-policyd")
        self.front_flags, self.policyd_flags = [], []

    def missing(self):
        for b in (self.front, self.policyd):
            if not os.access(b, os.X_OK):
                return "%s is not built" % b
        return None

    def describe(self):
        source = None
        try:
            with open(os.path.join(self.dir, "CMakeCache.txt")) as f:
                source = next((l.split("=", 1)[1].strip() for l in f if l.startswith("CMAKE_HOME_DIRECTORY")), None)
        except OSError:
            pass
        head = None
        if source:
            r = subprocess.run(["git", "-C", source, "describe", "--always", "--dirty"], capture_output=True,
                               text=True, timeout=20)
            head = r.stdout.strip() or None
        built = datetime.datetime.fromtimestamp(os.path.getmtime(self.policyd), datetime.timezone.utc)
        return ("%s: %s (source %s, whose HEAD is now %s; binaries built %s)"
                % (self.name, self.dir, source or "?", head or "?", built.strftime("%Y-%m-%d %H:%M UTC")))


class Recorder:
    """The command lines run, ports and work directories made generic."""

    def __init__(self, work):
        self.work, self.seen = work, []

    def add(self, who, argv):
        line = " ".join(argv).replace(self.work, "$WORK")
        line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
        line = re.sub(r"inet:\d+@", "inet:PORT@", line)
        line = re.sub(r"scale-\d+\.lua", "scale-N.lua", line)
        line = re.sub(r"rspamd-\d+/", "rspamd-N/", line)
        if (who, line) not in self.seen:
            self.seen.append((who, line))


def processes(work, recorder):
    class Recorded(compare.Processes):
        def spawn(self, name, argv, **kw):
            recorder.add(name, argv)
            return super().spawn(name, argv, **kw)
    return Recorded(work)


def stack_factory(build, recorder):
    """scale.Stack for this build, recording what it starts."""
    class Recorded(scale.Stack):
        def start(self, args, name):
            recorder.add("%s %s" % (build.name, name), args)
            return super().start(args, name)
    return lambda tmp: Recorded(tmp, front=build.front, policyd=build.policyd, front_flags=build.front_flags,
                                policyd_flags=build.policyd_flags)


def mailhook_class(build):
    return type("Mailhook_" + build.name, (compare.Mailhook,),
                {"front_binary": build.front, "policyd_binary": build.policyd,
                 "front_flags": tuple(build.front_flags), "policyd_flags": tuple(build.policyd_flags)})


def milter_class(build):
    return type("Milter_" + build.name, (compare.PostfixMailhookMilter,),
                {"policyd_binary": build.policyd, "policyd_flags": tuple(build.policyd_flags)})


# ------------------------------------------------------------ measurements

def relay_passes(key, system_class, passes, messages, procs, work, tools, runtime):
    """compare.measure for each pass on one started system: {pass: run}."""
    sink = compare.CountingSink(procs)
    system = system_class(key, procs, work, tools)
    out = {}
    try:
        system.start(sink.port)
        for p in passes:
            out[p] = compare.measure(system, sink, p, 0, messages, types.SimpleNamespace(run_timeout=runtime))
    finally:
        system.stop()
        procs.stop(sink.proc)
    return out


def noop_figures(st_factory, tmp, counts, with_hook):
    """One front + policyd: closed-loop (and, with the hook, paced and
    1-session) NOOP runs; {mode: {...}}."""
    closed, paced, single = counts
    st = st_factory(tmp)
    out = {}
    try:
        port, ppid, fpid, _, _ = st.mailhook(HOOK_NOOP if with_hook else NO_NOOP_HOOK, RT_POLICYD, RT_FRONT)
        modes = [("closed", RT_SESSIONS, RT_CLIENTS, 0, closed)]
        if with_hook:
            modes += [("paced", RT_SESSIONS, RT_CLIENTS, PACED_RATE, paced), ("single", 1, 1, 0, single)]
        for mode, sessions, clients, rate, count in modes:
            meter = Meter([fpid, ppid])
            lat, elapsed, _ = scale.noop_run(port, sessions, count, rate, clients, meter.reset)
            cpu = meter.seconds()
            if len(lat) != sessions * count:
                raise RuntimeError("%s: %d of %d NOOPs answered" % (mode, len(lat), sessions * count))
            out[mode] = {"noops": len(lat), "per_s": round(len(lat) / elapsed), "cpu_s": round(cpu, 4),
                         "cpu_us_per_noop": round(1e6 * cpu / len(lat), 2),
                         "p50_us": round(scale.pct(lat, 0.5), 1), "p99_us": round(scale.pct(lat, 0.99), 1)}
    finally:
        st.stop()
    return out


def pingpong(binary, sessions, rate, count, recorder):
    argv = [binary, str(sessions), str(rate), str(count)]
    recorder.add("ping-pong", argv)
    # The client stops by itself within 120 s, its forked server too.
    out = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    if out.returncode != 0:
        raise RuntimeError("bench/floor/pingpong: %s" % out.stderr.strip())
    return json.loads(out.stdout)


# ------------------------------------------------------------------ the run

class Run:
    def __init__(self, args, builds, work, mode):
        self.args, self.builds, self.work = args, builds, work
        (self.rounds, self.messages, self.milter_messages, self.rt_closed, self.rt_paced, self.rt_single,
         self.idle_sessions, budget) = MODES[mode]
        if args.rounds:
            self.rounds = args.rounds
        self.deadline = time.monotonic() + (args.budget or budget)
        self.recorder = Recorder(work)
        self.procs = processes(work, self.recorder)
        self.tools = compare.Tools(work)
        self.values = {}  # (kind, who) -> [per-round value]
        self.errors, self.left_out = [], []
        self.milter_peers = [p for p in args.milter_peers.split(",") if p]
        self.peer_skipped = {}

    def left(self):
        return self.deadline - time.monotonic()

    def add(self, kind, who, value):
        self.values.setdefault((kind, who), []).append(value)

    def step(self, label, fn):
        """Runs one measurement unless the budget is spent; a failure is
        recorded and printed, and the run goes on."""
        if self.left() <= 0:
            self.left_out.append(label)
            print("  %-44s left out: the time budget is spent" % label)
            return
        t = time.monotonic()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the reused functions' own tables
                line = fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one broken measurement must not lose the others
            self.errors.append("%s: %s" % (label, str(e).strip()[:300]))
            print("  %-44s ERROR: %s" % (label, str(e).strip()[:300]))
        else:
            print("  %-44s %s  (%.0f s)" % (label, line, time.monotonic() - t))
        sys.stdout.flush()

    def order(self, round_no):
        return self.builds if round_no % 2 else list(reversed(self.builds))

    def round(self, round_no):
        order = self.order(round_no)
        print("\nround %d/%d (%s), load average %s" % (round_no, self.rounds, ", ".join(b.name for b in order),
                                                     " ".join("%.2f" % x for x in os.getloadavg())))
        runtime = max(60, int(self.left()) + 60)

        def ceiling():
            runs = relay_passes("ceiling", compare.Ceiling, "AB", self.messages, self.procs, self.work, self.tools,
                                runtime)
            for p, r in runs.items():
                if r.get("error"):
                    raise RuntimeError("pass %s: %s" % (p, r["error"]))
                self.add("e2e_" + p, "ceiling", r["end_to_end_msgs_per_s"])
            return "pass A %.0f, B %.0f msgs/s end to end" % (runs["A"]["end_to_end_msgs_per_s"],
                                                            runs["B"]["end_to_end_msgs_per_s"])
        self.step("ceiling (smtp-source -> smtp-sink)", ceiling)
        for b in order:
            def passes(b=b):
                runs = relay_passes(b.name, mailhook_class(b), "AB", self.messages, self.procs, self.work,
                                    self.tools, runtime)
                parts = []
                for p, r in runs.items():
                    if r.get("error"):
                        raise RuntimeError("pass %s: %s" % (p, r["error"]))
                    ms = 1000.0 * r["cpu_s"] / r["expected"]
                    self.add("cpu_" + p, b.name, ms)
                    self.add("e2e_" + p, b.name, r["end_to_end_msgs_per_s"])
                    parts.append("%s %.0f msgs/s %.3f ms CPU/msg (%d msgs)" % (p, r["end_to_end_msgs_per_s"], ms,
                                                                            r["expected"]))
                return "; ".join(parts)
            self.step("%s: passes A and B" % b.name, passes)

        def floor():
            single = pingpong(self.pingpong, 1, 0, self.rt_single, self.recorder)
            paced = pingpong(self.pingpong, RT_SESSIONS, PACED_RATE, self.rt_paced, self.recorder)
            self.add("rt_single_p50", "ping-pong", single["p50_us"])
            self.add("rt_paced_p99", "ping-pong", paced["p99_us"])
            return "1 session p50 %.1f us; %d paced %d/s p99 %.1f us" % (single["p50_us"], RT_SESSIONS,
                                                                         PACED_RATE, paced["p99_us"])
        self.step("C ping-pong (bench/floor/pingpong.c)", floor)
        for b in order:
            def roundtrip(b=b):
                st = stack_factory(b, self.recorder)
                hook = noop_figures(st, self.work, (self.rt_closed, self.rt_paced, self.rt_single), True)
                bare = noop_figures(st, self.work, (self.rt_closed, 0, 0), False)
                event = hook["closed"]["cpu_us_per_noop"] - bare["closed"]["cpu_us_per_noop"]
                self.add("event_cpu", b.name, event)
                self.add("event_cpu_hook", b.name, hook["closed"]["cpu_us_per_noop"])
                self.add("event_cpu_bare", b.name, bare["closed"]["cpu_us_per_noop"])
                self.add("rt_single_p50", b.name, hook["single"]["p50_us"])
                self.add("rt_paced_p99", b.name, hook["paced"]["p99_us"])
                return ("event %.1f us CPU (%.1f - %.1f per NOOP); 1 session p50 %.0f us; paced p99 %.0f us"
                        % (event, hook["closed"]["cpu_us_per_noop"], bare["closed"]["cpu_us_per_noop"],
                           hook["single"]["p50_us"], hook["paced"]["p99_us"]))
            self.step("%s: NOOP round trips" % b.name, roundtrip)
        for b in order:
            def idle(b=b):
                _, r = scale.idle(self.idle_sessions, self.work, stack=stack_factory(b, self.recorder),
                               target_mib=100, give_back=False)
                if r["greeted"] != self.idle_sessions or tuple(r["sessions_open_held"]) != (self.idle_sessions,) * 2:
                    raise RuntimeError("greeted %d of %d, sessions_open front/policyd %s" % (
                        r["greeted"], self.idle_sessions, r["sessions_open_held"]))
                mb = {who: r["held"][who]["VmRSS"] * 1.048576 for who in ("front", "policyd")}
                self.add("idle_front", b.name, mb["front"])
                self.add("idle_policyd", b.name, mb["policyd"])
                return "front %.1f MB, policyd %.1f MB at %d sessions" % (mb["front"], mb["policyd"],
                                                                        self.idle_sessions)
            self.step("%s: %d idle sessions" % (b.name, self.idle_sessions), idle)
        postfix_missing = self.tools.missing("postfix")
        milters = [] if postfix_missing else [(b.name, milter_class(b)) for b in order]
        if postfix_missing:
            self.peer_skipped["Postfix"] = postfix_missing  # printed in the milter row
        for peer in self.milter_peers:
            key = MILTER_PEERS[peer]
            reason = self.peer_skipped.get(peer)
            if reason is None and peer not in self.peer_skipped:
                reason = self.tools.missing(key)
                self.peer_skipped[peer] = reason
            if reason is None:
                milters.append((peer, compare.CLASSES[key]))
        if round_no % 2 == 0:
            milters.reverse()
        for who, cls in milters:
            def milter(who=who, cls=cls):
                r = relay_passes("milter " + who, cls, "A", self.milter_messages, self.procs, self.work, self.tools,
                                 runtime)["A"]
                if r.get("error"):
                    raise RuntimeError(r["error"])
                self.add("milter", who, r["end_to_end_msgs_per_s"])
                return "%.0f msgs/s end to end, CPU of Postfix + milter %.3f ms/msg" % (
                    r["end_to_end_msgs_per_s"], 1000.0 * r["cpu_s"] / r["expected"])
            self.step("Postfix + %s milter, pass A" % who, milter)


# ------------------------------------------------------------------ the table

def med(values):
    return statistics.median(values) if values else None


def table(run):
    """[(target, limit, baseline, {build: (cell, held, value)}, kind)] from the
    medians; a cell is (None, None) when it has no figure."""
    v = lambda kind, who: med(run.values.get((kind, who), []))
    rows = []
    for p, limit in (("A", 0.55), ("B", 0.25)):
        cells = {}
        for b in run.builds:
            x = v("cpu_" + p, b.name)
            cells[b.name] = (None, None) if x is None else ("%.3f ms" % x, x <= limit, x)
        rows.append(("pass %s CPU per message, front + policyd" % p, "<= %.2f ms" % limit, "-", cells,
                     "cpu_" + p))
    ceiling = v("e2e_A", "ceiling")
    cells = {}
    for b in run.builds:
        x = v("e2e_A", b.name)
        cells[b.name] = (None, None) if x is None or not ceiling else (
            "%.0f/s = %.2f" % (x, x / ceiling), x / ceiling >= 0.5, x / ceiling)
    rows.append(("pass A end-to-end msgs/s / the ceiling's", ">= 0.50",
                 "ceiling %.0f/s" % ceiling if ceiling else "ceiling not measured", cells, "e2e_A"))
    cells = {}
    for b in run.builds:
        x, hook, bare = v("event_cpu", b.name), v("event_cpu_hook", b.name), v("event_cpu_bare", b.name)
        cells[b.name] = (None, None) if x is None else (
            "%.1f us (%.1f - %.1f)" % (x, hook, bare), x <= 25, x)
    rows.append(("CPU per policy event, 50 closed-loop sessions", "<= 25 us", "no-hook run, same build", cells,
                 "event_cpu"))
    for kind, label, limit, what in (("rt_single_p50", "1-session round trip p50 / ping-pong p50", 5.0, "p50"),
                                     ("rt_paced_p99", "p99, 50 sessions paced 20/s / ping-pong p99", 2.0, "p99")):
        floor = v(kind, "ping-pong")
        cells = {}
        for b in run.builds:
            x = v(kind, b.name)
            cells[b.name] = (None, None) if x is None or not floor else (
                "%.0f us = %.1fx" % (x, x / floor), x / floor <= limit, x / floor)
        rows.append((label, "<= %.1fx" % limit, "ping-pong %s %.0f us" % (what, floor) if floor
                     else "ping-pong not measured", cells, kind))
    for who in ("front", "policyd"):
        cells = {}
        for b in run.builds:
            x = v("idle_" + who, b.name)
            cells[b.name] = (None, None) if x is None else ("%.1f MB" % x, x <= 100, x)
        rows.append(("%d idle sessions: %s RSS" % (run.idle_sessions, who), "<= 100 MB", "-", cells, "idle_" + who))
    peers = {p: v("milter", p) for p in run.milter_peers if v("milter", p) is not None}
    best = max(peers.items(), key=lambda kv: kv[1]) if peers else None
    notes = ["%s %.0f/s" % kv for kv in peers.items()]
    notes += ["%s: %s" % (p, r) for p, r in run.peer_skipped.items() if r]
    notes += ["%s: not measured" % p for p in run.milter_peers if p not in peers and not run.peer_skipped.get(p)]
    cells = {}
    for b in run.builds:
        x = v("milter", b.name)
        cells[b.name] = (None, None) if x is None or not best else (
            "%.0f/s = %.2f of %s" % (x, x / best[1], best[0]), x / best[1] >= 1.0, x / best[1])
    rows.append(("milter end-to-end msgs/s / the best other milter's", ">= 1.00",
                 "; ".join(notes) or "no other milter", cells, "milter"))
    return rows


def print_table(run, rows):
    names = [b.name for b in run.builds]
    head = ["target", "limit", "same-run baseline"] + names
    if len(names) == 2:
        head.append("%s/%s" % (names[1], names[0]))
    lines = []
    for label, limit, base, cells, kind in rows:
        line = [label, limit, base]
        for n in names:
            c = cells.get(n, (None, None))
            line.append("not measured" if c[0] is None else "%s %s" % (c[0], "HELD" if c[1] else "NOT HELD"))
        if len(names) == 2:
            a, b = cells.get(names[0], (None,)), cells.get(names[1], (None,))
            line.append("%.2f" % (b[2] / a[2]) if a[0] is not None and b[0] is not None and a[2] else "-")
        lines.append(line)
    widths = [max(len(str(l[i])) for l in [head] + lines) for i in range(len(head))]
    fmt = lambda l: "  ".join(str(x).ljust(w) for x, w in zip(l, widths)).rstrip()
    print(fmt(head))
    for l in lines:
        print(fmt(l))
    print("\nper round (in round order; medians above):")
    for (kind, who), vals in sorted(run.values.items()):
        print("  %-16s %-10s %s" % (kind, who, " ".join("%.4g" % x for x in vals)))


# ------------------------------------------------------------------ main

def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def pair(text, what):
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError("%s wants NAME=VALUE, got %r" % (what, text))
    return name, value


def builds_of(ap, args):
    """The Builds of --build NAME=DIR (default: this=$MAILHOOK_BUILD or
    build/) with their --front-flag / --policyd-flag NAME=FLAG; a name given
    twice or unknown is the parser's error."""
    builds, names = [], set()
    for name, directory in args.build or [("this", compare.BUILD)]:
        if name in names:
            ap.error("two builds named %s" % name)
        names.add(name)
        builds.append(Build(name, directory))
    for opt, pairs in (("front_flags", args.front_flag), ("policyd_flags", args.policyd_flag)):
        for name, flag in pairs:
            if name not in names:
                ap.error("no build named %s" % name)
            getattr(next(b for b in builds if b.name == name), opt).append(flag)
    return builds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--build", action="append", type=lambda t: pair(t, "--build"), metavar="NAME=DIR",
                    help="a build directory (frontend/mailhook-front, policyd/mailhook-policyd); repeat; the first "
                    "is the one the last column divides by (default: this=$MAILHOOK_BUILD or build/)")
    ap.add_argument("--front-flag", action="append", default=[], type=lambda t: pair(t, "--front-flag"),
                    metavar="NAME=FLAG", help="add FLAG (e.g. --policy-streams=4) to build NAME's front; repeat")
    ap.add_argument("--policyd-flag", action="append", default=[], type=lambda t: pair(t, "--policyd-flag"),
                    metavar="NAME=FLAG", help="add FLAG to build NAME's policyd (also its milter); repeat")
    ap.add_argument("--quick", action="store_true", help="2 rounds, smaller counts (at most 4 min)")
    ap.add_argument("--smoke", action="store_true", help="tiny counts, for ctest: checks the script, not speed")
    ap.add_argument("--rounds", type=int, help="rounds instead of the mode's")
    ap.add_argument("--budget", type=int, help="seconds after which no measurement starts "
                    "(default: full 780, --quick 190)")
    ap.add_argument("--milter-peers", default="noop,c_policy,rspamd",
                    help="other milters, comma-separated subset of %s; empty: none" % ",".join(MILTER_PEERS))
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()
    builds = builds_of(ap, args)
    unknown = [p for p in args.milter_peers.split(",") if p and p not in MILTER_PEERS]
    if unknown:
        ap.error("unknown milter peer(s): %s" % ",".join(unknown))
    for b in builds:
        if b.missing():
            ap.error(b.missing())
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    scale.raise_nofile()
    work = tempfile.mkdtemp(prefix="mailhook-link-")
    os.chmod(work, 0o711)  # Postfix's and rspamd's users reach their dirs in it
    run = Run(args, builds, work, mode)
    started, load0 = time.monotonic(), os.getloadavg()
    now = datetime.datetime.now(datetime.timezone.utc)
    print("bench/link_targets.py, %s, %s mode: %d round(s), builds alternating; %d cores; load average at start %s"
          % (now.strftime("%Y-%m-%d %H:%M UTC"), mode, run.rounds, os.cpu_count() or 0,
             " ".join("%.2f" % x for x in load0)))
    for b in builds:
        print("  build " + b.describe())
        print("        front flags added: %s; policyd flags added: %s" % (" ".join(b.front_flags) or "none",
                                                                        " ".join(b.policyd_flags) or "none"))
    print("  passes: %d messages of %d bytes per pass, %d sessions (+ compare.py's latency probe): %s" % (
        run.messages, compare.MESSAGE_BYTES, compare.SESSIONS, " ".join(compare.smtp_source_argv(0, run.messages, "A"))
        .replace("127.0.0.1:0", "127.0.0.1:PORT")))
    print("  NOOPs (bench/scale.py clients, %d processes): %d sessions x %d closed-loop, with hook.noop and with "
          "no NOOP hook; %d sessions x %d paced %d/s; 1 session x %d closed-loop (+ 200 warm-up NOOPs per session)"
          % (RT_CLIENTS, RT_SESSIONS, run.rt_closed, RT_SESSIONS, run.rt_paced, PACED_RATE, run.rt_single))
    print("  idle: %d sessions; milters: %d messages, pass A, peers %s; time budget %.0f s" % (
        run.idle_sessions, run.milter_messages, ",".join(run.milter_peers) or "none", run.left()))
    sys.stdout.flush()
    try:
        run.pingpong = scale.pingpong_binary(work)
        for round_no in range(1, run.rounds + 1):
            run.round(round_no)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process started here", file=sys.stderr)
        raise
    finally:
        run.procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    rows = table(run)
    print("\nissue 22's targets, medians of %d round(s) (ratios against the same run's baselines):\n" % run.rounds)
    print_table(run, rows)
    print("\ncommands run (ports and the work directory made generic):")
    for who, line in run.recorder.seen:
        print("  %-18s %s" % (who, line))
    print("  private Postfix: tests/integration/postfix_instance.py with bench/peers/postfix/main.cf, "
          "relaying to smtp-sink")
    for label in run.left_out:
        print("left out (time budget): " + label)
    for e in run.errors:
        print("FAILED: " + e)
    load1 = os.getloadavg()
    print("load average at start %s, at end %s; took %.0f s" % (" ".join("%.2f" % x for x in load0),
                                                              " ".join("%.2f" % x for x in load1),
                                                              time.monotonic() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": now.isoformat(), "mode": mode, "rounds": run.rounds,
                       "builds": {b.name: {"dir": b.dir, "front_flags": b.front_flags,
                                           "policyd_flags": b.policyd_flags} for b in builds},
                       "values": {"%s/%s" % k: v for k, v in run.values.items()},
                       "targets": [{"target": r[0], "limit": r[1], "baseline": r[2],
                                    "builds": {n: {"value": c[0], "held": c[1]} for n, c in r[3].items()}}
                                   for r in rows],
                       "left_out": run.left_out, "errors": run.errors, "commands": run.recorder.seen,
                       "loadavg": [load0, load1]}, f, indent=1)
            f.write("\n")
    if args.smoke:
        # ctest: every part must have run and given a figure (the milter row
        # may say why Postfix could not run here); never a speed.
        empty = [r[0] for r in rows if not r[0].startswith("milter")
                 for c in r[3].values() if c[0] is None]
        if empty or run.left_out:
            print("smoke: no figure for %s" % "; ".join(empty + run.left_out))
            return 1
    return 1 if run.errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

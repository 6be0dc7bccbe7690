#!/usr/bin/env python3
"""bench/switches.py: where front + policyd spend a message, per daemon and
per thread: CPU per message of each daemon, and each thread group's context
switches per message (voluntary/involuntary), for builds or flags side by side.

  python3 bench/switches.py --build shared=build --build percall=build \\
      --front-flag percall=--policy-streams=0 [--pass B] [--messages 8000] [--rounds 4]

The load is bench/compare.py's (smtp-source, 50 sessions, 2 KiB, relayed to
smtp-sink): pass A one message per connection, pass B kept sessions; or
bench/scale.py's NOOP clients into front + policyd with hook.noop, every
NOOP one policy round trip: pass N 50 closed-loop sessions, pass 1 one
session (--messages NOOPs in all; figures per NOOP, with the p50). Rounds
alternate the builds (the machine is shared and noisy); the table gives
medians. Threads are grouped by name (/proc/PID/task/TID/comm: gRPC's
"nexting_thread" callback threads, "default-executo", the daemons' own
"mailhook-policy"/"mailhook-front"...), and their switches are read from
/proc/PID/task/TID/status before and after the pass; CPU is
bench/cpuclock.py's. Loopback only; every process started here is stopped
by PID. Nothing is asserted: a tool for finding where a cost sits, next to
bench/link_targets.py, which reports the issue 22 targets.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import link_targets  # noqa: E402
import scale  # noqa: E402
from cpuclock import Meter  # noqa: E402

DAEMONS = ("front", "policyd")


def threads(pid):
    """{tid: (name, voluntary, involuntary)} of a live process."""
    out = {}
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/comm" % (base, tid)) as f:
                name = f.read().strip()
            v = nv = 0
            with open("%s/%s/status" % (base, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        v = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        nv = int(line.split()[1])
            out[tid] = (name, v, nv)
        except OSError:
            pass  # the thread ended between the listing and the read
    return out


def switches(before, after, messages):
    """{thread name: [threads, voluntary/msg, involuntary/msg]}; threads that
    ended during the pass are not counted (gRPC's pools end idle ones)."""
    groups = {}
    for tid, (name, v, nv) in after.items():
        v0, nv0 = before.get(tid, (name, 0, 0))[1:]
        g = groups.setdefault(name, [0, 0.0, 0.0])
        g[0] += 1
        g[1] += (v - v0) / messages
        g[2] += (nv - nv0) / messages
    return groups


def unit(pass_name):
    return "msg" if pass_name in "AB" else "NOOP"


def one_pass(build, pass_name, messages, run):
    cls = link_targets.mailhook_class(build)

    class Tracked(cls):
        def spawn(self, name, argv, **kw):
            proc = super().spawn(name, argv, **kw)
            setattr(self, name + "_pid", proc.pid)
            return proc

    sink = compare.CountingSink(run.procs)
    system = Tracked(build.name, run.procs, run.work, run.tools)
    try:
        system.start(sink.port)
        pids = {d: getattr(system, d + "_pid") for d in DAEMONS}
        meters = {d: Meter([pid]) for d, pid in pids.items()}
        before = {d: threads(pid) for d, pid in pids.items()}
        r = compare.measure(system, sink, pass_name, 0, messages, types.SimpleNamespace(run_timeout=600))
        if r.get("error"):
            raise RuntimeError(r["error"])
        n = r["expected"]
        out = {"msgs_per_s": r["end_to_end_msgs_per_s"], "cpu": 1000.0 * r["cpu_s"] / n}
        for d, pid in pids.items():
            out["cpu_" + d] = 1000.0 * meters[d].seconds() / n
            out["threads_" + d] = switches(before[d], threads(pid), n)
        return out
    finally:
        system.stop()
        run.procs.stop(sink.proc)


def one_noop_pass(build, sessions, count, run):
    """`sessions` closed-loop NOOP clients (bench/scale.py's), `count`
    NOOPs each, into front + policyd with hook.noop: every NOOP is one
    policy round trip. The same figures, per NOOP instead of per message."""
    st = link_targets.stack_factory(build, run.recorder)(run.work)
    try:
        port, ppid, fpid, _, _ = st.mailhook(link_targets.HOOK_NOOP, link_targets.RT_POLICYD, link_targets.RT_FRONT)
        pids = {"front": fpid, "policyd": ppid}
        out = {}
        meters = {d: Meter([pid]) for d, pid in pids.items()}
        before = {}

        def ready():  # every client warmed up: the counts start here
            for d, pid in pids.items():
                meters[d].reset()
                before[d] = threads(pid)

        lat, elapsed, _ = scale.noop_run(port, sessions, count, 0, min(sessions, link_targets.RT_CLIENTS), ready)
        n = len(lat)
        if n != sessions * count:
            raise RuntimeError("%d of %d NOOPs answered" % (n, sessions * count))
        for d, pid in pids.items():
            out["cpu_" + d] = 1000.0 * meters[d].seconds() / n
            out["threads_" + d] = switches(before[d], threads(pid), n)
        out["cpu"] = out["cpu_front"] + out["cpu_policyd"]
        out["msgs_per_s"] = n / elapsed
        out["p50_us"] = scale.pct(lat, 0.5)
        return out
    finally:
        st.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--build", action="append", type=lambda t: link_targets.pair(t, "--build"), metavar="NAME=DIR",
                    help="a build directory; repeat (the same directory twice with different flags is fine)")
    ap.add_argument("--front-flag", action="append", default=[], type=lambda t: link_targets.pair(t, "--front-flag"),
                    metavar="NAME=FLAG", help="add FLAG to build NAME's front; repeat")
    ap.add_argument("--policyd-flag", action="append", default=[], type=lambda t: link_targets.pair(t, "--policyd-flag"),
                    metavar="NAME=FLAG", help="add FLAG to build NAME's policyd; repeat")
    ap.add_argument("--pass", dest="passes", default="B", choices=["A", "B", "AB", "N", "1", "N1"],
                    help="A, B: bench/compare's passes (per message); N: 50 closed-loop NOOP sessions with "
                         "hook.noop, 1: one such session (per NOOP: one policy round trip each)")
    ap.add_argument("--messages", type=int, default=8000, help="per pass (default 8000)")
    ap.add_argument("--rounds", type=int, default=4, help="builds alternate between rounds (default 4)")
    args = ap.parse_args()
    if args.messages < 1 or args.rounds < 1:
        ap.error("--messages and --rounds must be at least 1")
    builds = link_targets.builds_of(ap, args)
    for b in builds:
        if b.missing():
            ap.error(b.missing())

    scale.raise_nofile()
    work = tempfile.mkdtemp(prefix="mailhook-switches-")
    os.chmod(work, 0o711)
    run = link_targets.Run(types.SimpleNamespace(rounds=args.rounds, budget=None, milter_peers=""), builds, work,
                           "quick")
    results = {}  # (build, pass) -> [per-round dict]
    print("bench/switches.py: %d messages per pass, passes %s, %d round(s), builds alternating; %d cores"
          % (args.messages, args.passes, args.rounds, os.cpu_count() or 0))
    for b in builds:
        print("  " + b.describe() + "; front flags: %s; policyd flags: %s"
              % (" ".join(b.front_flags) or "none", " ".join(b.policyd_flags) or "none"))
    try:
        for round_no in range(1, args.rounds + 1):
            for b in builds if round_no % 2 else list(reversed(builds)):
                for p in args.passes:
                    if p in "AB":
                        r = one_pass(b, p, args.messages, run)
                    else:  # NOOPs: 50 sessions, or one; --messages NOOPs in all
                        sessions = link_targets.RT_SESSIONS if p == "N" else 1
                        r = one_noop_pass(b, sessions, max(1, args.messages // sessions), run)
                    results.setdefault((b.name, p), []).append(r)
                    print("  round %d %-10s pass %s: %5.0f %s/s, CPU/%s %.3f ms (front %.3f, policyd %.3f)%s"
                          % (round_no, b.name, p, r["msgs_per_s"], unit(p), unit(p), r["cpu"], r["cpu_front"],
                             r["cpu_policyd"], ", p50 %.0f us" % r["p50_us"] if "p50_us" in r else ""))
                    sys.stdout.flush()
    finally:
        run.procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    print("\nmedians of %d round(s); switches per message (per NOOP in passes N and 1), voluntary/involuntary, "
          "by thread name (count):" % args.rounds)
    for (name, p), rounds in results.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in ("msgs_per_s", "cpu", "cpu_front", "cpu_policyd")}
        print("%s pass %s: %.0f %s/s, CPU/%s %.3f ms (front %.3f, policyd %.3f)"
              % (name, p, med["msgs_per_s"], unit(p), unit(p), med["cpu"], med["cpu_front"], med["cpu_policyd"]))
        for d in DAEMONS:
            groups = {}
            for r in rounds:
                for tname, (count, v, nv) in r["threads_" + d].items():
                    groups.setdefault(tname, []).append((count, v, nv))
            parts = []
            for tname, vals in sorted(groups.items()):
                v = statistics.median(x[1] for x in vals)
                nv = statistics.median(x[2] for x in vals)
                if v + nv >= 0.01:
                    parts.append("%s(%d) %.2f/%.2f" % (tname, max(x[0] for x in vals), v, nv))
            print("  %-8s %s" % (d, ", ".join(parts) or "none"))


if __name__ == "__main__":
    main()

"""CPU time of process trees, for the benchmarks, at nanosecond resolution.

/proc/PID/stat counts every thread of a process, the ended ones too, but
in clock ticks (10 ms), which cannot show a 20 % change in a pass of a few
thousand messages. /proc/PID/task/TID/schedstat gives each live thread's
run time in nanoseconds, but a thread that ended takes its time with it.
A Meter reads both for every process of the trees and, per process, uses
the nanoseconds unless the ticks say that more CPU went than the live
threads show (a thread ended between the readings: gRPC's pools end idle
threads). Processes that exited count through their parent's
cutime/cstime (ticks), and are not counted twice.
Reads /proc only; never signals or writes anything.
"""

import os

TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def proc_table():
    """{pid: (ppid, state)} of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                table[int(entry)] = (int(rest[1]), rest[0])
            except (OSError, IndexError, ValueError):
                pass
    return table


def tree(roots):
    """The roots and all their descendants that exist now."""
    table = proc_table()
    children = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _reading(pid):
    """(start time, {tid: run ns}, own ticks, reaped children's ticks) of one
    process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        threads = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    threads[int(tid)] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # the thread ended meanwhile: the ticks cover it
        return (int(fields[19]), threads, int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    except (OSError, ValueError, IndexError):
        return None


def snapshot(roots):
    """{pid: reading} for every process of the trees under roots."""
    out = {}
    for pid in tree(roots):
        r = _reading(pid)
        if r is not None:
            out[pid] = r
    return out


def seconds_between(before, after):
    """CPU seconds the processes used between two snapshots."""
    total = 0.0
    for pid, (start, threads, own, children) in after.items():
        b = before.get(pid)
        if b is not None and b[0] != start:
            b = None  # the PID was reused by another process
        b_threads, b_own, b_children = (b[1], b[2], b[3]) if b else ({}, 0, 0)
        precise = sum(ns - b_threads.get(tid, 0) for tid, ns in threads.items())
        ticks = (own - b_own) * TICK_NS
        # Both readings truncate utime and stime to a tick each.
        total += ticks if ticks - precise > 4 * TICK_NS else precise
        total += (children - b_children) * TICK_NS
    for pid, (start, _threads, own, children) in before.items():
        a = after.get(pid)
        if a is None or a[0] != start:
            # Exited: its whole life now shows in its parent's cutime/cstime,
            # so what it had used before is taken off again.
            total -= (own + children) * TICK_NS
    return total / 1e9


class Meter:
    """CPU seconds used by the trees under roots since the Meter was made
    (or since reset())."""

    def __init__(self, roots):
        self.roots = list(roots)
        self.reset()

    def reset(self):
        self.start = snapshot(self.roots)

    def seconds(self):
        return seconds_between(self.start, snapshot(self.roots))

#!/usr/bin/env python3
"""RFC 2920 pipelining and --policy-pipeline-depth: what sending the events
of a pipelined MAIL, RCPT and DATA ahead in one frame buys.

--sessions (20) kept SMTP sessions, each sending transactions in a closed
loop: MAIL + --rcpts (5) RCPT + DATA in one write, its replies, then a
small message and the final dot's reply. policyd runs a script with
hook.rcpt (every RCPT crosses to policyd). The same load runs against two
stacks (front + policyd) in the same run, --policy-pipeline-depth 16 and 0,
--rounds times each, alternating; printed: messages/s and CPU per message
(front + policyd, bench/cpuclock.py) of each, and their ratios.

  python3 bench/pipelining.py [--sessions 20] [--messages 3000] [--rcpts 5] [--rounds 2]

Loopback only; every process started here is stopped by PID; waiting is
polling a condition with a deadline. No target is asserted.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import Stack, raise_nofile, sample, scrape  # noqa: E402
from cpuclock import Meter  # noqa: E402

SCRIPT = 'function hook.rcpt(r) if r == "never@example.com" then return "550 5.1.1 no\\r\\n" end end\n'
BODY = b"Subject: pipelining bench\r\n\r\nhello\r\n.\r\n"


async def reply(reader):
    """The code of one reply (its last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(port, rcpts, quota, counter):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await writer.drain()
    await reply(reader)
    batch = b"MAIL FROM:<a@example.com>\r\n" + b"".join(
        b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(rcpts)) + b"DATA\r\n"
    while counter[0] < quota:
        counter[0] += 1
        writer.write(batch)
        await writer.drain()
        codes = [await reply(reader) for _ in range(rcpts + 2)]
        if codes[-1] != 354:
            raise RuntimeError("DATA refused: %r" % codes)
        writer.write(BODY)
        await writer.drain()
        if await reply(reader) != 250:
            raise RuntimeError("message refused")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


def load(port, sessions, messages, rcpts):
    counter = [0]

    async def run():
        await asyncio.gather(*(session(port, rcpts, messages, counter) for _ in range(sessions)))
    started = time.monotonic()
    asyncio.run(run())
    return counter[0], time.monotonic() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=3000, help="per stack and round")
    ap.add_argument("--rcpts", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--depth", type=int, default=16, help="the depth measured against 0")
    a = ap.parse_args()
    if not 1 <= a.depth <= 64:
        ap.error("--depth is measured against 0: give 1 to 64 (the front's --policy-pipeline-depth range)")
    if min(a.sessions, a.messages, a.rcpts, a.rounds) < 1:
        ap.error("--sessions, --messages, --rcpts and --rounds must be at least 1")
    raise_nofile()
    tmp = tempfile.mkdtemp(prefix="mailhook-pipelining-")
    stacks = {}
    try:
        for depth in (a.depth, 0):
            st = Stack(os.path.join(tmp, "d%d" % depth))
            os.makedirs(st.tmp)
            fport, ppid, fpid, _, fm = st.mailhook(SCRIPT, policyd_args=["--workers", "1"],
                                                   front_args=["--policy-pipeline-depth", str(depth)])
            stacks[depth] = (st, fport, [ppid, fpid], fm)
        totals = {d: [0, 0.0, 0.0] for d in stacks}  # messages, seconds, cpu seconds
        load(stacks[a.depth][1], 2, 50, a.rcpts)  # warm both (first streams, Lua states)
        load(stacks[0][1], 2, 50, a.rcpts)
        for _ in range(a.rounds):
            for depth, (st, fport, pids, fm) in stacks.items():
                meter = Meter(pids)
                n, secs = load(fport, a.sessions, a.messages, a.rcpts)
                cpu = meter.seconds()
                totals[depth][0] += n
                totals[depth][1] += secs
                totals[depth][2] += cpu
        print("pipelining: %d sessions, MAIL + %d RCPT + DATA in one write, hook.rcpt; %d messages x %d rounds per "
              "stack" % (a.sessions, a.rcpts, a.messages, a.rounds))
        rows, sent_ahead = {}, {}
        for depth, (n, secs, cpu) in totals.items():
            ahead = sample(scrape(stacks[depth][3]), "mailhook_front_policy_events_sent_ahead_total") or 0
            sent_ahead[depth] = ahead
            rows[depth] = (n / secs, cpu / n * 1e3)
            print("  --policy-pipeline-depth %-3d %8.0f msgs/s  %.3f ms CPU/msg (front+policyd)  events sent ahead: %d"
                  % (depth, n / secs, cpu / n * 1e3, ahead))
        print("  ratio depth %d / depth 0: msgs/s x%.2f, CPU/msg x%.2f"
              % (a.depth, rows[a.depth][0] / rows[0][0], rows[a.depth][1] / rows[0][1]))
        if not sent_ahead[a.depth] or sent_ahead[0]:
            # The comparison means nothing unless one stack batched and the other did not.
            sys.exit("pipelining: events sent ahead were %d at depth %d and %d at depth 0: expected some, then none"
                     % (sent_ahead[a.depth], a.depth, sent_ahead[0]))
    finally:
        for st, *_ in stacks.values():
            st.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Soak: no mail lost, duplicated or invented under load and faults.

Sends --messages messages (each with a unique id, X-Soak-Id) through
mailhook-front, relaying to a smart host that is a small SMTP sink written
here, over --sessions concurrent client sessions. While it runs it kills
policyd once with SIGKILL (and starts it again on the same port; the front
reconnects by itself) and stops the smart host once (and starts it again on
the same port). A client that gets a 4xx retries the same message after a
short backoff, as an MTA would, with a new attempt number
(X-Soak-Attempt), so every attempt can be told apart at the sink.

At the end, for every attempt: the client saw 250 <=> it arrived at the
sink, exactly once. Prints the counts and exits 1 on any lost, duplicated
or phantom (arrived without a 250) message, when the run did not finish
in time, or when a fault left no trace (no 451 4.3.0 / 421 4.3.0 from the
policyd kill, no 451 4.4.1 while the smart host was down).

Loopback only; every process and thread started here is stopped by PID or
joined at the end; waiting is polling a condition with a deadline.

  python3 bench/soak.py [--messages 20000] [--sessions 20] [--results DIR]
"""

import argparse
import collections
import datetime
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MAILHOOK_BUILD", os.path.join(ROOT, "build"))

# Every stage of a transaction crosses to policyd, so the kill lands on
# each of them (hook.dot also makes the front send the message).
SCRIPT = """
function hook.accept(ip, ptr) end
function hook.mail(from) end
function hook.rcpt(to) end
function hook.dot(path) end
"""

MAX_ATTEMPTS = 40           # per message; backoff 20 ms x attempt, at most 500 ms
MESSAGES_PER_SESSION = 10   # then QUIT and a new session
CLIENT_TIMEOUT = 75         # s per read; the front gives the smart host 60 s


# free_port and wait_for (bounded polling) are the integration harness's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
from harness import free_port, wait_for  # noqa: E402


class Daemon:
    """A child process with its output in a file."""

    def __init__(self, args, log_path):
        self.args, self.log_path = args, log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_listening(self):
        wait_for(lambda: "listening on" in self.output() or self.proc.poll() is not None, 10,
                 "%s listening" % os.path.basename(self.args[0]))
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited: %s" % (self.args[0], self.output()[-2000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class SoakSink:
    """The smart host: an SMTP server on a fixed loopback port recording
    each message's (X-Soak-Id, X-Soak-Attempt). stop() closes the listener
    and cuts every open session; a message is recorded and answered 250
    under one lock that stop() also takes, so a message is either recorded
    and answered or neither (the sink itself never invents a phantom)."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.arrivals = collections.Counter()   # (id, attempt) -> times received
        self.without_id = 0
        self.up = False
        self.sessions = set()
        self.threads = []
        self.starts = 0
        self.listener = None

    def start(self):
        with self.lock:
            self.listener = socket.socket()
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", self.port))
            self.listener.listen(512)
            self.up = True
            self.starts += 1
        t = threading.Thread(target=self._accept, args=(self.listener,), daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        if self.listener is None:
            return
        with self.lock:
            self.up = False
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            self.listener.close()
            for s in list(self.sessions):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def join(self):
        for t in self.threads:
            t.join(10)

    def _accept(self, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.up:
                    conn.close()
                    return
                self.sessions.add(conn)
            t = threading.Thread(target=self._session, args=(conn,), daemon=True)
            t.start()

    def _session(self, conn):
        conn.settimeout(CLIENT_TIMEOUT)
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 sink.test ESMTP soak\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-sink.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    headers, in_headers = {}, True
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        if in_headers:
                            if l == b"\r\n":
                                in_headers = False
                            elif b":" in l:
                                k, v = l.split(b":", 1)
                                headers[k.strip().lower()] = v.strip().decode()
                    key = (headers.get(b"x-soak-id"), headers.get(b"x-soak-attempt"))
                    with self.lock:
                        if not self.up:
                            return
                        if key[0] is None:
                            self.without_id += 1
                        else:
                            self.arrivals[(key[0], int(key[1]))] += 1
                        conn.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            with self.lock:
                self.sessions.discard(conn)
            conn.close()


class Ledger:
    """What the clients did: every attempt's final reply, and progress."""

    def __init__(self, messages):
        self.lock = threading.Lock()
        self.messages = messages
        self.next_id = 0
        self.accepted = set()                    # (id, attempt) the client saw 250 for
        self.failed = []                         # (id, attempt, stage, reply)
        self.replies = collections.Counter()     # "451 4.3.0" -> count, non-250 outcomes
        self.done = 0                            # messages with a final outcome
        self.gave_up = 0
        self.first_250_after = {}                # event name -> time of the first 250 after it
        self.marks = {}                          # event name -> time
        self.stop = False

    def take(self):
        with self.lock:
            if self.stop or self.next_id >= self.messages:
                return None
            self.next_id += 1
            return "m%06d" % self.next_id

    def record(self, mid, attempt, stage, reply, session_opened=None):
        """session_opened: when the session began; a 250 counts as "after"
        an event only on a session opened after it."""
        now = time.monotonic()
        with self.lock:
            if stage == "dot" and reply.startswith("250"):
                self.accepted.add((mid, attempt))
                for name, t in self.marks.items():
                    if session_opened is not None and t <= session_opened and name not in self.first_250_after:
                        self.first_250_after[name] = now
            else:
                self.failed.append((mid, attempt, stage, reply))
                self.replies[" ".join(reply.split()[:2]) or "(no reply)"] += 1

    def finish(self, gave_up):
        with self.lock:
            self.done += 1
            self.gave_up += gave_up

    def mark(self, name):
        with self.lock:
            self.marks[name] = time.monotonic()

    def count(self, prefix):
        with self.lock:
            return sum(n for k, n in self.replies.items() if k.startswith(prefix))


class Session:
    """One client SMTP session to the front (blocking socket)."""

    def __init__(self, port):
        self.stage = "connect"   # the step in progress, for the ledger
        self.opened = time.monotonic()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        self.f = self.sock.makefile("rb")

    def reply(self):
        """The last line of one complete reply, or '' on EOF."""
        while True:
            line = self.f.readline()
            if not line:
                return ""
            if len(line) < 4 or line[3:4] != b"-":
                return line.decode(errors="replace").strip()

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self, quit=True):
        try:
            if quit:
                self.sock.settimeout(2)
                self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


def message_text(mid, attempt):
    lines = ["From: <soak@example.com>", "To: <rcpt@example.com>", "Subject: soak %s" % mid,
             "Message-Id: <%s.%d@soak.test>" % (mid, attempt), "X-Soak-Id: %s" % mid,
             "X-Soak-Attempt: %d" % attempt, ""]
    lines += ["line %02d of message %s, attempt %d, padding padding padding padding" % (i, mid, attempt)
              for i in range(12)]
    lines.append(".a line that starts with a dot (dot-stuffed on the wire)")
    return "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines) + ".\r\n"


def open_session(port):
    """A session past EHLO: (session, None), or (None, (stage, reply)) when refused."""
    session = Session(port)
    for stage, line, want in (("greeting", None, "220"), ("ehlo", "EHLO client.soak.test", "250")):
        session.stage = stage
        r = session.cmd(line) if line else session.reply()
        if not r.startswith(want):
            session.close(quit=bool(r))
            return None, (stage, r)
    return session, None


def attempt_once(session, mid, attempt):
    """One transaction on an open session: (stage, final reply)."""
    for stage, line, want in (("mail", "MAIL FROM:<soak@example.com>", "250"),
                              ("rcpt", "RCPT TO:<rcpt@example.com>", "250"), ("data", "DATA", "354")):
        session.stage = stage
        r = session.cmd(line)
        if not r.startswith(want):
            return stage, r
    session.stage = "dot"
    session.sock.sendall(message_text(mid, attempt).encode())
    return "dot", session.reply()


def client(port, ledger):
    session, sent_on_session = None, 0
    while True:
        mid = ledger.take()
        if mid is None:
            break
        delivered = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            stage, reply = "connect", ""
            try:
                refused = None
                if session is None:
                    sent_on_session = 0
                    session, refused = open_session(port)
                if refused:
                    stage, reply = refused
                else:
                    stage, reply = attempt_once(session, mid, attempt)
            except OSError as e:
                stage = "%s (%s)" % (session.stage if session else "connect", type(e).__name__)
                reply = ""
            ledger.record(mid, attempt, stage, reply, session.opened if session else None)
            if reply.startswith("250") and stage == "dot":
                delivered = True
                sent_on_session += 1
                if sent_on_session >= MESSAGES_PER_SESSION:
                    session.close()
                    session = None
                break
            if session is not None:
                session.close(quit=bool(reply))
                session = None
            if ledger.stop:
                break
            time.sleep(min(0.5, 0.02 * attempt))  # a retrying client's backoff, not synchronisation
        ledger.finish(0 if delivered else 1)
    if session is not None:
        session.close()


def run(args):
    """The soak with its cleanup: whatever happens, every daemon started is
    stopped (the front first), the sink closed and the temp dir removed."""
    tmp = tempfile.mkdtemp(prefix="mailhook-soak-")
    sink, daemons = SoakSink(), []
    try:
        return soak(args, tmp, sink, daemons)
    finally:
        for d in sorted(daemons, key=lambda d: d.args[0] != args.front):
            d.stop()
        sink.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def soak(args, tmp, sink, daemons):
    script = os.path.join(tmp, "soak.lua")
    with open(script, "w") as f:
        f.write(SCRIPT)
    sink.start()
    pport, fport = free_port(), free_port()
    policyd_args = [args.policyd, "--listen", "127.0.0.1:%d" % pport, "--script", script, "--log-stderr",
                    "--temp-dir", os.path.join(tmp, "ptmp"), "--ptr-lookup", "no", "--workers", "2"]
    policyd = Daemon(policyd_args, os.path.join(tmp, "policyd-1.log"))
    daemons.append(policyd)
    policyd.wait_listening()
    front = Daemon([args.front, "--listen", "127.0.0.1:%d" % fport, "--policyd", "127.0.0.1:%d" % pport,
                    "--smart-host", "127.0.0.1:%d" % sink.port, "--queue-dir", os.path.join(tmp, "spool"),
                    "--hostname", "soak.test", "--log-stderr", "--io-threads", "2",
                    "--max-connections", "10000", "--max-connections-per-ip", "10000"],
                   os.path.join(tmp, "front.log"))
    daemons.append(front)
    front.wait_listening()

    ledger = Ledger(args.messages)
    faults = {}
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(fport, ledger), daemon=True) for _ in range(args.sessions)]
    for t in threads:
        t.start()
    ok = True
    try:
        deadline = started + args.deadline
        left = lambda: max(1.0, deadline - time.monotonic())

        # Fault 1: SIGKILL policyd a third of the way through, start it again.
        wait_for(lambda: ledger.done >= args.messages // 3, left(), "a third of the messages")
        policyd.proc.kill()
        policyd.proc.wait(10)
        ledger.mark("policyd killed")
        t_kill = time.monotonic()
        policyd = Daemon(policyd_args, os.path.join(tmp, "policyd-2.log"))
        daemons.append(policyd)
        policyd.wait_listening()
        faults["policyd_restart_s"] = round(time.monotonic() - t_kill, 3)
        wait_for(lambda: "policyd killed" in ledger.first_250_after, min(left(), 30), "a 250 after the policyd kill")
        faults["policyd_kill_to_first_250_on_a_new_session_s"] = round(
            ledger.first_250_after["policyd killed"] - t_kill, 3)

        # Fault 2: stop the smart host two thirds through for --smart-host-down
        # seconds (longer if the front has not yet answered 451 4.4.1 to
        # every session); then start it again on the same port.
        wait_for(lambda: ledger.done >= 2 * args.messages // 3, left(), "two thirds of the messages")
        before = ledger.count("451 4.4.1")
        sink.stop()
        ledger.mark("smart host stopped")
        t_stop = time.monotonic()
        try:
            wait_for(lambda: ledger.count("451 4.4.1") - before >= args.sessions and
                     time.monotonic() - t_stop >= args.smart_host_down, args.smart_host_down + 5, "451 4.4.1 replies")
        except RuntimeError:
            pass  # reported below: the count is what it is
        faults["smart_host_down_s"] = round(time.monotonic() - t_stop, 3)
        faults["replies_451_4.4.1_while_down"] = ledger.count("451 4.4.1") - before
        sink.start()
        ledger.mark("smart host started")
        wait_for(lambda: "smart host started" in ledger.first_250_after, min(left(), 30),
                 "a 250 after the smart host came back")

        wait_for(lambda: ledger.done >= args.messages, left(), "every message")
    except RuntimeError as e:
        print("soak: %s" % e)
        ok = False
    ledger.stop = True
    for t in threads:
        t.join(CLIENT_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    unfinished = sum(t.is_alive() for t in threads)
    front.stop()  # first: policyd's SIGTERM drain waits for the front's streams
    for d in daemons:
        d.stop()
    sink.stop()
    sink.join()

    # The ledger against the sink.
    arrived = set(sink.arrivals)
    lost = sorted(ledger.accepted - arrived)
    duplicated = sorted(k for k, n in sink.arrivals.items() if n > 1)
    phantom = sorted(arrived - ledger.accepted)
    ids_delivered = {mid for mid, _ in ledger.accepted}
    policy_failures = ledger.count("451 4.3.0") + ledger.count("421 4.3.0")
    result = {
        "messages": args.messages, "sessions": args.sessions, "finished": ledger.done,
        "elapsed_s": round(elapsed, 2), "attempts": len(ledger.accepted) + len(ledger.failed),
        "client_saw_250": len(ledger.accepted), "messages_delivered": len(ids_delivered),
        "messages_given_up": ledger.gave_up, "arrived_at_sink": sum(sink.arrivals.values()),
        "arrived_without_id": sink.without_id, "lost": len(lost), "duplicated": len(duplicated),
        "phantom": len(phantom), "non_250_replies": dict(ledger.replies.most_common()),
        "policy_failure_replies": policy_failures, "smart_host_failure_replies": ledger.count("451 4.4.1"),
        "faults": faults,
    }
    print("soak: %d messages over %d sessions in %.1f s (%.0f msgs/s); policyd SIGKILLed once, smart host "
          "stopped once" % (args.messages, args.sessions, elapsed, len(ids_delivered) / elapsed))
    for k in ("attempts", "client_saw_250", "messages_delivered", "messages_given_up", "arrived_at_sink",
              "lost", "duplicated", "phantom", "policy_failure_replies", "smart_host_failure_replies"):
        print("  %-28s %d" % (k, result[k]))
    print("  non-250 replies by code:    %s" % ", ".join("%s x%d" % kv for kv in ledger.replies.most_common()))
    print("  faults:                     %s" % ", ".join("%s=%s" % kv for kv in faults.items()))
    for name, keys in (("lost", lost), ("duplicated", duplicated), ("phantom", phantom)):
        if keys:
            ok = False
            print("FAIL %s: %s" % (name, " ".join("%s/%d" % k for k in keys[:20])))
    phantom_set = set(phantom)
    for mid, attempt, stage, reply in [x for x in ledger.failed if (x[0], x[1]) in phantom_set][:20]:
        print("  phantom %s/%d: the client saw %r at %s" % (mid, attempt, reply, stage))
    if ledger.done < args.messages or unfinished or sink.without_id:
        ok = False
        print("FAIL unfinished: %d of %d messages finished, %d client threads still running, %d without id" %
              (ledger.done, args.messages, unfinished, sink.without_id))
    if policy_failures == 0 or faults.get("replies_451_4.4.1_while_down", 0) == 0:
        ok = False
        print("FAIL a fault left no trace: %d policy-failure replies, %d 451 4.4.1 while the smart host was down" %
              (policy_failures, faults.get("replies_451_4.4.1_while_down", 0)))
    result["ok"] = ok
    if args.results:
        os.makedirs(args.results, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        for name in ("soak-%s.json" % stamp, "soak-latest.json"):
            with open(os.path.join(args.results, name), "w") as f:
                json.dump(dict(result, date=stamp), f, indent=2, sort_keys=True)
                f.write("\n")
    if not ok:
        for d in (front, policyd):
            print("--- tail of %s" % d.log_path)
            print("\n".join(d.output().splitlines()[-15:]))
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--smart-host-down", type=float, default=1.0, help="seconds the smart host stays stopped")
    p.add_argument("--deadline", type=float, default=900, help="seconds the whole run may take")
    p.add_argument("--front", default=os.environ.get("MAILHOOK_FRONT",
                                                     os.path.join(BUILD, "frontend", "mailhook-front")))
    p.add_argument("--policyd", default=os.environ.get("MAILHOOK_POLICYD",
                                                       os.path.join(BUILD, "policyd", "mailhook-policyd")))
    p.add_argument("--results", help="write soak-DATE.json and soak-latest.json here")
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())

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

Every check line (connect, expect, expect-line, change, changes) gets a
verdict per shape: pass, fail, n/a (the shape cannot express it, with the
reason) or unreached (an earlier line of its case failed); n/a lines are
listed and counted, never dropped. It must never touch anything but
loopback, and stops every process it starts by PID.

  tools/case-replay FILE.case... [--shape test|front|milter|all] [--json]
                    [-- POLICYD_FLAGS...]
Exit status: 0 when every shape passed every line it can express and the
shapes agree, 1 otherwise, 2 on a malformed file or a failed start."""

import argparse
import base64
import calendar
import difflib
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (after the path: the tool runs from anywhere)
from dnsserver import DnsServer  # noqa: E402
from test_security_milter import MilterClient, packet  # noqa: E402

SHAPES = ("test", "front", "milter")
CHECKS = ("connect", "expect", "expect-line", "change", "changes")
NETNS_MARK = "MAILHOOK_CASE_REPLAY_NETNS"
HOSTNAME = "mx.test"  # --test's local host name; the front gets --hostname mx.test


class CaseError(Exception):
    """A malformed case file: "file:line: what"."""


# ------------------------------------------------------------ case files
# The format of policyd/testing/case_file.cc; that parser stays the
# authority (the test shape runs it and refuses what it refuses).

class Step:
    def __init__(self, kind, line, text, seconds=0):
        self.kind, self.line, self.text, self.seconds = kind, line, text, seconds


class Case:
    def __init__(self, line, name):
        self.line, self.name = line, name
        self.address, self.port, self.host = "192.0.2.1", 40000, ""
        self.dns, self.steps = [], []


class CaseFile:
    def __init__(self, path):
        self.path = path
        self.scripts, self.env, self.read_dirs, self.cases = [], [], [], []


def parse_clock(text):
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z", text)
    if not m:
        return None
    try:
        t = time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return calendar.timegm(t)


def parse_duration(text):
    m = re.fullmatch(r"(\d{1,10})([smhd]?)", text)
    if not m:
        return None
    n = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return n if 0 < n <= 10 * 366 * 86400 else None


def parse_case_file(path):
    cf = CaseFile(path)
    base = os.path.dirname(path)
    current, block, block_line, clock_set = None, None, 0, False

    def fail(n, what):
        raise CaseError("%s:%d: %s" % (path, n, what))

    def end_block():
        nonlocal block, block_line
        if block_line:
            current.steps.append(Step("message", block_line, block))
            block, block_line = None, 0

    with open(path, "rb") as f:
        raw_lines = f.read().decode("utf-8", errors="surrogateescape").split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    for n, raw in enumerate(raw_lines, 1):
        raw = raw[:-1] if raw.endswith("\r") else raw
        if block_line and raw.startswith("|"):
            block += raw[2:] if raw[1:2] == " " else raw[1:]
            block += "\r\n"
            continue
        if current:
            end_block()
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            fail(n, 'expected "keyword: value"')
        key, value = line.split(":", 1)
        value = value.strip(" \t\r")
        if key in ("script", "env", "lua-read-dir"):
            if current:
                fail(n, key + ": belongs before the first case")
            if key == "script":
                cf.scripts.append(os.path.join(base, value))
            elif key == "lua-read-dir":
                cf.read_dirs.append(os.path.join(base, value))
            else:
                name, eq, v = value.partition("=")
                if not eq:
                    fail(n, "env: expected NAME=value")
                cf.env.append((name, v.replace("$CASE_DIR", base)))
            continue
        if key == "case":
            current = Case(n, value)
            cf.cases.append(current)
            continue
        if not current:
            fail(n, key + ': before the first "case:" line')
        if key == "client":
            for i, word in enumerate(value.split()):
                if i == 0 and "=" not in word:
                    current.address = word
                elif word.startswith("host="):
                    current.host = word[5:]
                elif word.startswith("port="):
                    current.port = int(word[5:])
                else:
                    fail(n, "client: expected ADDRESS [host=NAME] [port=N]")
        elif key == "dns":
            current.dns.append(value)
        elif key in ("send", "expect", "expect-line", "connect", "change"):
            current.steps.append(Step(key, n, value))
        elif key == "message":
            if not value:
                block, block_line = "", n
            else:
                with open(os.path.join(base, value), "rb") as m:
                    text = m.read().decode("utf-8", errors="surrogateescape")
                text = re.sub(r"(?<!\r)\n", "\r\n", text)
                if text and not text.endswith("\n"):
                    text += "\r\n"
                current.steps.append(Step("message", n, text))
        elif key == "changes":
            current.steps.append(Step("changes", n, value))
        elif key == "clock":
            t = parse_clock(value)
            if t is None:
                fail(n, "clock: expected a UTC time as 2026-12-01T10:00:00Z")
            current.steps.append(Step("clock", n, value, t))
            clock_set = True
        elif key == "advance":
            d = parse_duration(value)
            if d is None or not clock_set:
                fail(n, "advance: a duration after a clock: line")
            current.steps.append(Step("advance", n, value, d))
        else:
            fail(n, 'unknown keyword "%s"' % key)
    if current:
        end_block()
    if not cf.cases:
        fail(len(raw_lines), 'no "case:" in the file')
    return cf


# ----------------------------------------------------------- replies

def glob(pattern, text):
    """case_runner.cc's glob: '*' and '?' over the whole text, nothing else
    special ('[' is a bracket, as in "[192.0.2.10]")."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.S) is not None


class Reply:
    """An SMTP reply: code and text lines ("2.1.5 Ok"). `origin`: "policy"
    (the script's own text), "mta" (the milter shape's MTA wrote it: only
    the code comes from the filter) or "class" (the milter answered reject
    or tempfail without text at connect: the MTA picks code and text)."""

    def __init__(self, code, lines, origin="policy"):
        self.code, self.lines, self.origin = code, lines or [""], origin

    @classmethod
    def parse(cls, code, raw_lines):
        return cls(code, [l[4:] for l in raw_lines])

    def summary(self):
        return ("%d %s" % (self.code, self.lines[0])).rstrip()

    def __repr__(self):
        return self.summary() + ("" if self.origin == "policy" else " (%s)" % self.origin)


def code_only(pattern):
    return len(pattern) == 3 and pattern.isdigit()


def check_reply(pattern, reply):
    """(verdict, detail) of an expect/connect line against a reply."""
    got = reply.summary()
    if reply.origin == "class":
        if pattern[:1] == str(reply.code)[:1]:
            return "n/a", "milter-connect-no-text: a milter refuses a connection with no code or text; the MTA " \
                          "picks them (the class %sxx agrees)" % pattern[:1]
        return "fail", "expected %s, got a %dxx refusal of the milter" % (pattern, reply.code // 100)
    ok = str(reply.code) == pattern if code_only(pattern) else glob(pattern, got)
    if ok:
        return "pass", got
    if reply.origin == "mta" and pattern[:3] == str(reply.code):
        return "n/a", "milter-mta-text: the reply text is the MTA's own (a milter carries text only with a " \
                      "4xx/5xx); the code %d agrees" % reply.code
    return "fail", "expected %s, got %s" % (pattern, got)


def check_line(pattern, reply):
    if reply.origin != "policy":
        return "n/a", "milter-mta-ehlo: the lines of this reply are the MTA's own (a milter cannot add EHLO " \
                      "keywords or 2xx lines)"
    for l in reply.lines:
        if glob(pattern, ("%d %s" % (reply.code, l)).rstrip()):
            return "pass", l
    return "fail", "expected a line %s in the reply %s" % (pattern, reply.summary())


def check_changes(step, changes):
    if changes is None:
        return "n/a", "front-changes: the front applies message changes to what it spools or relays; the " \
                      "replayer does not read them back"
    if step.kind == "changes":
        return ("pass", "none") if not changes else ("fail", "expected no change, got " + "; ".join(changes))
    if any(glob(step.text, c) for c in changes):
        return "pass", step.text
    return "fail", 'expected the change "%s", got %s' % (step.text, "; ".join(changes) or "none")


class Run:
    """The verdicts of one shape for one file: {line: (verdict, detail)}.
    `known`: {line: reason} of divergences declared with --known: such a
    line failing is n/a ("known: reason"), and the case goes on; such a
    line agreeing is a failure (the declaration is stale)."""

    def __init__(self, known=None):
        self.lines = {}
        self.known = known or {}

    def put(self, line, verdict, detail):
        if line in self.known and verdict == "fail":
            verdict, detail = "n/a", "known: %s (%s)" % (self.known[line], detail)
        elif line in self.known and verdict == "pass":
            verdict, detail = "fail", "declared a known divergence (%s) but it agrees: drop the declaration" % \
                self.known[line]
        self.lines[line] = (verdict, detail)


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


# ---------------------------------------------------- DNS and daemons

def zone_of(case, for_front=False):
    """A case's `dns:` lines as a dnsserver.py zone. FakeDns answers only
    exact names (everything else NXDOMAIN); so does this zone, except that
    dnsserver follows CNAMEs inside the zone."""
    zone, behaviour = {}, {}
    for line in case.dns:
        words = line.split(None, 2)
        name = words[0].rstrip(".").lower()
        kind = words[1].upper()
        rest = words[2] if len(words) > 2 else ""
        if kind in ("NXDOMAIN",):
            continue
        if kind in ("SERVFAIL", "REFUSED"):
            behaviour[name] = kind.lower()
            continue
        if kind == "TIMEOUT":
            behaviour[name] = "drop"
            continue
        rec = {"type": kind}
        if kind in ("A", "AAAA"):
            rec["address"] = rest
        elif kind == "MX":
            pref, host = rest.split()
            rec.update(preference=int(pref), host=host)
        elif kind == "TXT":
            rec["text"] = [rest[i:i + 255] for i in range(0, len(rest), 255)] or [""]
        else:
            rec["host"] = rest.rstrip(".")
        zone.setdefault(name, []).append(rec)
    if for_front and case.host:
        # The front has no way to state a PTR name: policyd looks it up
        # (forward-confirmed), so the zone says what the case's host= says.
        ptr = reverse_name(case.address)
        zone.setdefault(ptr, []).append({"type": "PTR", "host": case.host})
        zone.setdefault(case.host.lower(), []).append(
            {"type": "AAAA" if ":" in case.address else "A", "address": case.address})
    if behaviour:
        zone["_behaviour"] = behaviour
    return zone


def reverse_name(address):
    return ipaddress.ip_address(address).reverse_pointer


class StdinProcess(harness.Process):
    """harness.Process with a pipe on stdin (policyd --test-clock-stdin)."""

    def __init__(self, args, log_path, env=None):
        self.log_path = log_path
        self.args = args
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env)

    def stop(self, timeout=10):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return super().stop(timeout)


class Daemons:
    """A DNS server, and policyd (gRPC, or --milter) for one case file,
    plus the fronts in the front shape; everything stopped in stop()."""

    def __init__(self, cf, flags, work, shape):
        self.cf, self.flags, self.work, self.shape = cf, list(flags), work, shape
        self.procs = []
        self.dns = DnsServer({})
        self.dns.start()
        self.clock_acks = 0

    def start_policyd(self):
        self.policyd_port = harness.free_port()
        args = [harness.POLICYD, "--listen", "127.0.0.1:%d" % self.policyd_port, "--workers", "1",
                "--log-stderr", "--temp-dir", os.path.join(self.work, "tmp-" + self.shape),
                "--dns-server", "127.0.0.1:%d" % self.dns.port, "--dns-cache-entries", "0",
                "--test-clock-stdin"]
        for s in self.cf.scripts:
            args += ["--script", s]
        for d in self.cf.read_dirs:
            args += ["--lua-read-dir", d]
        env = dict(os.environ)
        for k, v in self.cf.env:
            env[k] = v
            args += ["--lua-env", k]
        if self.shape == "milter":
            self.milter_port = harness.free_port()
            args += ["--milter", "inet:%d@127.0.0.1" % self.milter_port]
        # --test's DNS never waits: a TIMEOUT answer is at once. Keep the
        # dropped queries short here too, unless the file's flags say.
        if "--dns-timeout" not in self.flags:
            args += ["--dns-timeout", "300ms"]
        args += self.flags
        p = StdinProcess(args, os.path.join(self.work, "policyd-%s.log" % self.shape), env)
        self.procs.append(p)
        self.policyd = p
        want = "milter listening on" if self.shape == "milter" else "listening on"
        harness.wait_for(lambda: want in p.output() or not p.alive(), what="policyd listening")
        if not p.alive():
            raise CaseError("policyd did not start: " + p.output()[-2000:])

    def start_front(self, listen):
        port = harness.free_port()
        spec = "[::]:%d" % port if listen == "v6" else "127.0.0.1:%d" % port
        spool = os.path.join(self.work, "spool-" + listen)
        p = harness.Process([harness.FRONT, "--listen", spec, "--policyd", "127.0.0.1:%d" % self.policyd_port,
                             "--queue-dir", spool, "--hostname", HOSTNAME, "--log-stderr", "--log-level", "info",
                             "--io-threads", "1", "--auth-plaintext", "--greet-pause", "0"],
                            os.path.join(self.work, "front-%s.log" % listen))
        self.procs.append(p)
        harness.wait_for(lambda: "listening on" in p.output() or not p.alive(), what="front listening")
        if not p.alive():
            raise CaseError("mailhook-front did not start: " + p.output()[-2000:])
        return p, port

    def set_clock(self, step):
        """clock:/advance: through --test-clock-stdin; awaits policyd's
        "test clock" line so the next command sees the new time."""
        verb = "set" if step.kind == "clock" else "advance"
        self.policyd.proc.stdin.write(("%s %d\n" % (verb, step.seconds)).encode())
        self.policyd.proc.stdin.flush()
        self.clock_acks += 1
        want = self.clock_acks
        harness.wait_for(lambda: self.policyd.output().count("test clock: scripts now see") >= want,
                         what="policyd taking the clock line")

    def stop(self):
        # Fronts first: policyd's drain waits for their streams.
        for p in sorted(self.procs, key=lambda p: p.args[0] != harness.FRONT):
            p.stop()
        self.dns.stop()


# -------------------------------------------------------- shape: front

def dot_stuff(message):
    out = "".join(("." + l if l.startswith(".") else l) for l in message.splitlines(keepends=True))
    return out + ".\r\n"


def run_front_shape(cf, flags, work, known=None):
    d = Daemons(cf, flags, work, "front")
    out = Run(known)
    try:
        d.start_policyd()
        fronts = {}
        sessions = {}
        for c in cf.cases:
            family = "v6" if ":" in c.address else "v4"
            if family not in fronts:
                fronts[family] = d.start_front(family)
                sessions[family] = 0
            front, port = fronts[family]
            d.dns.set_zone(zone_of(c, for_front=True))
            replay_front_case(c, d, port, family, out, front)
            sessions[family] += 1
            n = sessions[family]
            # The session's end (and its hook.close) before the next case,
            # as under --test.
            harness.wait_for(lambda: front.output().count(" duration_ms=") >= n, what="the front ending the session")
    finally:
        d.stop()
    return out


def smtp_connect(address, port, family):
    if family == "v4":
        s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address, 0))
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(30)
        s.bind((address, 0))
        s.connect(("::ffff:127.0.0.1" if address.startswith("::ffff:") else "::1", port))
    client = harness.SmtpClient.__new__(harness.SmtpClient)
    client.sock, client.buf = s, b""
    return client


def header_fields(head):
    """[(name, value)] of a header block (CRLF lines), folds kept in the
    value as written."""
    fields = []
    for l in head.split("\r\n"):
        if l[:1] in (" ", "\t") and fields:
            fields[-1][1] += "\r\n" + l
        elif ":" in l:
            name, value = l.split(":", 1)
            fields.append([name, value[1:] if value.startswith(" ") else value])
    return [tuple(f) for f in fields]


def spooled_files(spool):
    out = set()
    for sub in ("", "quarantine"):
        path = os.path.join(spool, sub)
        if os.path.isdir(path):
            out |= {os.path.join(path, f) for f in os.listdir(path) if f.endswith(".eml")}
    return out


def spooled_changes(spool, before, message, sender, rcpts, log):
    """The changes the end of a message made, read back from what the
    front spooled (docs/spool-format.md) against what the client sent, in
    case_runner.cc's words: header fields added at the top
    (insert_header), at the end (add_header), changed or deleted; the
    envelope; a replaced body; quarantine (spool/quarantine/); discard (no
    file, the front's "discarded by policy" line)."""
    new = sorted(spooled_files(spool) - before)
    if not new:
        return ["discard"] if "discarded by policy" in log else []
    with open(new[0], "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    envelope, _, rest = text.partition("\r\n\r\n")
    env = header_fields(envelope)
    changes = []
    for name, value in env:
        if name == "X-Mailhook-Quarantine":
            changes.append("quarantine " + value)
    got_from = next(v for n, v in env if n == "X-Mailhook-From").split(" ", 1)[0]
    if got_from != sender.split(" ", 1)[0]:
        changes.append("change_from " + got_from.strip("<>"))
    got_to = [v for n, v in env if n == "X-Mailhook-To"]
    sent_to = [r.split(" ", 1)[0] for r in rcpts]
    for r in got_to:
        if r.split(" ", 1)[0] not in sent_to:
            changes.append("add_rcpt " + r.split(" ", 1)[0].strip("<>") + (" " + r.split(" ", 1)[1] if " " in r else ""))
    for r in sent_to:
        if r not in [g.split(" ", 1)[0] for g in got_to]:
            changes.append("del_rcpt " + r.strip("<>"))
    # The message: the front's Received field first, then the message.
    head, _, body = rest.partition("\r\n\r\n")
    got = header_fields(head)
    if got and got[0][0] == "Received":
        got = got[1:]
    orig_head, _, orig_body = message.partition("\r\n\r\n")
    orig = header_fields(orig_head)
    if body != orig_body:
        changes.append("replace_body")
    sm = difflib.SequenceMatcher(a=orig, b=got, autojunk=False)
    added = []  # positions in `got` of new fields
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op in ("replace", "delete"):
            for k in range(i1, i2):
                name = orig[k][0]
                nth = sum(1 for n, _ in orig[:k + 1] if n.lower() == name.lower())
                changed = next((g for g in got[j1:j2] if g[0].lower() == name.lower()), None) if op == "replace" else None
                changes.append("change_header %s %d: %s" % (name, nth, changed[1]) if changed else
                               "delete_header %s %d" % (name, nth))
        if op in ("replace", "insert"):
            added += [k for k in range(j1, j2)
                      if not (op == "replace" and any(o[0].lower() == got[k][0].lower() for o in orig[i1:i2]))]
    tail = len(got)
    while tail - 1 in added:
        tail -= 1
    for k in added:
        if k >= tail:
            changes.append("add_header %s: %s" % got[k])
        else:
            changes.append("insert_header %d %s: %s" % (k, got[k][0], got[k][1]))
    return changes


def replay_front_case(c, d, port, family, out, front):
    client = smtp_connect(c.address, port, family)
    spool = os.path.join(d.work, "spool-" + family)
    sender, rcpts, changes = "", [], []
    try:
        code, lines = client.read_reply()
        last = Reply.parse(code, lines) if code else None
        closed = code is None or code >= 400
        in_data = False
        have = last is not None
        failed = False
        for s in c.steps:
            if failed:
                if s.kind in CHECKS:
                    out.put(s.line, "unreached", "an earlier line of the case failed")
                continue
            if s.kind in ("connect", "expect"):
                v = ("fail", "expect with nothing sent before it") if not have else check_reply(s.text, last)
                out.put(s.line, *v)
                have = False
            elif s.kind == "expect-line":
                out.put(s.line, *check_line(s.text, last))
            elif s.kind in ("change", "changes"):
                out.put(s.line, *check_changes(s, changes))
            elif s.kind in ("clock", "advance"):
                d.set_clock(s)
            elif s.kind == "send":
                if closed or in_data:
                    out.put(s.line, "fail", "the connection was closed before it" if closed else "after 354 the "
                            "case needs a message: line")
                else:
                    code, lines = client.cmd(s.text)
                    if code is None:
                        out.put(s.line, "fail", "the front closed the connection")
                        closed = True
                    else:
                        last = Reply.parse(code, lines)
                        have = True
                        verb = s.text.split(" ", 1)[0].upper()
                        if verb == "MAIL" and code < 400:
                            sender, rcpts = s.text.split(":", 1)[1].strip(), []
                        elif verb == "RCPT" and code < 400:
                            rcpts.append(s.text.split(":", 1)[1].strip())
                        elif verb in ("RSET", "HELO", "EHLO"):
                            sender, rcpts = "", []
                        in_data = verb == "DATA" and code == 354
                        closed = verb == "QUIT" or code == 421
            elif s.kind == "message":
                if not in_data:
                    out.put(s.line, "fail", "message: without DATA answered 354")
                else:
                    before = spooled_files(spool)
                    log_before = len(front.output())
                    client.send(dot_stuff(s.text))
                    code, lines = client.read_reply()
                    changes = spooled_changes(spool, before, s.text, sender, rcpts,
                                              front.output()[log_before:]) if code and code < 400 else []
                    sender, rcpts = "", []
                    last = Reply.parse(code, lines) if code else Reply(0, ["(closed)"])
                    have, in_data = True, False
                    closed = code is None or code == 421
            if s.line in out.lines and out.lines[s.line][0] == "fail":
                failed = True
    finally:
        client.close()


# ------------------------------------------------------- shape: milter
# The MTA of this shape answers what the milter leaves to it with the
# replies of mailhook's own session rules (mailcore/session), so that
# where a shape differs it is the protocol, not two MTAs' habits.

SMFIP = dict(NOCONNECT=0x1, NOHELO=0x2, NOMAIL=0x4, NORCPT=0x8, NOBODY=0x10, NOHDRS=0x20, NOEOH=0x40,
             NR_HDR=0x80, NOUNKNOWN=0x100, NODATA=0x200, NR_CONN=0x1000, NR_HELO=0x2000, NR_MAIL=0x4000,
             NR_RCPT=0x8000, NR_DATA=0x10000, NR_UNKN=0x20000, NR_EOH=0x40000, NR_BODY=0x80000,
             HDR_LEADSPC=0x100000)

NOT_IN_MILTER = {
    "NOOP": "milter-no-command: the MTA answers NOOP itself; no milter command carries it",
    "HELP": "milter-no-command: the MTA answers HELP itself; no milter command carries it",
    "VRFY": "milter-no-command: the MTA answers VRFY itself; no milter command carries it",
    "EXPN": "milter-no-command: the MTA answers EXPN itself; no milter command carries it",
    "ETRN": "milter-no-command: the MTA answers ETRN itself; no milter command carries it",
    "AUTH": "milter-auth: SMTP AUTH is the MTA's (its SASL decides, not hook.auth); the milter sees the user as "
            "{auth_authen} at MAIL, which this MTA sends when the case expects 235",
    "STARTTLS": "milter-no-command: TLS is the MTA's; a milter sees only its macros",
    "XCLIENT": "milter-no-command: XCLIENT is the MTA's; a milter sees the new CONNECT",
}


def envelope_address(arg, prefix):
    """MAIL FROM:<a> SIZE=1 -> ("<a>", ["SIZE=1"]); None when malformed. A
    quoted local part may hold spaces and '>' (RFC 5321 4.1.2)."""
    if not arg.upper().startswith(prefix):
        return None
    rest = arg[len(prefix):].lstrip()
    if not rest.startswith("<"):
        return None
    quoted, end = False, -1
    for i, ch in enumerate(rest):
        if ch == '"' and rest[i - 1:i] != "\\":
            quoted = not quoted
        elif ch == ">" and not quoted:
            end = i
            break
    if end < 0:
        return None
    return rest[:end + 1], rest[end + 1:].split()


class MilterSession:
    """One SMTP session as the MTA plays it to policyd's milter socket."""

    def __init__(self, case, d):
        self.c, self.d = case, d
        self.m = MilterClient(("127.0.0.1", d.milter_port), timeout=30)
        self.closed = False
        self.helo = False
        self.in_mail = False
        self.rcpts = 0
        self.in_data = False
        self.auth_user = ""
        self.changes = None

    def has(self, bit):
        return bool(self.protocol & SMFIP[bit])

    def ask(self, cmd, data, no_bit, nr_bit):
        """Sends one milter command; its answer as (letter, data, mods), or
        None when the milter negotiated it away or needs no reply."""
        if no_bit and self.has(no_bit):
            return None
        self.m.send(packet(cmd, data))
        if nr_bit and self.has(nr_bit):
            return None
        mods = []
        while True:
            r = self.m.reply()
            if r is None:
                raise ConnectionError("policyd closed the milter connection")
            if r[0] in b"+-2ehimbq":  # modifications (eom only)
                mods.append(r)
                continue
            return r[0], r[1], mods

    def smtp_reply(self, answer, default):
        """The SMTP reply the MTA sends for a milter answer (SPEC, "The
        milter adapter"): continue -> the MTA's own reply; a reply code
        (4xx/5xx with text) -> that text; a bare reject/tempfail -> the
        MTA's own refusal."""
        if answer is None or answer[0] in (b"c", b"a"):
            return default
        letter, data = answer[0], answer[1]
        if letter == b"y":
            text = data.rstrip(b"\0").decode(errors="replace")
            rows = text.split("\r\n")
            return Reply(int(rows[0][:3]), [r[4:] for r in rows])
        if letter == b"r":
            return Reply(550, ["5.7.1 Command rejected"], "mta")
        if letter == b"t":
            return Reply(451, ["4.7.1 Service unavailable - try again later"], "mta")
        if letter == b"d":
            return default
        raise ConnectionError("unexpected milter answer %r" % letter)

    def connect(self):
        version, actions, self.protocol = self.m.negotiate()
        self.m.send(packet(b"D", b"C" + b"j\0" + HOSTNAME.encode() + b"\0{daemon_name}\0case-replay\0"))
        addr = self.c.address
        host = (self.c.host or "[%s]" % addr).encode()
        data = host + b"\0" + (b"6" if ":" in addr else b"4") + struct.pack(">H", self.c.port) + addr.encode() + b"\0"
        a = self.ask(b"C", data, "NOCONNECT", "NR_CONN")
        if a and a[0] in (b"r", b"t"):
            self.closed = True
            return Reply(554 if a[0] == b"r" else 421, ["(the MTA's own refusal)"], "class")
        return Reply(220, ["%s ESMTP" % HOSTNAME], "mta")

    def abort(self):
        if self.in_mail:
            self.m.send(packet(b"A"))
            self.in_mail, self.rcpts = False, 0

    def command(self, line, next_expect):
        """The reply to one SMTP command; ("n/a", reason) when no milter
        command carries it."""
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb in NOT_IN_MILTER:
            if verb == "AUTH" and next_expect and next_expect.startswith("235"):
                plain = base64.b64decode(arg.split()[1]).split(b"\0")
                self.auth_user = plain[1].decode()
            return NOT_IN_MILTER[verb]
        if verb in ("HELO", "EHLO"):
            self.abort()
            a = self.ask(b"H", arg.encode() + b"\0", "NOHELO", "NR_HELO")
            r = self.smtp_reply(a, Reply(250, [HOSTNAME], "mta"))
            self.helo = self.helo or r.code < 400
            return r
        if verb == "MAIL":
            if not self.helo or self.in_mail:
                return Reply(503, ["5.5.1 Bad sequence of commands"], "mta")
            parsed = envelope_address(arg, "FROM:")
            if not parsed:
                return Reply(501, ["5.5.4 Syntax: MAIL FROM:<address>"], "mta")
            addr, params = parsed
            for p in params:
                if p.upper().startswith("SIZE=") and int(p[5:] or 0) > 26214400:
                    return Reply(552, ["5.3.4 Message size exceeds fixed limit"], "mta")
            if self.auth_user:
                self.m.send(packet(b"D", b"M{auth_authen}\0" + self.auth_user.encode() + b"\0"))
            a = self.ask(b"M", b"".join(w.encode() + b"\0" for w in [addr] + params), "NOMAIL", "NR_MAIL")
            r = self.smtp_reply(a, Reply(250, ["2.1.0 Ok"], "mta"))
            self.in_mail = r.code < 400
            self.closed = r.code == 421
            return r
        if verb == "RCPT":
            if not self.in_mail:
                return Reply(503, ["5.5.1 Bad sequence of commands"], "mta")
            parsed = envelope_address(arg, "TO:")
            if not parsed:
                return Reply(501, ["5.5.4 Syntax: RCPT TO:<address>"], "mta")
            addr, params = parsed
            if "@" not in addr and addr.lower() != "<postmaster>":
                return Reply(501, ["5.1.3 Bad recipient address syntax"], "mta")
            a = self.ask(b"R", b"".join(w.encode() + b"\0" for w in [addr] + params), "NORCPT", "NR_RCPT")
            r = self.smtp_reply(a, Reply(250, ["2.1.5 Ok"], "mta"))
            self.rcpts += r.code < 400
            self.closed = r.code == 421
            return r
        if verb == "DATA":
            if not self.in_mail:
                return Reply(503, ["5.5.1 Bad sequence of commands"], "mta")
            if not self.rcpts:
                return Reply(554, ["5.5.1 No valid recipients"], "mta")
            a = self.ask(b"T", b"", "NODATA", "NR_DATA")
            r = self.smtp_reply(a, Reply(354, ["End data with <CR><LF>.<CR><LF>"], "mta"))
            self.in_data = r.code == 354
            if r.code >= 400:
                self.abort()
            self.closed = r.code == 421
            return r
        if verb == "RSET":
            self.abort()
            return Reply(250, ["2.0.0 Ok"], "mta")
        if verb == "QUIT":
            self.closed = True
            return Reply(221, ["2.0.0 Bye"], "mta")
        # Any other command is unknown to the MTA: SMFIC_UNKNOWN.
        a = self.ask(b"U", line.encode() + b"\0", "NOUNKNOWN", "NR_UNKN")
        r = self.smtp_reply(a, Reply(502, ["5.5.2 Command not recognized"], "mta"))
        self.closed = r.code == 421
        return r

    def message(self, text):
        """Header fields, end of headers, body and end of message; the
        reply and the changes the end of message made."""
        self.in_data = False
        head, _, body = text.partition("\r\n\r\n")
        if not _:
            head, body = text, ""
        fields = []
        for l in head.split("\r\n"):
            if l[:1] in (" ", "\t") and fields:
                fields[-1][1] += "\n" + l
            elif ":" in l:
                name, value = l.split(":", 1)
                fields.append([name, value])
        refusal = None
        for name, value in fields:
            if not self.has("HDR_LEADSPC") and value.startswith(" "):
                value = value[1:]
            a = self.ask(b"L", name.encode() + b"\0" + value.encode() + b"\0", "NOHDRS", "NR_HDR")
            if a and a[0] not in (b"c", b"a"):
                refusal = a
                break
        if not refusal:
            a = self.ask(b"N", b"", "NOEOH", "NR_EOH")
            refusal = a if a and a[0] not in (b"c", b"a") else None
        raw = body.encode()
        for i in range(0, len(raw), 65535):
            if refusal:
                break
            a = self.ask(b"B", raw[i:i + 65535], "NOBODY", "NR_BODY")
            refusal = a if a and a[0] not in (b"c", b"a") else None
        if refusal:
            self.abort()
            self.changes = []
            return self.smtp_reply(refusal, None)
        a = self.ask(b"E", b"", None, None)
        self.in_mail, self.rcpts = False, 0
        r = self.smtp_reply(a, Reply(250, ["2.0.0 Ok: queued as MILTER"], "mta"))
        self.changes = [] if r.code >= 400 else [render_mod(m) for m in a[2]]
        if a[0] == b"d":
            self.changes.append("discard")
        self.closed = r.code == 421
        return r

    def close(self):
        try:
            # The MTA ends every session with QUIT, after a refusal too.
            self.m.send(packet(b"Q"))
            self.m.sock.settimeout(10)
            self.m.closed()
        except OSError:
            pass
        self.m.close()


def render_mod(mod):
    """A modification packet as case files write changes (case_runner.cc
    render())."""
    letter, data = mod[0], mod[1]

    def strings(b):
        return [s.decode(errors="replace").replace("\n", "\r\n") for s in b.split(b"\0")]

    if letter == b"h":
        s = strings(data)
        return "add_header %s: %s" % (s[0], s[1])
    if letter in (b"i", b"m"):
        index = struct.unpack(">I", data[:4])[0]
        s = strings(data[4:])
        if letter == b"i":
            return "insert_header %d %s: %s" % (index, s[0], s[1])
        if s[1] == "":
            return "delete_header %s %d" % (s[0], index)
        return "change_header %s %d: %s" % (s[0], index, s[1])
    if letter in (b"+", b"2"):
        s = strings(data)
        return "add_rcpt " + s[0].strip("<>") + (" " + s[1] if letter == b"2" and s[1] else "")
    if letter == b"-":
        return "del_rcpt " + strings(data)[0].strip("<>")
    if letter == b"e":
        return "change_from " + strings(data)[0].strip("<>")
    if letter == b"b":
        return "replace_body"
    if letter == b"q":
        return "quarantine " + strings(data)[0]
    return "?" + letter.decode()


def run_milter_shape(cf, flags, work, known=None):
    d = Daemons(cf, flags, work, "milter")
    out = Run(known)
    try:
        d.start_policyd()
        for c in cf.cases:
            d.dns.set_zone(zone_of(c))
            replay_milter_case(c, d, out)
    finally:
        d.stop()
    return out


def replay_milter_case(c, d, out):
    ms = MilterSession(c, d)
    try:
        last = ms.connect()
        have = True
        na_reason = None  # the last send was not carried: its expects are n/a
        failed = False
        steps = c.steps
        for i, s in enumerate(steps):
            if failed:
                if s.kind in CHECKS:
                    out.put(s.line, "unreached", "an earlier line of the case failed")
                continue
            if s.kind in ("connect", "expect"):
                if na_reason:
                    out.put(s.line, "n/a", na_reason)
                elif not have:
                    out.put(s.line, "fail", "expect with nothing sent before it")
                else:
                    out.put(s.line, *check_reply(s.text, last))
                have = False
            elif s.kind == "expect-line":
                out.put(s.line, *(("n/a", na_reason) if na_reason else check_line(s.text, last)))
            elif s.kind in ("change", "changes"):
                out.put(s.line, *check_changes(s, ms.changes if ms.changes is not None else []))
            elif s.kind in ("clock", "advance"):
                d.set_clock(s)
            elif s.kind == "send":
                na_reason = None
                if ms.closed or ms.in_data:
                    out.put(s.line, "fail", "the connection was closed before it" if ms.closed else
                            "after 354 the case needs a message: line")
                    continue
                # The expect answering this command, if any (an AUTH's 235).
                nxt = next((t for t in steps[i + 1:] if t.kind in ("expect", "send", "message")), None)
                r = ms.command(s.text, nxt.text if nxt is not None and nxt.kind == "expect" else None)
                if isinstance(r, str):
                    na_reason = r
                    out.put(s.line, "n/a", r)
                else:
                    last, have = r, True
            elif s.kind == "message":
                na_reason = None
                if not ms.in_data:
                    out.put(s.line, "fail", "message: without DATA answered 354")
                else:
                    last, have = ms.message(s.text), True
            if s.line in out.lines and out.lines[s.line][0] == "fail":
                failed = True
    finally:
        ms.close()


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
    env = dict(os.environ, **{NETNS_MARK: "1"})
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

"""Case files (docs/policy-tests.md) for the replayer (case_replay.py):
reading them as policyd/testing/case_file.cc does (that parser stays the
authority: the test shape runs it), SMTP replies, and the verdict of a
check line against a reply. No process, no socket here."""

import calendar
import os
import re
import time

CHECKS = ("connect", "expect", "expect-line", "expect-no-line", "change", "changes")


class CaseError(Exception):
    """A malformed case file: "file:line: what"."""


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
        elif key in ("send", "expect", "expect-line", "expect-no-line", "connect", "change"):
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


def check_no_line(pattern, reply):
    verdict, detail = check_line(pattern, reply)
    if verdict == "n/a":
        return verdict, detail
    if verdict == "pass":
        return "fail", "expected no line %s in the reply, got %s" % (pattern, detail)
    return "pass", "none"


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

"""The front shape of the replayer (case_replay.py): each case is one SMTP
session from the case's client address to the real mailhook-front before
policyd; the changes the end of a message made are read back from the
spooled file. It only reads the spool, never writes it."""

import difflib
import os
import socket

import harness
from replay_cases import CHECKS, Reply, Run, check_changes, check_line, check_no_line, check_reply
from replay_daemons import Daemons, zone_of


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
            elif s.kind == "expect-no-line":
                out.put(s.line, *check_no_line(s.text, last))
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

"""The milter shape of the replayer (case_replay.py): a milter client plays
the MTA to policyd --milter. Each SMTP command becomes its milter command,
each milter answer the SMTP reply the MTA sends; the MTA's own replies are
those of mailhook's session rules. The mapping is in docs/policy-tests.md."""

import base64
import struct

from replay_cases import CHECKS, Reply, Run, check_changes, check_line, check_no_line, check_reply
from replay_daemons import HOSTNAME, Daemons, zone_of
from test_security_milter import MilterClient, packet


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
            elif s.kind == "expect-no-line":
                out.put(s.line, *(("n/a", na_reason) if na_reason else check_no_line(s.text, last)))
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

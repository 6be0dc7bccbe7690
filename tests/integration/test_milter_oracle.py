"""libmilter as the oracle for policyd's milter engine: the same packet
sequences go over real loopback TCP to a small libmilter filter that
accepts everything (milter_oracle/oracle_filter.c, built by CMake) and to
mailhook-policyd --milter running a script that defines every hook and
decides nothing; their answers (packets, and whether the peer closed) must
be the same. Where policyd legitimately answers differently, the case says
so and why, with both answers spelled out (docs/milter-conformance.md)."""

import os
import socket
import struct
import unittest
from collections import namedtuple

from harness import MailhookTest, Process, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE = os.environ.get("MAILHOOK_MILTER_ORACLE", "build/tests/integration/milter_oracle_filter")
QUIET = 1.0  # seconds of silence that count as "no answer"; never used to wait for something that will come

# Every hook a milter step can reach, each deciding nothing: policyd then
# negotiates no step away, as libmilter does for a filter with every callback.
EVERY_HOOK = r'''
function hook.accept(ip, ptr) end
function hook.helo(h) end
function hook.mail(s) end
function hook.rcpt(r) end
function hook.data() end
function hook.content(chunk) end
function hook.header(line) end
function hook.eoh() end
function hook.body(line) end
function hook.dot(path) end
function hook.reset() end
function hook.unknown(line) end
function hook.close() end
'''

RCPT_ONLY = 'function hook.rcpt(r) end\n'

# Every hook again, three of them refusing as the oracle's "refuse" mode does.
REFUSES = EVERY_HOOK.replace("function hook.accept(ip, ptr) end", r'''
function hook.accept(ip, ptr) if ip == "192.0.2.66" then return "554 5.7.1 go away\r\n" end end''').replace(
    "function hook.helo(h) end", r'''
function hook.helo(h) if h == "bad.example" then return "550 5.7.1 helo refused\r\n" end end''').replace(
    "function hook.mail(s) end", r'''
function hook.mail(s) if s == "temp@example.org" then return "451 4.3.2 try later\r\n" end end''').replace(
    "function hook.rcpt(r) end", r'''
function hook.rcpt(r)
  if r == "no@example.com" then return "550-5.1.1 no such user\r\n550 5.1.1 see postmaster\r\n" end
end''')

# SMFIF_* actions and SMFIP_* protocol bits (Sendmail's mfdef.h).
ACTIONS = [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100]
ALL_ACTIONS = 0x1FF
SETSYMLIST = 0x100
V1_ACTIONS, V1_PROTOCOL = 0x0F, 0x3F  # what libmilter reads an offer of 0 as
NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY, NOHDRS, NOEOH = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
NR_HDR, NOUNKNOWN, NODATA, SKIP, RCPT_REJ = 0x80, 0x100, 0x200, 0x400, 0x800
NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_DATA, NR_UNKN, NR_EOH, NR_BODY = (
    0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000)
HDR_LEADSPC, MDS_256K, MDS_1M = 0x100000, 0x10000000, 0x20000000
PROTOCOL_BITS = [1 << i for i in range(21)] + [MDS_256K, MDS_1M]
ALL_PROTOCOL = 0x1FFFFF  # what Postfix and Sendmail 8.14+ offer
NR_ALL = NR_HDR | NR_CONN | NR_HELO | NR_MAIL | NR_RCPT | NR_DATA | NR_UNKN | NR_EOH | NR_BODY
PLAIN_PROTOCOL = ALL_PROTOCOL & ~NR_ALL  # every step, every reply: answers comparable packet for packet
NR_OF = {b"C": NR_CONN, b"H": NR_HELO, b"M": NR_MAIL, b"R": NR_RCPT, b"T": NR_DATA, b"U": NR_UNKN,
         b"L": NR_HDR, b"N": NR_EOH, b"B": NR_BODY}


def packet(letter, data=b""):
    return struct.pack(">I", len(data) + 1) + letter + data


def optneg(version=6, actions=ALL_ACTIONS, protocol=PLAIN_PROTOCOL):
    return packet(b"O", struct.pack(">III", version, actions, protocol))


def macros(stage, *pairs):
    return packet(b"D", stage + b"".join(n + b"\0" + v + b"\0" for n, v in pairs))


CONNECT = packet(b"C", b"client.example\0" + b"4" + struct.pack(">H", 4000) + b"192.0.2.9\0")
CONNECT6 = packet(b"C", b"client.example\0" + b"6" + struct.pack(">H", 4000) + b"2001:db8::9\0")
HELO = packet(b"H", b"client.example\0")
MAIL = packet(b"M", b"<a@example.org>\0SIZE=100\0")
RCPT = packet(b"R", b"<b@example.com>\0")
DATA = packet(b"T")
HEADER = packet(b"L", b"Subject\0hello\0")
EOH = packet(b"N")
BODY = packet(b"B", b"the body\r\n")
EOM = packet(b"E")
ABORT = packet(b"A")
QUIT = packet(b"Q")
QUIT_NC = packet(b"K")
UNKNOWN = packet(b"U", b"XFOO bar\0")
MESSAGE = [DATA, HEADER, EOH, BODY, EOM]
SESSION = [CONNECT, HELO, MAIL, RCPT] + MESSAGE

Answer = namedtuple("Answer", "packets closed")


def parse(buf):
    out = []
    while len(buf) >= 5:
        n = struct.unpack(">I", buf[:4])[0]
        if n == 0 or len(buf) < 4 + n:
            break
        out.append((buf[4:5], buf[5:4 + n]))
        buf = buf[4 + n:]
    if buf:
        out.append((b"?", buf))  # bytes that are no whole packet: never equal to a real answer
    return out


def exchange(port, data, shut=False):
    """Sends `data` on a fresh connection (then half-closes with `shut`) and
    collects every answer until the peer closes or stays silent for QUIET."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf, closed = b"", False
    try:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the peer closed before taking everything: what it answered is still read
        s.settimeout(QUIET)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break  # nothing came: the peer waits for more
            except ConnectionResetError:
                closed = True  # closed with our bytes unread (RST): closed all the same
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    finally:
        s.close()
    return Answer(parse(buf), closed)


def render(answer):
    """'O c c | closed': letters, with the text of a REPLYCODE."""
    parts = []
    for letter, data in answer.packets:
        text = letter.decode("latin-1")
        if letter == b"y":
            text += ":" + data.rstrip(b"\0").decode("latin-1")
        parts.append(text)
    return " ".join(parts) + (" | closed" if answer.closed else " | open")


def negotiated(answer):
    """(version, actions, protocol) of the OPTNEG reply, or None."""
    for letter, data in answer.packets:
        if letter == b"O" and len(data) >= 12:
            return struct.unpack(">III", data[:12])
    return None


def without_progress(answer):
    # SMFIR_PROGRESS: policyd sends it each second a hook.dot is still
    # running; libmilter's filter answers at once. Not an answer of its own.
    return Answer([p for p in answer.packets if p[0] != b"p"], answer.closed)


def normalised(oracle, policyd, sent):
    """Both answers with the OPTNEG replies checked by their own rule and
    then reduced to the version, and libmilter's CONTINUE to the steps
    policyd asked to answer without a reply (SMFIP_NR_*) dropped."""
    policyd = without_progress(policyd)
    o, p = negotiated(oracle), negotiated(policyd)
    assert (o is None) == (p is None), (render(oracle), render(policyd))

    def reduce(answer):
        return Answer([(l, d[:4]) if l == b"O" else (l, d) for l, d in answer.packets], answer.closed)

    oracle, policyd = reduce(oracle), reduce(policyd)
    if p is not None:
        silent = sum(1 for cmd in sent if p[2] & NR_OF.get(cmd, 0))
        # policyd told the MTA these steps get no reply; libmilter's filter
        # (SMFIS_ALL_OPTS) answers each with CONTINUE.
        kept, dropped = [], 0
        for letter, data in oracle.packets:
            if letter == b"c" and dropped < silent and any(l == b"O" for l, _ in kept):
                dropped += 1
                continue
            kept.append((letter, data))
        oracle = Answer(kept, oracle.closed)
    return oracle, policyd


def commands_of(data):
    """The command letters of a byte sequence (as far as it holds whole packets)."""
    out = []
    while len(data) >= 5:
        n = struct.unpack(">I", data[:4])[0]
        out.append(data[4:5])
        if n == 0:
            break
        data = data[4 + n:]
    return out


# A case: the packets sent, whether QUIT follows (its close ends the read
# without waiting for silence), whether we half-close after sending, and
# for a known difference the answers of both ("libmilter", "policyd") and
# the section of docs/milter-conformance.md that says why policyd's is fine.
Case = namedtuple("Case", "name packets quit shut differs", defaults=(True, False, None))

SEQUENCES = [
    # Each command in order, a whole session, with and without HELO.
    Case("a whole session", [optneg()] + SESSION),
    Case("a session without HELO", [optneg(), CONNECT, MAIL, RCPT] + MESSAGE),
    Case("an IPv6 client", [optneg(), CONNECT6, HELO]),
    Case("a unix-socket client", [optneg(), packet(b"C", b"localhost\0L" + struct.pack(">H", 0) + b"/run/x\0")]),
    Case("a client of unknown family", [optneg(), packet(b"C", b"localhost\0U"), HELO]),
    Case("two HELOs", [optneg(), CONNECT, HELO, HELO, MAIL]),
    Case("two messages", [optneg()] + SESSION + [MAIL, RCPT] + MESSAGE),
    Case("several recipients", [optneg(), CONNECT, MAIL, RCPT, RCPT, RCPT, DATA, EOH, EOM]),
    Case("several body chunks", [optneg(), CONNECT, MAIL, RCPT, DATA, HEADER, HEADER, EOH, BODY, BODY, BODY, EOM]),
    Case("end of message carrying the last chunk", [optneg(), CONNECT, MAIL, RCPT, DATA, EOH,
                                                    packet(b"E", b"last chunk\r\n")]),
    Case("a message without DATA (an old MTA)", [optneg(), CONNECT, MAIL, RCPT, HEADER, EOH, BODY, EOM]),
    Case("a message straight to its end", [optneg(), CONNECT, MAIL, RCPT, EOM]),
    Case("unknown SMTP commands", [optneg(), CONNECT, UNKNOWN, HELO, UNKNOWN, MAIL, RCPT, UNKNOWN]),
    Case("a one-byte body chunk", [optneg(), CONNECT, MAIL, RCPT, DATA, EOH, packet(b"B", b"x"), EOM]),
    # Macros for each stage, before their command (no reply of their own).
    Case("macros for each stage", [
        optneg(),
        macros(b"C", (b"j", b"mx.example"), (b"{daemon_name}", b"smtpd"), (b"{client_addr}", b"192.0.2.9")),
        CONNECT,
        macros(b"H", (b"{tls_version}", b"TLSv1.3"), (b"{cipher}", b"TLS_AES_256_GCM_SHA384")), HELO,
        macros(b"M", (b"i", b"4XyZ"), (b"{auth_authen}", b"user"), (b"{mail_addr}", b"a@example.org")), MAIL,
        macros(b"R", (b"{rcpt_addr}", b"b@example.com")), RCPT,
        macros(b"T", (b"i", b"4XyZ")), DATA, HEADER,
        macros(b"N", (b"i", b"4XyZ")), EOH, BODY,
        macros(b"E", (b"i", b"4XyZ")), EOM]),
    Case("a macro for a stage that has none", [optneg(), macros(b"Z", (b"j", b"x")), CONNECT]),
    Case("a macro packet without NUL", [optneg(), packet(b"D", b"Cj"), CONNECT]),
    # The end of a message and of a session.
    Case("ABORT mid-message, then a new transaction", [optneg(), CONNECT, HELO, MAIL, RCPT, DATA, HEADER, ABORT,
                                                       MAIL, RCPT, DATA, EOH, EOM]),
    Case("ABORT after RCPT", [optneg(), CONNECT, MAIL, RCPT, ABORT, MAIL]),
    Case("QUIT_NC after a message, then a second session", [optneg()] + SESSION + [QUIT_NC] + SESSION),
    Case("QUIT", [optneg(), CONNECT, HELO, QUIT, CONNECT], quit=False),
    Case("the MTA half-closes after a command", [optneg(), CONNECT, HELO], quit=False, shut=True),
]

# Commands out of order: libmilter checks each against its table of next
# states (engine.c); a command that cannot follow is ignored.
OUT_OF_ORDER = [
    Case("CONNECT before OPTNEG", [CONNECT, HELO, MAIL], differs=dict(
        libmilter="c c | closed", policyd="t t | closed",
        why="both ignore the CONNECT; libmilter then runs HELO and MAIL with no client, policyd has no session "
            "without CONNECT and tempfails (docs/milter-conformance.md, 'No CONNECT')")),
    Case("OPTNEG twice", [optneg(), optneg(), CONNECT], differs=dict(
        libmilter="O | closed", policyd="O c | closed",
        why="both ignore the second OPTNEG; libmilter then ignores CONNECT too (the order restarts at HELO), "
            "policyd takes a CONNECT at any stage ('A new session anywhere')")),
    Case("OPTNEG after CONNECT", [optneg(), CONNECT, optneg(), HELO]),
    Case("HELO without CONNECT", [optneg(), HELO], differs=dict(
        libmilter="O c | closed", policyd="O t | closed", why="'No CONNECT': no session, tempfail")),
    Case("BODY before CONNECT", [optneg(), BODY, CONNECT, HELO], differs=dict(
        libmilter="O c | closed", policyd="O c c | closed",
        why="both ignore BODY; libmilter then ignores CONNECT and runs HELO with no client, policyd takes the "
            "CONNECT ('A new session anywhere')")),
    Case("end of message before CONNECT", [optneg(), EOM]),
    Case("RCPT before MAIL", [optneg(), CONNECT, RCPT, MAIL, RCPT]),
    Case("DATA before MAIL", [optneg(), CONNECT, DATA, MAIL]),
    Case("a header before DATA's RCPT", [optneg(), CONNECT, MAIL, HEADER, RCPT]),
    Case("a header after end of headers", [optneg(), CONNECT, MAIL, RCPT, DATA, EOH, HEADER, BODY, EOM]),
    Case("end of message right after DATA", [optneg(), CONNECT, MAIL, RCPT, DATA, EOM, MAIL]),
    Case("end of message twice", [optneg(), CONNECT, MAIL, RCPT, EOM, EOM, MAIL]),
    Case("MAIL twice", [optneg(), CONNECT, MAIL, MAIL, RCPT]),
    Case("MAIL inside a message", [optneg(), CONNECT, MAIL, RCPT, DATA, HEADER, MAIL, RCPT]),
    Case("ABORT outside a transaction", [optneg(), CONNECT, ABORT, HELO]),
    Case("a second CONNECT without QUIT_NC", [optneg(), CONNECT, HELO, CONNECT, HELO], differs=dict(
        libmilter="O c c c | closed", policyd="O c c c c | closed",
        why="libmilter ignores the second CONNECT and runs the next HELO in the first session's context; policyd "
            "ends that session and starts the new one ('A new session anywhere')")),
    Case("QUIT_NC after HELO, then a second session", [optneg(), CONNECT, HELO, QUIT_NC, CONNECT, HELO], differs=dict(
        libmilter="O c c c | closed", policyd="O c c c c | closed",
        why="libmilter takes QUIT_NC only after a message and ignores it and the new CONNECT; policyd ends the "
            "session and serves the new one ('A new session anywhere')")),
    Case("QUIT_NC, then OPTNEG again", [optneg()] + SESSION + [QUIT_NC, optneg(), CONNECT, HELO], differs=dict(
        libmilter="O c c c c c c c c c c | closed", policyd="O c c c c c c c c c c c | closed",
        why="both ignore the second OPTNEG; libmilter then ignores CONNECT too and runs HELO in the old "
            "session's context, policyd serves the new session ('A new session anywhere')")),
]

NEGOTIATION = [
    Case("version 1 is refused", [optneg(1)]),
    Case("an OPTNEG of 8 bytes is refused", [packet(b"O", struct.pack(">II", 6, ALL_ACTIONS))]),
]

LIMITS = [
    Case("a zero-length packet after the session's start", [optneg(), CONNECT, b"\0\0\0\0", HELO], quit=False),
    Case("an unknown command byte", [optneg(), CONNECT, packet(b"Z", b"junk")]),
    Case("a length past 1 MiB", [optneg(), CONNECT, struct.pack(">I", 2 << 20) + b"B" + b"x" * 100], quit=False),
    Case("a length of 2^32-1", [optneg(), CONNECT, b"\xff\xff\xff\xffB"], quit=False, differs=dict(
        libmilter="O c | open", policyd="O c | closed",
        why="libmilter's signed length reads it as an empty BODY, ignores that as out of order and reads on in "
            "the middle of the packet; policyd refuses a length past --milter-max-packet ('Lengths')")),
    Case("a zero-length packet, nothing after", [optneg(), CONNECT, b"\0\0\0\0"], quit=False, differs=dict(
        libmilter="O c | open", policyd="O c | closed",
        why="libmilter reads a fifth byte as the command of a packet of no length; policyd refuses the length "
            "0 (a packet holds at least its command) and closes ('Lengths')")),
    Case("a body chunk of 65536 bytes (past libmilter's limit)", [optneg(), CONNECT, MAIL, RCPT, DATA, EOH,
                                                                  packet(b"B", b"x" * 65536), EOM], differs=dict(
        libmilter="O c c c c c | closed", policyd="O c c c c c c c | closed",
        why="libmilter takes 65535 data bytes; policyd up to --milter-max-packet (1 MiB by default, 65536 "
            "gives libmilter's limit: PacketLimit) ('Lengths')")),
    Case("HELO without NUL", [optneg(), CONNECT, packet(b"H", b"client.example")], quit=False, differs=dict(
        libmilter="O c | open", policyd="O c | closed",
        why="libmilter sends no reply and leaves the MTA waiting for one; policyd closes on the malformed "
            "command, so the MTA applies its default action at once ('Malformed HELO')")),
    Case("a body chunk of 65535 bytes (libmilter's limit)", [optneg(), CONNECT, MAIL, RCPT, DATA, EOH,
                                                             packet(b"B", b"x" * 65535), EOM]),
    # Malformed data: libmilter closes before calling the filter.
    Case("an empty body chunk", [optneg(), CONNECT, MAIL, RCPT, DATA, EOH, packet(b"B"), EOM]),
    Case("an empty MACRO packet", [optneg(), packet(b"D"), CONNECT]),
    Case("an empty UNKNOWN", [optneg(), CONNECT, packet(b"U")]),
    Case("MAIL without NUL", [optneg(), CONNECT, packet(b"M", b"<a@example.org>"), RCPT]),
    Case("RCPT without NUL", [optneg(), CONNECT, MAIL, packet(b"R", b"<b@example.com>")]),
    Case("a header without its value", [optneg(), CONNECT, MAIL, RCPT, DATA, packet(b"L", b"Subject\0"), EOH]),
    Case("a header value without NUL", [optneg(), CONNECT, MAIL, RCPT, DATA, packet(b"L", b"Subject\0hi"), EOH]),
    Case("CONNECT of no known family", [optneg(), packet(b"C", b"client.example\0X" + struct.pack(">H", 25) +
                                                            b"192.0.2.9\0"), HELO]),
    Case("CONNECT without a port", [optneg(), packet(b"C", b"client.example\0" b"4"), HELO]),
    Case("CONNECT with an address that does not parse", [
        optneg(), packet(b"C", b"client.example\0" b"4" + struct.pack(">H", 25) + b"nonsense\0"), HELO]),
    Case("CONNECT with an address without NUL", [
        optneg(), packet(b"C", b"client.example\0" b"6" + struct.pack(">H", 25) + b"2001:db8::9"), HELO]),
    Case("a truncated packet, then close", [optneg(), CONNECT, struct.pack(">I", 100) + b"H" + b"client"],
         quit=False, shut=True),
    Case("a truncated length, then close", [optneg(), CONNECT, b"\0\0"], quit=False, shut=True),
]


class MilterOracle(MailhookTest):
    def start_peers(self, script=EVERY_HOOK, mode="all", policyd_args=()):
        self.oracle_port = free_port()
        oracle = Process([ORACLE, "inet:%d@127.0.0.1" % self.oracle_port, mode],
                         os.path.join(self.dir, "oracle-%s.log" % mode))
        self.processes.append(oracle)
        self.milter_port = free_port()
        self.start_policyd(script, args=["--milter", "inet:%d@127.0.0.1" % self.milter_port] + list(policyd_args))
        wait_for(lambda: "oracle listening" in oracle.output() or not oracle.alive(), what="the oracle listening")
        self.assertTrue(oracle.alive(), oracle.output())
        wait_for(lambda: "milter listening on" in self.policyd.output(), what="policyd's milter listening")

    def both(self, data, shut=False):
        return exchange(self.oracle_port, data, shut), exchange(self.milter_port, data, shut)

    def compare(self, cases):
        for case in cases:
            with self.subTest(case.name):
                data = b"".join(case.packets) + (QUIT if case.quit else b"")
                oracle, policyd = self.both(data, case.shut)
                o, p = normalised(oracle, policyd, commands_of(data))
                if case.differs is None:
                    self.assertEqual(render(o), render(p), "libmilter and policyd answer differently")
                    self.assertEqual(o, p)
                else:
                    self.assertEqual(render(o), case.differs["libmilter"], "libmilter's answer changed")
                    self.assertEqual(render(p), case.differs["policyd"], "policyd's answer changed")
                    self.assertTrue(case.differs.get("why"), "a difference needs its reason")


class Sequences(MilterOracle):
    def test_commands_in_order_macros_abort_and_quit(self):
        self.start_peers()
        self.compare(SEQUENCES)

    def test_commands_out_of_order(self):
        self.start_peers()
        self.compare(OUT_OF_ORDER)
        wait_for(lambda: "'R' out of order (after CONNECT); ignored" in self.policyd.output(),
                 what="the log names a command ignored as out of order")

    def test_negotiation_refusals(self):
        self.start_peers()
        self.compare(NEGOTIATION)

    def test_malformed_oversized_and_truncated_packets(self):
        self.start_peers()
        self.compare(LIMITS)
        self.assertTrue(self.policyd.alive())


class Negotiation(MilterOracle):
    def check_offer(self, version, actions, protocol):
        oracle, policyd = self.both(optneg(version, actions, protocol) + QUIT)
        what = "offer v%d actions 0x%x protocol 0x%x: libmilter %s, policyd %s" % (
            version, actions, protocol, render(oracle), render(policyd))
        self.assertEqual(oracle.closed, policyd.closed, what)
        o, p = negotiated(oracle), negotiated(policyd)
        self.assertIsNotNone(o, what)
        self.assertIsNotNone(p, what)
        self.assertEqual(len(oracle.packets), 1, what)
        self.assertEqual(len(policyd.packets), 1, what)
        # The version: never past the MTA's, 6 at most, the same for both.
        self.assertEqual(o[0], min(version, 6), what)
        self.assertEqual(p[0], o[0], what)
        # libmilter reads an offer of 0 as version 1's actions and steps.
        offered_actions = actions or V1_ACTIONS
        offered_protocol = protocol or V1_PROTOCOL
        # Actions: libmilter's filter takes all offered (SMFIS_ALL_OPTS);
        # policyd asks for every one its message.* functions use, which is
        # all but SMFIF_SETSYMLIST (it asks for no macro list: the MTA's
        # defaults carry what client.macros reads).
        self.assertEqual(o[1], offered_actions, what)
        self.assertEqual(p[1], offered_actions & ~SETSYMLIST, what)
        # Protocol: libmilter's filter asks for no step to be skipped and
        # every reply (SMFIP_SKIP where offered: it could send SKIP);
        # policyd, with every hook defined, asks the MTA to send headers,
        # end of headers and body chunks without waiting for a reply (the
        # content hooks cannot answer), where the MTA offers that.
        self.assertEqual(o[2], offered_protocol & SKIP, what)
        self.assertEqual(p[2], offered_protocol & (NR_HDR | NR_EOH | NR_BODY), what)
        return o, p

    def test_every_action_and_protocol_flag_the_mta_offers(self):
        self.start_peers()
        checked = 0
        for version in (2, 4, 6):
            for actions in [0, ALL_ACTIONS, 0x3F] + ACTIONS:
                for protocol in [0, ALL_PROTOCOL, PLAIN_PROTOCOL, ALL_PROTOCOL | MDS_256K | MDS_1M] + PROTOCOL_BITS:
                    with self.subTest(version=version, actions=hex(actions), protocol=hex(protocol)):
                        self.check_offer(version, actions, protocol)
                        checked += 1
        self.assertEqual(checked, 3 * 12 * 27)

    def test_versions_past_6_get_6(self):
        self.start_peers()
        for version in (3, 5, 7, 0x7FFFFFFF):
            with self.subTest(version=version):
                self.check_offer(version, ALL_ACTIONS, ALL_PROTOCOL)
        # Past 2^31 libmilter's signed version is negative, "too old", and
        # it closes; policyd answers 6 like for any version above 6
        # (docs/milter-conformance.md, 'Versions').
        oracle, policyd = self.both(optneg(0x80000000, ALL_ACTIONS, ALL_PROTOCOL) + QUIT)
        self.assertEqual(render(oracle), " | closed")
        self.assertEqual(render(policyd), "O | closed")
        self.assertEqual(negotiated(policyd)[0], 6)

    def test_a_whole_session_with_postfixs_offer(self):
        # Postfix offers every NR_* bit: policyd takes NR_HDR/EOH/BODY and
        # sends nothing for those steps (normalised() drops libmilter's
        # CONTINUE there); the rest answer packet for packet.
        self.start_peers()
        data = optneg(6, ALL_ACTIONS, ALL_PROTOCOL) + b"".join(SESSION) + QUIT
        oracle, policyd = self.both(data)
        p = negotiated(policyd)
        self.assertEqual(p[2], NR_HDR | NR_EOH | NR_BODY)
        o, p = normalised(oracle, policyd, commands_of(data))
        self.assertEqual(render(o), render(p))
        self.assertEqual(render(p), "O c c c c c c | closed")  # connect helo mail rcpt data eom


BAD_HELO = packet(b"H", b"bad.example\0")
TEMP_MAIL = packet(b"M", b"<temp@example.org>\0")
NO_RCPT = packet(b"R", b"<no@example.com>\0")

# Refusals and what may follow them: libmilter returns to the HELO stage
# after a refused command, except RCPT and unknown commands (engine.c's
# CT_IGNO), so a RCPT after a refused MAIL is out of order.
REFUSED_CONNECT = packet(b"C", b"refuse.example\0" + b"4" + struct.pack(">H", 4000) + b"192.0.2.66\0")

REFUSALS = [
    Case("a refused CONNECT, then HELO", [optneg(), REFUSED_CONNECT, HELO], differs=dict(
        libmilter="O y:554 5.7.1 go away c | closed", policyd="O r c | closed",
        why="policyd sends no text at connect, as Sendmail reads none there (its milter.c: a reply code "
            "'can't work with connect due to the requirements of SMTP'); Postfix would show libmilter's "
            "text ('Reply text at connect')")),
    Case("a refused HELO, then another and MAIL", [optneg(), CONNECT, BAD_HELO, HELO, MAIL, RCPT]),
    Case("a tempfailed MAIL, then MAIL again", [optneg(), CONNECT, HELO, TEMP_MAIL, MAIL, RCPT]),
    Case("a tempfailed MAIL, then RCPT", [optneg(), CONNECT, HELO, TEMP_MAIL, RCPT, MAIL, RCPT]),
    Case("a refused RCPT (two lines), then more RCPTs and the message", [optneg(), CONNECT, MAIL, NO_RCPT, RCPT,
                                                                        NO_RCPT] + MESSAGE),
    Case("every recipient refused, then ABORT", [optneg(), CONNECT, MAIL, NO_RCPT, ABORT, MAIL, RCPT]),
]


class Refusals(MilterOracle):
    def test_reply_texts_and_what_may_follow_a_refusal(self):
        self.start_peers(REFUSES, mode="refuse")
        self.compare(REFUSALS)


class NegotiatedAway(MilterOracle):
    def test_only_the_steps_a_rcpt_script_uses(self):
        # libmilter with only xxfi_envrcpt asks the MTA to skip every other
        # step; policyd with only hook.rcpt asks the same, except that
        # connect, HELO and MAIL still come, without a reply (SMFIP_NR_CONN,
        # SMFIP_NR_HELO, SMFIP_NR_MAIL): connect carries the client's facts,
        # HELO its name (client.helo in hook.rcpt) and MAIL starts the
        # transaction (client.id_trans). It also takes SKIP.
        self.start_peers(RCPT_ONLY, mode="rcpt")
        oracle, policyd = self.both(optneg(6, ALL_ACTIONS, ALL_PROTOCOL) + QUIT)
        o, p = negotiated(oracle), negotiated(policyd)
        skipped = NOCONNECT | NOHELO | NOMAIL | NOBODY | NOHDRS | NOEOH | NOUNKNOWN | NODATA
        self.assertEqual(o[2], skipped)
        self.assertEqual(p[2], (skipped & ~(NOCONNECT | NOHELO | NOMAIL)) | NR_CONN | NR_HELO | NR_MAIL | SKIP)
        self.assertEqual(o[1], 0)  # the filter registered no action
        # Then the session as an MTA sends it to each (libmilter gets no
        # CONNECT, HELO or MAIL; policyd gets all three and answers none):
        # the same answers.
        offer = optneg(6, ALL_ACTIONS, ALL_PROTOCOL)
        oracle = exchange(self.oracle_port, offer + RCPT + RCPT + EOM + QUIT)
        policyd = exchange(self.milter_port, offer + CONNECT + HELO + MAIL + RCPT + RCPT + EOM + QUIT)
        self.assertEqual(render(oracle), "O c c c | closed")
        self.assertEqual(render(policyd), "O c c c | closed")


class PacketLimit(MilterOracle):
    def test_max_packet_65536_is_libmilters_limit(self):
        # libmilter takes 65535 data bytes (MILTER_MAX_DATA_SIZE), a length
        # field of 65536; --milter-max-packet 65536 is the same edge.
        self.start_peers(policyd_args=["--milter-max-packet", "65536"])
        head = optneg() + CONNECT + MAIL + RCPT + DATA + EOH
        at = head + packet(b"B", b"x" * 65535) + EOM + QUIT
        over = head + packet(b"B", b"x" * 65536) + EOM + QUIT
        oracle, policyd = self.both(at)
        self.assertEqual(render(oracle), "O c c c c c c c | closed")
        self.assertEqual(render(policyd), render(oracle))
        oracle, policyd = self.both(over)
        self.assertEqual(render(oracle), "O c c c c c | closed")
        self.assertEqual(render(policyd), render(oracle))
        wait_for(lambda: "--milter-max-packet 65536" in self.policyd.output(), what="the log names the flag")


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""A small authoritative DNS server for integration tests (stdlib only).

It answers from an in-memory zone on 127.0.0.1, UDP and TCP on the same
port, so a DNS client (c-ares) under test can be pointed at it.

Module use:

    from dnsserver import DnsServer
    s = DnsServer(zone)        # zone: dict, format below
    s.start()                  # binds; s.port is then the port
    ...                        # s.queries: [(qname, qtype, "udp"|"tcp"), ...]
    s.set_zone(other_zone)     # replace the data at runtime
    s.stop()                   # closes the sockets, joins the thread

Script use (prints "dnsserver listening on 127.0.0.1:PORT" when ready, runs
until SIGTERM/SIGINT or until --lifetime seconds have passed):

    python3 dnsserver.py --zone zone.json [--port N] [--lifetime SECONDS]

Zone format: keys are owner names (lower case, no trailing dot), values are
lists of records; "ttl" defaults to 300, the class is always IN:

    {"type": "A", "ttl": 300, "address": "192.0.2.1"}
    {"type": "AAAA", "address": "2001:db8::1"}
    {"type": "MX", "preference": 10, "host": "mx.example.test"}
    {"type": "NS" | "CNAME" | "DNAME" | "PTR", "host": "target.example.test"}
    {"type": "TXT", "text": ["part one", "part two"]}   (a string = one part)
    {"type": "SOA", "mname": ..., "rname": ..., "serial": ..., "refresh": ...,
     "retry": ..., "expire": ..., "minimum": ...}

The top-level key "_behaviour" maps a name to a misbehaviour which applies
to that name and every name under it (the longest matching name wins):

    "servfail" | "refused" | "formerr" | "notimp"   answer with that RCODE
    "drop"                                          never answer
    "truncate"       UDP: TC=1 and no records; TCP: the full answer
    {"delay_ms": 200}                       answer normally after the delay
    {"delay_ms": 200, "action": "servfail"} delay, then the action

Answers follow an authoritative server: AA=1, RD copied, RA=1; CNAMEs (and
DNAME-synthesised CNAMEs) are followed while the target is in the zone;
NODATA and NXDOMAIN carry the SOA of the closest enclosing zone; MX and NS
answers get the targets' A/AAAA records as additional data. A name that
only has names under it (an "empty non-terminal") exists: NODATA, not
NXDOMAIN. EDNS(0) is understood: a query with an OPT record gets one back
and UDP answers may then be up to 1232 octets (512 without EDNS); a longer
answer is truncated (TC=1) like a real server does.

Delayed answers are kept in a timer heap served by the one event-loop
thread, so a slow name never holds up other queries.
"""

import argparse
import heapq
import json
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass

HOST = "127.0.0.1"

# RR types and classes (RFC 1035, 3596, 6672, 6891).
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_DNAME = 39
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

TYPES = {
    "A": TYPE_A, "NS": TYPE_NS, "CNAME": TYPE_CNAME, "SOA": TYPE_SOA,
    "PTR": TYPE_PTR, "MX": TYPE_MX, "TXT": TYPE_TXT, "AAAA": TYPE_AAAA,
    "DNAME": TYPE_DNAME,
}
HOST_TYPES = (TYPE_NS, TYPE_CNAME, TYPE_DNAME, TYPE_PTR)

# RCODEs.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, YXDOMAIN = 0, 1, 2, 3, 4, 5, 6
ACTION_RCODES = {"servfail": SERVFAIL, "refused": REFUSED,
                 "formerr": FORMERR, "notimp": NOTIMP}
ACTIONS = set(ACTION_RCODES) | {"drop", "truncate"}

DEFAULT_TTL = 300
UDP_PLAIN_LIMIT = 512      # RFC 1035 limit for UDP without EDNS
UDP_EDNS_LIMIT = 1232      # our advertised EDNS payload size
MAX_CHAIN = 16             # CNAME/DNAME steps followed per query
TCP_SEND_TIMEOUT = 5.0


class FormatError(Exception):
    """The query is malformed; answer FORMERR."""


# ---------------------------------------------------------------- names

def name_labels(name):
    """'Mx.Example.test' -> (b'Mx', b'Example', b'test'); '' or '.' is the root."""
    name = name.rstrip(".")
    if not name:
        return ()
    # latin-1 maps the octets of names read off the wire back one to one.
    labels = tuple(label.encode("latin-1") for label in name.split("."))
    if any(not 0 < len(label) <= 63 for label in labels):
        raise ValueError(f"name {name!r} has an empty label or one over 63 octets")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise ValueError(f"name {name!r} is longer than 255 octets")
    return labels


def normalise_name(name):
    """Zone/lookup form of a name: lower case, no trailing dot."""
    if not isinstance(name, str) or not name.isascii():
        raise ValueError(f"name {name!r} is not an ASCII string (use the A-label form)")
    name_labels(name)  # validates
    return name.rstrip(".").lower()


def labels_key(labels):
    """Lookup form of wire labels (case-insensitive for ASCII letters)."""
    return ".".join(label.lower().decode("latin-1") for label in labels)


def parent_names(name):
    """'a.b.c' -> 'a.b.c', 'b.c', 'c', '' (the name itself first)."""
    parts = name.split(".") if name else []
    for i in range(len(parts)):
        yield ".".join(parts[i:])
    yield ""


def read_name(msg, off):
    """Read a possibly compressed name at off; return (labels, offset after it).

    A compression pointer must point before itself (RFC 1035 4.1.4 "a prior
    occurrence"), so pointer loops are impossible."""
    labels = []
    end = None          # where the name ends in the message (after the 1st pointer)
    wire_length = 1
    while True:
        if off >= len(msg):
            raise FormatError("name runs past the end of the message")
        length = msg[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | msg[off + 1]
            if target >= off:
                raise FormatError("compression pointer does not point backwards")
            if end is None:
                end = off + 2
            off = target
            continue
        if length & 0xC0:
            raise FormatError("reserved label type")
        off += 1
        if length == 0:
            break
        if off + length > len(msg):
            raise FormatError("label runs past the end of the message")
        wire_length += length + 1
        if wire_length > 255:
            raise FormatError("name longer than 255 octets")
        labels.append(bytes(msg[off:off + length]))
        off += length
    return tuple(labels), (end if end is not None else off)


class Writer:
    """Builds a message, compressing names against earlier ones."""

    def __init__(self):
        self.buf = bytearray()
        self._offsets = {}    # lower-case label suffix -> offset of its first copy

    def name(self, labels, compress=True):
        for i in range(len(labels)):
            suffix = tuple(label.lower() for label in labels[i:])
            if compress and suffix in self._offsets:
                self.buf += struct.pack("!H", 0xC000 | self._offsets[suffix])
                return
            if compress and len(self.buf) < 0x4000:
                self._offsets[suffix] = len(self.buf)
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)

    def rr(self, owner, record, ttl=None):
        """Append a resource record owned by owner (a lookup-form name)."""
        self.name(name_labels(owner))
        self.buf += struct.pack("!HHIH", record.rtype, CLASS_IN,
                                record.ttl if ttl is None else ttl, 0)
        start = len(self.buf)
        record.write_rdata(self)
        struct.pack_into("!H", self.buf, start - 2, len(self.buf) - start)


# ---------------------------------------------------------------- zone data

@dataclass(frozen=True)
class Record:
    rtype: int
    ttl: int
    value: object   # A/AAAA: packed address; MX: (preference, host); NS,
                    # CNAME, DNAME, PTR: host; TXT: tuple of bytes; SOA: tuple

    def write_rdata(self, w):
        t, v = self.rtype, self.value
        if t in (TYPE_A, TYPE_AAAA):
            w.buf += v
        elif t == TYPE_DNAME:
            w.name(name_labels(v), compress=False)   # RFC 6672: never compressed
        elif t in HOST_TYPES:
            w.name(name_labels(v))
        elif t == TYPE_MX:
            w.buf += struct.pack("!H", v[0])
            w.name(name_labels(v[1]))
        elif t == TYPE_TXT:
            for part in v:
                w.buf.append(len(part))
                w.buf += part
        elif t == TYPE_SOA:
            w.name(name_labels(v[0]))
            w.name(name_labels(v[1]))
            w.buf += struct.pack("!IIIII", *v[2:])


def _uint(rec, key, bits, default=None):
    value = rec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValueError(f"{key!r} must be an integer in [0, 2^{bits})")
    return value


def make_record(rec):
    """Validate one zone record (a dict) and turn it into a Record."""
    if not isinstance(rec, dict):
        raise ValueError("a record must be an object")
    type_name = str(rec.get("type", "")).upper()
    if type_name not in TYPES:
        raise ValueError(f"unsupported type {rec.get('type')!r}")
    rtype = TYPES[type_name]
    ttl = _uint(rec, "ttl", 31, DEFAULT_TTL)
    if rtype == TYPE_A:
        value = socket.inet_pton(socket.AF_INET, rec["address"])
    elif rtype == TYPE_AAAA:
        value = socket.inet_pton(socket.AF_INET6, rec["address"])
    elif rtype in HOST_TYPES:
        value = normalise_name(rec["host"])
    elif rtype == TYPE_MX:
        value = (_uint(rec, "preference", 16), normalise_name(rec["host"]))
    elif rtype == TYPE_TXT:
        text = rec["text"]
        parts = [text] if isinstance(text, str) else list(text)
        parts = tuple(p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in parts)
        if any(len(p) > 255 for p in parts):
            raise ValueError("a TXT character-string is longer than 255 octets")
        value = parts or (b"",)   # RDATA needs at least one character-string
    else:  # SOA
        value = (normalise_name(rec["mname"]), normalise_name(rec["rname"]),
                 *(_uint(rec, k, 32) for k in
                   ("serial", "refresh", "retry", "expire", "minimum")))
    return Record(rtype, ttl, value)


def make_behaviour(spec):
    """'servfail' or {'delay_ms': 200[, 'action': 'servfail']} -> (action, delay_s)."""
    if isinstance(spec, str):
        spec = {"action": spec}
    if not isinstance(spec, dict) or set(spec) - {"action", "delay_ms"}:
        raise ValueError(f"bad behaviour {spec!r}")
    action = spec.get("action")
    if action is not None and action not in ACTIONS:
        raise ValueError(f"unknown behaviour action {action!r}")
    delay_ms = spec.get("delay_ms", 0)
    if not isinstance(delay_ms, (int, float)) or delay_ms < 0:
        raise ValueError(f"bad delay_ms {delay_ms!r}")
    return action, delay_ms / 1000.0


class Zone:
    """Validated, indexed zone data; immutable once built."""

    def __init__(self, zone):
        zone = dict(zone or {})
        behaviour = zone.pop("_behaviour", {}) or {}
        self.records = {}
        for owner, records in zone.items():
            key = normalise_name(owner)
            try:
                self.records.setdefault(key, []).extend(make_record(r) for r in records)
            except (KeyError, TypeError, ValueError, OSError) as e:
                raise ValueError(f"zone: {owner!r}: {e!r}") from None
        # Every ancestor of an owner name exists (empty non-terminals).
        self.names = set()
        for owner in self.records:
            self.names.update(parent_names(owner))
        self.behaviour = {}
        for name, spec in behaviour.items():
            try:
                self.behaviour[normalise_name(name)] = make_behaviour(spec)
            except ValueError as e:
                raise ValueError(f"zone: _behaviour: {name!r}: {e}") from None

    def behaviour_for(self, name):
        """(action, delay_s) of the closest configured name at or above name."""
        for candidate in parent_names(name):
            if candidate in self.behaviour:
                return self.behaviour[candidate]
        return None, 0.0

    def soa_for(self, name):
        """(owner, SOA record) of the closest enclosing zone, or None."""
        for candidate in parent_names(name):
            for record in self.records.get(candidate, ()):
                if record.rtype == TYPE_SOA:
                    return candidate, record
        return None

    def dname_for(self, name):
        """(owner, DNAME record) at the closest proper ancestor of name, or None."""
        ancestors = list(parent_names(name))[1:]
        for candidate in ancestors:
            for record in self.records.get(candidate, ()):
                if record.rtype == TYPE_DNAME:
                    return candidate, record
        return None

    def resolve(self, qname, qtype):
        """Answer qname/qtype: (rcode, answers, authority, additional), where
        the sections are lists of (owner, record[, ttl])."""
        answers, authority = [], []
        rcode = NOERROR
        name, seen = qname, set()
        for step in range(MAX_CHAIN):
            if name in seen:
                break   # CNAME loop: return the chain so far
            seen.add(name)
            records = self.records.get(name)
            if records is None:
                # No data at this name: a DNAME above it rewrites it (RFC 6672).
                dname = self.dname_for(name)
                if dname is not None:
                    owner, record = dname
                    prefix = name[:-len(owner)] if owner else name + "."
                    target = prefix + record.value if record.value else prefix.rstrip(".")
                    answers.append((owner, record))
                    try:
                        name_labels(target)
                    except ValueError:
                        rcode = YXDOMAIN   # the rewritten name is too long
                        break
                    answers.append((name, Record(TYPE_CNAME, record.ttl, target)))
                    name = target
                    continue
                soa = self.soa_for(name)
                if name not in self.names and (step == 0 or soa is not None):
                    # NXDOMAIN, also at the end of a chain inside our data
                    # (RFC 6604); a chain leaving our data just ends NOERROR.
                    rcode = NXDOMAIN
                if soa is not None:
                    authority.append(self._negative_soa(soa))
                break
            if qtype == TYPE_ANY:
                matching = list(records)
            else:
                matching = [r for r in records if r.rtype == qtype]
            if matching:
                answers.extend((name, r) for r in matching)
                break
            cname = next((r for r in records if r.rtype == TYPE_CNAME), None)
            if cname is not None:
                answers.append((name, cname))
                name = cname.value
                continue
            soa = self.soa_for(name)   # NODATA
            if soa is not None:
                authority.append(self._negative_soa(soa))
            break
        return rcode, answers, authority, self._additional(answers)

    @staticmethod
    def _negative_soa(soa):
        # RFC 2308 section 3: the TTL of a negative answer's SOA is
        # min(SOA TTL, SOA MINIMUM).
        owner, record = soa
        return owner, record, min(record.ttl, record.value[6])

    def _additional(self, answers):
        """A/AAAA of MX and NS targets found in the zone."""
        additional, done = [], set()
        for _, record in answers:
            if record.rtype == TYPE_MX:
                host = record.value[1]
            elif record.rtype == TYPE_NS:
                host = record.value
            else:
                continue
            if host in done:
                continue
            done.add(host)
            additional.extend((host, r) for r in self.records.get(host, ())
                              if r.rtype in (TYPE_A, TYPE_AAAA))
        return additional


# ---------------------------------------------------------------- queries

@dataclass
class Query:
    id: int
    flags: int
    labels: tuple        # the question name as sent (case preserved)
    qtype: int
    qclass: int
    edns: bool           # the query had an OPT record
    udp_size: int        # the requestor's UDP payload size (EDNS) or 512

    @property
    def qname(self):
        return labels_key(self.labels)


def _skip_rr(msg, off):
    """Skip a resource record; return (type, class, offset after it)."""
    _, off = read_name(msg, off)
    if off + 10 > len(msg):
        raise FormatError("truncated resource record")
    rtype, rclass, _, rdlength = struct.unpack_from("!HHIH", msg, off)
    off += 10 + rdlength
    if off > len(msg):
        raise FormatError("RDATA runs past the end of the message")
    return rtype, rclass, off


def parse_query(msg):
    """Parse the header, the question and any OPT record of a query."""
    qid, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!6H", msg)
    if qdcount != 1:
        raise FormatError("QDCOUNT is not 1")
    labels, off = read_name(msg, 12)
    if off + 4 > len(msg):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", msg, off)
    off += 4
    for _ in range(ancount + nscount):
        _, _, off = _skip_rr(msg, off)
    edns, udp_size = False, UDP_PLAIN_LIMIT
    for _ in range(arcount):
        rtype, rclass, off = _skip_rr(msg, off)
        if rtype == TYPE_OPT:
            edns, udp_size = True, max(UDP_PLAIN_LIMIT, rclass)
    return Query(qid, flags, labels, qtype, qclass, edns, udp_size)


def build_response(query, rcode, aa=False, tc=False, answers=(), authority=(), additional=()):
    flags = (0x8000                        # QR
             | (0x0400 if aa else 0)
             | (0x0200 if tc else 0)
             | (query.flags & 0x0100)      # RD copied
             | 0x0080                      # RA
             | (query.flags & 0x0010)      # CD copied
             | rcode)
    counts = (1, len(answers), len(authority), len(additional) + (1 if query.edns else 0))
    w = Writer()
    w.buf += struct.pack("!6H", query.id, flags, *counts)
    w.name(query.labels)                   # question first: answers point at it
    w.buf += struct.pack("!HH", query.qtype, query.qclass)
    for section in (answers, authority, additional):
        for entry in section:
            w.rr(*entry)
    if query.edns:
        # OPT: root owner, CLASS = our UDP payload size, TTL 0 (version 0, no flags).
        w.buf += b"\x00" + struct.pack("!HHIH", TYPE_OPT, UDP_EDNS_LIMIT, 0, 0)
    return bytes(w.buf)


def header_only_response(msg, rcode):
    """An answer without a question, for queries we cannot (or will not) parse."""
    qid, flags = struct.unpack_from("!HH", msg)
    flags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | rcode
    return struct.pack("!6H", qid, flags, 0, 0, 0, 0)


# ---------------------------------------------------------------- server

class _TcpConnection:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.closed = False


class DnsServer:
    """The test DNS server; see the module docstring."""

    def __init__(self, zone=None, port=0):
        self._zone = Zone(zone)
        self._requested_port = port
        self.port = None
        self.queries = []            # (qname, qtype, "udp"|"tcp"), in arrival order
        self._lock = threading.Lock()
        self._thread = None
        self._stopping = False
        self._timers = []            # heap of (due, seq, callback), loop thread only
        self._timer_seq = 0
        self._connections = set()

    # -- public API

    def set_zone(self, zone):
        """Replace all zone data (and behaviours); takes effect for the next query."""
        compiled = Zone(zone)
        with self._lock:
            self._zone = compiled

    def clear_queries(self):
        with self._lock:
            del self.queries[:]

    def start(self):
        self._udp, self._tcp, self.port = self._bind()
        self._udp.setblocking(False)
        self._tcp.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._udp, selectors.EVENT_READ, self._on_udp)
        self._sel.register(self._tcp, selectors.EVENT_READ, self._on_accept)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=f"dnsserver:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is None:
            return
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._thread = None
        self._wake_w.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- sockets

    def _bind(self):
        """UDP and TCP sockets on one port. With port 0 the kernel picks a free
        UDP port, which may be taken for TCP; then try again with another."""
        attempts = 1 if self._requested_port else 20
        for attempt in range(attempts):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # Bursts of hundreds of queries (the 500-session test) while the
            # test's own threads hold the GIL: queue them, do not drop them.
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind((HOST, self._requested_port))
                port = udp.getsockname()[1]
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((HOST, port))
                tcp.listen(64)
                return udp, tcp, port
            except OSError:
                udp.close()
                tcp.close()
                if attempt == attempts - 1:
                    raise

    def _run(self):
        try:
            while not self._stopping:
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
                for key, _ in self._sel.select(timeout):
                    if key.data is None:      # woken by stop()
                        break
                    try:
                        key.data(key.fileobj)
                    except Exception:
                        traceback.print_exc()
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, callback = heapq.heappop(self._timers)
                    try:
                        callback()
                    except Exception:
                        traceback.print_exc()
        finally:
            for conn in list(self._connections):
                self._close(conn)
            for sock in (self._udp, self._tcp, self._wake_r):
                self._sel.unregister(sock)
                sock.close()
            self._sel.close()
            self._timers.clear()

    def _later(self, delay, callback):
        """Run callback on the loop thread after delay seconds (0 = now)."""
        if delay <= 0:
            callback()
            return
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._timer_seq, callback))

    def _on_udp(self, sock):
        try:
            msg, peer = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return    # e.g. ICMP port unreachable reported for an earlier reply
        reply, delay = self._answer(msg, "udp")
        if reply is not None:
            self._later(delay, lambda: self._send_udp(reply, peer))

    def _send_udp(self, reply, peer):
        try:
            self._udp.sendto(reply, peer)
        except OSError:
            pass

    def _on_accept(self, sock):
        try:
            client, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        # A timeout makes sendall() finish partial writes; reads only happen
        # when the selector says the socket is readable, so they never wait.
        client.settimeout(TCP_SEND_TIMEOUT)
        conn = _TcpConnection(client)
        self._connections.add(conn)
        self._sel.register(client, selectors.EVENT_READ, lambda _: self._on_tcp(conn))

    def _on_tcp(self, conn):
        try:
            data = conn.sock.recv(65535)
        except (BlockingIOError, InterruptedError, socket.timeout):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.buf += data
        # Each message has a 2-octet length prefix; several may arrive at once.
        while len(conn.buf) >= 2:
            (length,) = struct.unpack_from("!H", conn.buf)
            if len(conn.buf) < 2 + length:
                break
            msg = bytes(conn.buf[2:2 + length])
            del conn.buf[:2 + length]
            reply, delay = self._answer(msg, "tcp")
            if reply is not None:
                self._later(delay, lambda reply=reply: self._send_tcp(conn, reply))

    def _send_tcp(self, conn, reply):
        if conn.closed:
            return
        try:
            conn.sock.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            self._close(conn)

    def _close(self, conn):
        if conn.closed:
            return
        conn.closed = True
        self._connections.discard(conn)
        self._sel.unregister(conn.sock)
        conn.sock.close()

    # -- answering

    def _answer(self, msg, transport):
        """The reply to one query message: (bytes or None to stay silent, delay_s)."""
        if len(msg) < 12:
            return None, 0.0
        (flags,) = struct.unpack_from("!H", msg, 2)
        if flags & 0x8000:
            return None, 0.0                  # a response, not a query
        if (flags >> 11) & 0xF != 0:
            return header_only_response(msg, NOTIMP), 0.0   # only QUERY is implemented
        try:
            query = parse_query(msg)
        except FormatError:
            return header_only_response(msg, FORMERR), 0.0
        with self._lock:
            self.queries.append((query.qname, query.qtype, transport))
            zone = self._zone
        action, delay = zone.behaviour_for(query.qname)
        if action == "drop":
            return None, 0.0
        if action in ACTION_RCODES:
            return build_response(query, ACTION_RCODES[action]), delay
        if query.qclass not in (CLASS_IN, CLASS_ANY):
            return build_response(query, REFUSED), delay
        rcode, answers, authority, additional = zone.resolve(query.qname, query.qtype)
        reply = build_response(query, rcode, True, False, answers, authority, additional)
        if transport == "udp":
            limit = min(query.udp_size, UDP_EDNS_LIMIT) if query.edns else UDP_PLAIN_LIMIT
            if action == "truncate" or len(reply) > limit:
                # TC=1 with no records tells the client to retry over TCP.
                reply = build_response(query, rcode, aa=True, tc=True)
        return reply, delay


# ---------------------------------------------------------------- script

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zone", required=True, help="zone file (JSON); - for stdin")
    parser.add_argument("--port", type=int, default=0, help="port, 0 = pick a free one")
    parser.add_argument("--lifetime", type=float, default=600.0,
                        help="exit after this many seconds (default 600)")
    args = parser.parse_args(argv)

    if args.zone == "-":
        zone = json.load(sys.stdin)
    else:
        with open(args.zone, encoding="utf-8") as f:
            zone = json.load(f)

    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())

    server = DnsServer(zone, port=args.port).start()
    print(f"dnsserver listening on {HOST}:{server.port}", flush=True)
    try:
        if not done.wait(args.lifetime):
            print(f"dnsserver: lifetime of {args.lifetime:g}s is over, exiting",
                  file=sys.stderr)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The SMTP protocol machine: a transition table and a sans-I/O dissector (bytes in, events out).

Theory of operation
-------------------
:class:`SmtpMachine` is fed the two byte streams of one TCP connection, in capture order, with
``feed(direction, data, frame, ts_ns)`` and ``gap(direction, length, frame, ts_ns)`` (the
:mod:`mailwire.tcp.reassembly` events), and returns a list of events: :class:`Command`,
:class:`ReplyEvent`, :class:`BodyDone`, :class:`Credential`, :class:`TlsStarted`,
:class:`GapSeen`, :class:`Anomaly`. It never reads files or sockets and never raises on input.

Each direction is parsed in a *mode*: the client side in ``command`` (CRLF lines), ``body``
(DATA content up to ``<CRLF>.<CRLF>``), ``bdat`` (a counted CHUNKING chunk), ``auth`` (SASL
responses, never kept) or ``tls`` (after STARTTLS: only TLS record sizes); the server side in
``reply`` or ``tls``. Commands are queued as they are sent; each complete reply answers the
oldest unanswered command, which is how PIPELINING (many commands in one segment, replies in a
batch) is matched. The greeting is the answer to a pseudo-command ``<greeting>``, the reply to
the end of a message the answer to ``<end-of-data>`` (or to ``BDAT … LAST``).

The session-level state (connected → greeted → ready → mail → rcpt → data → end_of_data …) is
driven by :data:`TRANSITIONS`, one row per (state, command) with the next state per reply class,
and :data:`CLIENT_TRANSITIONS` for steps the client takes without waiting for a reply (sending
the body, the final dot, QUIT). Everything a hostile peer can grow is capped: line length
(:data:`MAX_LINE`), the unanswered-command queue (:data:`MAX_PENDING`), speculative body bytes,
header bytes kept per message; whatever is cut is counted in :attr:`SmtpMachine.stats`.

Capture gaps resynchronise: in the body the gap is counted and the scan for the final dot goes
on (a 2xx/5xx reply that can only be the end-of-data answer closes a body whose dot fell in a
gap); in command or reply mode the partial line is dropped and parsing restarts at the next line
that looks like a command / reply; a 354 reply re-aligns the queue on its DATA command.

This module knows nothing about TCP connections, verdicts or files.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from mailwire.smtp.replies import Reply, ReplyAssembler
from mailwire.tcp.reassembly import PayloadView

Direction = Literal["c2s", "s2c"]

MAX_LINE = 2048  # bytes of a command/reply line kept; RFC 5321 allows 512 (1000 for text lines)
MAX_PENDING = 4096  # unanswered commands tracked; beyond this, commands are counted, not queued
MAX_SPECULATIVE = 64 * 1024  # body bytes held until the 354 confirms DATA (replayed if refused)
MAX_HEADER = 16 * 1024  # message header bytes kept to read Message-ID / Subject
_VECTOR_SCAN = 4096  # body bytes from which the dot-line search is one NumPy pass
MAX_TLS_SIZES = 256  # TLS record sizes kept per direction (all are counted)

KNOWN_VERBS = frozenset(
    [
        "HELO",
        "EHLO",
        "LHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "EXPN",
        "HELP",
        "AUTH",
        "STARTTLS",
        "TURN",
        "ETRN",
        "ATRN",
        "XCLIENT",
        "XFORWARD",
        "SEND",
        "SOML",
        "SAML",
    ]
)
_VERB_COPY = {v: v for v in KNOWN_VERBS}

_VERB_PREFIXES = frozenset(v[:4].encode() for v in KNOWN_VERBS)

GREETING = "<greeting>"
END_OF_DATA = "<end-of-data>"

# --- the transition table -------------------------------------------------------------------
# (state, trigger) -> {reply class: next state}; "*" matches any state. A missing class leaves
# the state unchanged. Triggers are command verbs or the pseudo-commands above.
TRANSITIONS: dict[tuple[str, str], dict[int, str]] = {
    ("connected", GREETING): {2: "greeted", 4: "closed", 5: "greeted"},
    ("*", "EHLO"): {2: "ready"},
    ("*", "HELO"): {2: "ready"},
    ("*", "LHLO"): {2: "ready"},
    ("*", "RSET"): {2: "ready"},
    ("*", "MAIL"): {2: "mail"},
    ("mail", "RCPT"): {2: "rcpt"},
    ("rcpt", "RCPT"): {2: "rcpt"},
    ("*", "DATA"): {3: "data"},
    ("*", END_OF_DATA): {2: "ready", 4: "ready", 5: "ready"},
    ("*", "BDAT"): {5: "ready"},
    ("*", "STARTTLS"): {2: "tls"},
    ("*", "QUIT"): {2: "closed"},
}
# Steps the client takes on its own: (state, trigger) -> next state.
CLIENT_TRANSITIONS: dict[tuple[str, str], str] = {
    ("*", "<body>"): "data",
    ("*", END_OF_DATA): "end_of_data",
    ("*", "QUIT"): "quit",
}
# Replies that end the session whatever they answer (RFC 5321 §3.8: 421 may come at any time).
CLOSING_CODES = frozenset({421})

# How far a session got, for "phase reached" (larger is further).
STATE_ORDER = {
    "connected": 0,
    "greeted": 1,
    "ready": 2,
    "mail": 3,
    "rcpt": 4,
    "data": 5,
    "end_of_data": 6,
    "tls": 2,
    "quit": -1,  # ending is not progress: "furthest" keeps the last step of the dialogue itself
    "closed": -1,
}


def next_state(state: str, trigger: str, klass: int) -> str:
    """The state after ``trigger`` was answered with a reply of class ``klass``."""
    row = TRANSITIONS.get((state, trigger)) or TRANSITIONS.get(("*", trigger))
    if row is None:
        return state
    return row.get(klass, state)


def client_step(state: str, trigger: str) -> str:
    """The state after the client did ``trigger`` without waiting for a reply."""
    return CLIENT_TRANSITIONS.get((state, trigger)) or CLIENT_TRANSITIONS.get(("*", trigger), state)


# --- events ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Command:
    frame: int  # frame carrying the end of the command line (where Wireshark shows it)
    ts_ns: int
    verb: str  # upper-cased verb, or "?" for a line that is not a command
    arg: str  # argument, bounded, printable; AUTH credentials replaced
    raw_verb: str  # the verb as sent (case kept), for comparison with tshark
    pipelined: bool  # sent while earlier commands were still unanswered
    line: str  # the whole line as shown in transcripts (redacted, bounded)


@dataclass(slots=True)
class ReplyEvent:
    reply: Reply
    command: str | None  # verb / pseudo-command answered, None when unsolicited
    command_frame: int  # frame of that command (-1 if none)
    bdat_last: bool = False  # answers BDAT … LAST (end of a CHUNKING message)
    lost: int = 0  # commands before this one whose replies were lost in a capture gap


@dataclass(slots=True)
class BodyDone:
    frame: int
    ts_ns: int
    kind: str  # "DATA" or "BDAT"
    size: int  # message bytes (after removing dot-stuffing; gap bytes included)
    wire_bytes: int  # bytes sent on the wire for the body, terminator included
    missing: int  # bytes of the body missing from the capture
    end: str  # "dot", "bdat_last", "gap_resync" (dot presumed in a gap), "aborted"
    message_id: str | None
    subject: str | None
    first_frame: int  # frame carrying the first body byte (the DATA/BDAT frame if none was seen)
    start_offset: int = -1  # client stream offset of the first body byte
    header_from: str | None = None  # address of the From: header


@dataclass(slots=True)
class Credential:
    frame: int
    ts_ns: int


@dataclass(slots=True)
class TlsStarted:
    frame: int
    ts_ns: int


@dataclass(slots=True)
class GapSeen:
    direction: Direction
    frame: int
    ts_ns: int
    length: int
    mode: str


@dataclass(slots=True)
class Anomaly:
    direction: Direction
    frame: int
    kind: str
    detail: str = ""


Event = Command | ReplyEvent | BodyDone | Credential | TlsStarted | GapSeen | Anomaly


@dataclass(slots=True)
class _Pending:
    verb: str
    frame: int
    last: bool = False  # BDAT … LAST


@dataclass
class _Body:
    kind: str
    first_frame: int
    wire: int = 0
    stuffed: int = 0
    missing: int = 0
    tail: bytes = b"\n"  # last bytes seen, to find a terminator split across segments
    start_offset: int = -1  # client stream offset of the first body byte
    first_byte_frame: int = -1  # frame carrying the first body byte
    hdr: bytearray = field(default_factory=bytearray)
    hdr_done: bool = False


@dataclass
class TlsCounts:
    records: int = 0
    bytes: int = 0
    sizes: list[int] = field(default_factory=list)  # first MAX_TLS_SIZES record lengths
    handshake: int = 0
    app_data: int = 0
    alerts: int = 0
    not_tls_bytes: int = 0  # bytes after STARTTLS that do not parse as TLS records


# What SmtpMachine.stats counts, in the order the JSON shows them
STAT_KEYS = (
    "commands",
    "replies",
    "lines_truncated",
    "bytes_discarded",
    "invalid_reply_lines",
    "non_command_lines",
    "unsolicited_replies",
    "commands_unqueued",
    "gaps",
    "gap_bytes",
    "body_bytes",
    "credential_lines",
)

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def printable(raw: bytes, limit: int = 512) -> str:
    """A safe, bounded text rendering of protocol bytes (control characters escaped)."""
    if len(raw) <= limit and raw.isascii() and _CONTROL.search(raw) is None:
        return raw.decode("ascii")  # the common case: plain printable ASCII
    s = raw[:limit].decode("utf-8", "replace")
    out = []
    for ch in s:
        o = ord(ch)
        if (o < 0x20 and ch != "\t") or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    text = "".join(out)
    if len(raw) > limit:
        text += f"…(+{len(raw) - limit} bytes)"
    return text


# A header field we read: its name at a line start, then continuation lines (folding, RFC 5322
# §2.2.3); ASCII-only case folding, as header names are ASCII
_HEADER_FIELD = re.compile(r"^(message-id|subject|from):(.*(?:\n[ \t].*)*)", re.M | re.I | re.A)


def _header_values(hdr: bytes) -> tuple[str | None, str | None, str | None]:
    """Message-ID, Subject and the From address of a header block (folded lines joined; the
    first occurrence of each field counts)."""
    # Only the header block is read: cut the raw bytes just past its first empty line (an LF
    # followed by LF or CRLF; the bytes kept often run on into the body) before decoding.
    ends = [i for i in (hdr.find(b"\n\n"), hdr.find(b"\n\r\n")) if i >= 0]
    if ends:
        hdr = hdr[: min(ends) + 3]
    text = hdr.decode("utf-8", "replace").replace("\r\n", "\n")
    end = text.find("\n\n")
    if end >= 0:
        text = text[:end]
    found: dict[str, str] = {}
    for m in _HEADER_FIELD.finditer(text):
        key = m.group(1).lower()
        if key not in found:
            value = " ".join(s.strip() for s in m.group(2).split("\n")).strip()
            found[key] = printable(value.encode(), 256)
            if len(found) == 3:
                break
    sender = found.get("from")
    if sender is not None and "<" in sender:
        sender = sender[sender.rfind("<") + 1 :].split(">", 1)[0]
    return found.get("message-id"), found.get("subject"), sender


@lru_cache(maxsize=2048)
def _parse_replies(data: bytes) -> tuple[tuple[int, int, tuple[str, ...], str | None, int], ...] | None:
    """The replies of a server segment that starts at a line start and holds complete, valid reply
    lines only: (end offset, code, lines, enhanced code, lines dropped) each, exactly as the line
    by line path would assemble them; None for anything else (partial, invalid or over-long lines).

    Servers answer every session alike (the EHLO capability list, "250 2.1.0 Ok", "354 …"), so
    the parse is cached by content: bounded (2048 segments of at most 4 KiB) and a pure function
    of the bytes, so what a capture holds cannot make it grow or change a result."""
    if len(data) > 4096 or not data.endswith(b"\n"):
        return None
    asm = ReplyAssembler()
    out = []
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        piece = data[pos:nl]
        pos = nl + 1
        if len(piece) > MAX_LINE:
            return None
        line = piece[:-1] if piece.endswith(b"\r") else piece
        if line.endswith(b"\r"):
            line = line[:-1]
        got = asm.push(printable(line, MAX_LINE), 0, 0)
        if got is False:
            return None
        if isinstance(got, Reply):
            out.append((pos, got.code, tuple(got.lines), got.enhanced, got.lines_dropped))
    if asm.partial or not out:
        return None
    return tuple(out)


def looks_like_smtp(first_s2c: bytes, first_c2s: bytes) -> bool:
    """Content-based SMTP detection: a 220 greeting from the server, or a client opening with
    EHLO/HELO (one-sided captures), or SMTP inside an HTTP CONNECT tunnel."""
    s = first_s2c[:8]
    if s[:3] == b"220" and s[3:4] in (b" ", b"-", b"\r", b"\n"):
        return True
    if first_c2s[:4].upper() in (b"EHLO", b"HELO", b"LHLO") and first_c2s[4:5] in (b" ", b"\r", b"\n"):
        return True
    return first_c2s[:8] == b"CONNECT " and b":25 " in first_c2s[:300] and first_s2c[:5] == b"HTTP/"


class SmtpMachine:
    """Sans-I/O SMTP dissector for one connection (see the module docstring)."""

    def __init__(self) -> None:
        self.state = "connected"
        self.furthest = "connected"
        self.before_close = "connected"
        self.cmode = "command"  # client mode
        self.smode = "reply"  # server mode
        self._cbuf = bytearray()
        self._sbuf = bytearray()
        self._cover = 0  # bytes discarded from the current over-long client line
        self._sover = 0
        self._pending: deque[_Pending] = deque([_Pending(GREETING, -1)])
        self._replies = ReplyAssembler()
        self._body: _Body | None = None
        self._spec: list[tuple[bytes, int, int]] | None = None  # speculative body bytes
        self._spec_len = 0
        self._bdat_left = 0
        self._bdat_last = False
        self._c_after_gap = False
        self._s_after_gap = False
        self._c_started = False
        self._c_off = 0  # client stream bytes consumed before the current chunk (gaps included)
        self._s_started = False
        self._tls_hdr: dict[str, bytearray] = {"c2s": bytearray(), "s2c": bytearray()}
        self._tls_left: dict[str, int] = {"c2s": 0, "s2c": 0}
        self._tls_bad: dict[str, bool] = {"c2s": False, "s2c": False}
        self.tls: dict[str, TlsCounts] = {"c2s": TlsCounts(), "s2c": TlsCounts()}
        self.tls_started = False
        self.plaintext_after_starttls = False
        self.auth_mechanism: str | None = None
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._events: list[Event] = []

    # --- public API -------------------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes | PayloadView, frame: int, ts_ns: int) -> list[Event]:
        """Consume in-order bytes of one direction; return the events they complete. A long run
        may come as a :class:`PayloadView`: message content is then counted and searched for its
        final dot without being copied; any other use reads its bytes."""
        self._events = []
        if data:
            if not isinstance(data, (bytes, PayloadView)):
                data = bytes(data)
            if direction == "c2s":
                self._feed_client(data, frame, ts_ns)
            else:
                self._feed_server(bytes(data), frame, ts_ns)
        return self._events

    def gap(self, direction: Direction, length: int, frame: int, ts_ns: int) -> list[Event]:
        """``length`` bytes of ``direction`` were not captured; resynchronise."""
        self._events = []
        length = max(0, int(length))
        self.stats["gaps"] += 1
        self.stats["gap_bytes"] += length
        mode = self.cmode if direction == "c2s" else self.smode
        self._emit(GapSeen(direction, frame, ts_ns, length, mode))
        if direction == "c2s":
            self._client_gap(length, frame, ts_ns)
        else:
            self._sbuf.clear()
            self._sover = 0
            self._replies.reset()
            if self.smode == "reply":
                self._s_after_gap = True
            else:
                self._tls_skip("s2c", length)
        return self._events

    def finish(self, frame: int, ts_ns: int) -> list[Event]:
        """End of the capture for this connection: report a body cut short."""
        self._events = []
        if self._body is not None:
            self._close_body(frame, ts_ns, "aborted")
        return self._events

    @property
    def pending(self) -> list[str]:
        """Verbs still awaiting a reply (oldest first)."""
        return [p.verb for p in self._pending]

    @property
    def in_body(self) -> bool:
        return self._body is not None

    def body_progress(self) -> tuple[int, int, int, int] | None:
        """(wire bytes of the body sent so far, bytes missing, stream offset of its first byte,
        frame of its first byte) while a body is in flight."""
        b = self._body
        return None if b is None else (b.wire, b.missing, b.start_offset, b.first_byte_frame)

    # --- helpers -----------------------------------------------------------------------------

    def _emit(self, ev: Event) -> None:
        self._events.append(ev)

    def _set_state(self, state: str) -> None:
        if state in ("quit", "closed") and self.state not in ("quit", "closed"):
            self.before_close = self.state  # where the dialogue was when it started to end
        elif state not in ("quit", "closed"):
            self.before_close = state
        self.state = state
        if STATE_ORDER.get(state, 0) > STATE_ORDER.get(self.furthest, 0):
            self.furthest = state

    def _take_line(self, buf: bytearray, piece: bytes, over: int, direction: Direction) -> tuple[bytes, int]:
        """Append ``piece`` (ending before LF) to ``buf`` within MAX_LINE; return the line."""
        if piece.endswith(b"\r"):
            piece = piece[:-1]
        elif not piece and buf.endswith(b"\r"):
            del buf[-1:]
        room = MAX_LINE - len(buf)
        if len(piece) > room:
            over += len(piece) - max(room, 0)
            piece = piece[: max(room, 0)]
        buf += piece
        line = bytes(buf)
        buf.clear()
        if over:
            self.stats["lines_truncated"] += 1
            self.stats["bytes_discarded"] += over
        if line.endswith(b"\r"):
            line = line[:-1]
        return line, over

    def _keep_partial(self, buf: bytearray, piece: bytes, direction: Direction) -> int:
        """Keep an unterminated line fragment, bounded; return the bytes discarded."""
        room = MAX_LINE - len(buf)
        if len(piece) <= room:
            buf += piece
            return 0
        if room > 0:
            buf += piece[:room]
        return len(piece) - max(room, 0)

    # --- client side -------------------------------------------------------------------------

    def _feed_client(self, data: bytes | PayloadView, frame: int, ts_ns: int) -> None:
        try:
            self._feed_client_inner(data, frame, ts_ns)
        finally:
            self._c_off += len(data)

    def _mark_body_start(self, pos: int, frame: int) -> None:
        body = self._body
        if body is not None and body.start_offset < 0:
            body.start_offset = self._c_off + pos
            body.first_byte_frame = frame

    def _feed_client_inner(self, data: bytes | PayloadView, frame: int, ts_ns: int) -> None:
        if not self._c_started:
            self._c_started = True
            if data[:8] == b"CONNECT ":
                self.cmode = "preamble"
        pos, n = 0, len(data)
        while pos < n:
            mode = self.cmode
            if not isinstance(data, bytes) and (mode not in ("body", "bdat") or self._spec is not None):
                data = bytes(data)  # lines, TLS records or a body held for replay: the bytes themselves
            if mode in ("command", "auth"):
                assert isinstance(data, bytes)  # a view was turned into bytes above
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._cover += self._keep_partial(self._cbuf, data[pos:], "c2s")
                    return
                line, _ = self._take_line(self._cbuf, data[pos:nl], self._cover, "c2s")
                self._cover = 0
                pos = nl + 1
                self._client_line(line, frame, ts_ns)
            elif mode == "body":
                self._mark_body_start(pos, frame)
                pos = self._body_bytes(data, pos, frame, ts_ns)
            elif mode == "bdat":
                self._mark_body_start(pos, frame)
                take = min(self._bdat_left, n - pos)
                self._body_take(data, pos, pos + take)
                self._bdat_left -= take
                pos += take
                if self._bdat_left == 0:
                    self._bdat_chunk_done(frame, ts_ns)
            elif mode == "tls":
                if self._plaintext_after_tls(
                    "c2s", data[pos:], data[pos : pos + 4].upper() in _VERB_PREFIXES
                ):
                    continue
                self._tls_bytes("c2s", data[pos:])
                return
            elif mode == "preamble":
                assert isinstance(data, bytes)
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    return
                pos = end + 4
                self.cmode = "command"
            else:  # pragma: no cover - every mode is handled above
                return

    def _client_gap(self, length: int, frame: int, ts_ns: int) -> None:
        try:
            self._client_gap_inner(length, frame, ts_ns)
        finally:
            self._c_off += length

    def _client_gap_inner(self, length: int, frame: int, ts_ns: int) -> None:
        self._cbuf.clear()
        self._cover = 0
        if self.cmode == "body" and self._body is not None:
            self._body.missing += length
            self._body.wire += length
            self._body.tail = b""
            self._body.hdr_done = True
            if self._spec is not None:
                self._spec = None  # cannot replay across a hole; assume the body was accepted
        elif self.cmode == "bdat":
            take = min(self._bdat_left, length)
            if self._body is not None:
                self._body.missing += take
                self._body.wire += take
                self._body.hdr_done = True
            self._bdat_left -= take
            if self._bdat_left == 0:
                self._bdat_chunk_done(frame, ts_ns)
            if length > take:
                self._c_after_gap = True
        elif self.cmode == "tls":
            self._tls_skip("c2s", length)
        else:
            self._c_after_gap = True

    def _client_line(self, line: bytes, frame: int, ts_ns: int) -> None:
        verb_b, _, arg_b = line.strip().partition(b" ")
        raw_verb = printable(verb_b, 32)
        verb = raw_verb.upper()
        known = verb in KNOWN_VERBS and verb_b.isascii()
        if known:  # one copy of each verb, not one per command kept in the records
            verb = _VERB_COPY[verb]
            if raw_verb == verb:
                raw_verb = verb
        if self.cmode == "auth" and not known:
            # A SASL response: credentials. Count it, never keep it.
            self.stats["credential_lines"] += 1
            self._emit(Credential(frame, ts_ns))
            return
        if self._c_after_gap:
            self._c_after_gap = False
            if not known:
                self._emit(Anomaly("c2s", frame, "partial_line_after_gap"))
                return
        if not line.strip():
            self._emit(Anomaly("c2s", frame, "empty_line"))
            return
        if not known:
            self.stats["non_command_lines"] += 1
            if not verb_b.isascii() or not verb_b.isalpha() or len(verb_b) > 12:
                verb = "?"
            self._emit(Anomaly("c2s", frame, "unknown_command", printable(line, 80)))
        arg = printable(arg_b.strip(), 480)
        if verb == "AUTH":
            mech, _, rest = arg.partition(" ")
            self.auth_mechanism = mech.upper() or None
            arg = mech + (" <credentials elided>" if rest.strip() else "")
            self.cmode = "auth"
        line_text = f"{raw_verb} {arg}".rstrip() if verb != "?" else printable(line, 200)
        pipelined = len(self._pending) > 0 and not (
            len(self._pending) == 1 and self._pending[0].verb == GREETING
        )
        self.stats["commands"] += 1
        self._emit(Command(frame, ts_ns, verb, arg, raw_verb, pipelined, line_text))
        last = False
        if verb == "BDAT":
            parts = arg.split()
            if (
                parts
                and parts[0].isdigit()
                and len(parts[0]) <= 18
                and (len(parts) == 1 or parts[1:] == ["LAST"])
            ):
                last = len(parts) == 2
                self._queue(_Pending("BDAT", frame, last))
                self._start_bdat(int(parts[0]), last, frame)
                return
            self._emit(Anomaly("c2s", frame, "invalid_bdat", arg[:80]))
        self._queue(_Pending(verb, frame, last))
        if verb == "DATA":
            # Clients send the body after the 354; enter body mode now (held speculatively, so
            # one-sided captures and clients that pipeline the body still parse), and go back to
            # commands if the server refuses DATA.
            self.cmode = "body"
            self._body = _Body("DATA", frame)
            self._spec = []
            self._spec_len = 0
        elif verb == "QUIT":
            self._set_state(client_step(self.state, "QUIT"))

    def _queue(self, p: _Pending) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.stats["commands_unqueued"] += 1
            return
        self._pending.append(p)

    # --- message body (DATA) ------------------------------------------------------------------

    def _body_take(self, data: bytes | PayloadView, a: int, b: int) -> None:
        """Account the body bytes ``data[a:b]`` and keep the header part (bounded)."""
        body = self._body
        if body is None:
            return
        if body.wire == 0 and body.kind == "DATA":
            self._set_state(client_step(self.state, "<body>"))
        body.wire += b - a
        self.stats["body_bytes"] += b - a
        if not body.hdr_done:
            room = MAX_HEADER - len(body.hdr)
            body.hdr += data[a : min(b, a + room)]
            h = bytes(body.hdr)
            if (
                h.startswith((b"\r\n", b"\n"))
                or b"\r\n\r\n" in h
                or b"\n\n" in h
                or len(body.hdr) >= MAX_HEADER
            ):
                body.hdr_done = True

    def _body_bytes(self, data: bytes | PayloadView, pos: int, frame: int, ts_ns: int) -> int:
        body = self._body
        if body is None:  # defensive: body mode always has a body record
            self.cmode = "command"
            return pos
        tail = body.tail
        # The haystack is ``tail + data[pos:]`` (the tail: the last <= 3 bytes already seen, for
        # patterns across segment boundaries), read in place: a body run can be megabytes, and
        # copying it to search it would cost more than the search.
        nt = len(tail)
        size = nt + len(data) - pos
        head = tail + data[pos : pos + 4]  # hay[: nt + 4]: matches that start in the tail

        def at(j: int) -> bytes:  # hay[j : j + 1]
            return head[j : j + 1] if j < len(head) else data[pos + j - nt : pos + j - nt + 1]

        hits: list[int] | None = None
        if not isinstance(data, bytes):  # a view: one compiled scan of the run in place
            hits = [h for h in data.find_all(b"\n.") if h >= pos]
        elif len(data) - pos >= _VECTOR_SCAN:
            # Long runs: one vectorised pass for the line starts with a dot (few in real bodies,
            # none in base64), instead of a substring search stepping a few bytes at a time.
            seg = np.frombuffer(data, dtype=np.uint8)[pos:]
            dots = np.flatnonzero(seg[1:] == 0x2E)
            hits = (dots[seg[dots] == 0x0A] + pos).tolist()

        def find(start: int) -> int:  # hay.find(b"\n.", start)
            if start < nt:
                r = head.find(b"\n.", start)
                if 0 <= r < nt:
                    return r
                start = nt
            if hits is not None:
                h = bisect_left(hits, pos + start - nt)
                return hits[h] - pos + nt if h < len(hits) else -1
            assert isinstance(data, bytes)  # views always come with their hits
            r = data.find(b"\n.", pos + start - nt)
            return r - pos + nt if r >= 0 else -1

        # One pass over the lines that start with a dot: the terminator ".", or a stuffed "..".
        k, term = -1, 0
        i = find(0)
        while i >= 0:
            c2 = at(i + 2)
            if c2 == b"\n":
                k, term = i, 3
                break
            if c2 == b"\r":
                c3 = at(i + 3)
                if c3 == b"\n":
                    k, term = i, 4
                    break
                if not c3:
                    break  # undecided until the next bytes: it stays in the tail
            elif c2 == b"." and i >= nt - 2:  # a stuffed dot not counted with the previous bytes
                body.stuffed += 1
            elif not c2:
                break
            i = find(i + 2)
        if k < 0:
            self._body_take(data, pos, len(data))
            if self._spec is not None:
                self._spec_hold(bytes(data[pos:]), frame, ts_ns)
            lo = max(0, size - 3)  # tail = hay[-3:]
            body.tail = head[lo:] if size <= len(head) else head[lo:nt] + data[pos + max(lo, nt) - nt :]
            return len(data)
        end = pos + k + term - nt  # index in data just after the terminator
        self._body_take(data, pos, end)
        if self._spec is not None:
            self._spec_hold(bytes(data[pos:end]), frame, ts_ns)
        self._close_body(frame, ts_ns, "dot", term_len=term - 1)
        return end

    def _spec_hold(self, chunk: bytes, frame: int, ts_ns: int) -> None:
        if self._spec is None:
            return
        if self._spec_len + len(chunk) > MAX_SPECULATIVE:
            self._spec = None  # too much to replay; the body is taken as a body
            return
        self._spec.append((chunk, frame, ts_ns))
        self._spec_len += len(chunk)

    def _close_body(self, frame: int, ts_ns: int, end: str, term_len: int = 0) -> None:
        body = self._body
        if body is None:
            return
        self._body = None
        msgid, subject, header_from = _header_values(bytes(body.hdr))
        size = max(0, body.wire - term_len - body.stuffed)
        first = body.first_byte_frame if body.first_byte_frame >= 0 else body.first_frame
        self._emit(
            BodyDone(
                frame,
                ts_ns,
                body.kind,
                size,
                body.wire,
                body.missing,
                end,
                msgid,
                subject,
                first,
                body.start_offset,
                header_from,
            )
        )
        if body.kind == "DATA":
            self.cmode = "command"
            if end in ("dot", "gap_resync"):
                self._queue(_Pending(END_OF_DATA, frame))
                self._set_state(client_step(self.state, END_OF_DATA))

    # --- BDAT (CHUNKING) ------------------------------------------------------------------------

    def _start_bdat(self, size: int, last: bool, frame: int) -> None:
        if self._body is None:
            self._body = _Body("BDAT", frame)
        self._set_state("data")
        self._bdat_left = size
        self._bdat_last = last
        if size == 0:
            self._bdat_chunk_done(frame, 0)
        else:
            self.cmode = "bdat"

    def _bdat_chunk_done(self, frame: int, ts_ns: int) -> None:
        self.cmode = "command"
        if self._bdat_last:
            self._bdat_last = False
            self._close_body(frame, ts_ns, "bdat_last")
            self._set_state(client_step(self.state, END_OF_DATA))

    # --- server side -------------------------------------------------------------------------

    def _feed_server(self, data: bytes, frame: int, ts_ns: int) -> None:
        if not self._s_started:
            self._s_started = True
            if data[:5] == b"HTTP/":
                self.smode = "preamble"
        pos, n = 0, len(data)
        while pos < n:
            if self.smode == "reply":
                if pos == 0 and not self._sbuf and not self._sover and not self._replies.partial:
                    pos = self._whole_replies(data, frame, ts_ns)
                    if pos:
                        continue
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._sover += self._keep_partial(self._sbuf, data[pos:], "s2c")
                    return
                line, _ = self._take_line(self._sbuf, data[pos:nl], self._sover, "s2c")
                self._sover = 0
                pos = nl + 1
                self._server_line(line, frame, ts_ns)
            elif self.smode == "tls":
                if self._plaintext_after_tls("s2c", data[pos:], data[pos : pos + 3].isdigit()):
                    continue
                self._tls_bytes("s2c", data[pos:])
                return
            else:  # preamble (HTTP CONNECT answer)
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    return
                pos = end + 4
                self.smode = "reply"

    def _whole_replies(self, data: bytes, frame: int, ts_ns: int) -> int:
        """A segment holding only complete, well-formed replies (the usual case) is parsed once
        per distinct content (:func:`_parse_replies`); returns the bytes consumed (0: not such
        a segment, parse it line by line). Stops after a reply that leaves reply mode (STARTTLS)."""
        parsed = _parse_replies(data)
        if parsed is None:
            return 0
        self._s_after_gap = False
        end = 0
        for stop, code, lines, enhanced, dropped in parsed:
            self._on_reply(Reply(code, list(lines), frame, ts_ns, frame, enhanced, dropped))
            end = stop
            if self.smode != "reply":
                break
        return end

    def _server_line(self, line: bytes, frame: int, ts_ns: int) -> None:
        text = printable(line, MAX_LINE)
        got = self._replies.push(text, frame, ts_ns)
        if got is False:
            if self._s_after_gap:
                self._emit(Anomaly("s2c", frame, "partial_line_after_gap"))
            else:
                self.stats["invalid_reply_lines"] += 1
                self._emit(Anomaly("s2c", frame, "invalid_reply_line", printable(line, 80)))
            return
        self._s_after_gap = False
        if got is None:
            return
        assert isinstance(got, Reply)
        self._on_reply(got)

    def _on_reply(self, reply: Reply) -> None:
        self.stats["replies"] += 1
        lost = 0
        q = self._pending
        # A reply while the body is still open, after a gap in it: the final dot fell in the gap.
        if (
            not q
            and self._body is not None
            and self._body.kind == "DATA"
            and self._body.missing
            and reply.code not in CLOSING_CODES
            and reply.klass in (2, 5)
            and self._spec is None
        ):
            self._close_body(reply.frame, reply.ts_ns, "gap_resync")
        # Mid-session capture: the first reply is not a greeting.
        if q and q[0].verb == GREETING and reply.code != 220 and reply.klass not in (4, 5) and len(q) > 1:
            q.popleft()
            self._emit(Anomaly("s2c", reply.frame, "no_greeting"))
        # 354 re-aligns the queue on its DATA (replies lost in a gap, or a missed command).
        if reply.code == 354 and q and q[0].verb != "DATA" and any(p.verb == "DATA" for p in q):
            while q and q[0].verb != "DATA":
                q.popleft()
                lost += 1
            self._emit(Anomaly("s2c", reply.frame, "reply_queue_resync", f"{lost} replies missing"))
        if not q:
            self.stats["unsolicited_replies"] += 1
            if reply.code not in CLOSING_CODES:
                self._emit(Anomaly("s2c", reply.frame, "reply_without_command", reply.short(80)))
            self._emit(ReplyEvent(reply, None, -1, False, lost))
            if reply.code in CLOSING_CODES:
                self._set_state("closed")
            return
        p = q.popleft()
        trigger = END_OF_DATA if (p.verb == "BDAT" and p.last) else p.verb
        self._emit(ReplyEvent(reply, p.verb, p.frame, p.last, lost))
        if p.verb == "DATA":
            self._data_reply(reply)
        elif p.verb == "AUTH":
            if reply.code == 334:
                self._pending.appendleft(p)  # the exchange goes on; the next reply answers AUTH too
            else:
                self.cmode = "command" if self.cmode == "auth" else self.cmode
        # (a refused BDAT chunk changes nothing here: the client decides whether to go on)
        if reply.code in CLOSING_CODES:
            self._set_state("closed")
        else:
            self._set_state(next_state(self.state, trigger, reply.klass))
        if p.verb == "STARTTLS" and reply.klass == 2:
            self.tls_started = True
            self.cmode = "tls"
            self.smode = "tls"
            self._cbuf.clear()
            self._emit(TlsStarted(reply.frame, reply.ts_ns))

    def _data_reply(self, reply: Reply) -> None:
        if reply.code == 354:
            self._spec = None  # confirmed: what was held is the body
            return
        # DATA refused: the client must not send a body; whatever it sent is read as commands.
        held = self._spec or []
        self._spec = None
        if self._body is not None and self._body.kind == "DATA":
            if self._body.wire and not held:
                # Too much to replay or the body already ended: leave the body accounting alone.
                return
            self._body = None
            self.cmode = "command"
            for chunk, frame, ts_ns in held:
                self._feed_client_inner(chunk, frame, ts_ns)  # already counted in _c_off
            if held:
                self._emit(
                    Anomaly(
                        "c2s",
                        reply.frame,
                        "body_after_refused_data",
                        f"{sum(len(c) for c, _, _ in held)} bytes",
                    )
                )
        elif self.cmode == "command" and held:
            # The body ended (dot seen) before the refusal arrived: the server read it as
            # commands; the end-of-data pseudo-command we queued will not be answered.
            for i, p in enumerate(self._pending):
                if p.verb == END_OF_DATA:
                    del self._pending[i]
                    break
            self._emit(
                Anomaly(
                    "c2s", reply.frame, "body_after_refused_data", f"{sum(len(c) for c, _, _ in held)} bytes"
                )
            )

    # --- TLS after STARTTLS ------------------------------------------------------------------

    def _plaintext_after_tls(self, d: Direction, data: bytes, looks_smtp: bool) -> bool:
        """After STARTTLS, a direction whose first bytes are SMTP, not a TLS record, goes on in
        plain text: a capture decrypted by its producer, or a peer that never started TLS."""
        if (
            self.tls[d].records
            or self._tls_bad[d]
            or self._tls_hdr[d]
            or not looks_smtp
            or data[:1] == b"\x16"
        ):
            return False
        self.plaintext_after_starttls = True
        if d == "c2s":
            self.cmode = "command"
        else:
            self.smode = "reply"
        self._emit(Anomaly(d, -1, "plaintext_after_starttls"))
        return True

    def _tls_bytes(self, d: str, data: bytes) -> None:
        counts = self.tls[d]
        if self._tls_bad[d]:
            counts.not_tls_bytes += len(data)
            return
        pos, n = 0, len(data)
        while pos < n:
            left = self._tls_left[d]
            if left:
                take = min(left, n - pos)
                self._tls_left[d] -= take
                counts.bytes += take
                pos += take
                continue
            hdr = self._tls_hdr[d]
            need = 5 - len(hdr)
            hdr += data[pos : pos + need]
            pos += min(need, n - pos)
            if len(hdr) < 5:
                return
            ctype, major, length = hdr[0], hdr[1], (hdr[3] << 8) | hdr[4]
            hdr.clear()
            if ctype not in (20, 21, 22, 23, 24) or major != 3 or length > (1 << 14) + 2048:
                self._tls_bad[d] = True
                counts.not_tls_bytes += 5 + (n - pos)
                self._emit(Anomaly(d, -1, "not_tls_after_starttls"))  # type: ignore[arg-type]
                return
            counts.records += 1
            counts.bytes += 5
            if len(counts.sizes) < MAX_TLS_SIZES:
                counts.sizes.append(length)
            if ctype == 22:
                counts.handshake += 1
            elif ctype == 23:
                counts.app_data += 1
            elif ctype == 21:
                counts.alerts += 1
            self._tls_left[d] = length

    def _tls_skip(self, d: str, length: int) -> None:
        left = self._tls_left[d]
        if length <= left:
            self._tls_left[d] = left - length
        else:
            # The record boundary is lost: stop parsing records, keep counting bytes.
            self._tls_left[d] = 0
            self._tls_bad[d] = True


__all__ = [
    "CLIENT_TRANSITIONS",
    "CLOSING_CODES",
    "END_OF_DATA",
    "GREETING",
    "KNOWN_VERBS",
    "MAX_LINE",
    "MAX_PENDING",
    "STATE_ORDER",
    "TRANSITIONS",
    "Anomaly",
    "BodyDone",
    "Command",
    "Credential",
    "Event",
    "GapSeen",
    "ReplyEvent",
    "SmtpMachine",
    "TlsCounts",
    "TlsStarted",
    "client_step",
    "looks_like_smtp",
    "next_state",
    "printable",
]

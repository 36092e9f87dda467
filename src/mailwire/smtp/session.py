"""The SMTP session record: what one connection's SMTP dialogue was, in a stable schema.

Theory of operation
-------------------
:class:`SessionBuilder` consumes the events of :class:`mailwire.smtp.machine.SmtpMachine` and
fills an :class:`SmtpSession`: endpoints, greeting, HELO and advertised extensions, AUTH
mechanism (never the credentials), STARTTLS and TLS record counts, the mail transactions, a
bounded transcript and anomaly counts.

Transactions follow Zeek's smtp.log so the two can be compared field by field: a transaction is
open from the start of the session; MAIL FROM starts a new one when the current one already saw
client activity; the reply to the end of the message (the final dot, or ``BDAT … LAST``) closes
it; ``last_reply`` is the last reply line seen while it was open, ``trans_depth`` the number of
messages transferred before it plus one.

``to_dict()`` gives the JSON form documented in ``schemas/analyze.schema.json``. This module
never sees packets; byte-acknowledgement figures are filled in by the pipeline from TCP facts.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mailwire.smtp.machine import (
    END_OF_DATA,
    STAT_KEYS,
    STATE_ORDER,
    Anomaly,
    BodyDone,
    Command,
    Credential,
    Event,
    GapSeen,
    ReplyEvent,
    SmtpMachine,
    TlsStarted,
)
from mailwire.smtp.replies import Reply, joined_text, short_line
from mailwire.spill import positional

# Commands whose refusal decides a message's fate (a refused NOOP, RSET or junk line does not).
DECIDING_COMMANDS = frozenset({"<greeting>", "MAIL", "RCPT", "DATA", "BDAT", END_OF_DATA, "AUTH"})

TRANSCRIPT_HEAD = 400  # first transcript lines kept
TRANSCRIPT_TAIL = 200  # last transcript lines kept (the end is where failures show)
MAX_TRANSACTIONS = 1000
MAX_RCPT = 1000
MAX_TX_REPLIES = 256
MAX_ANOMALY_SAMPLES = 20
_DIRS = ("c2s", "s2c", "-")  # transcript directions, by code
_DIR_CODE = {d: i for i, d in enumerate(_DIRS)}


def mail_path(arg: str, prefix: str) -> str | None:
    """The address of ``MAIL FROM:<a@b> …`` / ``RCPT TO:<a@b> …`` (RFC 5321 path), or None when
    the argument does not start with ``prefix``. The null sender ``<>`` gives ``""``."""
    if arg[: len(prefix)].upper() != prefix:
        return None
    rest = arg[len(prefix) :].strip()
    if rest.startswith("<"):
        end = rest.find(">")
        path = rest[1:end] if end >= 0 else rest[1:].split(" ", 1)[0]
    else:
        path = rest.split(" ", 1)[0] if rest else ""
    if path.startswith("@") and ":" in path:  # source route @a,@b:user@host
        path = path.split(":", 1)[1]
    return path.strip()[:320]


@positional
@dataclass(slots=True)
class ReplyRecord:
    command: str | None
    code: int
    enhanced: str | None
    text: str
    frame: int
    ts_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "code": self.code,
            "enhanced": self.enhanced,
            "text": self.text,
            "frame": self.frame,
            "ts": self.ts_ns / 1e9,
        }


@positional
@dataclass(slots=True)
class Transaction:
    depth: int
    helo: str | None = None
    mail_from: str | None = None
    mail_from_frame: int = -1
    rcpt_to: list[str] = field(default_factory=list)
    rcpt_accepted: int = 0
    rcpt_refused: int = 0
    replies: list[ReplyRecord] = field(default_factory=list)
    last_reply: str | None = None
    tls: bool = False
    has_client_activity: bool = False
    data_sent: bool = False
    data_reply: int | None = None  # reply code to DATA (354 …)
    message_size: int | None = None
    body_wire_bytes: int = 0
    body_missing: int = 0
    body_end: str | None = None
    body_first_frame: int = -1
    body_last_frame: int = -1
    body_start_offset: int = -1  # client stream offset of the first body byte
    message_id: str | None = None
    subject: str | None = None
    header_from: str | None = None
    final_reply: ReplyRecord | None = None  # answer to the end of the message
    refusal: ReplyRecord | None = None  # the first 4xx/5xx reply of the transaction
    replies_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trans_depth": self.depth,
            "helo": self.helo,
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "rcpt_accepted": self.rcpt_accepted,
            "rcpt_refused": self.rcpt_refused,
            "last_reply": self.last_reply,
            "tls": self.tls,
            "data_sent": self.data_sent,
            "data_reply": self.data_reply,
            "message": {
                "size": self.message_size,
                "wire_bytes": self.body_wire_bytes,
                "missing_bytes": self.body_missing,
                "end": self.body_end,
                "first_frame": self.body_first_frame,
                "last_frame": self.body_last_frame,
                "stream_offset": self.body_start_offset,
                "message_id": self.message_id,
                "subject": self.subject,
                "header_from": self.header_from,
            },
            "final_reply": None if self.final_reply is None else self.final_reply.to_dict(),
            "refusal": None if self.refusal is None else self.refusal.to_dict(),
            "replies": [r.to_dict() for r in self.replies],
            "replies_dropped": self.replies_dropped,
        }


@positional
@dataclass(slots=True)
class SmtpSession:
    conn_id: int
    capture: str = ""
    client: str = ""
    server: str = ""
    client_port: int = -1
    server_port: int = -1
    detected_by: str = "greeting"
    first_frame: int = -1
    last_frame: int = -1
    start_ts_ns: int = 0
    end_ts_ns: int = 0
    greeting: ReplyRecord | None = None
    helo: str | None = None
    helo_verb: str | None = None
    extensions: list[str] = field(default_factory=list)
    auth_mechanism: str | None = None
    auth_result: int | None = None
    tls: bool = False
    tls_frame: int = -1
    tls_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    plaintext_after_starttls: bool = False  # decrypted capture, or TLS never started
    transactions: list[Transaction] = field(default_factory=list)
    transactions_dropped: int = 0
    last_reply: ReplyRecord | None = None
    last_reply_line: str | None = None
    last_command: str | None = None
    last_command_frame: int = -1
    last_client_frame: int = -1
    last_client_ts_ns: int = 0
    last_server_frame: int = -1
    last_server_ts_ns: int = 0
    state: str = "connected"
    furthest: str = "connected"
    before_close: str = "connected"
    pending: list[str] = field(default_factory=list)
    open_body: tuple[int, int, int, int] | None = (
        None  # (sent, missing, start offset, first frame) of a cut body
    )
    messages_accepted: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    anomaly_samples: list[dict[str, Any]] = field(default_factory=list)
    # the machine's counters, in STAT_KEYS order (a tuple: a dict per session cost 360 bytes more)
    stat_counts: tuple[int, ...] = ()
    gaps: list[dict[str, Any]] = field(default_factory=list)
    # the first transcript lines: frame * 4 + direction code (_DIRS) per line, and the line texts
    # (a tuple and a frame number object per line cost about 75 bytes a line more)
    transcript_marks: array[int] = field(default_factory=lambda: array("q"))
    transcript_lines: list[str] = field(default_factory=list)
    # made when the head is full: most sessions never need one (a deque costs 600 bytes)
    transcript_tail: deque[tuple[int, str, str]] | None = None
    transcript_total: int = 0
    # Filled by the pipeline from TCP facts.
    bytes_c2s_sent: int = 0
    bytes_c2s_acked: int | None = None
    bytes_s2c_sent: int = 0
    bytes_s2c_acked: int | None = None

    # --- derived views --------------------------------------------------------------------------

    @property
    def current(self) -> Transaction | None:
        return self.transactions[-1] if self.transactions else None

    @property
    def stats(self) -> dict[str, int]:
        """The dissector's counters (empty before the session is finished)."""
        return dict(zip(STAT_KEYS, self.stat_counts, strict=False))

    def transcript(self) -> list[tuple[int, str, str]]:
        """(frame, direction, line) entries kept: the head, a marker, the tail."""
        out = [
            (m >> 2, _DIRS[m & 3], line)
            for m, line in zip(self.transcript_marks, self.transcript_lines, strict=True)
        ]
        tail = self.transcript_tail or ()
        elided = self.transcript_total - len(out) - len(tail)
        if elided > 0:
            out.append((-1, "-", f"<{elided} transcript lines elided>"))
        out.extend(tail)
        return out

    def phase(self) -> str:
        """Where the dialogue got to, in words (e.g. "DATA body, 66 890 of 110 330 bytes acknowledged")."""
        names = {
            "connected": "connected, no greeting",
            "greeted": "greeting received",
            "ready": "EHLO/HELO accepted",
            "mail": "MAIL FROM accepted",
            "rcpt": "RCPT TO accepted",
            "data": "DATA body",
            "end_of_data": "end of data sent, awaiting reply",
            "tls": "STARTTLS accepted, encrypted",
            "quit": "QUIT sent",
            "closed": "closed",
        }
        state = self.state
        suffix = ""
        if state in ("closed", "quit") and self.before_close not in ("closed", "quit"):
            suffix = ", then closed" if state == "closed" else ", then QUIT"
            state = self.before_close
        if state == "ready" and self.messages_accepted:
            last = next(
                (t.final_reply for t in reversed(self.transactions) if t.final_reply is not None), None
            )
            if last is not None and last.code < 300:
                return f"message accepted ({last.code}){suffix}"
        if self.open_body is not None:
            sent, _missing, start, _frame = self.open_body
            text = f"DATA body, {_n(sent)} bytes sent"
            if self.bytes_c2s_acked is not None and start >= 0:
                acked = max(0, min(sent, self.bytes_c2s_acked - start))
                text = f"DATA body, {_n(acked)} of {_n(sent)} bytes acknowledged"
            return text + suffix
        if state == "end_of_data" and self.transactions:
            tx = next((t for t in reversed(self.transactions) if t.body_end is not None), None)
            if tx is not None and self.bytes_c2s_acked is not None and tx.body_start_offset >= 0:
                end = tx.body_start_offset + tx.body_wire_bytes
                acked = max(0, min(tx.body_wire_bytes, self.bytes_c2s_acked - tx.body_start_offset))
                if self.bytes_c2s_acked < end:
                    return (
                        f"end of data sent, {_n(acked)} of {_n(tx.body_wire_bytes)} body bytes acknowledged"
                        + suffix
                    )
        return names.get(state, state) + suffix

    def zeek_rows(self) -> list[dict[str, Any]]:
        """The rows Zeek's smtp.log would write for this session (for comparison)."""
        rows = []
        for tx in self.transactions:
            if not tx.has_client_activity:
                continue
            rows.append(
                {
                    "trans_depth": tx.depth,
                    "helo": tx.helo,
                    "mailfrom": tx.mail_from or None,
                    "rcptto": sorted(set(tx.rcpt_to)) or None,
                    "last_reply": tx.last_reply,
                    "tls": tx.tls,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "capture": self.capture,
            "client": self.client,
            "client_port": self.client_port,
            "server": self.server,
            "server_port": self.server_port,
            "detected_by": self.detected_by,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "start_ts": self.start_ts_ns / 1e9,
            "end_ts": self.end_ts_ns / 1e9,
            "wireshark_filter": f"tcp.stream eq {self.conn_id}",
            "greeting": None if self.greeting is None else self.greeting.to_dict(),
            "helo": self.helo,
            "extensions": self.extensions,
            "auth_mechanism": self.auth_mechanism,
            "auth_result": self.auth_result,
            "tls": self.tls,
            "tls_frame": self.tls_frame,
            "tls_records": self.tls_records,
            "plaintext_after_starttls": self.plaintext_after_starttls,
            "transactions": [t.to_dict() for t in self.transactions],
            "transactions_dropped": self.transactions_dropped,
            "mail_from": next((t.mail_from for t in self.transactions if t.mail_from is not None), None),
            "rcpt_to": sorted({r for t in self.transactions for r in t.rcpt_to})[:MAX_RCPT],
            "last_reply": self.last_reply_line,
            "state": self.state,
            "furthest_state": self.furthest,
            "state_before_close": self.before_close,
            "phase": self.phase(),
            "pending_commands": self.pending[:50],
            "messages_accepted": self.messages_accepted,
            "bytes": {
                "c2s_sent": self.bytes_c2s_sent,
                "c2s_acked": self.bytes_c2s_acked,
                "s2c_sent": self.bytes_s2c_sent,
                "s2c_acked": self.bytes_s2c_acked,
            },
            "gaps": self.gaps[:50],
            "anomalies": dict(self.anomalies),
            "anomaly_samples": self.anomaly_samples,
            "stats": self.stats,
            "transcript": [{"frame": f, "dir": d, "line": line} for f, d, line in self.transcript()],
            "transcript_total": self.transcript_total,
        }  # "verdict" follows, from the result's Verdict (mailwire.smtp.pipeline)


def _shared(text: str) -> str:
    """One copy of a short line that thousands of sessions repeat ("250 2.0.0 Ok", "PIPELINING",
    "QUIT"): interned strings go when the last session holding them does."""
    return sys.intern(text) if len(text) <= 120 else text


_CACHED_REPLY = 1024  # replies of up to this many characters go through the caches below


def _bounded(fn: Any, code: int | None, lines: tuple[str, ...]) -> Any:
    """``fn`` through its cache for lines of at most ``_CACHED_REPLY`` characters in all, else
    computed directly (a long reply is not worth a cache entry, and must not make one)."""
    args = (lines,) if code is None else (code, lines)
    return (fn if sum(map(len, lines)) <= _CACHED_REPLY else fn.__wrapped__)(*args)


@lru_cache(maxsize=1024)
def _reply_texts(code: int, lines: tuple[str, ...]) -> tuple[str, str, str]:
    """A reply's text (lines joined, bounded), its transcript line and its last line ("NNN
    text"), one copy each: servers send the same replies to every session, so they are made once
    per distinct reply (at most 1024 replies of ``_CACHED_REPLY`` characters; a pure function)."""
    text = joined_text(lines)
    short = short_line(code, lines, 400)
    line = short if len(lines) <= 1 else f"{short} (+{len(lines) - 1} lines)"
    return _shared(text[:1000]), _shared(line), f"{code} {lines[-1] if lines else ''}"


@lru_cache(maxsize=256)
def _extensions(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The extension keywords of an EHLO reply's lines after the first (each server sends the same
    list to every session: made once per list, bounded as above)."""
    return tuple(_shared(ln.split(" ", 1)[0].upper()[:40]) for ln in lines)


def _n(x: int) -> str:
    """Thousands separated by a thin space, as in the issue ("66 890")."""
    return f"{x:,}".replace(",", " ")


class SessionBuilder:
    """Feeds a :class:`SmtpMachine` and folds its events into an :class:`SmtpSession`."""

    def __init__(self, session: SmtpSession) -> None:
        self.s = session
        self.machine = SmtpMachine()
        self._messages = 0
        self.s.transactions.append(Transaction(depth=1))

    # --- input ---------------------------------------------------------------------------------

    def feed(self, direction: str, data: bytes, frame: int, ts_ns: int) -> None:
        s = self.s
        if direction == "c2s":
            s.bytes_c2s_sent += len(data)
            s.last_client_frame, s.last_client_ts_ns = frame, ts_ns
        else:
            s.bytes_s2c_sent += len(data)
            s.last_server_frame, s.last_server_ts_ns = frame, ts_ns
        self._frame_seen(frame, ts_ns)
        events = self.machine.feed(direction, data, frame, ts_ns)  # type: ignore[arg-type]
        if events:
            self._apply(events, direction)

    def gap(self, direction: str, length: int, frame: int, ts_ns: int) -> None:
        self._frame_seen(frame, ts_ns)
        self._apply(self.machine.gap(direction, length, frame, ts_ns), direction)  # type: ignore[arg-type]

    def finish(self) -> SmtpSession:
        s = self.s
        m = self.machine
        s.open_body = m.body_progress()
        self._apply(m.finish(s.last_frame, s.end_ts_ns), "c2s")
        s.state, s.furthest, s.before_close = m.state, m.furthest, m.before_close
        s.pending = m.pending
        s.stat_counts = tuple(m.stats[k] for k in STAT_KEYS)
        s.tls_records = {
            d: {
                "records": c.records,
                "bytes": c.bytes,
                "handshake": c.handshake,
                "application_data": c.app_data,
                "alerts": c.alerts,
                "sizes": c.sizes,
                "not_tls_bytes": c.not_tls_bytes,
            }
            for d, c in m.tls.items()
            if c.records or c.not_tls_bytes
        }
        s.auth_mechanism = m.auth_mechanism
        s.plaintext_after_starttls = m.plaintext_after_starttls
        return s

    # --- event folding ----------------------------------------------------------------------------

    def _frame_seen(self, frame: int, ts_ns: int) -> None:
        s = self.s
        if s.first_frame < 0:
            s.first_frame, s.start_ts_ns = frame, ts_ns
        s.last_frame = max(s.last_frame, frame)
        s.end_ts_ns = max(s.end_ts_ns, ts_ns)

    def _line(self, frame: int, direction: str, text: str) -> None:
        s = self.s
        s.transcript_total += 1
        if len(s.transcript_lines) < TRANSCRIPT_HEAD:
            s.transcript_marks.append(frame * 4 + _DIR_CODE[direction])
            s.transcript_lines.append(text)
        else:
            if s.transcript_tail is None:
                s.transcript_tail = deque(maxlen=TRANSCRIPT_TAIL)
            s.transcript_tail.append((frame, direction, text))

    def _new_transaction(self) -> Transaction:
        s = self.s
        tx = Transaction(depth=self._messages + 1, helo=s.helo)
        if len(s.transactions) >= MAX_TRANSACTIONS:
            s.transactions_dropped += 1
            s.transactions[-1] = tx  # keep the latest; the count of dropped ones is reported
        else:
            s.transactions.append(tx)
        return tx

    def _flush(self) -> Transaction:
        """Zeek's smtp_message(): start a new transaction if the current saw client activity."""
        cur = self.s.transactions[-1]
        if cur.has_client_activity:
            return self._new_transaction()
        return cur

    def _apply(self, events: list[Event], direction: str) -> None:
        for ev in events:
            if isinstance(ev, Command):
                self._command(ev)
            elif isinstance(ev, ReplyEvent):
                self._reply(ev)
            elif isinstance(ev, BodyDone):
                self._body(ev)
            elif isinstance(ev, Credential):
                self._line(ev.frame, "c2s", "<credentials elided>")
            elif isinstance(ev, TlsStarted):
                s = self.s
                s.tls, s.tls_frame = True, ev.frame
                cur = s.transactions[-1]
                cur.tls = True
                cur.has_client_activity = True
                self._line(ev.frame, "-", "<TLS from here on: only record sizes are visible>")
            elif isinstance(ev, GapSeen):
                if len(self.s.gaps) < 200:
                    self.s.gaps.append(
                        {"direction": ev.direction, "frame": ev.frame, "length": ev.length, "mode": ev.mode}
                    )
                self._line(ev.frame, ev.direction, f"<{ev.length} bytes missing from the capture>")
            elif isinstance(ev, Anomaly):
                self.s.anomalies[ev.kind] += 1
                if len(self.s.anomaly_samples) < MAX_ANOMALY_SAMPLES:
                    self.s.anomaly_samples.append(
                        {"frame": ev.frame, "direction": ev.direction, "kind": ev.kind, "detail": ev.detail}
                    )

    def _command(self, c: Command) -> None:
        s = self.s
        self._line(c.frame, "c2s", _shared(c.line))
        s.last_command, s.last_command_frame = c.verb, c.frame
        cur = s.transactions[-1]
        if c.verb in ("HELO", "EHLO", "LHLO"):
            s.helo = c.arg
            s.helo_verb = c.verb
            cur.helo = c.arg
        elif c.verb == "MAIL":
            addr = mail_path(c.arg, "FROM:")
            if addr is not None:
                cur = self._flush()
                cur.mail_from = addr
                cur.mail_from_frame = c.frame
                cur.has_client_activity = True
        elif c.verb == "RCPT":
            addr = mail_path(c.arg, "TO:")
            if addr is not None:
                if len(cur.rcpt_to) < MAX_RCPT and addr and addr not in cur.rcpt_to:
                    cur.rcpt_to.append(addr)
                cur.has_client_activity = True
        elif c.verb in ("DATA", "BDAT"):
            cur.data_sent = True

    def _reply(self, ev: ReplyEvent) -> None:
        s = self.s
        r: Reply = ev.reply
        lines, code = r.lines, r.code
        klass = code // 100
        text, line, last_line = _bounded(_reply_texts, code, tuple(lines))
        rec = ReplyRecord(ev.command, code, r.enhanced, text, r.frame, r.ts_ns)
        self._line(r.frame, "s2c", line)
        s.last_reply = rec
        s.last_reply_line = last_line
        cur = s.transactions[-1]
        cur.last_reply = last_line
        if len(cur.replies) < MAX_TX_REPLIES:
            cur.replies.append(rec)
        else:
            cur.replies_dropped += 1
        cmd = ev.command
        if (klass == 4 or klass == 5) and cur.refusal is None and cmd in DECIDING_COMMANDS:
            cur.refusal = rec
        if cmd == "<greeting>":
            s.greeting = rec
        elif cmd in ("EHLO", "HELO", "LHLO") and klass == 2:
            s.extensions = list(_bounded(_extensions, None, tuple(lines[1:64])))
        elif cmd == "AUTH" and code != 334:
            s.auth_result = code
        elif cmd == "RCPT":
            if klass == 2:
                cur.rcpt_accepted += 1
            elif klass in (4, 5):
                cur.rcpt_refused += 1
        elif cmd == "DATA":
            cur.data_reply = code
        if cmd == END_OF_DATA or (cmd == "BDAT" and ev.bdat_last):
            cur.final_reply = rec
            if klass == 2:
                s.messages_accepted += 1
            self._messages += 1
            nxt = self._flush()  # the next transaction (or the same one, if it saw no client activity)
            if not nxt.has_client_activity:
                nxt.depth = self._messages + 1

    def _body(self, b: BodyDone) -> None:
        s = self.s
        cur = s.transactions[-1]
        cur.message_size = b.size
        cur.body_wire_bytes = b.wire_bytes
        cur.body_missing = b.missing
        cur.body_end = b.end
        cur.body_first_frame = b.first_frame
        cur.body_start_offset = b.start_offset
        cur.body_last_frame = b.frame
        cur.message_id = b.message_id
        cur.subject = b.subject
        cur.header_from = b.header_from
        cur.data_sent = True
        miss = f", {b.missing} missing from the capture" if b.missing else ""
        self._line(b.first_frame, "c2s", f"<message body: {_n(b.wire_bytes)} bytes elided{miss}>")
        if b.end == "dot":
            self._line(b.frame, "c2s", ".")


def build_session(session: SmtpSession, events: list[tuple[str, str, Any, int, int]]) -> SmtpSession:
    """Convenience for tests and small inputs: ``events`` are ("data"|"gap", direction,
    bytes|length, frame, ts_ns) in capture order."""
    b = SessionBuilder(session)
    for kind, direction, payload, frame, ts_ns in events:
        if kind == "data":
            b.feed(direction, payload, frame, ts_ns)
        else:
            b.gap(direction, int(payload), frame, ts_ns)
    return b.finish()


__all__ = [
    "STATE_ORDER",
    "ReplyRecord",
    "SessionBuilder",
    "SmtpSession",
    "Transaction",
    "build_session",
    "mail_path",
]

"""Verdicts: what happened to each SMTP session, why, and the frames that prove it.

Theory of operation
-------------------
A verdict is decided from two records: the :class:`~mailwire.smtp.session.SmtpSession` (what the
dialogue said) and :class:`TcpFacts` (what TCP did: handshake, retransmission chains, zero
windows, resets, ICMP, bytes acknowledged). :class:`TcpFacts` is the small interface this module
needs from the TCP stage; the pipeline fills it from ``mailwire.tcp``'s connection records, and
tests can build it in memory.

The rules are small named functions in :data:`RULES`, tried in order; the first that returns a
:class:`Verdict` wins. The order encodes precedence: connection setup failures first (refused,
unreachable, connect timeout), then what the server said in SMTP (rejected / deferred, with the
category from :mod:`mailwire.signatures`), then network deaths during the dialogue
(path loss with retransmission backoff, a receiver window that never reopened, resets), the
server giving up on an idle client, a message accepted (delivered), and last the capture ending
first (incomplete).

Every verdict carries ``summary`` (one sentence), ``evidence`` (capture file + Wireshark frame
number + what the frame shows) and ``confidence`` (high / medium / low).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailwire.signatures import classify
from mailwire.smtp.session import ReplyRecord, SmtpSession, Transaction
from mailwire.spill import positional

OUTCOMES = (
    "delivered",
    "rejected",
    "deferred",
    "path_loss_timeout",
    "receiver_window_timeout",
    "remote_idle_timeout",
    "reset",
    "refused",
    "connect_timeout",
    "unreachable",
    "incomplete",
)
FAILURES = frozenset(OUTCOMES) - {"delivered", "incomplete"}
NETWORK_OUTCOMES = frozenset(
    {"path_loss_timeout", "receiver_window_timeout", "reset", "connect_timeout", "unreachable"}
)

# Severity for "worst first" ordering.
SEVERITY = {
    "path_loss_timeout": 0,
    "receiver_window_timeout": 1,
    "reset": 2,
    "connect_timeout": 3,
    "unreachable": 4,
    "refused": 5,
    "rejected": 6,
    "deferred": 7,
    "remote_idle_timeout": 8,
    "incomplete": 9,
    "delivered": 10,
}

_TIMEOUT_TEXT = re.compile(r"time ?out|timed out|idle|waiting for client", re.IGNORECASE)


# --- the interface to the TCP stage ---------------------------------------------------------


@positional
@dataclass(slots=True)
class Resend:
    frame: int
    ts_ns: int
    interval_s: float  # time since the previous transmission of the same bytes


@positional
@dataclass(slots=True)
class ChainFact:
    """One segment's bytes sent again and again (a retransmission chain)."""

    direction: str  # "c2s" / "s2c"
    orig_frame: int
    orig_ts_ns: int
    size: int  # payload bytes of the segment
    seq_offset: int  # stream offset of its first byte
    resends: list[Resend] = field(default_factory=list)
    acked: bool = False  # the bytes were acknowledged in the end
    ack_frame: int = -1
    total: int = -1  # number of resends when ``resends`` holds only the first ones (-1: all kept)
    span_s: float = -1.0  # time from the original to the last resend (-1: sum of the intervals)
    wire_size: int = -1  # size of one copy on the wire (TSO super-segments leave as smaller ones)

    @property
    def count(self) -> int:
        return self.total if self.total >= 0 else len(self.resends)

    @property
    def span(self) -> float:
        return self.span_s if self.span_s >= 0 else sum(r.interval_s for r in self.resends)


@positional
@dataclass(slots=True)
class RstFact:
    frame: int
    ts_ns: int
    sender: str  # "client" / "server"
    ttl: int = -1
    ip_id: int = -1
    sender_usual_ttl: int = -1  # TTL of the sender's other packets (mode), -1 if unknown
    sender_ip_id_near: bool | None = None  # IP id close to the sender's recent ids
    middlebox_suspected: bool = False


@positional
@dataclass(slots=True)
class ZeroWindowFact:
    sender: str  # who advertised the zero window
    start_frame: int
    start_ts_ns: int
    end_frame: int = -1  # frame that reopened it; -1 if it never reopened
    duration_s: float = 0.0
    probes: int = 0


@positional
@dataclass(slots=True)
class IcmpFact:
    frame: int
    ts_ns: int
    icmp_type: int
    icmp_code: int
    mtu: int = -1
    frag_needed: bool = False
    unreachable: bool = False


@positional
@dataclass(slots=True)
class TcpFacts:
    """What the SMTP verdicts need from TCP for one connection."""

    conn_id: int
    capture: str = ""
    syn_frames: list[int] = field(default_factory=list)
    syn_ack_frame: int = -1
    handshake_seen: bool = False  # SYN (or SYN-ACK) seen at all
    established: bool = True
    rsts: list[RstFact] = field(default_factory=list)
    fins: list[tuple[int, str]] = field(default_factory=list)  # (frame, "client"/"server")
    icmp: list[IcmpFact] = field(default_factory=list)
    chains: list[ChainFact] = field(default_factory=list)
    zero_windows: list[ZeroWindowFact] = field(default_factory=list)
    c2s_sent: int = 0  # stream bytes the client sent (highest offset)
    c2s_acked: int | None = None  # highest stream offset the server acknowledged
    s2c_sent: int = 0
    s2c_acked: int | None = None
    first_ts_ns: int = 0
    last_frame: int = -1
    last_ts_ns: int = 0
    capture_end_ts_ns: int = 0  # last timestamp of the whole capture
    max_c2s_segment: int = 0  # largest client payload seen (≈ MSS in use; more with TSO)
    max_c2s_passed_segment: int = 0  # largest client payload sent before the first lost segment
    mss: int = -1
    ack_unseen_bytes: int = 0  # bytes acknowledged but never captured (capture loss)


# --- the verdict record -----------------------------------------------------------------------


@positional
@dataclass(slots=True)
class Evidence:
    frame: int
    shows: str
    capture: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"capture": self.capture, "frame": self.frame, "shows": self.shows}


@positional
@dataclass(slots=True)
class Verdict:
    outcome: str
    summary: str
    confidence: str
    rule: str = ""
    category: str | None = None
    signature: str | None = None
    stage: str | None = None
    reply: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "outcome": self.outcome,
            "category": self.category,
            "summary": self.summary,
            "confidence": self.confidence,
            "rule": self.rule,
            "stage": self.stage,
            "reply": self.reply,
            "signature": self.signature,
            "evidence": [e.to_dict() for e in self.evidence],
        }
        d.update(self.extra)
        return d


@dataclass(slots=True)
class Context:
    session: SmtpSession | None
    tcp: TcpFacts
    capture: str

    def ev(self, frame: int, shows: str) -> Evidence:
        return Evidence(frame, shows, self.capture)


# --- helpers ------------------------------------------------------------------------------------


def _who(s: SmtpSession | None, t: TcpFacts) -> str:
    if s is not None and s.server:
        return f"{s.server}:{s.server_port}"
    return f"connection {t.conn_id}"


def _ended_by(t: TcpFacts) -> tuple[str, int] | None:
    """(\"client\"/\"server\", frame) of the first FIN or RST, if any."""
    ends = [(f, who) for f, who in t.fins] + [(r.frame, r.sender) for r in t.rsts]
    if not ends:
        return None
    f, who = min(ends)
    return who, f


def _unacked_c2s_chain(t: TcpFacts) -> ChainFact | None:
    """The client retransmission chain that never got acknowledged (the stall), if any."""
    cands = [c for c in t.chains if c.direction == "c2s" and not c.acked and c.resends]
    if not cands:
        return None
    return max(cands, key=lambda c: c.count)


def _chain_evidence(ctx: Context, ch: ChainFact, limit: int = 12) -> list[Evidence]:
    out = [
        ctx.ev(
            ch.orig_frame,
            f"client segment of {ch.size} bytes (stream offset {ch.seq_offset}), never acknowledged",
        )
    ]
    for i, r in enumerate(ch.resends[:limit], 1):
        out.append(
            ctx.ev(
                r.frame,
                f"retransmission #{i} of frame {ch.orig_frame}, {r.interval_s:.2f} s after the previous send",
            )
        )
    if ch.count > limit:
        out.append(ctx.ev(ch.resends[-1].frame, f"… {ch.count} retransmissions in all"))
    return out


def _ending_reply(s: SmtpSession) -> tuple[Transaction, ReplyRecord] | None:
    """The 4xx/5xx reply that ended the last attempted transaction (or the greeting/HELO)."""
    if s.greeting is not None and s.greeting.code >= 400:
        return s.transactions[0], s.greeting
    for tx in reversed(s.transactions):
        if tx.final_reply is not None:
            if tx.final_reply.code >= 400:
                return tx, tx.final_reply
            return None  # the last message was answered with 2xx
        if tx.refusal is not None:
            r = tx.refusal
            # A refused RCPT only ends the transaction if no recipient was accepted.
            if r.command == "RCPT" and tx.rcpt_accepted:
                continue
            return tx, r
    return None


_STAGE = {
    "<greeting>": "greeting",
    "EHLO": "helo",
    "HELO": "helo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "BDAT": "body",
    "<end-of-data>": "end of data",
    "STARTTLS": "starttls",
    "AUTH": "auth",
}


# --- the rules --------------------------------------------------------------------------------


def rule_refused(ctx: Context) -> Verdict | None:
    t = ctx.tcp
    if t.established or not t.syn_frames:
        return None
    rst = next((r for r in t.rsts if r.sender == "server"), None)
    if rst is None:
        return None
    return Verdict(
        "refused",
        f"{_who(ctx.session, t)} answered the connection attempt with a reset: nothing listens "
        "there, or it refuses us.",
        "high",
        "refused",
        stage="connect",
        evidence=[
            ctx.ev(t.syn_frames[0], "SYN from the client"),
            ctx.ev(rst.frame, "RST from the server in answer"),
        ],
    )


def rule_unreachable(ctx: Context) -> Verdict | None:
    t = ctx.tcp
    icmp = next((i for i in t.icmp if i.unreachable and not i.frag_needed), None)
    if icmp is None or (t.established and ctx.session is not None and ctx.session.messages_accepted):
        return None
    return Verdict(
        "unreachable",
        f"An ICMP destination-unreachable (type {icmp.icmp_type} code {icmp.icmp_code}) came back "
        f"for {_who(ctx.session, t)}.",
        "high",
        "unreachable",
        stage="connect" if not t.established else "dialogue",
        evidence=[ctx.ev(icmp.frame, f"ICMP type {icmp.icmp_type} code {icmp.icmp_code}")]
        + ([ctx.ev(t.syn_frames[0], "SYN from the client")] if t.syn_frames else []),
    )


def rule_connect_timeout(ctx: Context) -> Verdict | None:
    t = ctx.tcp
    if t.established or not t.syn_frames or t.rsts:
        return None
    waited = (t.capture_end_ts_ns - t.first_ts_ns) / 1e9
    if len(t.syn_frames) < 3 and waited < 20:
        return None  # one or two SYNs at the end of the capture: the capture ended first
    return Verdict(
        "connect_timeout",
        f"{len(t.syn_frames)} SYN(s) to {_who(ctx.session, t)} got no answer in {waited:.1f} s: "
        "the server or the path drops our connection attempts.",
        "high" if len(t.syn_frames) >= 3 else "medium",
        "connect_timeout",
        stage="connect",
        evidence=[
            ctx.ev(f, "SYN" if i == 0 else f"SYN retransmission #{i}") for i, f in enumerate(t.syn_frames[:8])
        ],
    )


def rule_path_loss(ctx: Context) -> Verdict | None:
    """Client data unacknowledged, retransmitted with backoff, then the session died."""
    s, t = ctx.session, ctx.tcp
    ch = _unacked_c2s_chain(t)
    if ch is None or ch.count < 2:
        return None
    if s is not None and s.messages_accepted and s.state in ("ready", "quit", "closed") and not s.open_body:
        return None  # the message went through; a late stall is not this session's failure
    ev = _chain_evidence(ctx, ch)
    ended = "the capture ended"
    if (
        s is not None
        and s.last_reply is not None
        and s.last_reply.code == 421
        and s.last_reply.frame > ch.orig_frame
    ):
        ev.append(
            ctx.ev(s.last_reply.frame, f"the server gives up: {s.last_reply.code} {s.last_reply.text[:120]}")
        )
        ended = (
            f"the server answered {s.last_reply.code} {s.last_reply.enhanced or ''}".rstrip() + " and closed"
        )
    end = _ended_by(t)
    if end is not None:
        ev.append(
            ctx.ev(
                end[1],
                f"{'FIN' if (end[1], end[0]) in [(f, w) for f, w in t.fins] else 'RST'} from the {end[0]}",
            )
        )
        if ended == "the capture ended":
            ended = f"the {end[0]} closed the connection"
    phase = s.phase() if s is not None else "during the transfer"
    span = ch.span
    intervals = ", ".join(f"{r.interval_s:.2f}" for r in ch.resends[:8])
    extra = {"lost_segment_size": ch.size, "retransmissions": ch.count, "phase": phase}
    if ended == "the capture ended":
        # Still retransmitting when the capture stopped: the loss is real, the end is not seen.
        return Verdict(
            "incomplete",
            f"The capture ended while our {ch.size}-byte segment to {_who(s, t)} was still being "
            f"retransmitted ({ch.count} times over {span:.1f} s, intervals {intervals} s): the path "
            "is losing our packets; how the session ended is not in the capture.",
            "medium",
            "stalled_at_capture_end",
            stage=phase,
            evidence=ev,
            extra={**extra, "detail": "stalled"},
        )
    return Verdict(
        "path_loss_timeout",
        f"Our {ch.size}-byte segment to {_who(s, t)} was never acknowledged; it was retransmitted "
        f"{ch.count} times "
        f"over {span:.1f} s (intervals {intervals} s) and {ended}: packets are lost on the path, "
        "not refused by the server.",
        "high" if ch.count >= 3 else "medium",
        "path_loss_timeout",
        stage=phase,
        evidence=ev,
        extra=extra,
    )


def rule_receiver_window(ctx: Context) -> Verdict | None:
    s, t = ctx.session, ctx.tcp
    zw = next((z for z in t.zero_windows if z.sender == "server" and z.end_frame < 0), None)
    if zw is None:
        return None
    if s is not None and s.messages_accepted and not s.open_body:
        return None
    ev = [ctx.ev(zw.start_frame, "the server advertises a zero receive window")]
    end = _ended_by(t)
    if end is not None:
        ev.append(ctx.ev(end[1], f"the {end[0]} ends the connection"))
    return Verdict(
        "receiver_window_timeout",
        f"{_who(s, t)} stopped reading: its receive window stayed at zero for {zw.duration_s:.1f} s"
        f"{f' ({zw.probes} window probes from the client)' if zw.probes else ''} and never reopened.",
        "high" if zw.duration_s >= 10 else "medium",
        "receiver_window_timeout",
        stage=s.phase() if s is not None else None,
        evidence=ev,
    )


def rule_smtp_refusal(ctx: Context) -> Verdict | None:
    """A 4xx/5xx reply ended the attempt: rejected (5xx) or deferred (4xx), with a category."""
    s = ctx.session
    if s is None:
        return None
    found = _ending_reply(s)
    if found is None:
        return None
    tx, r = found
    # 421 timeouts are judged by the timeout rules below (path loss or idle), not as a refusal.
    if r.code == 421 and _TIMEOUT_TEXT.search(r.text):
        return None
    cls = classify(r.code, r.text, r.enhanced)
    outcome = "rejected" if r.code >= 500 else "deferred"
    stage = _STAGE.get(r.command or "", r.command or "unsolicited")
    verb = "rejected" if outcome == "rejected" else "temporarily refused (deferred)"
    ev = [ctx.ev(r.frame, f"{r.code} {r.text[:160]} (answer to {r.command or 'nothing'})")]
    if tx.mail_from_frame >= 0:
        ev.insert(0, ctx.ev(tx.mail_from_frame, f"MAIL FROM:<{tx.mail_from}>"))
    return Verdict(
        outcome,
        f"{_who(s, ctx.tcp)} {verb} the message at {stage} with {r.code}"
        f"{' ' + r.enhanced if r.enhanced else ''}"
        f' ({cls.category.replace("_", " ")}): "{r.text[:100]}".',
        "high",
        f"smtp_{outcome}",
        category=cls.category,
        signature=cls.rule,
        stage=stage,
        reply=f"{r.code} {r.text[:300]}",
        evidence=ev,
    )


def rule_reset(ctx: Context) -> Verdict | None:
    s, t = ctx.session, ctx.tcp
    if not t.rsts or not t.established:
        return None
    first_fin = min((f for f, _ in t.fins), default=None)
    if first_fin is not None and t.rsts[0].frame > first_fin:
        return None  # a reset after one side closed is how some stacks finish, not a failure
    if s is not None and s.messages_accepted and s.state in ("ready", "quit", "closed") and not s.open_body:
        return None  # a reset after a delivered message does not undo the delivery
    if s is not None and s.state in ("quit", "closed") and not s.open_body:
        return None
    r = t.rsts[0]
    mb = r.middlebox_suspected
    why = ""
    if mb:
        why = f" The RST's TTL {r.ttl} (the {r.sender} otherwise uses {r.sender_usual_ttl})"
        if r.sender_ip_id_near is False:
            why += " and IP id unlike the sender's"
        why += " suggest a middle box forged it."
    return Verdict(
        "reset",
        f"The {r.sender} reset the connection {('at ' + s.phase()) if s is not None else ''}.{why}".replace(
            " .", "."
        ),
        "high" if not mb else "medium",
        "reset",
        stage=s.phase() if s is not None else None,
        evidence=[ctx.ev(r.frame, f"RST from the {r.sender} (TTL {r.ttl}, IP id {r.ip_id})")],
        extra={"reset_by": r.sender, "middlebox_suspected": mb},
    )


def rule_remote_idle(ctx: Context) -> Verdict | None:
    """The server timed out while the client was silent (not the network)."""
    s, t = ctx.session, ctx.tcp
    if s is None or s.last_reply is None:
        return None
    r = s.last_reply
    if r.command is not None or r.code not in (421, 451) or not _TIMEOUT_TEXT.search(r.text):
        return None
    if _unacked_c2s_chain(t) is not None:
        return None
    idle = (r.ts_ns - s.last_client_ts_ns) / 1e9 if s.last_client_ts_ns else float("nan")
    ev = [ctx.ev(s.last_client_frame, "the client's last data"), ctx.ev(r.frame, f"{r.code} {r.text[:120]}")]
    end = _ended_by(t)
    if end is not None:
        ev.append(ctx.ev(end[1], f"the {end[0]} closes the connection"))
    delivered = s.messages_accepted
    if delivered:
        return Verdict(
            "delivered",
            f"{_who(s, t)} accepted {delivered} message(s); afterwards the client stayed silent "
            f"{idle:.0f} s and the server "
            f"closed the idle session with {r.code} {r.enhanced or ''} — an idle timeout, "
            "not a failure.".replace("  ", " "),
            "high",
            "delivered_then_idle_timeout",
            stage="after delivery",
            reply=f"{r.code} {r.text[:300]}",
            evidence=_accepted_evidence(ctx) + ev,
            extra={"then": "remote_idle_timeout", "idle_s": round(idle, 3)},
        )
    return Verdict(
        "remote_idle_timeout",
        f"{_who(s, t)} closed the session with {r.code} {r.enhanced or ''} after {idle:.0f} s without client "
        f"data at this capture point (at {s.phase()}): the client stalled, or its packets were lost before "
        "this point; a capture on the sending server tells which.",
        "high" if idle == idle and idle > 5 else "medium",
        "remote_idle_timeout",
        stage=s.phase(),
        reply=f"{r.code} {r.text[:300]}",
        evidence=ev,
        extra={"idle_s": round(idle, 3)},
    )


def _accepted_evidence(ctx: Context) -> list[Evidence]:
    s = ctx.session
    out: list[Evidence] = []
    if s is None:
        return out
    for tx in s.transactions:
        if tx.final_reply is not None and tx.final_reply.code < 300:
            if tx.body_first_frame >= 0:
                out.append(ctx.ev(tx.body_first_frame, f"message body starts ({tx.body_wire_bytes} bytes)"))
            out.append(ctx.ev(tx.final_reply.frame, f"{tx.final_reply.code} {tx.final_reply.text[:120]}"))
    return out[:10]


def _reply_short(r: ReplyRecord | None) -> str:
    return "" if r is None else f"{r.code} {r.text[:80]}"


def rule_delivered(ctx: Context) -> Verdict | None:
    s = ctx.session
    if s is None or not s.messages_accepted:
        return None
    last = next((tx for tx in reversed(s.transactions) if tx.final_reply is not None), None)
    if last is None:
        return None
    return Verdict(
        "delivered",
        f"{_who(s, ctx.tcp)} accepted {s.messages_accepted} message(s)"
        f" (last: {_reply_short(last.final_reply)}).",
        "high",
        "delivered",
        stage="end of data",
        reply=None if last.final_reply is None else f"{last.final_reply.code} {last.final_reply.text[:300]}",
        evidence=_accepted_evidence(ctx),
    )


def rule_encrypted(ctx: Context) -> Verdict | None:
    s, t = ctx.session, ctx.tcp
    if s is None or not s.tls:
        return None
    end = _ended_by(t)
    c2s = s.tls_records.get("c2s", {})
    recs = c2s.get("application_data", 0)
    closed_first = end is not None and (end[1], end[0]) in [(f, w) for f, w in t.fins]
    # A message needs several records both ways; a handshake and a close_notify are not a delivery.
    if end is not None and closed_first and recs >= 3 and c2s.get("bytes", 0) >= 1024:
        return Verdict(
            "delivered",
            f"The session switched to TLS (STARTTLS); the client sent {recs} encrypted records and "
            "the connection closed "
            f"normally — delivery is likely but its reply is encrypted.",
            "low",
            "encrypted_clean_close",
            stage="TLS",
            evidence=[
                ctx.ev(s.tls_frame, "220 to STARTTLS: encrypted from here"),
                ctx.ev(end[1], f"FIN from the {end[0]}"),
            ],
            extra={"encrypted": True},
        )
    return None


def rule_incomplete(ctx: Context) -> Verdict:
    s, t = ctx.session, ctx.tcp
    closed = bool(t.fins or t.rsts)
    if s is not None and s.tls and not s.plaintext_after_starttls:
        end = _ended_by(t)
        how = f"the {end[0]} closed it" if end is not None else "the capture ended"
        ev = [ctx.ev(s.tls_frame, "220 to STARTTLS: encrypted from here")]
        if end is not None:
            ev.append(ctx.ev(end[1], f"the {end[0]} ends the connection"))
        return Verdict(
            "incomplete",
            f"The session with {_who(s, t)} switched to TLS; {how} after "
            f"{s.tls_records.get('c2s', {}).get('bytes', 0)} encrypted client bytes — what was sent inside "
            "is not visible.",
            "low",
            "encrypted",
            stage="TLS",
            evidence=ev,
            extra={"detail": "encrypted"},
        )
    if s is not None and s.gaps and not s.stats.get("commands") and not s.stats.get("replies"):
        missing = sum(g["length"] for g in s.gaps)
        return Verdict(
            "incomplete",
            f"The SMTP payload of the session with {_who(s, t)} is missing from the capture ({missing} bytes "
            "not captured, e.g. a short snaplen): nothing can be said about the dialogue.",
            "low",
            "payload_not_captured",
            stage=s.phase(),
            evidence=[ctx.ev(g["frame"], f"{g['length']} bytes not captured") for g in s.gaps[:3]],
            extra={"detail": "payload_not_captured"},
        )
    if (
        s is not None
        and not any(tx.has_client_activity for tx in s.transactions)
        and (s.state in ("quit", "closed") or closed)
    ):
        return Verdict(
            "incomplete",
            f"No message was attempted in this session with {_who(s, t)} (it ended at {s.phase()}).",
            "medium",
            "no_message",
            stage=s.phase(),
            evidence=[
                ctx.ev(s.first_frame, "first SMTP data"),
                ctx.ev(s.last_frame, "last frame of the session"),
            ],
            extra={"detail": "no_message"},
        )
    where = s.phase() if s is not None else "before any SMTP data"
    last = s.last_frame if s is not None else t.last_frame
    return Verdict(
        "incomplete",
        f"The capture ended before the session with {_who(s, t)} finished (last seen: {where}).",
        "medium",
        "incomplete",
        stage=where,
        evidence=[ctx.ev(last, "last frame of the session in the capture")] if last >= 0 else [],
    )


Rule = Callable[[Context], Verdict | None]

RULES: tuple[Rule, ...] = (
    rule_refused,
    rule_unreachable,
    rule_connect_timeout,
    rule_smtp_refusal,
    rule_path_loss,
    rule_receiver_window,
    rule_remote_idle,
    rule_reset,
    rule_delivered,
    rule_encrypted,
)


def decide(session: SmtpSession | None, tcp: TcpFacts, capture: str = "") -> Verdict:
    """Apply :data:`RULES` in order; the capture ending first is the fallback."""
    ctx = Context(session, tcp, capture or tcp.capture or (session.capture if session else ""))
    verdict = next((v for v in (rule(ctx) for rule in RULES) if v is not None), None) or rule_incomplete(ctx)
    if session is not None:
        verdict.extra["messages"] = _per_message(session)
    return verdict


def _per_message(s: SmtpSession) -> list[dict[str, Any]]:
    """Each attempted message's own fate (a session can deliver one and have the next refused)."""
    out = []
    for tx in s.transactions[:100]:
        if tx.mail_from is None:
            continue
        fin = tx.final_reply
        if fin is not None:
            fate = "delivered" if fin.code < 300 else ("rejected" if fin.code >= 500 else "deferred")
            reply: ReplyRecord | None = fin
        elif tx.refusal is not None and not (tx.refusal.command == "RCPT" and tx.rcpt_accepted):
            reply = tx.refusal
            fate = "rejected" if reply.code >= 500 else "deferred"
        else:
            fate, reply = "unfinished", None
        out.append(
            {
                "trans_depth": tx.depth,
                "mail_from": tx.mail_from,
                "rcpt_to": tx.rcpt_to[:10],
                "fate": fate,
                "reply": None if reply is None else f"{reply.code} {reply.text[:200]}",
                "frame": None if reply is None else reply.frame,
            }
        )
    return out


__all__ = [
    "FAILURES",
    "NETWORK_OUTCOMES",
    "OUTCOMES",
    "RULES",
    "SEVERITY",
    "ChainFact",
    "Evidence",
    "IcmpFact",
    "Resend",
    "RstFact",
    "TcpFacts",
    "Verdict",
    "ZeroWindowFact",
    "decide",
]

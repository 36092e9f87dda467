"""Joining log attempts to captured sessions: which connection was which delivery try.

Theory of operation
-------------------
A log attempt names the remote IP (and port, usually 25), the time the MTA logged the outcome
(the end of the try) and, for Postfix, how long the try took (``delays=a/b/c/d``: the last two
are connection setup and transmission). A captured session to the same remote IP and port that
was alive in ``[logged - duration - slack, logged + slack]`` is a candidate; the slack absorbs the
clock difference between the log host and the capture host (seconds, not minutes — a larger
offset is reported, not guessed). When several candidates remain, identifiers decide, strongest
first: the Message-ID seen in the DATA headers, then the remote's queue id echoed in the 250
reply ("queued as …"), then the recipient address, then the closest end time.

Only attempts that made a connection are joined (suppressed / expired ones made none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailwire.diagnose.facts import SessionFact
from mailwire.maillog.records import Attempt

SLACK_NS = 5_000_000_000  # clock difference tolerated between log host and capture host
DEFAULT_SPAN_NS = 600_000_000_000  # an attempt without delays: look back 10 minutes at most
_QUEUED = re.compile(r"queued as ([0-9A-Za-z._-]{4,})")


@dataclass
class Match:
    attempt: Attempt
    session: SessionFact
    method: str  # message_id | remote_queue_id | recipient | ip_time

    def to_json(self) -> dict[str, Any]:
        a, s = self.attempt, self.session
        return {
            "attempt": {
                "file": a.file,
                "line": a.line,
                "time": a.time.isoformat().replace("+00:00", "Z"),
                "queue_id": a.queue_id,
                "recipient": a.recipient,
                "outcome": a.outcome,
                "remote_ip": a.remote_ip,
            },
            "session": {
                "capture": s.capture,
                "conn_id": s.conn_id,
                "client": f"{s.client}:{s.client_port}",
                "server": f"{s.server}:{s.server_port}",
                "outcome": s.outcome,
                "first_frame": s.first_frame,
            },
            "method": self.method,
        }


def _span_ns(a: Attempt) -> int:
    if a.delays is not None:
        # conn setup + transmission; queue wait (a, b) happened before any connection.
        return int((a.delays[2] + a.delays[3]) * 1e9) + SLACK_NS
    if a.delay is not None:
        return int(a.delay * 1e9) + SLACK_NS
    return DEFAULT_SPAN_NS


def _norm(x: str | None) -> str:
    return (x or "").strip().strip("<>").lower()


def clock_offset_ns(attempts: list[Attempt], sessions: list[SessionFact]) -> int | None:
    """How far the capture host's clock is ahead of the log host's, from attempts and sessions
    that share an identifier (Message-ID or recipient, same remote IP) whatever their times: the
    median of (session end - attempt logged). ``None`` without such pairs: timing alone cannot
    say which session was which attempt."""
    by_key: dict[tuple[str, str], list[int]] = {}
    for s in sessions:
        for ident in [*(f"m:{_norm(m)}" for m in s.message_ids), *(f"r:{_norm(r)}" for r in s.recipients)]:
            by_key.setdefault((s.server, ident), []).append(s.end_ns)
    deltas: list[int] = []
    for a in attempts:
        if not a.remote_ip or a.outcome in ("suppressed", "expired"):
            continue
        end = int(a.time.timestamp() * 1e9)
        for ident in (f"m:{_norm(a.message_id)}", f"r:{_norm(a.recipient)}"):
            ends = by_key.get((a.remote_ip, ident))
            if ends and ident[2:]:
                deltas.append(min(ends, key=lambda e: abs(e - end)) - end)
                break
    if not deltas:
        return None
    deltas.sort()
    return deltas[len(deltas) // 2]


def correlate(attempts: list[Attempt], sessions: list[SessionFact], offset_ns: int = 0) -> list[Match]:
    """One match per (attempt, capture) where a session fits; each session used at most once per
    attempt outcome line. ``offset_ns`` is added to the log's times (capture clock - log clock)."""
    by_server: dict[str, list[SessionFact]] = {}
    for s in sessions:
        by_server.setdefault(s.server, []).append(s)
    out: list[Match] = []
    used: set[tuple[str, int]] = set()
    for a in attempts:
        if a.outcome in ("suppressed", "expired") or not a.remote_ip:
            continue
        port = a.remote_port or 25
        end = int(a.time.timestamp() * 1e9) + offset_ns
        start = end - _span_ns(a)
        cands = [
            s
            for s in by_server.get(a.remote_ip, [])
            if s.server_port == port and s.start_ns <= end + SLACK_NS and s.end_ns >= start - SLACK_NS
        ]
        per_capture: dict[str, list[SessionFact]] = {}
        for s in cands:
            per_capture.setdefault(s.capture, []).append(s)
        for cap, group in per_capture.items():
            best, method = _pick(a, [s for s in group if (s.capture, s.conn_id) not in used] or group, end)
            used.add((cap, best.conn_id))
            out.append(Match(a, best, method))
    return out


def _pick(a: Attempt, group: list[SessionFact], end: int) -> tuple[SessionFact, str]:
    mid = _norm(a.message_id)
    if mid:
        hit = [s for s in group if mid in {_norm(m) for m in s.message_ids}]
        if hit:
            return hit[0], "message_id"
    # The remote's queue id, echoed in its 250 reply ("queued as ABC123"), appears in our log's
    # reply text too.
    qid = _QUEUED.search(a.reply_text or "")
    if qid:
        hit = [
            s
            for s in group
            if any((m := _QUEUED.search(t)) and m.group(1) == qid.group(1) for t in s.reply_texts)
        ]
        if hit:
            return hit[0], "remote_queue_id"
    rcpt = _norm(a.recipient)
    if rcpt:
        hit = [s for s in group if rcpt in {_norm(r) for r in s.recipients}]
        if hit:
            return min(hit, key=lambda s: abs(s.end_ns - end)), "recipient"
    return min(group, key=lambda s: abs(s.end_ns - end)), "ip_time"


__all__ = ["Match", "clock_offset_ns", "correlate"]

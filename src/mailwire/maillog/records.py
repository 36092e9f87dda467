"""Records of the mail-log stage: one delivery attempt, one skipped line, the triage result.

Owns the vocabulary the later stages (diagnose, report) code against. Knows nothing about log
formats (see ``headers``, ``postfix``, ``exim``, ``sendmail``) or about verdict rules (``triage``).

Outcomes (per attempt), in the issue's words:

``delivered``  the remote accepted the message (2xx after end of data)
``rejected``   the remote answered 5xx (even where Postfix logs ``status=deferred``)
``deferred``   the remote answered 4xx
``network``    no SMTP reply: connect timeout/refused/unreachable, conversation timeout, lost connection
``dns``        MX/A lookup failed
``tls``        STARTTLS / handshake / certificate failure
``local``      our own configuration or resources (queue file, transport, IPv6 without a route)
``suppressed`` the MTA did not connect because of an earlier failure (never network evidence)
``expired``    the message gave up after its queue lifetime (no connection)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailwire import jsonout

SCHEMA = "mailwire.logs/1"

OUTCOMES = ("delivered", "rejected", "deferred", "network", "dns", "tls", "local", "suppressed", "expired")
# Outcomes that stand for a connection the MTA really tried (suppressed/expired made none).
TRIED = frozenset(("delivered", "rejected", "deferred", "network", "dns", "tls", "local"))
CATEGORIES = (
    "reputation",
    "blocklist",
    "rate_limit",
    "greylist",
    "policy",
    "auth",
    "tls_policy",
    "mailbox",
    "content",
    "server_busy",
    "other",
)
STAGES = ("connect", "greeting", "helo", "starttls", "mail", "rcpt", "data", "body", "dot", "rset", "quit")
VERDICTS = (
    "reputation",
    "blocklist",
    "rate_limit",
    "greylist",
    "network_path",
    "remote_outage",
    "local_config",
    "healthy",
)


MessageState = list[str | int | None]


def message_state(table: dict[str, MessageState], key: str, width: int, cap: int) -> MessageState:
    """The per-message slot for ``key`` (created with ``width`` empty fields). Bounded: past ``cap``
    messages the oldest is forgotten, so a log of any length keeps memory flat."""
    st = table.get(key)
    if st is None:
        if len(table) >= cap:
            del table[next(iter(table))]
        st = [None] * width
        table[key] = st
    return st


@dataclass(slots=True)
class Attempt:
    """One try to hand one recipient to one remote server (or one synthetic skip/expiry)."""

    time: datetime  # aware, UTC
    file: str
    line: int
    mta: str  # postfix | exim | sendmail
    outcome: str
    queue_id: str | None = None
    message_id: str | None = None
    sender: str | None = None
    recipient: str | None = None
    domain: str | None = None
    orig_recipient: str | None = None
    relay_host: str | None = None
    remote_ip: str | None = None
    remote_port: int | None = None
    mx_preference: int | None = None  # not written by Postfix/Exim/Sendmail logs: stays None there
    size: int | None = None
    delay: float | None = None
    delays: tuple[float, float, float, float] | None = None
    dsn: str | None = None
    mta_action: str | None = None  # what the MTA did: sent, deferred, bounced, expired, info …
    reply_code: int | None = None
    enhanced_code: str | None = None
    reply_text: str | None = None
    reply_command: str | None = None
    kind: str | None = None  # network/dns/tls/local detail, e.g. connect_timeout
    stage: str | None = None
    category: str | None = None  # sub-category of a 4xx/5xx reply text
    provider: str | None = None
    blocklist: str | None = None
    final: bool = True  # False: a non-final MX host (Postfix info line, Exim host line)
    possible_duplicate: bool = False
    conn_use: int | None = None
    logging_host: str | None = None
    program: str | None = None
    pid: int | None = None
    reason: str | None = None  # the MTA's reason text as logged
    raw: str | None = None  # the log line, kept for failures only (evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "file": self.file,
            "line": self.line,
            "mta": self.mta,
            "outcome": self.outcome,
            "kind": self.kind,
            "stage": self.stage,
            "category": self.category,
            "provider": self.provider,
            "blocklist": self.blocklist,
            "queue_id": self.queue_id,
            "message_id": self.message_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "domain": self.domain,
            "orig_recipient": self.orig_recipient,
            "relay_host": self.relay_host,
            "remote_ip": self.remote_ip,
            "remote_port": self.remote_port,
            "mx_preference": self.mx_preference,
            "size": self.size,
            "delay": self.delay,
            "delays": list(self.delays) if self.delays is not None else None,
            "dsn": self.dsn,
            "mta_action": self.mta_action,
            "reply_code": self.reply_code,
            "enhanced_code": self.enhanced_code,
            "reply_text": self.reply_text,
            "reply_command": self.reply_command,
            "final": self.final,
            "possible_duplicate": self.possible_duplicate,
            "conn_use": self.conn_use,
            "logging_host": self.logging_host,
            "program": self.program,
            "pid": self.pid,
            "reason": self.reason,
        }


@dataclass(slots=True)
class SkippedLine:
    """A line that was not analysed: garbage (no known header) or an unparsed delivery line."""

    file: str
    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


@dataclass(slots=True)
class InputStats:
    """What was read from one input."""

    file: str
    lines: int = 0
    parsed: int = 0  # lines with a recognised header
    ignored: int = 0  # recognised header, nothing for delivery triage (smtpd, cleanup, …)
    garbage: int = 0  # no recognised header, binary, over-long
    unparsed_delivery: int = 0  # looked like a delivery record, but no attempt came out
    attempts: int = 0
    error: str | None = None  # the input could not be read (further) — message names file and line

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "lines": self.lines,
            "parsed": self.parsed,
            "ignored": self.ignored,
            "garbage": self.garbage,
            "unparsed_delivery": self.unparsed_delivery,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass(slots=True)
class Evidence:
    file: str
    line: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "text": self.text}


@dataclass(slots=True)
class Verdict:
    """A conclusion about one destination (domain, MX host or IP) or about our own side."""

    scope: str  # domain | mx | ip | sender
    key: str
    verdict: str
    summary: str
    next_step: str
    confidence: float  # share of the failures that support the verdict
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "key": self.key,
            "verdict": self.verdict,
            "summary": self.summary,
            "next_step": self.next_step,
            "confidence": round(self.confidence, 3),
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(slots=True)
class Destination:
    """Per domain / MX host / IP: outcome mix, failures over time, intermittency, stages, verdict."""

    scope: str  # domain | mx | ip
    key: str
    attempts: int  # tries (suppressed and expired not counted)
    outcomes: dict[str, int]
    failures: int
    failure_rate: float
    kinds: dict[str, int]  # network/dns/tls/local kinds
    stages: dict[str, int]  # stage of network failures
    categories: dict[str, int]  # reply sub-categories of 4xx/5xx
    buckets_total: list[int]
    buckets_failed: list[int]
    intermittent: bool
    mixed_windows: int  # hours with both a delivery and a failure
    size_dependent: bool
    first: datetime | None
    last: datetime | None
    verdict: str
    domains: list[str] = field(default_factory=list)  # for mx/ip scopes: the domains routed there
    providers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "key": self.key,
            "attempts": self.attempts,
            "outcomes": self.outcomes,
            "failures": self.failures,
            "failure_rate": round(self.failure_rate, 4),
            "kinds": self.kinds,
            "stages": self.stages,
            "categories": self.categories,
            "buckets": {"total": self.buckets_total, "failed": self.buckets_failed},
            "intermittent": self.intermittent,
            "mixed_windows": self.mixed_windows,
            "size_dependent": self.size_dependent,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "verdict": self.verdict,
            "domains": self.domains,
            "providers": self.providers,
        }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class LogTriage:
    """Everything ``mailwire logs`` found; ``to_json()`` is the documented, versioned output."""

    attempts: list[Attempt]
    destinations: list[Destination]
    verdicts: list[Verdict]
    skipped: list[SkippedLine]
    inputs: list[InputStats]
    bucket_start: datetime | None = None
    bucket_seconds: int = 3600
    skipped_total: int = 0  # may exceed len(skipped): the list keeps the first lines only

    @property
    def nothing_read(self) -> bool:
        """No input could be read at all (every one failed before its first line): ``logs`` exits 2."""
        return all(i.error and not i.lines for i in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        totals: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for a in self.attempts:
            totals[a.outcome] += 1
        return {
            "schema": SCHEMA,
            "inputs": [i.to_dict() for i in self.inputs],
            "totals": {
                "lines": sum(i.lines for i in self.inputs),
                "garbage": sum(i.garbage for i in self.inputs),
                "ignored": sum(i.ignored for i in self.inputs),
                "unparsed_delivery": sum(i.unparsed_delivery for i in self.inputs),
                "attempts": len(self.attempts),
                "outcomes": totals,
            },
            "buckets": {"start": _iso(self.bucket_start), "seconds": self.bucket_seconds},
            "attempts": [a.to_dict() for a in self.attempts],
            "destinations": [d.to_dict() for d in self.destinations],
            "verdicts": [v.to_dict() for v in self.verdicts],
            "skipped": {"total": self.skipped_total, "lines": [s.to_dict() for s in self.skipped]},
        }

    def to_json(self) -> str:
        """The document as indented JSON text (:mod:`mailwire.jsonout`)."""
        return jsonout.dumps(self.to_dict())

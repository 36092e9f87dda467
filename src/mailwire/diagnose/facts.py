"""The facts the diagnosis rules reason over, in one small vocabulary per source.

Each stage has its own rich result (``LogTriage``, the analyze result, the compare result); the
rules need only a few facts from each. This module holds those facts and nothing else, so a rule
reads like the sentence it checks ("a hop lost only large segments") and can be tested with facts
built by hand. ``diagnose.adapt`` fills them from the stages' results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailwire.maillog.records import LogTriage


@dataclass
class FrameRef:
    """A frame in a capture, with what it shows."""

    capture: str
    frame: int
    text: str


@dataclass
class SessionFact:
    """One SMTP session (or a bare TCP connection to port 25) seen in one capture."""

    capture: str  # the capture file
    point: str  # the capture point's short name (the file's stem: "sender", "edge")
    conn_id: int
    client: str
    client_port: int
    server: str
    server_port: int
    start_ns: int
    end_ns: int
    outcome: str  # analyze's verdict vocabulary: delivered, rejected, deferred, path_loss_timeout …
    category: str | None = None  # reply sub-category for rejected/deferred
    summary: str = ""
    confidence: float = 0.5
    evidence: list[FrameRef] = field(default_factory=list)
    middlebox_suspected: bool = False  # for resets: TTL / IP id unlike the peer's own packets
    rst_from: str | None = None  # "client" | "server" for resets
    large_lost: bool = False  # the unacknowledged segments were full-size ones
    retransmissions: int = 0
    first_frame: int | None = None
    last_frame: int | None = None
    queue_ids: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    reply_texts: list[str] = field(default_factory=list)
    transcript: list[tuple[int, int, str, str]] = field(default_factory=list)  # (frame, ts_ns, dir, line)
    raw: Any = None  # the stage's own record, for the report


@dataclass
class CaptureFact:
    """Capture-level facts from analyze: what the capture says as a whole."""

    capture: str
    point: str
    sessions: int
    outcomes: dict[str, int]
    size_signature: bool = False  # only full-size segments lost, small ones passed
    icmp_frag_needed: bool = False
    findings: list[str] = field(default_factory=list)  # sentences from analyze's findings
    next_steps: list[str] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)  # data-quality warnings (capture loss, TSO …)


@dataclass
class HopFact:
    """Between two capture points, one direction-agnostic verdict from compare."""

    upstream: str  # capture point names
    downstream: str
    verdict: (
        str  # no_loss, size_dependent_loss, random_loss, directional_loss, injected_packets, capture_loss
    )
    summary: str = ""
    loss_rate: float = 0.0
    lost_packets: int = 0
    matched_packets: int = 0
    injected: int = 0
    lost_small: int = 0  # lost packets under 1000 bytes
    lost_large: int = 0  # lost packets of 1000 bytes or more
    sent_large: int = 0
    icmp_frag_needed: bool = False
    evidence: list[FrameRef] = field(default_factory=list)
    raw: Any = None


@dataclass
class Facts:
    """Everything the rules may look at."""

    logs: LogTriage | None = None
    log_paths: list[str] = field(default_factory=list)
    captures: list[CaptureFact] = field(default_factory=list)
    sessions: list[SessionFact] = field(default_factory=list)
    hops: list[HopFact] = field(default_factory=list)
    # Log attempt (file, line) -> sessions it was correlated with, filled by ``correlate``.
    matches: list[tuple[Any, SessionFact]] = field(default_factory=list)

    def failing_sessions(self) -> list[SessionFact]:
        return [s for s in self.sessions if s.outcome not in ("delivered", "incomplete")]


__all__ = ["CaptureFact", "Facts", "FrameRef", "HopFact", "SessionFact"]

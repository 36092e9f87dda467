"""The records ``diagnose`` produces: conclusions with their evidence, and the whole diagnosis.

These are plain dataclasses with a stable JSON form (``to_json``), documented by
``mailwire/schemas/diagnose.schema.json``. They know nothing about how they are rendered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_ID = "mailwire.diagnose/1"

CAUSES = (
    "path_loss_size_dependent",
    "path_loss_random",
    "middlebox_reset",
    "receiver_stall",
    "reputation",
    "blocklist",
    "rate_limit",
    "greylist",
    "remote_policy",
    "remote_outage",
    "local_config",
    "healthy",
    "undetermined",
)


@dataclass
class Evidence:
    """One fact a conclusion rests on, with where to find it."""

    kind: str  # "log" | "frame" | "hop" | "session" | "stat"
    text: str  # what it shows, in words
    source: str = ""  # file (capture or log) the fact comes from
    ref: int | None = None  # Wireshark frame number or log line number
    filter: str = ""  # Wireshark display filter, for frames / sessions


@dataclass
class Conclusion:
    """One candidate root cause, ranked by ``confidence``."""

    cause: str  # one of CAUSES
    summary: str  # the sentence a person would write in a ticket
    confidence: float  # 0..1
    between: list[str] = field(default_factory=list)  # the two points (captures / hosts) it lies between
    evidence: list[Evidence] = field(default_factory=list)
    next_step: str = ""
    rule: str = ""  # the rule that concluded it
    # When the evidence cannot separate this cause from another: which one, and what would.
    alternative: str = ""
    would_separate: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["location"] = {"between": d.pop("between")}
        d["confidence"] = round(float(self.confidence), 3)
        return d


@dataclass
class CitedSession:
    """A session the report shows in detail (ladder, graph, Wireshark filter)."""

    capture: str
    conn_id: int
    client: str
    client_port: int
    server: str
    server_port: int
    outcome: str
    summary: str
    filter: str
    first_frame: int | None = None
    last_frame: int | None = None
    attempt: str = ""  # the log attempt it was correlated with (queue id / recipient), if any


@dataclass
class Diagnosis:
    """Everything ``mailwire diagnose`` says, in order of importance."""

    logs: list[str]
    captures: list[str]
    conclusions: list[Conclusion]
    sessions: list[CitedSession] = field(default_factory=list)
    correlations: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "skipped: why"
    log_verdicts: list[dict[str, Any]] = field(default_factory=list)  # the log triage's own verdicts
    hops: list[dict[str, Any]] = field(default_factory=list)  # compare's per-hop verdicts
    extracts: list[dict[str, Any]] = field(default_factory=list)  # --extract outputs

    @property
    def top(self) -> Conclusion | None:
        return self.conclusions[0] if self.conclusions else None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "inputs": {"logs": list(self.logs), "captures": list(self.captures)},
            "conclusions": [c.to_json() for c in self.conclusions],
            "sessions": [asdict(s) for s in self.sessions],
            "correlations": list(self.correlations),
            "log_verdicts": list(self.log_verdicts),
            "hops": list(self.hops),
            "extracts": list(self.extracts),
            "warnings": list(self.warnings),
            "stages": dict(self.stages),
        }


__all__ = ["CAUSES", "SCHEMA_ID", "CitedSession", "Conclusion", "Diagnosis", "Evidence"]

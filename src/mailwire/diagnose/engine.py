"""``mailwire diagnose``: run what the inputs allow, gather the facts, run the rules.

Theory of operation
-------------------
Logs go to the log triage; each capture to the capture analysis; two or more captures (in path
order, the sender's first) to the comparison. Each stage that fails on its input is reported in
``stages`` / ``warnings`` and the others still run: a diagnosis on partial evidence is better
than none, and it says what it lacked. The stages' results become :class:`Facts` (``adapt``),
log attempts are joined to captured sessions (``correlate``), and the rules rank conclusions.

This module does no rendering; ``report`` turns a :class:`DiagnoseRun` into terminal output,
JSON and HTML.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailwire.diagnose.correlate import SLACK_NS, Match, clock_offset_ns, correlate
from mailwire.diagnose.facts import Facts, SessionFact
from mailwire.diagnose.model import CitedSession, Conclusion, Diagnosis, Evidence
from mailwire.diagnose.rules import run_rules
from mailwire.maillog.records import LogTriage
from mailwire.report.wireshark import connection_filter

MAX_CITED = 12


@dataclass
class DiagnoseRun:
    """The diagnosis plus everything the reports draw from."""

    diagnosis: Diagnosis
    facts: Facts
    triage: LogTriage | None = None
    analyses: dict[str, Any] = field(default_factory=dict)  # capture path -> analyze result
    comparison: Any = None
    matches: list[Match] = field(default_factory=list)
    cited: list[SessionFact] = field(default_factory=list)
    readable_inputs: int = 0  # logs and captures that could be read at all (empty but valid counts)

    def rereadable(self, capture: str) -> bool:
        """Whether the reports may read ``capture`` again (graphs, extracts): a file the analysis
        decoded frames from (stdin was consumed; an unreadable file stays unreadable)."""
        a = self.analyses.get(capture)
        return capture != "-" and a is not None and getattr(a, "frames", 0) > 0 and Path(capture).is_file()


def _run_logs(logs: Sequence[str], facts: Facts, d: Diagnosis) -> LogTriage | None:
    from mailwire.maillog import triage_logs

    try:
        t = triage_logs(list(logs))
    except Exception as exc:  # a stage's failure must not hide what the other inputs show
        d.stages["logs"] = f"failed: {type(exc).__name__}: {exc}"
        d.warnings.append(f"log triage failed: {exc}")
        return None
    facts.logs = t
    facts.log_paths = list(logs)
    d.log_verdicts = [v.to_dict() for v in t.verdicts]
    tried = sum(a.outcome not in ("suppressed", "expired") for a in t.attempts)
    d.stages["logs"] = f"ran: {len(t.attempts)} attempts ({tried} made a connection)"
    for i in t.inputs:
        if i.error:
            d.warnings.append(f"{i.file}: {i.error}")
        if i.garbage:
            d.warnings.append(f"{i.file}: {i.garbage} lines without a recognised log header were skipped")
        if i.unparsed_delivery:
            d.warnings.append(f"{i.file}: {i.unparsed_delivery} delivery-like lines could not be parsed")
    return t


def _relevance(s: SessionFact, top: Conclusion | None) -> tuple[int, int]:
    """Sort key for citing sessions: those the top conclusion rests on first, then failures."""
    cited = 0
    if top is not None:
        for e in top.evidence:
            if (
                e.source == s.capture
                and e.ref is not None
                and s.first_frame is not None
                and s.first_frame <= e.ref <= (s.last_frame or e.ref)
            ):
                cited = -1
                break
    return (cited, 0 if s.outcome != "delivered" else 1)


def _cite(facts: Facts, top: Conclusion | None) -> list[SessionFact]:
    failing = [s for s in facts.sessions if s.outcome not in ("delivered", "incomplete")]
    pool = failing or (
        [s for s in facts.sessions if s.retransmissions] if top and top.cause != "healthy" else []
    )
    return sorted(pool, key=lambda s: _relevance(s, top))[:MAX_CITED]


def _add_filters(c: Conclusion, sessions: list[SessionFact]) -> None:
    """Give frame evidence that has no filter yet (e.g. compare's) the display filter of its
    connection -- only when exactly one session's frame range holds the frame: concurrent
    sessions overlap, and a wrong filter is worse than none."""
    for e in c.evidence:
        if e.filter or e.kind not in ("frame", "session") or e.ref is None:
            continue
        owners = [
            s
            for s in sessions
            if s.capture == e.source
            and s.first_frame is not None
            and s.first_frame <= e.ref <= (s.last_frame or e.ref)
        ]
        if len(owners) == 1:
            s = owners[0]
            e.filter = connection_filter(s.client, s.client_port, s.server, s.server_port)


def _spool_stdin() -> str:
    """Copy stdin to a private temporary file (removed at exit) named ``stdin``."""
    tmp = tempfile.mkdtemp(prefix="mailwire-stdin-")
    atexit.register(shutil.rmtree, tmp, True)
    path = Path(tmp) / "stdin"
    with path.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return str(path)


def run_diagnosis(
    logs: Sequence[str] = (),
    captures: Sequence[str] = (),
    *,
    status: Callable[[str], None] | None = None,
    jobs: int | None = None,
) -> DiagnoseRun:
    """Diagnose from any mix of logs and captures (captures in path order, the sender's first).

    ``status`` is told what is being done (for a progress line on large inputs); ``jobs`` is how
    many captures are analysed at once (:mod:`mailwire.workers`)."""
    say = status or (lambda _msg: None)
    facts = Facts()
    if "-" in captures:
        # A capture on stdin is read by the analysis, the comparison and the reports: keep it.
        stdin_copy = _spool_stdin()
        captures = [stdin_copy if c == "-" else str(c) for c in captures]
    d = Diagnosis(logs=[str(p) for p in logs], captures=[str(p) for p in captures], conclusions=[])
    if logs:
        say(f"reading {len(logs)} log(s)")
    triage = _run_logs(logs, facts, d) if logs else None
    if not logs:
        d.stages["logs"] = "skipped: no --log given"
    readable = sum(i.error is None for i in triage.inputs) if triage is not None else 0
    run = DiagnoseRun(diagnosis=d, facts=facts, triage=triage, readable_inputs=readable)
    if captures:
        from mailwire.diagnose.adapt import run_captures

        run_captures([str(Path(c)) for c in captures], run, say, jobs=jobs)
    else:
        d.stages["analyze"] = "skipped: no capture given"
    if triage is not None and facts.sessions:
        offset = clock_offset_ns(triage.attempts, facts.sessions) or 0
        if abs(offset) <= SLACK_NS:
            offset = 0
        else:
            d.warnings.append(
                f"the capture host's clock is {offset / 1e9:+.1f} s off the log host's (from sessions and "
                f"log attempts of the same messages); log times shifted to match"
            )
        run.matches = correlate(triage.attempts, facts.sessions, offset)
        facts.matches = [(m.attempt, m.session) for m in run.matches]
        d.correlations = [m.to_json() for m in run.matches]
    d.conclusions = run_rules(facts)
    top = d.top
    run.cited = _cite(facts, top)
    attempt_of = {(m.session.capture, m.session.conn_id): m.attempt for m in run.matches}
    for s in run.cited:
        a = attempt_of.get((s.capture, s.conn_id))
        d.sessions.append(
            CitedSession(
                capture=s.capture,
                conn_id=s.conn_id,
                client=s.client,
                client_port=s.client_port,
                server=s.server,
                server_port=s.server_port,
                outcome=s.outcome,
                summary=s.summary,
                filter=connection_filter(s.client, s.client_port, s.server, s.server_port),
                first_frame=s.first_frame,
                last_frame=s.last_frame,
                attempt=(
                    f"{a.queue_id or ''} {a.recipient or ''} ({a.file} line {a.line})".strip() if a else ""
                ),
            )
        )
    for c in d.conclusions:
        _add_filters(c, facts.sessions)
    if top is not None and triage is not None and top.cause != "healthy":
        # The log's own verdict leads the evidence: it is what a log-only diagnosis rests on.
        lead = [Evidence("log", f"log triage verdict {v.verdict} ({v.scope} {v.key}): {v.summary}") for v in
                triage.verdicts[:1] if v.verdict != "healthy"]  # fmt: skip
        top.evidence[:0] = lead
    if top is not None and run.matches and top.cause != "healthy":
        failing = [m for m in run.matches if m.session.outcome not in ("delivered", "incomplete")]
        for m in failing[:3]:
            top.evidence.append(
                Evidence(
                    "log",
                    f"log attempt {m.attempt.queue_id or ''} to {m.attempt.recipient or '?'} "
                    f"({m.attempt.outcome}) is the captured session "
                    f"{m.session.client}:{m.session.client_port} "
                    f"in {Path(m.session.capture).name} (matched by {m.method.replace('_', ' ')})",
                    m.attempt.file,
                    m.attempt.line,
                )
            )
    return run


__all__ = ["DiagnoseRun", "run_diagnosis"]

"""Mail-log triage: MTA log lines → delivery attempts → per-destination verdicts.

Public API (the diagnose stage calls this)::

    triage_logs(paths, since=None, until=None, domain=None) -> LogTriage

``LogTriage`` carries ``attempts`` (each with ``remote_ip``, ``remote_port``, ``time`` as an
aware UTC datetime, ``queue_id``, ``message_id`` — the keys to join captured sessions),
``destinations``, ``verdicts``, ``skipped`` and ``to_json()``.

Modules: ``sources`` (files, compression, stdin, journald export) → ``headers`` (line headers,
year inference) → ``reader`` (the one pass, dispatch by program) → ``postfix``/``exim``/
``sendmail`` (delivery records) → ``classify`` (outcome, stage; sub-category from ``mailwire.signatures``)
→ ``triage`` (destinations, verdicts) → ``render`` (terminal summary).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from pathlib import Path

from mailwire.heap import paused
from mailwire.maillog.headers import parse_tz
from mailwire.maillog.reader import LogReader
from mailwire.maillog.records import (
    SCHEMA,
    Attempt,
    Destination,
    Evidence,
    InputStats,
    LogTriage,
    SkippedLine,
    Verdict,
)
from mailwire.maillog.triage import as_utc, select, triage

# --year bounds: mail logs are from the Unix era; datetime stops at 9999
YEAR_MIN, YEAR_MAX = 1970, 9999


def triage_logs(
    paths: Sequence[str | Path] | str | Path,
    since: datetime | None = None,
    until: datetime | None = None,
    domain: str | None = None,
    *,
    tz: str | None = None,
    year: int | None = None,
) -> LogTriage:
    """Read the logs (``"-"`` = stdin), classify every delivery attempt and triage destinations.

    ``since``/``until`` (naive = UTC) bound attempt times, ``domain`` keeps one recipient domain
    (and its subdomains). Timestamps without a zone are read in ``tz`` (default: this machine's
    zone); BSD syslog stamps without a year get ``year`` or the file's modification year.
    """
    if year is not None and not YEAR_MIN <= year <= YEAR_MAX:
        raise ValueError(f"year {year} is out of range ({YEAR_MIN}..{YEAR_MAX})")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    reader = LogReader(parse_tz(tz), year)
    with paused():  # many small acyclic records: the cyclic collector only slows this down
        reader.read([str(p) for p in paths])
    attempts = select(reader.attempts, as_utc(since), as_utc(until), domain)
    attempts.sort(key=attrgetter("time"))  # stable: equal times keep file and line order
    dests, verdicts, start, width = triage(attempts)
    return LogTriage(
        attempts=attempts,
        destinations=dests,
        verdicts=verdicts,
        skipped=reader.skipped,
        inputs=reader.inputs,
        bucket_start=start,
        bucket_seconds=width,
        skipped_total=reader.skipped_total,
    )


__all__ = [
    "SCHEMA",
    "Attempt",
    "Destination",
    "Evidence",
    "InputStats",
    "LogTriage",
    "SkippedLine",
    "Verdict",
    "triage_logs",
]

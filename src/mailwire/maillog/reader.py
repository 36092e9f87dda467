"""The one pass over the inputs: lines → headers → MTA parsers → attempts, skipped lines counted.

Owns the dispatch by program tag (``postfix/smtp``, ``postfix/relay/smtp``, ``postfix-out/smtp``,
``exim``/``exim4``, ``sendmail``/``sm-mta``/``sm-msp-queue``, Exim's own main log) and the
bookkeeping of what was skipped (garbage lines and unparsed delivery-looking lines, with file and
line number). Streams: nothing but the attempts and a few bounded per-message tables is kept.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from mailwire.maillog.exim import EximParser
from mailwire.maillog.headers import HeaderParser, Split, journal_fields
from mailwire.maillog.postfix import DAEMONS, KEEP, PostfixParser
from mailwire.maillog.records import Attempt, InputStats, SkippedLine
from mailwire.maillog.sendmail import SendmailParser
from mailwire.maillog.sources import (
    is_export,
    iter_export,
    iter_line_blocks,
    open_binary,
    order_inputs,
    peek_start,
)

MAX_SKIPPED = 1000  # skipped lines listed with their numbers; beyond that only counted

_SENDMAIL_PROGS = frozenset(("sendmail", "sm-mta", "sm-msp-queue", "sm-mta-queue"))
_EXIM_PROGS = frozenset(("exim", "exim4", "exim5"))

POSTFIX, EXIM, SENDMAIL, OTHER = range(4)


def program_family(prog: str) -> tuple[int, str]:
    """(family, daemon) of a syslog program tag."""
    if "/" in prog:
        name, daemon = prog.rsplit("/", 1)
        if daemon in DAEMONS and (
            name.startswith("postfix")
            or "postfix" in name
            or daemon in ("smtp", "qmgr", "cleanup", "lmtp", "error")
        ):
            return POSTFIX, daemon
        return OTHER, daemon
    if prog in _EXIM_PROGS:
        return EXIM, prog
    if prog in _SENDMAIL_PROGS:
        return SENDMAIL, prog
    return OTHER, prog


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class LogReader:
    """Reads inputs one after the other into ``attempts``; shared MTA state spans rotated files."""

    def __init__(self, tz: tzinfo | None, year: int | None = None) -> None:
        self.tz = tz
        self.year = year
        self.attempts: list[Attempt] = []
        self.inputs: list[InputStats] = []
        self.skipped: list[SkippedLine] = []
        self.skipped_total = 0
        self.postfix = PostfixParser(self.attempts)
        self.exim = EximParser(self.attempts)
        self.sendmail = SendmailParser(self.attempts)
        self._families: dict[str, tuple[int, str]] = {}
        self._hp: HeaderParser | None = None
        self._stamp: tuple[int, str, int] = (0, "", 0)

    def _when(self) -> datetime:
        """Time of the line being dispatched (parsers call it only for lines they keep)."""
        assert self._hp is not None
        return self._hp.when(*self._stamp)

    def _skip(self, file: str, line: int, reason: str) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append(SkippedLine(file, line, reason))

    def read(self, paths: Sequence[str]) -> None:
        for path in order_inputs(paths):
            self.read_one(path)
        self.postfix.flush()
        self.exim.flush()
        self.sendmail.flush()
        # info lines still waiting at the end of an input were emitted only now: count per file here
        per_file = Counter(a.file for a in self.attempts)
        for stats in self.inputs:
            stats.attempts = per_file.get(stats.file, 0)

    def _year_hint(self, path: str) -> tuple[int, int]:
        """(year, month) the input was last written: the file's mtime, for stdin now."""
        if self.year is not None:
            return self.year, 12
        try:
            if path == "-":
                raise OSError("stdin")
            t = datetime.fromtimestamp(os.stat(path).st_mtime, tz=UTC).astimezone(self.tz)  # None: local
        except (OSError, ValueError):
            t = datetime.now(tz=self.tz)
        return t.year, t.month

    def read_one(self, path: str) -> InputStats:
        name = "<stdin>" if path == "-" else path
        stats = InputStats(name)
        self.inputs.append(stats)
        year, month = self._year_hint(path)
        hp = HeaderParser(year, self.tz, month)
        try:
            fh = open_binary(path)
        except OSError as exc:
            stats.error = f"{name}: cannot open: {exc.strerror or exc}"
            return stats
        before = len(self.attempts)
        n = 0
        try:
            with fh:
                if is_export(peek_start(fh)):
                    for n, fields in iter_export(fh):
                        stats.lines += 1
                        sp = journal_fields(fields) if fields is not None else None
                        if sp is None:
                            stats.garbage += 1
                            self._skip(name, n, "broken journald export entry")
                            continue
                        self._dispatch(hp, stats, name, n, sp, sp[6])
                    return stats
                fams = self._families
                first = hp.first
                pf_feed = self.postfix.feed
                when = self._when
                garbage = ignored = parsed = unparsed = 0
                try:
                    for block in iter_line_blocks(fh):
                        for line in block:
                            n += 1
                            if not line:
                                if line is None:
                                    garbage += 1
                                    self._skip(name, n, f"over-long line (> {64 << 10} bytes), cut")
                                else:
                                    ignored += 1
                                continue
                            sp = first(line)
                            if sp is None:
                                sp = hp.split(line)
                                first = hp.first
                                if sp is None:
                                    garbage += 1
                                    binary = "\x00" in line or "\ufffd" in line
                                    self._skip(name, n, "binary data" if binary else "no known log header")
                                    continue
                            fam = fams.get(sp[4])
                            if fam is not None:
                                family = fam[0]
                                if family == OTHER:  # fast path: a daemon we never need
                                    parsed += 1
                                    ignored += 1
                                    continue
                                msg = sp[6]
                                if family == POSTFIX and "\x00" not in msg:  # fast path: Postfix
                                    parsed += 1
                                    self._hp = hp
                                    self._stamp = (sp[0], sp[1], sp[2])
                                    r = pf_feed(when, name, n, sp[3], sp[4], fam[1], sp[5], msg, line)
                                    if r == 0:
                                        ignored += 1
                                    elif r == 2:
                                        unparsed += 1
                                        self._skip(name, n, "delivery line not understood")
                                    continue
                            self._dispatch(hp, stats, name, n, sp, line)
                finally:
                    stats.garbage += garbage
                    stats.ignored += ignored
                    stats.parsed += parsed
                    stats.unparsed_delivery += unparsed
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            stats.error = f"{name}: line {n + 1}: read error: {exc}"
        finally:
            stats.lines = max(stats.lines, n)
            if not stats.lines and stats.error is None and path != "-" and _size(path) > 0:
                stats.error = f"{name}: nothing could be read (damaged compressed data?)"
            stats.attempts = len(self.attempts) - before
        return stats

    def _dispatch(
        self,
        hp: HeaderParser,
        stats: InputStats,
        name: str,
        n: int,
        sp: Split,
        raw: str,
    ) -> None:
        kind, ts, yr, host, prog, pid, msg = sp
        if "\x00" in msg:
            stats.garbage += 1
            self._skip(name, n, "binary data in message")
            return
        stats.parsed += 1
        fam = self._families.get(prog)
        if fam is None:
            fam = program_family(prog)
            if fam[0] == POSTFIX and fam[1] not in KEEP:
                fam = (OTHER, fam[1])
            if len(self._families) < 4096:
                self._families[prog] = fam
        family, daemon = fam
        if family == OTHER:
            stats.ignored += 1
            return
        self._hp = hp
        self._stamp = (kind, ts, yr)
        when = self._when
        if family == POSTFIX:
            r = self.postfix.feed(when, name, n, host, prog, daemon, pid, msg, raw)
        elif family == EXIM:
            r = self.exim.feed(when, name, n, host, prog, pid, msg, raw)
        else:
            r = self.sendmail.feed(when, name, n, host, prog, pid, msg, raw)
        if r == 2:
            stats.unparsed_delivery += 1
            self._skip(name, n, "delivery line not understood")
        elif r == 0:
            stats.ignored += 1


__all__ = ["LogReader", "program_family"]

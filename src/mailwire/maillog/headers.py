"""Line headers: split one log line into (time, logging host, program, pid, message).

Owns the transport formats of the reference's §1: BSD syslog (no year: inferred, Dec→Jan
rollover), RFC 3339 / journald ``short-iso``, RFC 5424, the ``YYYY Mon DD`` rsyslog template,
Exim's own main log, journald ``-o json`` (one object per line) and the Solaris ``[ID …]`` tag.
journald ``-o export`` is a block format and is read by ``sources``. Must not know what the
message means: that is ``postfix``/``exim``/``sendmail``.

Theory of operation: one ``HeaderParser`` per input keeps the little state the formats need
(year of BSD stamps, the format that matched last, so it is tried first). ``split`` returns a
tuple ``(kind, stamp, year, host, program, pid, message)``; turning the stamp into an aware UTC
datetime is deferred to ``when`` because most lines are never needed as times.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}

# kinds of stamps
BSD, ISO, YMON, EXIM, EPOCH_US = range(5)

_PROG = r"(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ?"
_BSD = re.compile(
    r"(?:<\d{1,3}>)?(?P<ts>[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d)(?:\.\d+)? (?P<host>\S+) "
    + _PROG
    + r"(?P<msg>.*)"
)
_ISO = re.compile(
    r"(?:<\d{1,3}>)?(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S+) "
    + _PROG
    + r"(?P<msg>.*)"
)
_5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<prog>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: \ufeff?(?P<msg>.*))?"
)
_YMON = re.compile(
    r"(?P<ts>\d{4} [A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<host>\S+) " + _PROG + r"(?P<msg>.*)"
)
_EXIM = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{3})?(?: [+-]\d{4})?)(?: \[(?P<pid>\d+)\])? (?P<msg>.*)"
)
_SOLARIS = re.compile(r"\[ID \d+ [^\]]+\] ")

# (kind, stamp, year, logging host, program, pid as text, message)
Split = tuple[int, str, int, str | None, str, str | None, str]


def parse_tz(name: str | None) -> tzinfo | None:
    """``None``/``"local"`` → None: this machine's zone with its DST rules, stamp by stamp (a fixed
    offset taken "now" would shift summer stamps in winter); else ``UTC``, ``+02:00`` or an IANA name."""
    if name is None or name == "local":
        return None
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", name)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return _fixed(sign * (int(m.group(2)) * 60 + int(m.group(3))))
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _fixed(minutes: int) -> tzinfo:
    from datetime import timezone

    return timezone(timedelta(minutes=minutes))


class HeaderParser:
    """Splits the lines of one input; remembers the BSD year and the last matching format."""

    def __init__(self, year: int, tz: tzinfo | None, ref_month: int = 12) -> None:
        self.year = year  # year of the most recent BSD stamp
        self.ref_month = ref_month  # month of ``year`` the input was last written (file mtime)
        self.last_month = 0
        self._mon_s = ""  # month name of the last BSD stamp and the year it was given
        self._mon_year = year
        self.tz = tz
        self._order = [self._bsd, self._iso, self._exim, self._5424, self._ymon, self._json]
        self._cache_key: tuple[int, str, int] | None = None
        self._cache_val = datetime(1970, 1, 1, tzinfo=UTC)

    # -- one function per format; each returns a Split or None --------------------------------
    def _bsd(self, line: str) -> Split | None:
        m = _BSD.match(line)
        if m is None:
            return None
        ts, host, prog, pid, msg = m.groups()
        mon = ts[:3]
        if mon == self._mon_s:  # fast path: same month as the line before
            if msg.startswith("[ID "):
                msg = _SOLARIS.sub("", msg, count=1)
            return BSD, ts, self._mon_year, host, prog, pid, msg
        month = MONTHS.get(mon)
        if month is None:
            return None
        year = self.year
        last = self.last_month
        if last:
            if month < last - 6:  # Dec → Jan: a new year began
                year += 1
                self.year = year
                self.last_month = month
            elif month > last + 6:  # a late straggler from last year after the rollover
                year -= 1
            else:
                self.last_month = month
        else:
            if month > self.ref_month:  # the first stamp lies after the file was written: last year
                year -= 1
                self.year = year
            self.last_month = month
        if self.last_month == month:
            self._mon_s, self._mon_year = mon, year
        if msg.startswith("[ID "):
            msg = _SOLARIS.sub("", msg, count=1)
        return BSD, ts, year, host, prog, pid, msg

    def _iso(self, line: str) -> Split | None:
        m = _ISO.match(line)
        if m is None:
            return None
        ts, host, prog, pid, msg = m.group("ts", "host", "prog", "pid", "msg")
        if msg.startswith("[ID "):
            msg = _SOLARIS.sub("", msg, count=1)
        return ISO, ts, 0, host, prog, pid, msg

    def _5424(self, line: str) -> Split | None:
        m = _5424.match(line)
        if m is None:
            return None
        ts, host, prog, pid, msg = m.group("ts", "host", "prog", "pid", "msg")
        if ts == "-":
            return None
        return (
            ISO,
            ts,
            0,
            None if host == "-" else host,
            prog,
            pid if pid.isdigit() else None,
            (msg or "").lstrip("\ufeff"),
        )

    def _ymon(self, line: str) -> Split | None:
        m = _YMON.match(line)
        if m is None:
            return None
        ts, host, prog, pid, msg = m.group("ts", "host", "prog", "pid", "msg")
        return YMON, ts, 0, host, prog, pid, msg

    def _exim(self, line: str) -> Split | None:
        m = _EXIM.match(line)
        if m is None:
            return None
        ts, pid, msg = m.group("ts", "pid", "msg")
        return EXIM, ts, 0, None, "exim", pid, msg

    def _json(self, line: str) -> Split | None:
        if not line.startswith("{"):
            return None
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        return journal_fields(obj)

    # -- public ------------------------------------------------------------------------------
    @property
    def first(self) -> Callable[[str], Split | None]:
        """The format that matched last (callers try it directly, then ``split``)."""
        return self._order[0]

    def split(self, line: str) -> Split | None:
        order = self._order
        first = order[0]
        r = first(line)
        if r is not None:
            return r
        for i in range(1, len(order)):
            r = order[i](line)
            if r is not None:
                order.insert(0, order.pop(i))  # try this format first from now on
                return r
        return None

    def when(self, kind: int, ts: str, year: int) -> datetime:
        """The stamp as an aware UTC datetime (naive stamps are in ``self.tz``)."""
        key = (kind, ts, year)
        if key == self._cache_key:
            return self._cache_val
        val = stamp_to_utc(kind, ts, year, self.tz)
        self._cache_key = key
        self._cache_val = val
        return val


def stamp_to_utc(kind: int, ts: str, year: int, tz: tzinfo | None) -> datetime:
    if kind == BSD:
        dt = datetime(year, MONTHS[ts[:3]], int(ts[4:6]), int(ts[7:9]), int(ts[10:12]), int(ts[13:15]))
        return _aware(dt, tz)
    if kind == ISO:
        return _aware(datetime.fromisoformat(ts), tz)
    if kind == EXIM:
        if len(ts) > 19 and ts[-5] in "+-" and ts[-6] == " ":
            return datetime.fromisoformat(ts[:-6] + ts[-5:]).astimezone(UTC)
        return _aware(datetime.fromisoformat(ts), tz)
    if kind == YMON:
        dt = datetime.strptime(ts.split(".")[0], "%Y %b %d %H:%M:%S")
        if "." in ts:
            dt = dt.replace(microsecond=int((ts.split(".")[1] + "000000")[:6]))
        return _aware(dt, tz)
    if kind == EPOCH_US:
        us = int(ts)
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    raise ValueError(f"unknown stamp kind {kind}")


def _aware(dt: datetime, tz: tzinfo | None) -> datetime:
    if dt.tzinfo is None:
        if tz is None:  # the machine's local time, DST included
            return dt.astimezone(UTC)
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def _field(obj: dict[str, Any], key: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, list):  # journald JSON writes non-UTF-8 fields as byte arrays
        try:
            return bytes(b & 0xFF for b in v if isinstance(b, int)).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    return str(v)


def journal_fields(obj: dict[str, Any]) -> Split | None:
    """A journald entry (``-o json`` object or ``-o export`` block) as a Split."""
    ts = _field(obj, "__REALTIME_TIMESTAMP") or _field(obj, "_SOURCE_REALTIME_TIMESTAMP")
    msg = _field(obj, "MESSAGE")
    if ts is None or msg is None or not ts.isdigit():
        return None
    prog = _field(obj, "SYSLOG_IDENTIFIER") or _field(obj, "_COMM") or "-"
    pid_s = _field(obj, "SYSLOG_PID") or _field(obj, "_PID")
    pid = pid_s if pid_s and pid_s.isdigit() else None
    return EPOCH_US, ts, 0, _field(obj, "_HOSTNAME"), prog, pid, msg

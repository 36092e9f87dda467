"""SMTP reply lines: parsing, multi-line assembly and RFC 3463 enhanced status codes.

Theory of operation
-------------------
A server reply is one or more lines ``NNN-text`` ending with a line ``NNN text`` (or a bare
``NNN``), RFC 5321 §4.2. :class:`ReplyAssembler` takes complete lines (already split and
bounded by the caller) and returns a :class:`Reply` once the last line arrives. A line that is
not a reply line at all is returned as an ``invalid`` marker so the caller can count it; it
never raises. Enhanced status codes (``X.Y.Z``, RFC 3463) are taken from the first line when
the class digit agrees with the reply code.

This module knows nothing about commands, sessions or TCP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailwire.spill import positional

# RFC 3463: class.subject.detail; subject and detail are 1..3 digits.
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$|[^\w.])")
_MAX_REPLY_LINES = 64  # a reply longer than this keeps its first lines only (counted)


@positional
@dataclass(slots=True)
class Reply:
    """One complete server reply."""

    code: int
    lines: list[str]  # text of each line after "NNN-" / "NNN " (continuation markers removed)
    frame: int  # Wireshark frame number carrying the end of the reply (where tshark shows it)
    ts_ns: int
    first_frame: int  # frame carrying the first line
    enhanced: str | None = None  # "5.7.1" when the reply carries an RFC 3463 code
    lines_dropped: int = 0  # lines beyond the per-reply cap

    @property
    def klass(self) -> int:
        """Reply class digit: 2 success, 3 intermediate, 4 transient, 5 permanent."""
        return self.code // 100

    @property
    def text(self) -> str:
        """All lines joined with a space (what signature matching looks at)."""
        return joined_text(self.lines)

    @property
    def last_line(self) -> str:
        """``"NNN text"`` of the last line, which is what Zeek's smtp.log calls ``last_reply``."""
        return f"{self.code} {self.lines[-1] if self.lines else ''}"

    def short(self, limit: int = 160) -> str:
        """A one-line rendering for summaries (first line, bounded)."""
        return short_line(self.code, self.lines, limit)


def joined_text(lines: Sequence[str]) -> str:
    """A reply's lines joined with a space, each stripped (:attr:`Reply.text`)."""
    return lines[0].strip() if len(lines) == 1 else " ".join(s.strip() for s in lines)


def short_line(code: int, lines: Sequence[str], limit: int = 160) -> str:
    """``"NNN first line"``, bounded (:meth:`Reply.short`)."""
    s = f"{code} {lines[0].strip() if lines else ''}".rstrip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def enhanced_code(text: str, code: int) -> str | None:
    """The RFC 3463 code at the start of ``text`` if its class agrees with ``code``."""
    m = _ENHANCED.match(text.lstrip())
    if m is None or int(m.group(1)) != code // 100:
        return None
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"


def split_reply_line(line: str) -> tuple[int, bool, str] | None:
    """``(code, is_last, text)`` for a reply line, or None when the line is not one.

    Accepts ``NNN``, ``NNN text``, ``NNN-text``; a code must be 200..599 (1xx is not used by SMTP
    but some servers send it; it is accepted with the same syntax).
    """
    if len(line) < 3 or not line[:3].isdigit() or not line[:3].isascii():
        return None
    code = int(line[:3])
    if code < 100:
        return None
    if len(line) == 3:
        return code, True, ""
    sep = line[3]
    if sep == "-":
        return code, False, line[4:]
    if sep in " \t":
        return code, True, line[4:]
    return None


@dataclass
class ReplyAssembler:
    """Collects reply lines into complete replies; bounded per reply."""

    _code: int = -1
    _lines: list[str] = field(default_factory=list)
    _first_frame: int = -1
    _dropped: int = 0

    @property
    def partial(self) -> bool:
        return self._code >= 0

    def reset(self) -> None:
        """Forget a partially received reply (after a capture gap)."""
        self._code, self._lines, self._first_frame, self._dropped = -1, [], -1, 0

    def push(self, line: str, frame: int, ts_ns: int) -> Reply | bool | None:
        """Add one line. Returns a :class:`Reply` when complete, None when more lines are needed,
        and False when the line is not a reply line (the caller counts it as invalid)."""
        parsed = split_reply_line(line)
        if parsed is None:
            return False
        code, last, text = parsed
        if self._code < 0:
            self._code, self._first_frame = code, frame
        # A continuation with another code (RFC 5321 says they agree) keeps the first code, as
        # Zeek and Wireshark do; its text is still taken.
        if len(self._lines) < _MAX_REPLY_LINES:
            self._lines.append(text)
        else:
            self._dropped += 1
        if not last:
            return None
        first = self._lines[0] if self._lines else ""
        reply = Reply(
            code=self._code,
            lines=self._lines,
            frame=frame,
            ts_ns=ts_ns,
            first_frame=self._first_frame,
            enhanced=enhanced_code(first, self._code),
            lines_dropped=self._dropped,
        )
        if reply.lines_dropped and reply.lines:
            reply.lines[-1] = text  # the last line is what ends the reply; keep it
        self.reset()
        return reply


__all__ = ["Reply", "ReplyAssembler", "enhanced_code", "joined_text", "short_line", "split_reply_line"]

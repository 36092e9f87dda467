"""The session record's compact fields read back as what was put in: transcript lines (frame,
direction, text) through the head's packed codes, and the dissector's counters through the tuple."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.smtp.machine import STAT_KEYS
from mailwire.smtp.session import TRANSCRIPT_HEAD, TRANSCRIPT_TAIL, SessionBuilder, SmtpSession

_entries = st.lists(
    st.tuples(st.integers(-1, 1 << 40), st.sampled_from(["c2s", "s2c", "-"]), st.text(max_size=20)),
    max_size=TRANSCRIPT_HEAD + TRANSCRIPT_TAIL + 50,
)


@given(_entries)
@settings(max_examples=60, deadline=None)
def test_transcript_reads_back_what_was_kept(entries: list[tuple[int, str, str]]) -> None:
    b = SessionBuilder(SmtpSession(conn_id=0))
    for frame, direction, text in entries:
        b._line(frame, direction, text)
    got = b.s.transcript()
    n = len(entries)
    assert b.s.transcript_total == n
    if n <= TRANSCRIPT_HEAD + TRANSCRIPT_TAIL:
        assert got == entries
    else:
        marker = (-1, "-", f"<{n - TRANSCRIPT_HEAD - TRANSCRIPT_TAIL} transcript lines elided>")
        assert got == [*entries[:TRANSCRIPT_HEAD], marker, *entries[-TRANSCRIPT_TAIL:]]


def test_counters_keep_their_names_and_order() -> None:
    b = SessionBuilder(SmtpSession(conn_id=0))
    assert b.s.stats == {}  # nothing counted before the session is finished
    b.feed("s2c", b"220 mx.example ESMTP\r\n", 1, 1)
    b.feed("c2s", b"EHLO relay.example\r\nNOOP\r\n", 2, 2)
    b.feed("s2c", b"250 ok\r\n", 3, 3)
    s = b.finish()
    assert list(s.stats) == list(STAT_KEYS)
    assert s.stats["commands"] == 2 and s.stats["replies"] == 2
    assert s.to_dict()["stats"] == s.stats

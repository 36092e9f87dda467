"""Hostile input: random bytes and mutated real lines never raise, every line is accounted for."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwire.maillog import triage_logs

from .conftest import FIXTURES

REAL = [
    line
    for p in sorted(FIXTURES.iterdir())
    if p.suffix not in (".tsv", ".md")
    for line in p.read_text(encoding="utf-8").splitlines()
]


def _run(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "maillog"
        p.write_bytes(data)
        t = triage_logs([p], tz="UTC", year=2024)
        s = t.inputs[0]
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        if s.error is None:
            assert s.lines == lines
        else:  # bytes that start like a compressed stream but are not one: said so, with the file name
            assert str(p) in s.error
        # every line is either parsed (used or ignored), garbage, or blank
        assert s.garbage + s.parsed <= s.lines
        assert len(t.skipped) == min(t.skipped_total, 1000)
        t.to_json()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_random_bytes(data: bytes) -> None:
    _run(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(REAL), st.integers(0, 400), st.integers(0, 400), st.text(max_size=12)),
        min_size=1,
        max_size=12,
    )
)
def test_mutated_real_lines(parts: list[tuple[str, int, int, str]]) -> None:
    """Real lines cut, spliced and salted with random text."""
    out = []
    for line, a, b, salt in parts:
        a, b = min(a, len(line)), min(b, len(line))
        out.append(line[:a] + salt + line[b:])
    _run(("\n".join(out) + "\n").encode("utf-8", "surrogatepass"))

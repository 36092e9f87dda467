"""RTT figures per connection (count, min, median, max) stay exact however the samples are
retired to disk and whatever arrives after: checked against sorting each connection's samples."""

from __future__ import annotations

import errno
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire import spill
from mailwire.tcp.rtt import R_COUNT, R_MAX, R_MID_HI, R_MID_LO, R_MIN, RttSamples


def _reference(samples: dict[int, list[int]], nconv: int) -> np.ndarray:
    out = np.zeros((nconv, 5), dtype=np.int64)
    for c, vals in samples.items():
        v = sorted(vals)
        n = len(v)
        out[c, R_COUNT], out[c, R_MIN], out[c, R_MAX] = n, v[0], v[-1]
        out[c, R_MID_LO], out[c, R_MID_HI] = v[(n - 1) // 2], v[n // 2]
    return out


# a run: chunks of (connection, sample) pairs, each followed by the connections retired then
chunk = st.tuples(
    st.lists(st.tuples(st.integers(0, 11), st.integers(1, 3_000_000_000)), max_size=30),
    st.lists(st.integers(0, 11), max_size=6, unique=True),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(chunk, max_size=8))
def test_figures_are_those_of_all_samples(run: list[tuple[list[tuple[int, int]], list[int]]]) -> None:
    r = RttSamples()
    seen: dict[int, list[int]] = {}
    try:
        for pairs, gone in run:
            if pairs:
                conv = np.array([c for c, _ in pairs], dtype=np.int64)
                val = np.array([v for _, v in pairs], dtype=np.int64)
                r.add(conv, val)
            for c, v in pairs:
                seen.setdefault(c, []).append(v)
            r.retire(np.array(gone, dtype=np.int64))
        assert np.array_equal(r.figures(12), _reference(seen, 12))
    finally:
        r.release()


def test_retired_samples_leave_memory_and_late_ones_join_them() -> None:
    r = RttSamples()
    r.add(np.array([0, 1, 0, 2]), np.array([40, 7, 10, 5]))
    assert r.retire(np.array([0, 1])) == 2
    conv, _ = r._joined()
    assert conv.tolist() == [2]  # only the open connection's sample stays in memory
    r.add(np.array([0, 0]), np.array([25, 1]))  # a late frame of connection 0
    assert r.retire(np.array([0])) == 0  # retired before: the late samples stay here
    fig = r.figures(4)
    assert fig[0].tolist() == [4, 1, 10, 25, 40]  # 1 10 25 40: the middle two are 10 and 25
    assert fig[1].tolist() == [1, 7, 7, 7, 7]
    assert fig[2].tolist() == [1, 5, 5, 5, 5]
    assert fig[3].tolist() == [0, 0, 0, 0, 0]
    r.release()


def test_a_full_disk_keeps_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(*_a: object, **_k: object) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill.tempfile, "TemporaryFile", no_room)
    r = RttSamples()
    r.add(np.array([0, 0, 0]), np.array([3, 1, 2]))
    assert r.retire(np.array([0])) == 0 and r.retired == 0
    assert r.figures(1)[0].tolist() == [3, 1, 2, 2, 3]

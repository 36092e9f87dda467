"""Zero-window probe frames per connection, gathered once for all connections, are those a scan of
the TCP stage's per-frame flags finds for each connection on its own."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.smtp.pipeline import _probes
from mailwire.tcp.analysis import Flag

ZWP = int(Flag.ZERO_WINDOW_PROBE)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from([0, ZWP, ZWP | 1, 2])), max_size=60))
def test_probes_per_connection(rows: list[tuple[int, int]]) -> None:
    frames = {
        "frame": np.arange(1, len(rows) + 1, dtype=np.int64),
        "stream": np.array([c for c, _ in rows], dtype=np.int32),
        "mailwire": np.array([f for _, f in rows], dtype=np.uint32),
    }
    got = _probes(frames)
    for conn in range(7):
        mine = (frames["stream"] == conn) & ((frames["mailwire"] & ZWP) != 0)
        want = frames["frame"][mine]
        assert np.array_equal(got.get(conn, np.zeros(0, np.int64)), want), conn
        assert conn not in got or want.size  # no empty entries
    assert _probes({}) == {}

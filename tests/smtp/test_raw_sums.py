"""The per-connection sums the verdicts read (usual TTL per direction, stream bases, highest
ACKs) come out the same however the rows arrive: in many reduces, with connections forgotten
and added again, or all at once. The reference is a plain count over every row."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.smtp.pipeline import TH_ACK, _Raw

row = st.tuples(
    st.integers(0, 5),  # connection
    st.integers(0, 1),  # key direction
    st.sampled_from([-1, 0, 52, 53, 63, 64, 128, 255]),  # TTL (-1: no IP header seen)
)


def _cols(rows: list[tuple[int, int, int]], first_frame: int) -> dict[str, np.ndarray]:
    n = len(rows)
    return {
        "frame": np.arange(first_frame, first_frame + n, dtype=np.int64),
        "ts_ns": np.arange(n, dtype=np.int64) * 1000,
        "stream": np.array([r[0] for r in rows], dtype=np.int32),
        "kdir": np.array([r[1] for r in rows], dtype=np.int8),
        "tcp_flags": np.full(n, TH_ACK, np.int16),
        "ttl": np.array([r[2] for r in rows], dtype=np.int16),
        "ip_id": np.zeros(n, np.int32),
        "payload_len": np.full(n, 100, np.int32),
        "seq": np.zeros(n, np.uint32),
        "ack": np.zeros(n, np.uint32),
    }


def _usual(rows: list[tuple[int, int, int]]) -> dict[tuple[int, int], tuple[int, int]]:
    by: dict[tuple[int, int], Counter[int]] = {}
    for conn, kd, ttl in rows:
        by.setdefault((conn, kd), Counter())[ttl] += 1
    # the most frequent TTL, the lowest of equally frequent ones (kdir 0 is the client here)
    return {k: min(cnt.items(), key=lambda tn: (-tn[1], tn[0])) for k, cnt in by.items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(row, max_size=40), min_size=1, max_size=8), st.data())
def test_usual_ttl_whatever_the_reduces(
    batches: list[list[tuple[int, int, int]]], data: st.DataObject
) -> None:
    raw = _Raw()
    frame = 1
    for rows in batches:
        if rows:
            raw.reduce(_cols(rows, frame))
            frame += len(rows)
    # connections forgotten, then all their rows again at once (as the end's revived ones)
    every = [r for rows in batches for r in rows]
    again = sorted(data.draw(st.sets(st.integers(0, 5), max_size=3)))
    raw.forget(np.array(again, dtype=np.int64))
    mine = [r for r in every if r[0] in again]
    if mine:
        raw.reduce(_cols(mine, frame))
    empty = _cols([], 0)
    empty["direction"] = np.zeros(0, np.int8)
    raw.finish(empty, {}, np.zeros(0, np.int64))
    assert raw.ttl_mode == _usual(every)

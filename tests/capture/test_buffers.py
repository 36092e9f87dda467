"""The reader's chunk buffers: two serve a capture read one table at a time, and a buffer is
reused only once no table refers to it (tables kept by the caller keep their bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mailwire.capture.read import _Buffers, iter_tables
from tests.conftest import generated_capture


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def test_a_free_buffer_too_small_is_replaced_not_kept() -> None:
    pool = _Buffers()
    first = pool.get(1000)
    assert first.shape[0] == 1 << 20  # whole MiB
    del first
    bigger = pool.get((1 << 20) + 1)
    assert bigger.shape[0] == 2 << 20
    assert [b.shape[0] for b in pool._pool] == [2 << 20]  # the small free one went
    del bigger
    again = pool.get(10)
    assert again.shape[0] == 2 << 20  # reused: nothing refers to it
    other = pool.get(10)  # ``again`` refers to the first: a second buffer
    assert other is not again and other.shape[0] == 1 << 20


def test_two_buffers_serve_a_capture_read_one_table_at_a_time(tmp_path: Path) -> None:
    path = generated_capture(tmp_path / "gen.pcap", packets=6000)  # 3.3 MB
    roots: set[int] = set()  # ids only: a reference of ours would keep a buffer from reuse
    n_tables = 0
    # whole MiB chunks: a buffer of exactly one chunk cannot take the next chunk and its carry
    for table in iter_tables(path, chunk_bytes=1 << 20):
        roots.add(id(_root(table.buf)))
        n_tables += 1
    assert n_tables >= 3
    # before: the first chunk's buffer (no room for a carry) sat unused beside two others
    assert len(roots) == 2


def test_tables_kept_by_the_caller_keep_their_bytes(tmp_path: Path) -> None:
    path = generated_capture(tmp_path / "gen.pcap", packets=2000)
    whole = next(iter(iter_tables(path, chunk_bytes=64 << 20)))
    kept = list(iter_tables(path, chunk_bytes=32 << 10))
    assert len(kept) > 20
    # every table's own bytes still hold its packets: each one's payloads as in the one-chunk read
    got = [
        bytes(t.buf[int(o) : int(o) + int(n)])
        for t in kept
        for o, n in zip(t.columns["pkt_off"], t.columns["caplen"], strict=True)
    ]
    want = [
        bytes(whole.buf[int(o) : int(o) + int(n)])
        for o, n in zip(whole.columns["pkt_off"], whole.columns["caplen"], strict=True)
    ]
    assert got == want
    assert len({id(_root(t.buf)) for t in kept}) == len(kept)  # none was reused while held

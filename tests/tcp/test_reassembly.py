"""Ordered byte streams with explicit gaps, in bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.capture.read import iter_tables
from mailwire.tcp import StreamChunk, StreamEvent, StreamGap, analyze
from mailwire.tcp.reassembly import PayloadView
from tests.conftest import corpus_captures
from tests.craft import Flow, ms, write

C, S = "192.0.2.30", "203.0.113.40"


def _contiguous(events: list[StreamEvent]) -> dict[str, int]:
    """Each direction's events cover offsets 0.. without overlap or hole; returns the lengths."""
    nxt: dict[str, int] = {}
    for e in events:
        start = nxt.get(e.direction, e.seq_offset if e.seq_offset == 0 else 0)
        assert e.seq_offset == start, (e, start)
        n = len(e.data) if isinstance(e, StreamChunk) else e.length
        assert n > 0
        nxt[e.direction] = start + n
    return nxt


def test_corpus_streams_are_contiguous(shared_captures: Path) -> None:
    checked = 0
    for path in corpus_captures():
        try:
            res = analyze(iter_tables(path))
        except Exception as exc:  # unreadable files are the capture stage's business
            if "CaptureError" in type(exc).__name__:
                continue
            raise
        for events in res.streams.values():
            _contiguous(events)
            checked += len(events)
    assert checked > 500


def test_reordered_segments_delivered_in_order(tmp_path: Path) -> None:
    f = Flow(C, 41000, S, 25)
    frames = f.handshake(0)
    a = f.send(ms(30), "c2s", b"A" * 500)
    b = f.send(ms(31), "c2s", b"B" * 500)
    c = f.send(ms(32), "c2s", b"C" * 500)
    frames += [a, c, b, f.ack(ms(40), "s2c")]  # C arrives before B
    res = analyze(iter_tables(write(tmp_path / "ooo.pcap", frames)))
    ev = res.stream_events(0)
    assert not [e for e in ev if isinstance(e, StreamGap)]
    assert b"".join(e.data for e in ev if isinstance(e, StreamChunk)) == b"A" * 500 + b"B" * 500 + b"C" * 500
    assert "out_of_order" in res.flags_of(6, mode="wireshark")


def test_missing_segment_is_a_gap_and_memory_is_bounded(tmp_path: Path) -> None:
    f = Flow(C, 41001, S, 25)
    frames = f.handshake(0)
    frames.append(f.send(ms(30), "c2s", b"a" * 1000))  # frame 4
    f.send(ms(31), "c2s", b"?" * 1000)  # never captured
    for i in range(10):  # 10 x 1000 bytes after the hole
        frames.append(f.send(ms(32 + i), "c2s", bytes([48 + i]) * 1000))
    res = analyze(iter_tables(write(tmp_path / "hole.pcap", frames)), stream_budget=4000)
    ev = res.stream_events(0)
    gaps = [e for e in ev if isinstance(e, StreamGap)]
    assert len(gaps) == 1
    assert (gaps[0].seq_offset, gaps[0].length, gaps[0].reason) == (1000, 1000, "buffer_limit")
    assert _contiguous(ev)["c2s"] == 12000
    data = b"".join(e.data for e in ev if isinstance(e, StreamChunk))
    assert data == b"a" * 1000 + b"".join(bytes([48 + i]) * 1000 for i in range(10))
    # with room to wait, the same hole is reported at the end as never captured
    res2 = analyze(iter_tables(tmp_path / "hole.pcap"))
    gaps2 = [e for e in res2.stream_events(0) if isinstance(e, StreamGap)]
    assert [(g.seq_offset, g.length, g.reason) for g in gaps2] == [(1000, 1000, "not_captured")]


def test_snaplen_cut_payload_is_a_gap(shared_captures: Path) -> None:
    # every frame of this trace was cut after the TCP header (zeek's truncated-header trace)
    res = analyze(iter_tables(shared_captures / "zeek__tcp_retransmit-fast009.pcap"))
    gaps = [e for e in res.stream_events(0) if isinstance(e, StreamGap)]
    assert gaps and not [e for e in res.stream_events(0) if isinstance(e, StreamChunk)]
    assert sum(g.length for g in gaps) == 24257  # Zeek's missed_bytes for this trace
    assert res.quality.truncated_frames > 0


def test_streaming_callback_gets_the_same_events(shared_captures: Path) -> None:
    got: list[StreamEvent] = []
    path = shared_captures / "zeek__smtp.pcap"
    analyze(iter_tables(path), on_stream=got.append)
    kept = analyze(iter_tables(path))
    flat = [e for v in kept.streams.values() for e in v]
    assert got and len(got) == len(flat)
    assert sorted(got, key=repr) == sorted(flat, key=repr)


def test_kept_streams_are_bounded(shared_captures: Path) -> None:
    path = shared_captures / "zeek__smtp.pcap"
    full = analyze(iter_tables(path))
    capped = analyze(iter_tables(path), keep_total=5000)
    kept = sum(len(e.data) for v in capped.streams.values() for e in v if isinstance(e, StreamChunk))
    assert 0 < kept <= 5000
    for conn, events in capped.streams.items():  # same coverage, the rest as buffer_limit gaps
        assert _contiguous(events) == _contiguous(full.streams[conn])
    assert any(
        isinstance(e, StreamGap) and e.reason == "buffer_limit" for v in capped.streams.values() for e in v
    )


# --- PayloadView: long events read from the capture buffer in place --------------------------------

_pieces = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), min_size=1, max_size=12)


def _view(data: bytes, pieces: list[tuple[int, int]]) -> tuple[PayloadView, bytes]:
    """A view over pieces of ``data`` (start, length; clipped to it) and the bytes it stands for."""
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    starts, lens = [], []
    for a, n in pieces:
        a = min(a, len(data))
        n = min(n, len(data) - a)
        starts.append(a)
        lens.append(n)
    view = PayloadView(buf, np.array(starts, np.int64), np.array(lens, np.int64))
    return view, b"".join(data[a : a + n] for a, n in zip(starts, lens, strict=True))


@given(st.binary(min_size=1, max_size=400).map(lambda b: b.replace(b"x", b"\n.")), _pieces)
@settings(max_examples=300, deadline=None)
def test_view_finds_every_pair_and_slices_like_bytes(data: bytes, pieces: list[tuple[int, int]]) -> None:
    view, joined = _view(data, pieces)
    assert len(view) == len(joined) and bytes(view) == joined
    want = [i for i in range(len(joined) - 1) if joined[i : i + 2] == b"\n."]
    assert view.find_all(b"\n.") == want
    n = len(joined)
    for a, b in ((0, n), (1, n - 1), (n // 3, n // 2), (n - 3, n), (0, 4), (n, n + 5)):
        assert view[a:b] == joined[a:b], (a, b)


def test_view_scan_is_word_aligned_and_exact() -> None:
    """Long pieces at every alignment: the eight-bytes-at-a-time scan misses nothing."""
    rng = np.random.default_rng(7)
    text = rng.choice(np.frombuffer(b"ab.\n \r", np.uint8), size=20000).tobytes()
    for shift in range(9):
        view, joined = _view(text, [(shift, 5000), (7000 + shift, 3001), (13, 0), (15000, 4999)])
        want = [i for i in range(len(joined) - 1) if joined[i : i + 2] == b"\n."]
        assert len(want) > 100 and view.find_all(b"\n.") == want

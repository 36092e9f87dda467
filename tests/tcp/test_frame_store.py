"""The slim per-frame store (``frame_fields="analysis"``, what ``mailwire analyze`` keeps) gives the
same connection records, retransmission chains and capture quality as the full store, and the
chunk-by-chunk mode (``"none"``) gives the same per-frame columns while keeping nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailwire.capture.read import iter_tables
from mailwire.tcp.engine import ANALYSIS_FIELDS, TcpAnalyzer, TcpResult
from tests.conftest import NO_CORPUS, corpus_captures, generated_capture


def _run(path: Path, fields: str) -> TcpResult:
    a = TcpAnalyzer(reassemble=False, frame_fields=fields)  # type: ignore[arg-type]
    for table in iter_tables(path, chunk_bytes=1 << 16):  # small chunks: state crosses chunks
        a.feed(table)
    return a.finish()


def _generated(tmp: Path) -> Path:
    return generated_capture(tmp / "gen.pcap")


def _captures(tmp: Path) -> list[Path]:
    files = corpus_captures()
    if not files:
        pytest.skip(NO_CORPUS)
    return [*files, _generated(tmp)]


def test_slim_store_gives_the_same_analysis(tmp_path: Path) -> None:
    chains = 0
    for path in _captures(tmp_path):
        full, slim = _run(path, "all"), _run(path, "analysis")
        assert set(slim.frames) == {*ANALYSIS_FIELDS, "direction"}, path.name
        for k in slim.frames:
            assert np.array_equal(full.frames[k], slim.frames[k]), (path.name, k)
        assert [c.to_json() for c in full.connections] == [c.to_json() for c in slim.connections], path.name
        assert [c.to_json() for c in full.chains] == [c.to_json() for c in slim.chains], path.name
        assert full.quality.to_json() == slim.quality.to_json(), path.name
        chains += len(slim.chains)
    assert chains > 50  # the comparison covered retransmission chains, not only clean traffic


def test_chunk_only_mode_keeps_nothing_and_analyses_the_same(tmp_path: Path) -> None:
    path = _generated(tmp_path)
    full = TcpAnalyzer(reassemble=False)
    bare = TcpAnalyzer(reassemble=False, frame_fields="none")
    flagged = 0
    for table in iter_tables(path, chunk_bytes=1 << 16):
        a, b = full.feed(table), bare.feed(table)
        assert np.array_equal(a.stream, b.stream)
        assert np.array_equal(a.wireshark, b.wireshark) and np.array_equal(a.mailwire, b.mailwire)
        for k, v in a.values.items():
            assert np.array_equal(v, b.values[k]), k
        flagged += int(np.count_nonzero(a.wireshark))
    assert flagged > 0
    assert bare._store == {}
    with pytest.raises(RuntimeError, match="keeps no frames"):
        bare.finish()

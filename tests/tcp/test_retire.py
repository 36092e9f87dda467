"""Retired connections: the TCP stage frees a closed connection's kernel state and accumulators
(to a temporary file) and brings them back when a frame of it arrives after all. Whatever is
retired when, every frame is judged and every record made as if nothing had left memory; and the
state held in memory follows the connections open at once, not those of the whole capture."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mailwire import spill
from mailwire.capture.read import iter_tables
from mailwire.spill import Spilled
from mailwire.tcp import analysis
from mailwire.tcp.engine import TcpAnalyzer, TcpResult
from tests.conftest import corpus_captures, generated_capture
from tests.craft import Flow, ms, write


class _Never(TcpAnalyzer):
    """Keeps every connection's state in memory (the reference)."""

    def _retire(self) -> None:
        pass


class _Eager(TcpAnalyzer):
    """Retires every connection holding state after every chunk, closed or not: nearly every
    frame of a connection is then run on state that was written out and read back."""

    def _retire(self) -> None:
        every = np.arange(self.ws.n_conv, dtype=np.int64)
        self.ws.retire(self.ws.live(every))
        own = every
        if self._shard is not None:
            k, w = self._shard
            own = every[every % w == k] // w
        self.mw.retire(self.mw.live(own))
        self.summary.retire(own)
        self.rtt.retire(every)


class _Held:
    """What one analyzer held at the end of the pass: state slots, retired and revived counts."""

    def __init__(self, a: TcpAnalyzer) -> None:
        self.ws, self.mw, self.summary = (_Counts(h) for h in (a.ws, a.mw, a.summary))
        self.n_conv = a.ws.n_conv
        self.rtt_retired = a.rtt.retired


class _Counts:
    def __init__(self, h: Any) -> None:
        self.slots, self.retired, self.revived = h.slots, h.retired, h.revived


def _run(cls: type[TcpAnalyzer], path: Path, chunk: int = 1 << 15, **kw: Any) -> tuple[TcpResult, _Held]:
    a = cls(reassemble=False, **kw)
    for table in iter_tables(path, chunk_bytes=chunk):  # small chunks: many retirements
        a.feed(table)
    held = _Held(a)
    return a.finish(), held


def _same(a: TcpResult, b: TcpResult, what: str) -> None:
    assert set(a.frames) == set(b.frames), what
    for k in a.frames:
        assert np.array_equal(a.frames[k], b.frames[k]), (what, k)
    assert [c.to_json() for c in a.connections] == [c.to_json() for c in b.connections], what
    assert [c.to_json() for c in a.chains] == [c.to_json() for c in b.chains], what
    assert a.quality.to_json() == b.quality.to_json(), what


def _sequential(path: Path, n: int = 2600, seed: int = 3) -> Path:
    """``n`` short connections one after another (a few overlapping), some ending in a reset,
    some with a resent segment after the close, and client ports reused with a new ISN: as a
    relay's day looks, thousands of connections but few open at once."""
    rnd = random.Random(seed)
    frames = []
    t = ms(1000)
    for i in range(n):
        port = 20000 + (i % 700)  # every port pair comes back (port reuse, a new ISN each time)
        f = Flow("192.0.2.10", port, f"198.51.100.{1 + i % 50}", 25, isn_c=rnd.getrandbits(32),
                 isn_s=rnd.getrandbits(32))  # fmt: skip
        out = f.handshake(t)
        t += ms(25)
        greeting = b"220 mx.example.net ESMTP\r\n"
        out.append(f.send(t, "s2c", greeting))
        out.append(f.ack(t + ms(10), "c2s"))
        t += ms(12)
        seq = f.nxt["c2s"]
        out.append(f.send(t, "c2s", b"QUIT\r\n"))
        if i % 9 == 0:  # resent after the close below: a frame of a connection long retired
            late = f.resend(t + ms(20_000), "c2s", seq, b"QUIT\r\n")
        out.append(f.send(t + ms(10), "s2c", b"221 bye\r\n"))
        if i % 13 == 5:
            out.append(f.rst(t + ms(12), "c2s"))
        else:
            out.append(f.fin(t + ms(12), "s2c"))
            out.append(f.fin(t + ms(13), "c2s"))
            out.append(f.ack(t + ms(20), "s2c"))  # the last ACK, after both FINs
        if i % 9 == 0:
            out.append(late)
        frames.extend(out)
        t += ms(4)
    frames.sort(key=lambda fr: fr[0])
    return write(path, frames)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sequential(tmp_path_factory.mktemp("retire") / "sequential.pcap")


def test_state_in_memory_follows_the_open_connections(sequential: Path) -> None:
    never, kept = _run(_Never, sequential)
    res, a = _run(TcpAnalyzer, sequential)
    _same(never, res, "retired when closed")
    n = a.n_conv
    assert n == 2600  # every connection numbered once (a reused port pair is a new one)
    assert len({c.id for c in res.connections}) == n
    # the reference holds a slot per connection; the retiring one about a batch's worth
    assert kept.ws.slots >= n and kept.mw.slots >= n and kept.summary.slots >= n
    for holder in (a.ws, a.mw, a.summary):
        assert holder.slots <= 1024 < n, type(holder).__name__
        assert holder.retired > 0.8 * n
    assert a.rtt_retired > 0.8 * n  # their RTT samples left memory too
    # the records are written out as they are made (more than spill.IN_MEMORY of them)
    assert isinstance(res.connections, Spilled) and res.connections.in_file
    assert [c.id for c in res.connections] == list(range(n))
    # the late resends came back for their connection's state, and were judged on it
    assert a.ws.revived > 0 and a.mw.revived > 0 and a.summary.revived > 0
    resent = {f for f, m in zip(res.frames["frame"].tolist(), res.frames["wireshark"].tolist(), strict=True)
              if m & analysis.F_RETRANSMISSION}  # fmt: skip
    assert len(resent) >= 2600 // 9


def test_reused_ports_are_detected_across_a_retirement(sequential: Path) -> None:
    res, _ = _run(_Eager, sequential)
    reused = int(np.count_nonzero(res.frames["wireshark"] & analysis.F_REUSED_PORTS))
    never, _ = _run(_Never, sequential)
    assert reused == int(np.count_nonzero(never.frames["wireshark"] & analysis.F_REUSED_PORTS)) > 1000
    _same(never, res, "eager")


def _captures(tmp: Path) -> list[Path]:
    return [*corpus_captures(), generated_capture(tmp / "gen.pcap")]


def test_state_read_back_judges_every_frame_the_same(tmp_path: Path) -> None:
    """Corpus captures and a generated one full of retransmission chains, stalls and zero
    windows: with every connection's state written out and read back after every chunk."""
    revived = 0
    for path in _captures(tmp_path):
        never, _ = _run(_Never, path, frame_fields="all")
        eager, a = _run(_Eager, path, chunk=4096, frame_fields="all")  # the smallest chunks
        _same(never, eager, path.name)
        revived += a.ws.revived + a.mw.revived + a.summary.revived
    assert revived > 1000


def test_a_shard_retires_and_revives_the_same(tmp_path: Path) -> None:
    path = generated_capture(tmp_path / "gen.pcap")
    for k in (0, 1):
        never, _ = _run(_Never, path, shard=(k, 2))
        eager, a = _run(_Eager, path, shard=(k, 2))
        _same(never, eager, f"shard {k}")
        assert a.mw.revived > 0 and a.summary.revived > 0


@pytest.mark.parametrize("fail", ["open", "write"])
def test_a_full_disk_keeps_the_state_in_memory(
    sequential: Path, fail: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    never, _ = _run(_Never, sequential)

    def no_room(*_a: object, **_k: object) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail == "open":
        # the kernels', accumulators' and RTT samples' files (spill.WordFile) cannot be made
        monkeypatch.setattr(spill.tempfile, "TemporaryFile", no_room)
    else:
        real = os.pwrite
        calls = {"n": 0}

        def some_then_full(fd: int, data: bytes, off: int) -> int:
            calls["n"] += 1
            if calls["n"] > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data, off)

        monkeypatch.setattr(os, "pwrite", some_then_full)
    res, a = _run(TcpAnalyzer, sequential)
    _same(never, res, fail)
    assert a.ws.slots > 1024  # the state stayed in memory
    if fail == "open":
        assert a.rtt_retired == 0
    if fail == "write":
        assert a.ws.retired > 0  # what was written before the disk filled came back when needed

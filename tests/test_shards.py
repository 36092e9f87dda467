"""One capture split by connection across worker processes (shards) gives exactly what one
process gives: the TCP stage's parts add up to the whole, and ``mailwire analyze`` prints the same
JSON, on every capture of the corpus and on a generated capture full of retransmission chains."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mailwire.capture.read import iter_tables
from mailwire.smtp.pipeline import analyze_captures
from mailwire.tcp.engine import TcpAnalyzer, TcpResult
from mailwire.tcp.quality import merged
from mailwire.workers import MAX_SHARDS, SHARD_MIN_BYTES, available_cpus, plan
from tests.conftest import NO_CORPUS, corpus_captures, generated_capture
from tests.craft import Flow, ms, write


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    files = corpus_captures()
    if not files:
        pytest.skip(NO_CORPUS)
    return [*files, generated_capture(tmp_path_factory.mktemp("shards") / "gen.pcap")]


def _tcp(path: Path, shard: tuple[int, int] | None) -> TcpResult:
    a = TcpAnalyzer(shard=shard)  # reassembly on: its events are compared too
    for table in iter_tables(path, chunk_bytes=1 << 16):  # small chunks: state crosses chunks
        a.feed(table)
    return a.finish()


def test_tcp_shards_are_disjoint_parts_of_the_whole(captures: list[Path]) -> None:
    chains = conns = 0
    for path in captures:
        whole = _tcp(path, None)
        for w in (2, 3):
            parts = [_tcp(path, (k, w)) for k in range(w)]
            for k, p in enumerate(parts):
                assert all(c.id % w == k for c in p.connections), (path.name, w)
                assert np.all(p.frames["stream"] % w == k), (path.name, w)
            got = sorted((c for p in parts for c in p.connections), key=lambda c: c.id)
            assert [c.to_json() for c in got] == [c.to_json() for c in whole.connections], (path.name, w)
            rows = np.concatenate([p.frames["frame"] for p in parts])
            order = np.argsort(rows, kind="stable")
            for name, col in whole.frames.items():
                joined = np.concatenate([p.frames[name] for p in parts])[order]
                assert np.array_equal(joined, col), (path.name, w, name)
            got_chains = sorted((ch for p in parts for ch in p.chains), key=lambda ch: ch.original_frame)
            assert [ch.to_json() for ch in got_chains] == [ch.to_json() for ch in whole.chains], path.name
            assert merged([p.quality for p in parts]).to_json() == whole.quality.to_json(), (path.name, w)
            events = {cid: ev for p in parts for cid, ev in p.streams.items()}
            assert events == whole.streams, (path.name, w)
            assert {c: v for p in parts for c, v in p.after_fin.items()} == whole.after_fin, path.name
        chains += len(whole.chains)
        conns += len(whole.connections)
    assert chains > 50 and conns > 150  # retransmission chains and many connections were covered


def test_analyze_in_shards_prints_the_same_json(captures: list[Path]) -> None:
    sessions = 0
    for path in captures:
        one = analyze_captures([path], jobs=1).to_json()
        two = analyze_captures([path], jobs=2).to_json()
        assert json.dumps(two, sort_keys=True) == json.dumps(one, sort_keys=True), path.name
        sessions += len(one["smtp_sessions"])
    three = analyze_captures([captures[-1]], jobs=3).to_json()
    assert three == analyze_captures([captures[-1]], jobs=1).to_json()
    assert sessions > 100


def test_progress_counts_each_frame_once(captures: list[Path]) -> None:
    seen: list[int] = []
    res = analyze_captures([captures[-1]], jobs=2, progress=seen.append).to_json()
    assert sum(seen) == res["captures"][0]["frames"] == 3000


def test_when_a_capture_is_split(tmp_path: Path) -> None:
    big = tmp_path / "big.pcap"
    with big.open("wb") as f:
        f.truncate(SHARD_MIN_BYTES)  # sparse: nothing written
    small = tmp_path / "small.pcap"
    small.write_bytes(b"\0" * 100)
    cpus = available_cpus()
    procs, tasks = plan([big], None, split=True)
    assert procs == len(tasks) == (min(cpus, MAX_SHARDS) if cpus > 1 else 1)
    assert [(t.shard, t.shards) for t in tasks] == [(k, len(tasks)) for k in range(len(tasks))]
    assert plan([big], None)[0] == 1  # a caller with no way to join parts gets the whole capture
    assert plan([small], None, split=True)[0] == 1  # small: forking costs more than it saves
    procs, tasks = plan([small], 3, split=True)  # asked for: split whatever the size
    assert procs == 3 and [t.shards for t in tasks] == [3, 3, 3]
    procs, tasks = plan([big, small], 4, split=True)  # CPUs shared between the captures
    assert procs == 4 and [(t.index, t.shard) for t in tasks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert plan([big, small], 2, split=True)[1] == plan([big, small], 2)[1]  # one CPU each: whole
    assert plan(["-"], 4, split=True)[0] == 1  # standard input is read once, here
    assert plan([big, tmp_path / "missing.pcap"], 4, split=True)[0] == 1  # reported here


def test_a_bad_shard_is_refused() -> None:
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="shard"):
            TcpAnalyzer(shard=bad)


def test_cli_splits_one_capture(captures: list[Path]) -> None:
    outs = []
    for j in ("1", "2"):
        r = subprocess.run(
            ["mailwire", "analyze", "-j", j, "--json", "-", str(captures[-1])],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1] and outs[0]["smtp_sessions"]


def test_connection_numbers_jumping_past_the_kernel_state_grow_it() -> None:
    """A shard's mailwire-mode kernel is given every w-th connection number: a number far past
    the connections it holds must grow its state first (it once wrote past the end of the
    per-connection array: heap corruption on the 1 M-packet capture split 64 ways)."""
    from mailwire.tcp.analysis import KernelState
    from mailwire.tcp.engine import _OUT

    mw = KernelState(mw=True)
    cap = mw.cs.shape[0]
    convs = np.array([0, cap - 3, cap + 5, 3 * cap + 1], dtype=np.int64)  # jumps across capacity
    n = convs.shape[0]
    z = np.zeros(n, dtype=np.int64)
    cols = {k: z.copy() for k in ("seq", "ack", "win", "seglen", "wscale", "sack_sum", "ip_id", "kdir")}
    cols |= {"key": np.arange(n, dtype=np.int64), "analysable": np.ones(n, dtype=np.bool_)}
    cols |= {"tflags": np.full(n, 0x02, dtype=np.int64), "ts": np.arange(n, dtype=np.int64) * 1000}
    cols |= {"frame": np.arange(1, n + 1, dtype=np.int64), "fp": np.arange(1, n + 1, dtype=np.int64)}
    mw.ensure_keys(n)
    out = {k: np.empty(n, dtype=dt) for k, dt in _OUT.items()}
    out["conv"][:] = convs
    mw.run(cols, out)
    assert mw.n_conv == int(convs[-1]) + 1
    assert mw.conv_slot.shape[0] > mw.n_conv  # the numbers map to state slots, one each
    slots = mw.conv_slot[convs]
    assert np.unique(slots).shape[0] == n and (slots >= 0).all() and (slots < mw.slots).all()
    assert mw.ds.shape[0] >= 2 * mw.cs.shape[0]


def test_a_shard_holds_state_for_its_own_connections(tmp_path: Path) -> None:
    """The Wireshark-mode kernel of every shard numbers every connection (first appearance,
    port reuse); the mailwire-mode kernel and the connection accumulators of shard k of w hold
    rows for connections k, k + w, k + 2w … only (row n // w), so a shard's state shrinks with w.
    The parts still add up to the whole: crafted connections 0-6, where connection 5 (shard 1 of
    4, its row 1) has a zero-window episode that must stay connection 5's."""
    frames = []
    for i in range(7):
        f = Flow("192.0.2.10", 40010 + i, "198.51.100.20", 25)
        t = ms(1000 * i)
        frames += f.handshake(t)
        frames.append(f.send(t + ms(100), "c2s", b"x" * 1000))
        if i == 5:
            frames.append(f.ack(t + ms(200), "s2c", win=0))  # the server's window closes …
            frames.append(f.ack(t + ms(700), "s2c", win=8192))  # … for 0.5 s
        else:
            frames.append(f.ack(t + ms(200), "s2c"))
    path = write(tmp_path / "zw.pcap", frames)
    whole = _tcp(path, None)
    assert len(whole.connections) == 7 and [len(c.zero_window) for c in whole.connections] == [0] * 5 + [1, 0]
    w = 4
    for k in range(w):
        a = TcpAnalyzer(shard=(k, w))
        for table in iter_tables(path, chunk_bytes=1 << 16):
            a.feed(table)
        assert a.ws.n_conv == 7  # every connection numbered
        own = len(range(k, 7, w))
        assert a.summary.n_conv <= own and a.mw.n_conv <= own, (k, a.summary.n_conv, a.mw.n_conv)
        part = a.finish()
        assert [c.to_json() for c in part.connections] == [c.to_json() for c in whole.connections[k::w]]

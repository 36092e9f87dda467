"""Records kept in a file (mailwire.spill): they read back as the list they replace, and the
analysis gives the same documents whether its records stayed in memory or went to disk, in one
process or in workers."""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire import spill, workers
from mailwire.analyze import render
from mailwire.smtp.findings import Judged, findings, once_per_session
from mailwire.smtp.pipeline import analyze_captures
from mailwire.smtp.session import SmtpSession
from mailwire.smtp.verdict import SEVERITY, TcpFacts, Verdict
from tests.conftest import ROOT, generated_capture

INCIDENT = ROOT / "examples" / "incident"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(), st.text(max_size=8)), max_size=60),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=1, max_value=7),
)
def test_spilled_reads_back_as_the_list(items: list[tuple[int, str]], in_memory: int, piece: int) -> None:
    old = spill.PIECE
    spill.PIECE = piece
    try:
        sp: spill.Spill[tuple[int, str]] = spill.Spill(in_memory)
        for k, x in enumerate(items):
            sp.append(x, (k, -k))
        got = sp.done()
    finally:
        spill.PIECE = old
    assert got.in_file == (len(items) > in_memory)
    assert len(got) == len(items)
    assert list(got) == items and got == items
    assert got.keys == [(k, -k) for k in range(len(items))]
    for i in [*range(len(items)), *range(-len(items), 0)]:  # any order: the piece cache follows
        assert got[i] == items[i]
    for i in reversed(range(len(items))):
        assert got[i] == items[i]
    assert got[1:-1:2] == items[1:-1:2]
    with pytest.raises(IndexError):
        got[len(items)]
    assert pickle.loads(pickle.dumps(got)) == items
    order = sorted(range(len(items)), key=lambda i: items[i])
    assert list(spill.Picked([got], ((0, i) for i in order))) == sorted(items)


def test_positional_pickles_every_record_of_the_incident() -> None:
    res = analyze_captures([INCIDENT / "sender.pcap", INCIDENT / "edge.pcap"], jobs=1)
    records = list(res.judged) + [c for cap in res.captures for c in cap.connections]
    assert len(records) >= 10
    for r in records:
        back = pickle.loads(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == r and type(back) is type(r)
    j = res.judged[0]
    assert type(j).__reduce__(j)[0] is Judged  # rebuilt by calling the class, fields in order

    @dataclasses.dataclass
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError):
        spill.positional(Derived)


def _run(paths: list[Path], jobs: int) -> tuple[dict[str, object], str]:
    res = analyze_captures(paths, jobs=jobs)
    out = io.StringIO()
    render(res, out, frames=True, width=200, max_rows=1000)
    return res.to_json(), out.getvalue()


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_capture(tmp_path_factory.mktemp("spill") / "gen.pcap", seed=7, packets=6000)


def test_documents_the_same_from_memory_or_disk(gen: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [[gen], [INCIDENT / "sender.pcap", INCIDENT / "edge.pcap"]]
    want = [_run(paths, jobs=1) for paths in cases]
    assert len(want[0][0]["smtp_sessions"]) > 20  # type: ignore[arg-type]
    monkeypatch.setattr(spill, "IN_MEMORY", 0)
    monkeypatch.setattr(spill, "PIECE", 3)
    res = analyze_captures([gen], jobs=1)
    assert res.captures[0].judged.in_file and res.captures[0].connections.in_file
    here = workers._here
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return here(*args)

    # a worker's result that does not load is run again in this process, which would hide it
    monkeypatch.setattr(workers, "_here", counted)
    for paths, ref in zip(cases, want, strict=True):
        assert _run(paths, jobs=1) == ref
        # workers: their records copied into the result files, read from there; shards merged
        calls.clear()
        assert _run(paths, jobs=2) == ref
        assert len(calls) == 1, "a worker's result was not used"


def test_worst_first_leaves_out_by_rank() -> None:
    res = analyze_captures([INCIDENT / "sender.pcap"], jobs=1)
    full = list(res.worst_first())
    ranks = [SEVERITY[j.verdict.outcome] for j in full]
    assert ranks == sorted(ranks) and len(set(ranks)) > 1
    kept = list(res.worst_first(without=("delivered",)))
    assert kept == [j for j in full if j.verdict.outcome != "delivered"]
    assert len(kept) < len(full)


def _judged(capture: str, cid: int, port: int, outcome: str) -> Judged:
    s = SmtpSession(conn_id=cid, capture=capture)
    s.client, s.client_port, s.server, s.server_port = "192.0.2.10", port, "198.51.100.25", 25
    tcp = TcpFacts(conn_id=cid)
    return Judged(capture, s.server, s, tcp, Verdict(outcome=outcome, summary="", confidence="high"))


def test_a_reused_port_is_another_session_but_a_later_capture_is_a_copy() -> None:
    items = [
        _judged("server.pcap", 0, 40000, "delivered"),
        _judged("server.pcap", 1, 40000, "deferred"),  # the port reused: another session
        _judged("edge.pcap", 0, 40000, "delivered"),  # the same sessions seen at the edge
        _judged("edge.pcap", 1, 40001, "delivered"),
    ]
    kept = list(once_per_session(items))
    assert [(j.capture, j.tcp.conn_id) for j in kept] == [
        ("server.pcap", 0),
        ("server.pcap", 1),
        ("edge.pcap", 1),
    ]
    [mix] = [f for f in findings(items) if f.id == "destination_mix"]
    assert mix.data["outcomes"] == {"delivered": 2, "deferred": 1}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=40, unique=True), st.integers(0, 6), st.randoms())
def test_parked_gives_back_what_was_put(names: list[str], in_memory: int, rnd: Any) -> None:
    store: spill.Parked[tuple[int, str]] = spill.Parked(in_memory)
    order = list(range(len(names)))
    for k in order:
        store.put(k * 7, (k, names[k]))
    assert len(store) == len(names)
    rnd.shuffle(order)
    for k in order:  # taken back in any order, each once
        assert k * 7 in store
        assert store.take(k * 7) == (k, names[k])
        assert k * 7 not in store
        with pytest.raises(KeyError):
            store.take(k * 7)
    assert len(store) == 0
    store.close()


class _FullDisk:
    """A temporary file whose disk fills after ``room`` writes (the writes before it are kept)."""

    def __init__(self, room: int) -> None:
        import tempfile

        self._f = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115  # closed by close()
        self._room = room

    def write(self, data: bytes) -> int:
        if self._room <= 0:
            raise OSError(28, "No space left on device")
        self._room -= 1
        return int(self._f.write(data))

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()


@pytest.mark.parametrize("room", [0, 1, 3])
def test_a_full_disk_keeps_every_record_in_memory(room: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "_temporary", lambda: _FullDisk(room))
    monkeypatch.setattr(spill, "PIECE", 2)
    items = [(i, str(i)) for i in range(15)]
    got = spill.spilled(items, lambda x: x[0], in_memory=1)
    assert not got.in_file and got == items and got.keys == list(range(15))
    store: spill.Parked[tuple[int, str]] = spill.Parked(1)
    for i, x in enumerate(items):
        store.put(i, x)
    assert [store.take(i) for i in reversed(range(15))] == items[::-1]


def test_analysis_survives_a_full_disk(gen: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = _run([gen], jobs=1)
    monkeypatch.setattr(spill, "IN_MEMORY", 0)
    monkeypatch.setattr(spill, "PIECE", 3)
    monkeypatch.setattr(spill, "_temporary", lambda: _FullDisk(2))
    assert _run([gen], jobs=1) == want


def test_parked_numbers_start_at_zero() -> None:
    store: spill.Parked[str] = spill.Parked(0)  # every object goes to the file at once
    store.put(3, "c")
    store.put(0, "a")
    assert 3 in store and 0 in store and 1 not in store and "3" not in store and len(store) == 2
    with pytest.raises(ValueError, match="from 0"):
        store.put(-1, "x")
    assert store.take(3) == "c" and len(store) == 1
    store.close()

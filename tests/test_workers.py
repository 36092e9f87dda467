"""Several captures analysed at once in worker processes give what one process gives."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailwire.smtp.pipeline import analyze_captures
from mailwire.workers import (
    PARALLEL_MIN_BYTES,
    available_cpus,
    dump_result,
    jobs_for,
    load_result,
    map_captures,
)
from tests.conftest import ROOT, generated_capture


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("workers")
    return [generated_capture(d / "a.pcap", 5), generated_capture(d / "b.pcap", 6)]


def _pid(path: str, progress: Any = None) -> tuple[str, int]:
    if progress is not None:
        progress(7)
    return path, os.getpid()


def _boom(path: str, progress: Any = None) -> None:
    raise ValueError(f"cannot do {Path(path).name}")


def test_workers_give_the_same_result_and_progress(captures: list[Path]) -> None:
    serial = analyze_captures(captures, jobs=1).to_json()
    seen: list[int] = []
    parallel = analyze_captures(captures, jobs=2, progress=seen.append).to_json()
    assert parallel == serial
    assert len(serial["smtp_sessions"]) > 50  # sessions with trouble from both captures
    assert {c["path"] for c in serial["captures"]} == {str(p) for p in captures}
    assert sum(seen) == sum(c["frames"] for c in serial["captures"]) == 6000


def test_workers_are_other_processes(captures: list[Path]) -> None:
    got = map_captures(_pid, captures, jobs=2)
    assert [p for p, _ in got] == [str(c) for c in captures]  # in the order given
    # the calling process takes the first capture, a worker the other
    assert got[0][1] == os.getpid() and got[1][1] != os.getpid()
    seen: list[int] = []
    map_captures(_pid, captures, jobs=2, progress=seen.append)
    assert sum(seen) == 14


def _dies_in_worker(path: str, progress: Any = None) -> tuple[str, int]:
    if os.getpid() != _PARENT:
        os._exit(3)  # a worker that dies before writing its result (killed, out of memory)
    return path, os.getpid()


_PARENT = os.getpid()


def _open_files() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # the descriptor listdir itself used
    return out


def test_results_come_back_through_files_that_leave_nothing_behind(captures: list[Path]) -> None:
    """A worker's result is pickled into an unnamed file the calling process made before the fork:
    afterwards no descriptor of it is open and no file is left in the temporary directory, also
    when the worker died before writing it (its task is then run in the calling process)."""
    import tempfile

    tmp = Path(tempfile.gettempdir())
    before_fds, before_tmp = _open_files(), set(tmp.iterdir())
    got = map_captures(_pid, captures, jobs=2)
    assert got[1][0] == str(captures[1]) and got[1][1] != os.getpid()
    dead = map_captures(_dies_in_worker, captures, jobs=2)
    assert dead == [(str(c), os.getpid()) for c in captures]  # both done here in the end
    leaked = {f for f in _open_files() - before_fds if "(deleted)" in f or f.startswith(str(tmp))}
    assert not leaked
    assert set(tmp.iterdir()) <= before_tmp


def test_a_failing_worker_fails_as_one_process_would(captures: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot do a\.pcap"):
        map_captures(_boom, captures, jobs=2)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00not a capture" * 100)
    paths = [captures[0], junk]
    parallel = analyze_captures(paths, jobs=2).to_json()
    assert parallel == analyze_captures(paths, jobs=1).to_json()
    assert parallel["captures"][1]["issues"]  # the unreadable file is named, the other analysed
    assert parallel["captures"][0]["smtp_sessions"] > 0


def test_when_workers_are_used(captures: list[Path], tmp_path: Path) -> None:
    assert jobs_for(captures, None) == 1  # small: forking costs more than it saves
    assert jobs_for(captures, 2) == 2 and jobs_for(captures, 8) == 2 and jobs_for(captures, 1) == 1
    assert jobs_for(captures[:1], 4) == 1
    assert jobs_for([captures[0], "-"], 2) == 1  # standard input is read by this process
    big = []
    for name in ("x.pcap", "y.pcap", "z.pcap"):
        p = tmp_path / name
        with p.open("wb") as f:
            f.truncate(PARALLEL_MIN_BYTES // 2)  # sparse: nothing written
        big.append(p)
    assert jobs_for(big, None) == min(3, available_cpus())
    assert jobs_for([*big, tmp_path / "missing.pcap"], None) == 1


def test_cli_jobs_option(captures: list[Path]) -> None:
    outs = []
    for j in ("1", "2"):
        r = subprocess.run(
            ["mailwire", "analyze", "-j", j, "--json", "-", *map(str, captures)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1]
    r = subprocess.run(["mailwire", "analyze", "-j", "0", str(captures[0])], capture_output=True, text=True)
    assert r.returncode == 2 and "jobs" in r.stderr.lower()


def test_diagnose_with_workers_is_the_same() -> None:
    """The bundled incident (two capture points and the mail log) diagnosed with a worker per
    capture and in one process: the same diagnosis."""
    from mailwire.diagnose.engine import run_diagnosis

    inc = ROOT / "examples" / "incident"
    caps = [str(inc / "sender.pcap"), str(inc / "edge.pcap")]
    one = run_diagnosis([str(inc / "maillog")], caps, jobs=1).diagnosis.to_json()
    two = run_diagnosis([str(inc / "maillog")], caps, jobs=2).diagnosis.to_json()
    assert one == two
    # the lab's ground truth: a box dropping large segments between the two points
    assert json.loads((inc / "truth.json").read_text())["fault"]["kind"] == "size_drop"
    assert one["conclusions"][0]["cause"] == "path_loss_size_dependent"


@dataclass(slots=True)
class _Rec:
    n: int
    name: str
    parts: list[int]


@dataclass
class _Result:
    path: str
    records: list[_Rec]
    by_id: dict[int, _Rec]
    small: list[int]


def _loaded_peak(load: Any, blob: bytes) -> tuple[Any, int, int]:
    """(what ``load`` made of ``blob``, bytes it still holds, bytes held at the peak of the load)."""
    import io
    import tracemalloc

    tracemalloc.start()
    try:
        got = load(io.BytesIO(blob))
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return got, now, peak


def test_a_result_is_loaded_in_pieces() -> None:
    """dump_result / load_result give back an equal result (lists, dictionaries in their order,
    other values, a non-dataclass whole), and loading slotted records costs about what they hold:
    one pickle of them all held a dictionary per record until its end, half the peak."""
    import io
    import pickle

    recs = [_Rec(i, f"r{i}", list(range(i % 7))) for i in range(20000)]
    res = _Result("x.pcap", recs, {r.n: r for r in reversed(recs[:3000])}, [1, 2, 3])
    out = io.BytesIO()
    dump_result(res, out)
    got, now, peak = _loaded_peak(load_result, out.getvalue())
    assert got == res and list(got.by_id) == list(res.by_id)
    assert peak < 1.2 * now, (peak, now)
    whole = pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL)  # the control: one pickle
    got2, now2, peak2 = _loaded_peak(pickle.load, whole)
    assert got2 == res and peak2 > 1.5 * now2, (peak2, now2)
    for other in ({"a": [1, 2]}, None, "text"):
        buf = io.BytesIO()
        dump_result(other, buf)
        buf.seek(0)
        assert load_result(buf) == other


def test_no_room_for_result_files_means_one_process(
    captures: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the temporary directory refuses the result files (full, read-only), the captures are
    analysed in the calling process, with the same results."""
    import tempfile

    def refuse(*a: Any, **k: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    got = map_captures(_pid, captures, jobs=2)
    assert [(str(p), pid) for p, pid in got] == [(str(c), os.getpid()) for c in captures]

"""Sessions are finished as their connection closes, and bytes sent past a FIN are ignored (as the
receiving host ignores them) and reported, whatever the chunk the capture is read in."""

from __future__ import annotations

from pathlib import Path

import pytest

import mailwire.smtp.pipeline as pipeline
from mailwire.capture.read import iter_tables
from mailwire.smtp.pipeline import analyze_captures
from mailwire.tcp.engine import TcpAnalyzer
from tests.conftest import generated_capture
from tests.craft import SMTP_GREETING, Flow, ms, smtp_dialogue, write


def _capture(path: Path) -> Path:
    a = Flow("192.0.2.10", 40001, "198.51.100.25", 25)
    b = Flow("192.0.2.11", 40002, "198.51.100.25", 25)
    fa, t = smtp_dialogue(a, 0)
    fb, _ = smtp_dialogue(b, t, after_fin=b"NOOP\r\nRSET\r\n")
    frames = fa + fb
    # a third connection left open: it is finished at the end of the capture
    c = Flow("192.0.2.12", 40003, "198.51.100.25", 25)
    frames += [*c.handshake(t + ms(500)), c.send(t + ms(540), "s2c", SMTP_GREETING)]
    return write(path, frames)


def test_closed_connections_are_known_during_the_pass(tmp_path: Path) -> None:
    path = _capture(tmp_path / "closed.pcap")
    a = TcpAnalyzer(on_stream=lambda ev: None, segment_events=True)
    for table in iter_tables(path):
        a.feed(table)
    closed = a.closed()
    assert closed.tolist() == [True, True, False]  # both FINs in order; the open one is not
    res = a.finish()
    assert res.after_fin.get(1, (0,))[0] == len(b"NOOP\r\nRSET\r\n")
    assert 0 not in res.after_fin and 2 not in res.after_fin


@pytest.mark.parametrize("chunk", [1 << 9, 16 << 20])
def test_bytes_after_fin_are_ignored_whatever_the_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    path = _capture(tmp_path / "closed.pcap")
    monkeypatch.setattr(pipeline, "_CHUNK_BYTES", chunk)  # 512 bytes: a chunk or two per frame
    doc = analyze_captures([path]).to_json()
    by_port = {s["client_port"]: s for s in doc["smtp_sessions"]}
    assert sorted(by_port) == [40001, 40002, 40003]
    b = by_port[40002]
    text = str(b)
    assert "NOOP" not in text and "RSET" not in text  # never handed to the dissector
    assert b["anomalies"].get("data_after_fin") == 1
    sample = next(x for x in b["anomaly_samples"] if x["kind"] == "data_after_fin")
    assert sample["direction"] == "c2s" and sample["detail"].startswith("12 bytes")
    assert by_port[40001]["anomalies"].get("data_after_fin") is None
    assert by_port[40001]["verdict"]["outcome"] == by_port[40002]["verdict"]["outcome"]


def test_early_finish_gives_the_same_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated capture with trouble, read in small chunks (sessions finish as they close, during
    the pass) and in one chunk (every session finished at the end): the same analysis."""
    out = generated_capture(tmp_path / "gen.pcap")
    one = analyze_captures([out]).to_json()
    monkeypatch.setattr(pipeline, "_CHUNK_BYTES", 1 << 16)
    many = analyze_captures([out]).to_json()
    assert many == one
    assert len(one["smtp_sessions"]) > 100


def test_finished_connections_leave_the_detection_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 600 short SMTP connections one after another: when the capture ends, the per-connection
    detection state held is that of the few not closed, and every session is still reported
    (from its parked record) with its roles."""
    import gc

    from tests.tcp.test_retire import _sequential

    path = _sequential(tmp_path / "sequential.pcap")
    live: list[int] = []
    real_finish = TcpAnalyzer.finish

    def counting_finish(self: TcpAnalyzer) -> object:
        live.append(sum(1 for o in gc.get_objects() if type(o) is pipeline._Conn))
        return real_finish(self)

    monkeypatch.setattr(TcpAnalyzer, "finish", counting_finish)
    doc = analyze_captures([path], jobs=1).to_json()
    # those ended by a reset (one in 13) are finished at the end of the capture, not at their
    # close (the reassembler counts both FINs in order as closed); plus the few still open
    assert len(live) == 1 and live[0] <= 2600 // 13 + 10, live
    sessions = doc["smtp_sessions"]
    assert len(sessions) == 2600
    assert all(s["server_port"] == 25 and s["client"] == "192.0.2.10" for s in sessions)

"""Rows of finished connections leave the TCP stage's frame store during the pass
(``TcpAnalyzer.compact``) and the analysis stays the same: connections summed up early, rows
spilled to a temporary file and read back when a late frame (a resent FIN, a reset) makes a
closed connection one that is read row by row after all; a finished connection that is read row
by row (resent bytes, a reset) *thinned*: only the rows its facts read stay.

The expectation is the same analysis with every row kept (the path the tshark and Zeek agreement
tests check), plus what the crafted capture was made to show."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mailwire.smtp.pipeline as pipeline
import mailwire.tcp.engine as engine
from mailwire.capture.read import iter_tables
from mailwire.smtp.pipeline import analyze_captures
from mailwire.tcp.analysis import flag_names
from mailwire.tcp.engine import TcpAnalyzer
from tests.conftest import corpus_captures, corpus_params, generated_capture
from tests.craft import SMTP_GREETING, Flow, ms, smtp_dialogue, write

SERVER = "198.51.100.25"


def _capture(path: Path) -> tuple[Path, dict[str, Any]]:
    """Connection 0 closes, then resends its FIN long after; connection 1 closes, then the server
    resets it; connection 2 has a data segment resent mid-dialogue; twelve more close cleanly."""
    a, b, c = (Flow(f"192.0.2.{10 + i}", 41001 + i, SERVER, 25) for i in range(3))
    frames, t = smtp_dialogue(a, 0)
    a_fin = len(frames) - 2  # index of the client's FIN (before the server's ACK of it)
    more, t = smtp_dialogue(b, t)
    frames += more
    # connection 2: its EHLO is sent, lost, and sent again
    frames += c.handshake(t)
    t += ms(30)
    frames.append(c.send(t, "s2c", SMTP_GREETING))
    seq = c.nxt["c2s"]
    frames.append(c.send(t + ms(10), "c2s", b"EHLO client.example.org\r\n"))
    ehlo = len(frames)
    frames.append(c.resend(t + ms(310), "c2s", seq, b"EHLO client.example.org\r\n"))
    frames.append(c.send(t + ms(320), "s2c", b"250 mx.example.net\r\n"))
    t += ms(400)
    for i in range(12):
        filler, t = smtp_dialogue(Flow(f"203.0.113.{10 + i}", 42001 + i, SERVER, 25), t)
        frames += filler
    # the late frames: connection 0's client FIN again (its final ACK was lost), the server's ACK,
    # and a reset of connection 1 from the server
    fin_frame = frames[a_fin][1]
    frames.append((t, fin_frame))
    late_fin = len(frames)  # 1-based frame number of the resent FIN
    frames.append(a.ack(t + ms(1), "s2c"))
    frames.append(b.rst(t + ms(50), "s2c", ip_id=4242))
    late_rst = len(frames)
    path = write(path, sorted(frames, key=lambda x: x[0]))
    return path, {"a_fin": a_fin + 1, "late_fin": late_fin, "late_rst": late_rst, "n_a": 13, "ehlo": ehlo}


def _everything(path: Path) -> dict[str, Any]:
    """The analyze document and the TCP facts of every session (what the verdicts read)."""
    facts = {k: asdict(v) for k, v in pipeline.analyze_capture(path).facts.items()}
    return {"doc": analyze_captures([path], jobs=1).to_json(), "facts": facts}


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows moved by each compaction from here on (the real method, counted)."""
    moved: list[int] = []
    real = TcpAnalyzer.compact

    def counted(self: TcpAnalyzer, *args: Any, **kw: Any) -> int:
        moved.append(real(self, *args, **kw))
        return moved[-1]

    monkeypatch.setattr(TcpAnalyzer, "compact", counted)
    return moved


def _analyze(path: Path, *, chunk: int, compact: bool) -> tuple[engine.TcpResult, int]:
    a = TcpAnalyzer(frame_fields="analysis", on_stream=lambda ev: None, segment_events=True)
    moved = 0
    for table in iter_tables(path, chunk_bytes=chunk):
        a.feed(table)
        if compact:
            moved += a.compact(a.closed())
    return a.finish(), moved


def test_late_frames_bring_a_closed_connections_rows_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, known = _capture(tmp_path / "late.pcap")
    monkeypatch.setattr(engine, "_COMPACT_MIN", 1)  # compact at every doubling, from the first rows
    kept, _ = _analyze(path, chunk=1 << 20, compact=False)
    res, moved = _analyze(path, chunk=1 << 9, compact=True)
    assert moved > 0
    # the resent FIN and the reset came after connections 0 and 1 had left the store
    assert sorted(res.revived.tolist()) == [0, 1]
    # connection 0 has every one of its frames again, in frame order
    conn0 = res.frames["frame"][res.frames["stream"] == 0]
    assert conn0.shape[0] == known["n_a"]
    assert (np.diff(conn0) > 0).all()
    # the resent FIN is a retransmission (tshark 4.0 says so too), the server's ACK a duplicate
    fin = int(np.searchsorted(res.frames["frame"], known["late_fin"]))
    names = [flag_names(int(res.frames[m][fin])) for m in ("wireshark", "mailwire")]
    assert names == [["retransmission"], ["retransmission"]]
    assert flag_names(int(res.frames["wireshark"][fin + 1])) == ["duplicate_ack"]
    # connection 2's resent EHLO: a chain from the frame first carrying it
    assert [(ch.conn_id, ch.original_frame, [r.frame for r in ch.resends]) for ch in res.chains] == [
        (2, known["ehlo"], [known["ehlo"] + 1])
    ]
    # the clean connections are gone from the store; the one with a resent segment stayed
    left = set(np.unique(res.frames["stream"]).tolist())
    assert {0, 1, 2} <= left and len(left) < len(res.connections)
    # what is computed from the rows is what it is with every row kept
    assert [c.to_json() for c in res.connections] == [c.to_json() for c in kept.connections]
    assert [ch.to_json() for ch in res.chains] == [ch.to_json() for ch in kept.chains]
    assert res.quality.to_json() == kept.quality.to_json()


@pytest.mark.parametrize("chunk", [1 << 9, 1 << 12])
def test_the_analysis_is_the_same_with_rows_moved_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    path, known = _capture(tmp_path / "late.pcap")
    monkeypatch.setattr(pipeline, "_CHUNK_BYTES", chunk)
    every_row = analyze_captures([path], jobs=1).to_json()
    every_fact = {k: asdict(v) for k, v in pipeline.analyze_capture(path).facts.items()}
    moved = _counting(monkeypatch)
    monkeypatch.setattr(engine, "_COMPACT_MIN", 1)
    compacted = analyze_captures([path], jobs=1).to_json()
    assert sum(moved) > 0
    assert compacted == every_row
    sessions = {s["client_port"]: s for s in compacted["smtp_sessions"]}
    assert len(sessions) == 15
    # the late reset of connection 1, though its other rows had left: from the server, its IP id
    # far from the server's earlier ones (9001-9005), so a middlebox is suspected
    all_facts = pipeline.analyze_capture(path).facts
    # every fact the verdicts read (SYN, FIN and RST frames, ACK maxima, spans, chains) is the same
    assert {k: asdict(v) for k, v in all_facts.items()} == every_fact
    facts = all_facts[1]
    assert [(r.frame, r.sender, r.ip_id, r.sender_ip_id_near, r.middlebox_suspected) for r in facts.rsts] == [
        (known["late_rst"], "server", 4242, False, True)
    ]


def test_no_room_for_the_spill_file_keeps_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _capture(tmp_path / "late.pcap")
    kept, _ = _analyze(path, chunk=1 << 9, compact=False)
    monkeypatch.setattr(engine, "_COMPACT_MIN", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    res, moved = _analyze(path, chunk=1 << 9, compact=True)
    assert moved == 0 and res.revived.size == 0
    assert res.frames["frame"].tolist() == kept.frames["frame"].tolist()
    assert [ch.to_json() for ch in res.chains] == [ch.to_json() for ch in kept.chains]


@pytest.mark.parametrize("block", [1 << 16, 37])
def test_generated_capture_same_with_rows_moved_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """37: the rows leave in many small blocks, a connection's rows split among them."""
    out = generated_capture(tmp_path / "gen.pcap")
    monkeypatch.setattr(pipeline, "_CHUNK_BYTES", 1 << 16)
    every_row = _everything(out)
    moved = _counting(monkeypatch)
    monkeypatch.setattr(engine, "_COMPACT_MIN", 1)
    monkeypatch.setattr(engine, "_MOVE_BLOCK", block)
    assert _everything(out) == every_row
    assert len(every_row["doc"]["smtp_sessions"]) > 100
    assert sum(moved) > 1000  # most of the capture's rows left the store on the way


@pytest.mark.parametrize("path", corpus_params(corpus_captures()), ids=lambda p: p.name if p else "none")
def test_corpus_same_with_rows_moved_out(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "_CHUNK_BYTES", 1 << 15)
    every_row = _everything(path)
    monkeypatch.setattr(engine, "_COMPACT_MIN", 1)
    assert _everything(path) == every_row


# --- thinning: a finished connection read row by row keeps only the rows its end reads ----------


def _rows(spec: list[tuple[int, int, int, str, int, int, int, int, int]]) -> dict[str, np.ndarray]:
    """Store rows from (frame, stream, kdir, tcp flags, seq, ack, payload, mailwire, orig_frame)."""
    bits = {"S": 0x02, "F": 0x01, "R": 0x04, "A": 0x10, "P": 0x08}
    cols: dict[str, list[int]] = {k: [] for k in ("frame", "stream", "kdir", "tcp_flags", "seq", "ack",
                                                  "payload_len", "mailwire", "orig_frame")}  # fmt: skip
    for fr, st, kd, fl, seq, ack, plen, mw, orig in spec:
        for k, v in zip(cols, (fr, st, kd, sum(bits[c] for c in fl), seq, ack, plen, mw, orig), strict=True):
            cols[k].append(v)
    dt = {"frame": np.int64, "stream": np.int32, "kdir": np.int8, "tcp_flags": np.int16,
          "seq": np.uint32, "ack": np.uint32, "payload_len": np.int32, "mailwire": np.uint32,
          "orig_frame": np.int32}  # fmt: skip
    out = {k: np.array(v, dtype=dt[k]) for k, v in cols.items()}
    out["seglen"] = out["payload_len"].copy()
    out["ts_ns"] = out["frame"] * 1000
    return out


def test_witness_rows_are_the_ones_the_facts_read() -> None:
    from mailwire.tcp.analysis import F_RETRANSMISSION

    rt = F_RETRANSMISSION
    c = _rows([
        (1, 0, 0, "S", 999, 0, 0, 0, -1),
        (2, 0, 1, "SA", 4999, 1000, 0, 0, -1),
        (3, 0, 0, "A", 1000, 5000, 0, 0, -1),
        (4, 0, 0, "PA", 1000, 5000, 100, 0, -1),
        (5, 0, 0, "PA", 1100, 5000, 300, 0, -1),  # the largest before the first lost segment
        (6, 0, 1, "PA", 5000, 1100, 250, 0, -1),  # the server's data: nothing of it was resent
        (7, 0, 0, "PA", 1400, 5250, 200, 0, -1),  # lost: bytes 1400-1600
        (8, 0, 1, "A", 5000, 1400, 0, 0, -1),  # after it, short of its end
        (9, 0, 0, "PA", 1400, 5000, 200, rt, 7),  # sent again
        (10, 0, 1, "A", 5000, 1600, 0, 0, -1),  # the first ACK past its end
        (11, 0, 1, "A", 5000, 1600, 0, 0, -1),
        (12, 0, 0, "A", 1600, 5000, 0, 0, -1),  # the client's last frame before its reset
        (13, 0, 1, "A", 5000, 1600, 0, 0, -1),
        (14, 0, 0, "R", 1600, 0, 0, 0, -1),
        (15, 1, 1, "A", 7000, 3000, 0, 0, -1),  # another connection: the server's last before its RST
        (16, 1, 0, "A", 3000, 7000, 0, 0, -1),
        (17, 1, 1, "RA", 7000, 3000, 0, 0, -1),
    ])  # fmt: skip
    keep = pipeline._Raw().witnesses(c)
    # SYNs and resets; the frames before each reset by their senders (12; 15, not 16 nor 13);
    # the first ACK covering the lost bytes (10, not 8 or 11); the largest earlier segment (5)
    assert c["frame"][keep].tolist() == [1, 2, 5, 10, 12, 14, 15, 17]


def _troubled_dialogue(f: Flow, t: int, rst_after: str = "") -> tuple[list[Any], int]:
    """Handshake, greeting, an EHLO sent and sent again 300 ms later, the reply, QUIT, both FINs,
    the last ACK (then a reset from ``rst_after`` at once, if given)."""
    out = [*f.handshake(t)]
    t += ms(30)
    out.append(f.send(t, "s2c", SMTP_GREETING))
    seq = f.nxt["c2s"]
    out.append(f.send(t + ms(10), "c2s", b"EHLO client.example.org\r\n"))
    out.append(f.resend(t + ms(310), "c2s", seq, b"EHLO client.example.org\r\n"))
    t += ms(320)
    for d, data in (("s2c", b"250 mx.example.net\r\n"), ("c2s", b"QUIT\r\n"), ("s2c", b"221 bye\r\n")):
        out.append(f.send(t, d, data))
        t += ms(10)
    out += [f.fin(t, "s2c"), f.fin(t + ms(5), "c2s"), f.ack(t + ms(10), "s2c")]
    if rst_after:
        out.append(f.rst(t + ms(11), rst_after, ip_id=7777))
    return out, t + ms(40)


def _thinned_capture(path: Path) -> Path:
    """Connections 0-2 resend their EHLO and close; 2 is reset by its client right after its
    last ACK; twelve clean ones follow, then a late reset of connection 1 by the server."""
    flows = [Flow(f"192.0.2.{30 + i}", 43001 + i, SERVER, 25) for i in range(3)]
    frames: list[Any] = []
    t = 0
    for i, f in enumerate(flows):
        more, t = _troubled_dialogue(f, t, rst_after="c2s" if i == 2 else "")
        frames += more
    for i in range(12):
        filler, t = smtp_dialogue(Flow(f"203.0.113.{40 + i}", 44001 + i, SERVER, 25), t)
        frames += filler
    frames.append(flows[1].rst(t, "s2c", ip_id=4242))
    return write(path, sorted(frames, key=lambda x: x[0]))


def _finishing(monkeypatch: pytest.MonkeyPatch) -> list[tuple[engine.TcpResult, dict[str, np.ndarray]]]:
    """The TCP results the analyses from here on finish with, and their frames as they came
    (the pipeline lets them go once read): the real method, recorded."""
    got: list[tuple[engine.TcpResult, dict[str, np.ndarray]]] = []
    real = TcpAnalyzer.finish

    def recorded(self: TcpAnalyzer) -> engine.TcpResult:
        res = real(self)
        got.append((res, dict(res.frames)))
        return res

    monkeypatch.setattr(TcpAnalyzer, "finish", recorded)
    return got


def _same_compacted(
    path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, *, spill_dir: Path | None = None
) -> list[tuple[engine.TcpResult, dict[str, np.ndarray]]]:
    """Analyse ``path`` in chunks of ``chunk`` bytes with every row kept, then compacting at
    every doubling (the spill file in ``spill_dir``, if given): the same facts and document.
    Returns the TCP results of the compacted analyses."""
    monkeypatch.setattr(pipeline, "_CHUNK_BYTES", chunk)
    every_row = _everything(path)
    results = _finishing(monkeypatch)
    monkeypatch.setattr(engine, "_COMPACT_MIN", 1)
    if spill_dir is not None:
        monkeypatch.setattr(tempfile, "tempdir", str(spill_dir))
    assert _everything(path) == every_row  # the facts and the whole document
    return results


@pytest.mark.parametrize("chunk", [1 << 9, 1 << 12])
def test_thinned_connections_keep_the_rows_their_facts_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    path = _thinned_capture(tmp_path / "thin.pcap")
    res, frames = _same_compacted(path, monkeypatch, chunk)[-1]
    summed, revived = set(res.summed.tolist()), set(res.revived.tolist())
    # connections 0 and 2 were thinned and stayed so (2 with its reset: the row before it stays);
    # 1 was thinned, then reset: every row came back
    assert {0, 2} <= summed and 1 in revived and 1 not in summed
    # of connection 0's twelve frames: SYN, SYN-ACK, the EHLO and its resend, the reply that
    # acknowledged it, both FINs (frames 1-12 in capture order)
    assert frames["frame"][frames["stream"] == 0].tolist() == [1, 2, 5, 6, 7, 10, 11]
    assert (frames["stream"] == 1).sum() == 13
    facts = pipeline.analyze_capture(path).facts
    assert [(r.sender, r.ip_id) for r in facts[1].rsts] == [("server", 4242)]
    # connection 2's reset right after its last ACK: the client's IP id before it is its ACK's
    assert [(r.sender, r.ip_id) for r in facts[2].rsts] == [("client", 7777)]
    assert [(ch.orig_frame, ch.acked, ch.ack_frame) for ch in facts[0].chains] == [(5, True, 7)]


def test_no_room_for_the_spill_file_thins_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _thinned_capture(tmp_path / "thin.pcap")
    res, frames = _same_compacted(path, monkeypatch, 1 << 9, spill_dir=tmp_path / "no-such-dir")[-1]
    assert res.summed.size == 0 and res.revived.size == 0
    assert (frames["stream"] == 0).sum() == 12  # every row of connection 0 stayed


def test_a_thinned_connection_whose_rows_all_stayed_is_summed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # connection 0: SYN, the SYN sent again, SYN-ACK, both FINs (each acknowledging the other's
    # bytes): every row is one its facts read, so thinning moves none; a reset comes much later
    a = Flow("192.0.2.50", 45001, SERVER, 25)
    syn = a.syn(0)
    frames = [syn, (ms(1000), syn[1]), a.synack(ms(1010))]
    a.nxt["c2s"], a.nxt["s2c"] = (a.isn["c2s"] + 1) & 0xFFFFFFFF, (a.isn["s2c"] + 1) & 0xFFFFFFFF
    frames += [a.fin(ms(1020), "c2s"), a.fin(ms(1030), "s2c")]
    t = ms(1100)
    for i in range(12):
        filler, t = smtp_dialogue(Flow(f"203.0.113.{60 + i}", 46001 + i, SERVER, 25), t)
        frames += filler
    frames.append(a.rst(t, "s2c", ip_id=5151))
    path = write(tmp_path / "stayed.pcap", sorted(frames, key=lambda x: x[0]))
    res, _ = _same_compacted(path, monkeypatch, 1 << 9)[-1]
    assert 0 in set(res.revived.tolist()) and 0 not in set(res.summed.tolist())
    facts = pipeline.analyze_capture(path).facts[0]
    assert facts.syn_frames == [1, 2] and [r.ip_id for r in facts.rsts] == [5151]

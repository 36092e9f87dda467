"""The TCP columns for `mailwire packets` equal tshark's per-frame fields on a real capture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mailwire.capture.read import iter_tables
from mailwire.tcp.packets import PacketColumns
from tests.tcp.oracle import run_tshark
from tests.tcp.test_tshark_agreement import ALLOWED


def test_packet_columns_match_tshark(tshark: str, shared_captures: Path) -> None:
    path = shared_captures / "zeek__smtp.pcap"
    ts = run_tshark(tshark, path)
    pc = PacketColumns()
    seen = 0
    for table in iter_tables(path, chunk_bytes=8192):  # many chunks: state carried across them
        rows = np.arange(len(table))
        cols = pc.columns(table, rows)
        for j, frame in enumerate(table["frame"].tolist()):
            t = ts.get(frame)
            stream = json.loads(cols["stream"][j])
            assert stream == (t.stream if t else None), frame
            if stream is None:
                continue
            seen += 1
            assert set(json.loads(cols["analysis"][j])) == set(t.flags), frame
            for ours in ("ack_rtt", "initial_rtt", "bytes_in_flight", "rto_frame"):
                theirs = f"tcp.analysis.{ours}"
                v = json.loads(cols[ours][j])
                w = t.values.get(theirs)
                assert (v is None) == (w is None), (frame, ours, v, w)
                if v is not None:
                    assert abs(float(v) - float(w)) < 1e-6, (frame, ours, v, w)
    assert seen > 100


def test_analysis_values_agree_with_tshark_on_corpus(tshark: str, shared_captures: Path) -> None:
    """ack_rtt, initial_rtt, bytes_in_flight, rto, rto_frame and the dup-ACK fields, every frame."""
    from mailwire.capture.read import CaptureError
    from tests.conftest import corpus_captures

    names = {"dupack_num": "duplicate_ack_num", "dupack_frame": "duplicate_ack_frame"}
    total: dict[str, int] = {}
    bad: dict[str, list[tuple[str, int, object, object]]] = {}
    for path in corpus_captures():
        ts = run_tshark(tshark, path)
        pc = PacketColumns()
        try:
            tables = list(iter_tables(path))
        except CaptureError:
            continue
        for table in tables:
            if not len(table):
                continue
            cols = pc.columns(table, np.arange(len(table)))
            for j, frame in enumerate(table["frame"].tolist()):
                t = ts.get(frame)
                if t is None or t.stream is None:
                    continue
                for ours in ("ack_rtt", "initial_rtt", "bytes_in_flight", "rto", "rto_frame", *names):
                    v = json.loads(cols[ours][j])
                    w = t.values.get(f"tcp.analysis.{names.get(ours, ours)}")
                    if v is None and w is None:
                        continue
                    total[ours] = total.get(ours, 0) + 1
                    if (v is None) != (w is None) or abs(float(v) - float(w)) > 1e-6:
                        bad.setdefault(ours, []).append((path.name, frame, v, w))
    for name, n in sorted(total.items()):
        print(f"{name:16s} {n:5d} values, {len(bad.get(name, [])):3d} differ: {bad.get(name, [])[:3]}")
    assert sum(total.values()) > 4000  # the corpus has ~4900 such values: the comparison really ran
    for name, n in total.items():
        assert len(bad.get(name, [])) <= 0.01 * n, (name, bad.get(name))


def test_mailwire_packets_command_has_stream_and_analysis(tshark: str, shared_captures: Path) -> None:
    import subprocess
    import sys

    path = shared_captures / "ark__smtp-decrypted.pcap"
    proc = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "packets", str(path), "-Y", "tcp"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    ts = run_tshark(tshark, path)
    assert len(recs) == len([t for t in ts.values() if t.stream is not None]) > 50
    for rec in recs:
        t = ts[rec["frame"]]
        assert rec["stream"] == t.stream
        if (path.name, rec["frame"]) not in ALLOWED:  # the documented difference (frame 28)
            assert set(rec["analysis"]) == set(t.flags)

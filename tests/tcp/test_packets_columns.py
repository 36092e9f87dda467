"""The TCP columns for `mailwire packets` equal tshark's per-frame fields on a real capture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mailwire.capture.read import iter_tables
from mailwire.tcp.packets import PacketColumns
from tests.tcp.oracle import run_tshark


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

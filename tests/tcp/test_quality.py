"""Capture-quality facts on corpus traces whose peers (MANIFEST, tshark, Zeek) state them."""

from __future__ import annotations

from pathlib import Path

from mailwire.capture.read import iter_tables
from mailwire.tcp import analyze
from tests.tcp.oracle import run_tshark


def test_duplicated_frames(shared_captures: Path, tshark: str) -> None:
    path = shared_captures / "zeek__tcp_ssh-dups.pcap"  # every segment captured 4 times
    res = analyze(iter_tables(path))
    flagged = [f for f, t in run_tshark(tshark, path).items() if t.flags]
    assert res.quality.duplicate_frames == len(flagged) == 280  # tshark calls each copy a resend / dup ACK
    assert res.quality.notes
    # Zeek's final history for this connection (tcp-dups.out baseline): exact dups count as 't'
    assert res.connections[0].history == "ShADTadtTtFf"
    assert not [ch for ch in res.chains if any(r.cause != "network_duplicate" for r in ch.resends)]


def test_one_direction_only(shared_captures: Path) -> None:
    res = analyze(iter_tables(shared_captures / "zeek__smtp-one-side-only.pcap"))
    assert res.quality.one_direction_connections == 1
    (q,) = res.quality.connections
    assert q.one_direction


def test_acked_unseen_is_capture_loss(shared_captures: Path, tshark: str) -> None:
    path = shared_captures / "zeek__smtp_smtp-bdat-gap.pcap"
    res = analyze(iter_tables(path))
    ts = run_tshark(tshark, path)
    assert res.quality.acked_unseen == sum("ack_lost_segment" in t.flags for t in ts.values()) == 2
    assert 0 < res.quality.capture_loss_pct < 10


def test_snaplen_truncation(shared_captures: Path) -> None:
    res = analyze(iter_tables(shared_captures / "zeek__tcp_truncated-header.pcap"))
    assert res.quality.truncated_frames == 24  # MANIFEST: all 24 frames sliced after the TCP header

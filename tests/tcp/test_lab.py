"""The lab's scenarios through the TCP stage: what the issue's acceptance asks of them.

Expected values come from the lab's ground truth (truth.json: which fault was injected) and the
kernel's documented RTO behaviour (Linux: first RTO ~ 200 ms + RTT variance, then doubling).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.capture.read import iter_tables
from mailwire.tcp import analyze

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_incident_stalled_connections_show_doubling_rto_chains(lab_run: Callable[[str], Path]) -> None:
    d = lab_run("size_drop")
    truth = json.loads((d / "truth.json").read_text())
    res = analyze(iter_tables(d / "sender.pcap"))
    stalled = [c for c in res.connections if c.c2s.stall_unresolved]
    assert stalled, "size_drop: the sender's big DATA segments are dropped, so some sessions stall"
    for conn in stalled:
        chains = [ch for ch in res.chains if ch.conn_id == conn.id and len(ch.resends) >= 3]
        assert chains, conn.id
        ch = chains[0]
        assert ch.direction == "c2s" and ch.doubling
        assert all(r.cause == "rto" for r in ch.resends)
        iv = ch.intervals_s
        assert 0.2 <= iv[0] <= 0.5 and all(1.4 <= b / a <= 2.6 for a, b in itertools.pairwise(iv))
        assert ch.length > 1000  # it is a full-size segment that is lost (the injected size drop)
    # at the edge (behind the dropping box) those segments never appear: nothing is resent there
    edge = analyze(iter_tables(d / "edge.pcap"))
    assert not [ch for ch in edge.chains if len(ch.resends) >= 3]
    assert truth["fault"]["kind"]


def test_zero_window_episode_and_duration(lab_run: Callable[[str], Path]) -> None:
    d = lab_run("zero_window")
    res = analyze(iter_tables(d / "sender.pcap"))
    eps = [(c, e) for c in res.connections for e in c.zero_window]
    assert eps, "the MX stops reading: it must advertise a zero window"
    _conn, ep = eps[0]
    assert ep.direction == "s2c"  # the server (receiver of DATA) advertised it
    assert ep.duration_s is not None and ep.duration_s > 1.0
    first_zero = min(int(f) for f, m in zip(res.frames["frame"], res.frames["wireshark"], strict=True)
                     if m & (1 << 7))  # fmt: skip
    assert ep.start_frame == first_zero
    # mailwire calls the sender's keep-alive-shaped probes what they are
    probes = [f for f, m in zip(res.frames["frame"], res.frames["mailwire"], strict=True) if m & (1 << 8)]
    assert probes

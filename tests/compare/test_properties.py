"""Property: whatever subset of the client's body segments is lost between two points (with the
retransmissions that follow), the comparison counts exactly those transmissions as lost, in the
right direction, at any clock offset, and never reports anything injected."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwire.compare import compare_captures
from tests.compare.builder import Pkt, conversation, hop_delay, observe, write


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drops=st.lists(st.booleans(), min_size=40, max_size=40),
    offset_s=st.integers(min_value=-86_400, max_value=86_400),
    seg=st.sampled_from([200, 536, 1448]),
)
def test_lost_transmissions_are_counted_exactly(drops: list[bool], offset_s: int, seg: int) -> None:
    it = iter(drops * 4)

    def drop(p: Pkt) -> bool:
        return next(it, False)

    pk = conversation(n_data=12, seg=seg, drop=drop, max_retx=2)
    dropped = sum(1 for p in pk if p.meta.get("drop"))
    with tempfile.TemporaryDirectory() as tmp:
        a = write(Path(tmp) / "a.pcap", observe(pk))
        b = write(
            Path(tmp) / "b.pcap",
            observe(
                pk, keep=lambda p: not p.meta.get("drop"), delay_ns=hop_delay, offset_ns=offset_s * 10**9
            ),
        )
        hop = compare_captures([a, b]).to_json()["hops"][0]
    assert hop["lost"]["a_to_b"]["lost"] == dropped
    assert hop["lost"]["b_to_a"]["lost"] == 0
    assert hop["injected"]["a_to_b"]["packets"] == hop["injected"]["b_to_a"]["packets"] == 0
    assert abs(hop["clock_offset_s"] - offset_s) < 0.0011
    assert hop["matched"]["packets"] == len(pk) - dropped
    assert (hop["verdict"]["kind"] == "no_loss") == (dropped == 0)

"""mailwire's Wireshark-compatible flags and tcp.stream vs tshark 4.0, frame by frame.

Every disagreement must be listed in ALLOWED with the reason mailwire's reading stands (or the
reason tshark 4.0.17's behaviour could not be derived from its source); at least 99.5 % of the
frames that either tool flags must agree. Agreement per flag is printed (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import corpus_captures
from tests.tcp.oracle import TSHARK_FLAGS, Comparison, compare

# (capture file name, frame) -> why the difference is accepted
ALLOWED: dict[tuple[str, int], str] = {
    ("ark__smtp-decrypted.pcap", 28): (
        "ack_lost_segment: tshark 4.0.17 suppresses this second 'ACKed unseen' for a hole it already "
        "reported; the 4.0 source we read (boundary := nextseq) reports it, and the ACK does cover "
        "bytes never captured"
    ),
    ("zeek__tcp_reassembly.pcap", 105): (
        "ack_lost_segment: the ACK (31406) covers bytes 29958..31406 that were never captured (the "
        "next data frame 106 is 'previous segment not captured'); tshark 4.0.17 stays silent"
    ),
}


def _report(results: list[Comparison]) -> tuple[int, int]:
    flagged = sum(r.flagged for r in results)
    agree = sum(r.agree for r in results)
    totals = {n: [0, 0, 0] for n in TSHARK_FLAGS}
    for r in results:
        assert r.per_flag is not None
        for n, v in r.per_flag.items():
            for i in range(3):
                totals[n][i] += v[i]
    print(f"\nframes flagged by either tool: {flagged}, identical flag sets: {agree} "
          f"({100.0 * agree / max(flagged, 1):.2f} %)")  # fmt: skip
    print(f"{'flag':26s} {'both':>6s} {'tshark':>7s} {'mailwire':>9s} {'agree %':>8s}")
    for n, (both, t_only, o_only) in totals.items():
        tot = both + t_only + o_only
        if tot:
            print(f"{n:26s} {both:6d} {t_only:7d} {o_only:9d} {100.0 * both / tot:8.2f}")
    return flagged, agree


def _check(results: list[Comparison]) -> None:
    flagged, agree = _report(results)
    unexplained = []
    for r in results:
        name = Path(r.path).name
        assert r.disagreements is not None and r.stream_disagreements is not None
        for frame, t_flags, o_flags in r.disagreements:
            if (name, frame) not in ALLOWED:
                unexplained.append(
                    f"{name} frame {frame}: tshark {sorted(t_flags)} mailwire {sorted(o_flags)}"
                )
        for frame, t_stream, o_stream in r.stream_disagreements:
            unexplained.append(f"{name} frame {frame}: tcp.stream tshark {t_stream} mailwire {o_stream}")
    assert not unexplained, "\n".join(unexplained)
    assert flagged == 0 or agree / flagged >= 0.995


def test_corpus_agrees_with_tshark(tshark: str, shared_captures: Path) -> None:
    files = corpus_captures()
    assert files, "corpus is empty"
    results = []
    for path in files:
        results.append(compare(tshark, path))
    stream_frames = sum(r.stream_frames for r in results)
    assert stream_frames > 1500  # the corpus has ~2200 TCP frames: the comparison really ran
    _check(results)


def test_lab_example_agrees_with_tshark(tshark: str) -> None:
    """The committed lab capture pair (examples/incident: size_drop scenario)."""
    root = Path(__file__).resolve().parents[2] / "examples" / "incident"
    files = [p for p in (root / "sender.pcap", root / "edge.pcap") if p.is_file()]
    if not files:
        pytest.skip(f"no lab example captures under {root}")
    results = [compare(tshark, p) for p in files]
    assert sum(r.flagged for r in results) > 0  # the incident has retransmissions
    _check(results)


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario",
    ["healthy", "size_drop", "pmtud_blackhole", "intermittent", "random_loss", "zero_window", "rst_injected"],
)
def test_lab_scenarios_agree_with_tshark(tshark: str, lab_run, scenario: str) -> None:  # type: ignore[no-untyped-def]
    d = lab_run(scenario)
    results = [compare(tshark, p) for p in sorted(d.glob("*.pcap"))]
    assert results
    _check(results)

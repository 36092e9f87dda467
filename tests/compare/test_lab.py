"""End to end: the lab's real captures (sender, edge, recv) compared; the hop and the verdict must
match what the lab injected (truth.json), the loss rate what tshark counts as missing downstream."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailwire.compare import compare_captures
from tests.compare.schema import load_schema
from tests.lab import scenarios
from tests.lab.truth import read as read_truth

pytestmark = pytest.mark.lab

POINTS = ("sender", "edge", "recv")
# The verdict expected on the hop the fault sits on (truth "between"); every other hop: no_loss.
EXPECTED = {
    "size_drop": "size_dependent_loss",
    "pmtud_blackhole": "size_dependent_loss",
    "intermittent_size_drop": "size_dependent_loss",
    "random_loss": "random_loss",
    "rst_injected": "injected_packets",
    "host_unreachable": "directional_loss",
}
# Faults at the receiver (or none): no loss anywhere on the path.
NO_PATH_FAULT = ("healthy", "reject_5xx", "defer_4xx", "zero_window", "remote_down_closed")


def _compare(d: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    truth = read_truth(d / "truth.json")
    paths = [d / f"{p}.pcap" for p in POINTS if (d / f"{p}.pcap").is_file()]
    doc = compare_captures(paths).to_json()
    jsonschema.validate(doc, load_schema())
    return doc, truth


def _hop(doc: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    for h in doc["hops"]:
        if Path(h["upstream"]).name == f"{a}.pcap" and Path(h["downstream"]).name == f"{b}.pcap":
            return h
    raise AssertionError(f"no hop {a} -> {b}")


@pytest.mark.parametrize("name", NO_PATH_FAULT)
def test_no_fault_on_the_path(lab_run: Callable[[str], Path], name: str) -> None:
    doc, truth = _compare(lab_run(name))
    assert truth["fault"]["between"] is None
    for h in doc["hops"]:
        assert h["verdict"]["kind"] == "no_loss", h["verdict"]["sentence"]
        assert h["matched"]["connections"] >= 1


@pytest.mark.parametrize(
    "name", ["size_drop", "pmtud_blackhole", "intermittent", "rst_injected", "remote_down_unreachable"]
)
def test_fault_localised_on_its_hop(lab_run: Callable[[str], Path], name: str) -> None:
    doc, truth = _compare(lab_run(name))
    a, b = truth["fault"]["between"]
    hop = _hop(doc, a, b)
    assert hop["verdict"]["kind"] == EXPECTED[truth["fault"]["kind"]], hop["verdict"]["sentence"]
    for other in doc["hops"]:
        if other is not hop:
            assert other["verdict"]["kind"] == "no_loss", other["verdict"]["sentence"]


@pytest.mark.parametrize("name", ["size_drop", "pmtud_blackhole"])
def test_size_drop_details(lab_run: Callable[[str], Path], name: str) -> None:
    doc, truth = _compare(lab_run(name))
    hop = _hop(doc, *truth["fault"]["between"])
    v = hop["verdict"]
    assert v["direction"] == "a_to_b"  # sender -> MX
    # the lab's limit: iptables --length 1001: (size_drop) or the 1280-byte link MTU (pmtud)
    limit = 1000 if name == "size_drop" else 1280
    assert v["details"]["smallest_lost_bytes"] > limit
    assert v["details"]["largest_delivered_bytes"] <= limit
    assert v["details"]["icmp_frag_needed_seen"] is False  # none sent (size_drop) or all dropped (pmtud)
    assert hop["lost"]["b_to_a"]["lost"] == 0


def test_gap_frames_are_tsharks_previous_segment_not_captured(
    lab_run: Callable[[str], Path], tshark: str
) -> None:
    d = lab_run("size_drop")
    doc, truth = _compare(d)
    hop = _hop(doc, *truth["fault"]["between"])
    ev = next(e for e in hop["evidence"] if e.get("kind") == "after_gap")
    assert Path(ev["file"]).name == "edge.pcap"
    out = subprocess.run(
        [tshark, "-r", str(d / "edge.pcap"), "-Y",
         f"tcp.analysis.lost_segment && ip.src == {truth['addresses']['sender']}",
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    flagged = {int(x) for x in out.split()}
    assert flagged, "tshark flags no gap at the edge"
    assert flagged <= set(ev["frames"])
    # the evidence's display filter selects exactly its frames in tshark
    sel = subprocess.run(
        [tshark, "-r", str(d / "edge.pcap"), "-Y", ev["filter"], "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert sorted(int(x) for x in sel.split()) == sorted(ev["frames"])


def test_intermittent_affects_some_connections(lab_run: Callable[[str], Path]) -> None:
    doc, truth = _compare(lab_run("intermittent"))
    hop = _hop(doc, *truth["fault"]["between"])
    stuck = sum(1 for m in truth["messages"] if m["expected_outcome"] != "delivered")
    details = hop["verdict"]["details"]
    if "connections_affected" in details:  # the healthy connections passed large packets
        assert details["connections_affected"] == stuck
        assert details["connections"] > stuck


def test_rst_injected_towards_sender(lab_run: Callable[[str], Path]) -> None:
    doc, truth = _compare(lab_run("rst_injected"))
    hop = _hop(doc, *truth["fault"]["between"])
    # the lb forges the reset towards the sender: seen at sender.pcap, never at edge.pcap
    assert hop["verdict"]["direction"] == "b_to_a"
    assert hop["injected"]["b_to_a"]["rst"] >= 1
    ev = next(e for e in hop["evidence"] if e.get("kind") == "injected")
    assert Path(ev["file"]).name == "sender.pcap"


def _tshark_missing(tshark: str, up: Path, down: Path, src: str) -> tuple[int, int]:
    """Packets from ``src`` in ``up`` that ``down`` lacks, by (ip.id, seq, len) multiset: (missing, sent)."""

    def rows(p: Path) -> Counter[tuple[str, ...]]:
        out = subprocess.run(
            [tshark, "-r", str(p), "-Y", f"tcp && ip.src == {src}", "-T", "fields", "-E", "separator=|",
             "-e", "ip.src", "-e", "ip.dst", "-e", "ip.id", "-e", "tcp.seq_raw", "-e", "tcp.len"],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        return Counter(tuple(line.split("|")) for line in out.splitlines())

    ru, rd = rows(up), rows(down)
    return sum((ru - rd).values()), sum(ru.values())


def test_random_loss_rate(lab_run: Callable[[str], Path], tshark: str) -> None:
    d = lab_run("random_loss")
    doc, truth = _compare(d)
    a, b = truth["fault"]["between"]
    hop = _hop(doc, a, b)
    assert hop["verdict"]["kind"] == "random_loss", hop["verdict"]["sentence"]
    m = re.search(r"--probability ([0-9.]+)", truth["fault"]["iptables"][0]["rule"])
    assert m is not None
    p = float(m.group(1))
    # what was dropped, per tshark: sender's packets missing at the edge, the MX's missing at the sender
    lost_ab, sent_ab = _tshark_missing(tshark, d / f"{a}.pcap", d / f"{b}.pcap", truth["addresses"]["sender"])
    lost_ba, sent_ba = _tshark_missing(tshark, d / f"{b}.pcap", d / f"{a}.pcap", truth["addresses"]["mx"])
    dropped = (lost_ab + lost_ba) / (sent_ab + sent_ba)
    rate = hop["verdict"]["details"]["rate"]
    assert abs(rate - dropped) <= 0.02, (rate, dropped)
    assert abs(hop["lost"]["a_to_b"]["rate"] - lost_ab / sent_ab) <= 0.02
    assert abs(rate - p) <= 0.05  # the rule's probability, loosely (a few hundred packets)


def _snat(src: Path, dst: Path, client: str, new_addr: str, port_shift: int) -> int:
    """Rewrite a capture as if a load balancer had translated the client's address and port (IPv4;
    checksums are not recomputed: nothing here verifies them). Returns the frames rewritten."""
    import ipaddress

    from mailwire.capture.read import read_table
    from mailwire.capture.write import write_pcap

    t = read_table(src)
    old = ipaddress.IPv4Address(client).packed
    new = ipaddress.IPv4Address(new_addr).packed
    frames, n = [], 0
    for i in range(len(t)):
        f = bytearray(t.frame_bytes(i))
        l3, l4 = int(t["l3_off"][i]), int(t["l4_off"][i])
        if int(t["ip_version"][i]) == 4 and l3 >= 0:
            for off, port_off in ((l3 + 12, 0), (l3 + 16, 2)):  # (address, its port in the TCP header)
                if f[off : off + 4] == old:
                    f[off : off + 4] = new
                    if int(t["proto"][i]) == 6 and l4 >= 0:
                        p = int.from_bytes(f[l4 + port_off : l4 + port_off + 2], "big")
                        f[l4 + port_off : l4 + port_off + 2] = ((p + port_shift) % 65536).to_bytes(2, "big")
                    n += 1
        frames.append((int(t["ts_ns"][i]), bytes(f)))
    write_pcap(dst, frames, link_type=t.interfaces[0].link_type if t.interfaces else 1)
    return n


def test_snat_load_balancer_on_real_incident(lab_run: Callable[[str], Path], tmp_path: Path) -> None:
    d = lab_run("size_drop")
    truth = read_truth(d / "truth.json")
    plain = compare_captures([d / "sender.pcap", d / "edge.pcap"]).to_json()["hops"][0]
    edge = tmp_path / "edge-snat.pcap"
    assert _snat(d / "edge.pcap", edge, truth["addresses"]["sender"], "198.51.100.77", 1000) > 0
    doc = compare_captures([d / "sender.pcap", edge]).to_json()
    jsonschema.validate(doc, load_schema())
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "size_dependent_loss"
    assert set(hop["matched"]["by_method"]) == {"nat"}
    assert hop["matched"]["connections"] == plain["matched"]["connections"]
    for d_ in ("a_to_b", "b_to_a"):
        assert hop["lost"][d_]["lost"] == plain["lost"][d_]["lost"]
    assert all(c["downstream"].startswith("198.51.100.77:") for c in hop["connections"])


def test_every_scenario_has_an_expectation() -> None:
    for s in scenarios.SCENARIOS.values():
        assert s.name in NO_PATH_FAULT or s.fault in EXPECTED or s.fault == "syn_drop", s.name

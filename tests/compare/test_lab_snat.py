"""End to end on the lab's source-NATing load balancer (scenario ``size_drop_snat``): compare must
match each sender connection to its translated self at the edge (new address and port) and still
find the size-dependent loss on the sender -> edge hop. Expected values come from truth.json and
tshark, never from mailwire."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailwire.compare import compare_captures
from tests.compare.schema import load_schema
from tests.lab.truth import read as read_truth

pytestmark = pytest.mark.lab

SCENARIO = "size_drop_snat"


def _count(tshark: str, pcap: Path, display_filter: str) -> int:
    out = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return len(out.split())


def _hop(lab_run: Callable[[str], Path]) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    d = lab_run(SCENARIO)
    truth = read_truth(d / "truth.json")
    doc = compare_captures([d / "sender.pcap", d / "edge.pcap"]).to_json()
    jsonschema.validate(doc, load_schema())
    assert len(doc["hops"]) == 1
    hop = doc["hops"][0]
    assert Path(hop["upstream"]).name == f"{truth['fault']['between'][0]}.pcap"
    assert Path(hop["downstream"]).name == f"{truth['fault']['between'][1]}.pcap"
    return d, truth, hop


def test_size_dependent_loss_through_snat(lab_run: Callable[[str], Path], tshark: str) -> None:
    d, truth, hop = _hop(lab_run)
    v = hop["verdict"]
    assert v["kind"] == "size_dependent_loss", v["sentence"]
    assert v["direction"] == "a_to_b"  # sender -> MX
    assert v["details"]["smallest_lost_bytes"] > 1000  # the rule: --length 1001:65535 -j DROP
    assert v["details"]["largest_delivered_bytes"] <= 1000
    assert v["details"]["icmp_frag_needed_seen"] is False
    # What tshark says vanished: every sender->MX packet over 1000 bytes (none reaches the edge).
    sender, mx_net = truth["addresses"]["sender"], "203.0.113.0/24"
    big = _count(tshark, d / "sender.pcap", f"ip.src == {sender} && ip.dst == {mx_net} && ip.len > 1000")
    assert big > 0 and _count(tshark, d / "edge.pcap", "ip.len > 1000") == 0
    assert hop["lost"]["a_to_b"]["lost"] == big
    assert hop["lost"]["b_to_a"]["lost"] == 0


def test_connections_matched_through_the_translation(lab_run: Callable[[str], Path]) -> None:
    _, truth, hop = _hop(lab_run)
    nat = truth["fault"]["nat"]
    assert nat["kind"] == "snat"
    # One SMTP connection per message (the lab has no connection cache): all matched, by NAT.
    conns = sum(1 for m in truth["messages"] if m["expected_replies"])
    assert conns == len(truth["messages"]) == 3
    assert hop["matched"]["connections"] == conns
    assert hop["matched"]["by_method"] == {"nat": conns}
    assert hop["matched"]["unmatched_connections_upstream"] == 0
    assert hop["matched"]["unmatched_connections_downstream"] == 0
    lo, hi = nat["translated_ports"]
    assert len(hop["connections"]) == conns
    for c in hop["connections"]:
        assert c["method"] == "nat"
        assert c["upstream"].startswith(f"{nat['original_source']}:")
        addr_port = c["downstream"].split(" -> ")[0]
        addr, _, port = addr_port.rpartition(":")
        assert addr == nat["translated_source"] and lo <= int(port) <= hi, c["downstream"]
    # The stalled connections are the ones with losses; the delivered one lost nothing.
    stalled = sum(1 for m in truth["messages"] if m["expected_outcome"] == "deferred")
    assert sum(1 for c in hop["connections"] if c["a_to_b"]["lost"] > 0) == stalled

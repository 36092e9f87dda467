"""Crafted two-point captures: each test builds one conversation, applies one fault or one
transformation between the capture points, writes real pcaps and checks the comparison against
what the builder did (its drop marks, offsets and rewrites), never against the code under test."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailwire.compare import compare_captures
from mailwire.compare.result import SCHEMA_ID
from tests.compare.builder import (
    CLIENT,
    HOP_NS,
    RST,
    SERVER,
    Pkt,
    conversation,
    hop_delay,
    icmp_frag_needed,
    observe,
    write,
)
from tests.compare.schema import load_schema


def run(tmp_path: Path, a: list[tuple[int, bytes]], b: list[tuple[int, bytes]], *more: Any) -> dict[str, Any]:
    paths = [write(tmp_path / "sender.pcap", a), write(tmp_path / "edge.pcap", b)]
    for i, frames in enumerate(more):
        paths.append(write(tmp_path / f"point{i + 3}.pcap", frames))
    doc = compare_captures(paths).to_json()
    jsonschema.validate(doc, load_schema())
    assert doc["schema"] == SCHEMA_ID
    return doc


def frames_where(pkts: list[Pkt], pred: Any, delay: Any = lambda p: 0) -> list[int]:
    """Frame numbers (1-based) of the ``pred`` packets in a capture of ``pkts`` seen with ``delay``."""
    kept = sorted(pkts, key=lambda p: p.t_ns + delay(p))
    return [i + 1 for i, p in enumerate(kept) if pred(p)]


def not_dropped(p: Pkt) -> bool:
    return not p.meta.get("drop")


def test_size_dependent_drop_is_localised(tmp_path: Path) -> None:
    pk = conversation(n_data=30, drop=lambda p: len(p.payload) > 1000)
    dropped = [p for p in pk if p.meta.get("drop")]
    doc = run(tmp_path, observe(pk), observe(pk, keep=not_dropped, delay_ns=hop_delay))
    hop = doc["hops"][0]
    v = hop["verdict"]
    assert v["kind"] == "size_dependent_loss"
    assert v["direction"] == "a_to_b"
    assert v["details"]["icmp_frag_needed_seen"] is False
    assert v["details"]["lost_at_or_above"] == len(dropped)
    assert v["details"]["smallest_lost_bytes"] == 40 + 1448
    assert v["details"]["largest_delivered_bytes"] < 1000
    assert hop["lost"]["a_to_b"]["lost"] == len(dropped)
    assert hop["lost"]["b_to_a"]["lost"] == 0
    sizes = {c["class"]: c for c in hop["lost"]["a_to_b"]["by_size_class"]}
    assert sizes["1400-1499"]["lost"] == sizes["1400-1499"]["sent"] == len(dropped)
    assert sizes["<100"]["lost"] == 0 and sizes["<100"]["sent"] > 0
    ev = next(e for e in hop["evidence"] if e.get("kind") == "lost" and e["direction"] == "a_to_b")
    assert ev["file"].endswith("sender.pcap")
    assert ev["frames"] == frames_where(pk, lambda p: p.meta.get("drop"))
    assert "every packet of 1488 bytes or more was lost" in v["sentence"]
    assert "sender.pcap" in v["sentence"] and "edge.pcap" in v["sentence"]


def test_size_dependent_drop_with_icmp_frag_needed_seen(tmp_path: Path) -> None:
    pk = conversation(n_data=10, drop=lambda p: len(p.payload) > 1000)
    first_big = next(p for p in pk if p.meta.get("drop"))
    a = observe(pk)
    a.append((first_big.t_ns + 300_000, icmp_frag_needed("203.0.113.1", CLIENT, 1400, first_big)))
    a.sort(key=lambda x: x[0])
    doc = run(tmp_path, a, observe(pk, keep=not_dropped, delay_ns=hop_delay))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "size_dependent_loss"
    assert hop["verdict"]["details"]["icmp_frag_needed_seen"] is True
    icmp_frame = [i + 1 for i, (t, _) in enumerate(a) if t == first_big.t_ns + 300_000]
    assert [(x["frame"], x["mtu"], x["from"]) for x in hop["icmp_too_big"]] == [
        (icmp_frame[0], 1400, "203.0.113.1")
    ]
    assert "PMTUD got a signal" in hop["verdict"]["sentence"]


def test_random_loss_rate(tmp_path: Path) -> None:
    rng = random.Random(42)
    pk = conversation(n_data=1200, seg=600, drop=lambda p: rng.random() < 0.05)
    dropped = sum(1 for p in pk if p.meta.get("drop"))
    sent_c2s = sum(1 for p in pk if p.c2s)
    doc = run(tmp_path, observe(pk), observe(pk, keep=not_dropped, delay_ns=hop_delay))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "random_loss"
    assert hop["lost"]["a_to_b"]["lost"] == dropped
    assert hop["lost"]["a_to_b"]["sent"] == sent_c2s
    assert abs(hop["verdict"]["details"]["rate"] - 0.05) <= 0.02
    assert abs(hop["verdict"]["details"]["rate"] - dropped / sent_c2s) < 1e-9


def test_injected_rst_between_points(tmp_path: Path) -> None:
    pk = conversation(n_data=20)
    mid = pk[len(pk) // 2]
    forged = Pkt(
        t_ns=mid.t_ns + 50_000, c2s=True, seq=pk[-2].seq, ack=0, flags=RST, ip_id=0, ttl=250,
        src=CLIENT, dst=SERVER, sport=40000, dport=25,
    )  # fmt: skip
    b = observe([*pk, forged], delay_ns=hop_delay)
    doc = run(tmp_path, observe(pk), b)
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "injected_packets"
    assert hop["verdict"]["direction"] == "a_to_b"
    assert hop["injected"]["a_to_b"] == {"packets": 1, "rst": 1, "duplicates_downstream": 0}
    assert hop["lost"]["a_to_b"]["lost"] == 0 and hop["lost"]["b_to_a"]["lost"] == 0
    ev = next(e for e in hop["evidence"] if e["what"].startswith("injected"))
    assert ev["file"].endswith("edge.pcap")
    assert ev["frames"] == frames_where([*pk, forged], lambda p: p is forged, hop_delay)
    assert "never passed sender.pcap" in hop["verdict"]["sentence"]


def _causal(pk: list[Pkt], offset_s: float, delay: Any, off_true_ns: int) -> bool:
    """Given the estimated offset, does every packet arrive downstream after it left upstream?"""
    for p in pk:
        t_a = p.t_ns
        t_b_est = p.t_ns + delay(p) + off_true_ns - offset_s * 1e9  # B's time back on A's clock
        if p.c2s and t_b_est < t_a:
            return False
        if not p.c2s and t_a < t_b_est:
            return False
    return True


def test_clock_offset_of_hours(tmp_path: Path) -> None:
    off = 3 * 3600 * 10**9 + 123_456_789
    pk = conversation(n_data=20)
    doc = run(tmp_path, observe(pk), observe(pk, delay_ns=hop_delay, offset_ns=off))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    assert abs(hop["clock_offset_s"] - off / 1e9) < 0.0011
    assert _causal(pk, hop["clock_offset_s"], hop_delay, off)
    d = hop["clock"]["one_way_delay_s"]
    assert abs(d["a_to_b"]["min"] - HOP_NS / 1e9) < 1e-6 and abs(d["b_to_a"]["min"] - HOP_NS / 1e9) < 1e-6
    assert hop["matched"]["packets"] == len(pk)


def test_clock_offset_negative_with_drift(tmp_path: Path) -> None:
    # B's clock runs 50 ppm fast and starts 17.3 s behind; the session lasts long enough to see it
    pk = conversation(n_data=400, seg=200)
    for i, p in enumerate(pk):
        p.t_ns += i * 200_000_000  # stretch over ~80 s
    t0 = pk[0].t_ns
    off = -17_300_000_000

    def skew(p: Pkt) -> int:
        return hop_delay(p) + int((p.t_ns - t0) * 50e-6)

    doc = run(tmp_path, observe(pk), observe(pk, delay_ns=skew, offset_ns=off))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    assert abs(hop["clock"]["drift_ppm"] - 50.0) < 5.0
    assert hop["clock"]["violation_s"] == 0.0
    assert hop["matched"]["packets"] == len(pk)


def test_late_start_and_early_end_are_not_loss(tmp_path: Path) -> None:
    pk = conversation(n_data=40)
    t0, t1 = pk[0].t_ns, pk[-1].t_ns
    start, end = t0 + (t1 - t0) * 3 // 10, t0 + (t1 - t0) * 7 // 10
    b = observe(pk, delay_ns=hop_delay, start_ns=start, end_ns=end)
    doc = run(tmp_path, observe(pk), b)
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    for d in ("a_to_b", "b_to_a"):
        assert hop["lost"][d]["lost"] == 0
        assert hop["injected"][d]["packets"] == 0
    # every packet B holds is matched; what A sent while B was not running is outside, not lost
    assert hop["matched"]["packets"] == len(b)
    assert hop["lost"]["a_to_b"]["outside_window"] == sum(
        1 for p in pk if p.c2s and not start <= p.t_ns + hop_delay(p) <= end
    )


def test_ipv6(tmp_path: Path) -> None:
    rng = random.Random(3)
    pk = conversation(n_data=200, seg=1200, v6=True, drop=lambda p: rng.random() < 0.1)
    dropped = sum(1 for p in pk if p.meta.get("drop"))
    doc = run(tmp_path, observe(pk), observe(pk, keep=not_dropped, delay_ns=hop_delay))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "random_loss"
    assert hop["lost"]["a_to_b"]["lost"] == dropped
    assert hop["matched"]["packets"] == len(pk) - dropped
    assert hop["connections"][0]["upstream"] == "[2001:db8::10]:40000 -> [2001:db8:1::25]:25"


def test_snat_address_and_port_rewritten(tmp_path: Path) -> None:
    pk = conversation(n_data=30)

    def snat(p: Pkt) -> Pkt:
        if p.c2s:
            return replace(p, src="203.0.113.7", sport=61000, ttl=p.ttl - 1)
        return replace(p, dst="203.0.113.7", dport=61000)

    doc = run(tmp_path, observe(pk), observe(pk, delay_ns=hop_delay, rewrite=snat))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    assert hop["matched"]["by_method"] == {"nat": 1}
    conn = hop["connections"][0]
    assert conn["upstream"] == "192.0.2.10:40000 -> 198.51.100.25:25"
    assert conn["downstream"] == "203.0.113.7:61000 -> 198.51.100.25:25"
    assert hop["matched"]["packets"] == len(pk)
    assert hop["changed"]["a_to_b"]["ttl_decrement"] == {"1": sum(1 for p in pk if p.c2s)}


def test_full_proxy_same_bytes_different_isn_and_segmentation(tmp_path: Path) -> None:
    body = 30 * 1448
    front = conversation(seg=1448, body_len=body)
    back = conversation(
        seg=1000, body_len=body, isn_c=77_000_000, isn_s=123_456, sport=52000, client="203.0.113.5",
        t0_ns=front[0].t_ns + 3_000_000,
    )  # fmt: skip
    doc = run(tmp_path, observe(front), observe(back))
    hop = doc["hops"][0]
    assert hop["matched"]["by_method"] == {"full_proxy": 1}
    assert hop["verdict"]["kind"] == "no_loss"
    px = hop["proxied_connections"][0]
    c2s_bytes = sum(len(p.payload) for p in front if p.c2s)
    assert px["client_to_server"] == {"upstream_bytes": c2s_bytes, "downstream_bytes": c2s_bytes}
    assert px["downstream"] == "203.0.113.5:52000 -> 198.51.100.25:25"
    assert "full proxy" in hop["verdict"]["sentence"]


def test_duplicate_frames_are_counted_not_lost(tmp_path: Path) -> None:
    pk = conversation(n_data=20)
    b = observe(pk, delay_ns=hop_delay)
    b2 = sorted(b + [(t + 1_000, f) for t, f in b], key=lambda x: x[0])
    doc = run(tmp_path, observe(pk), b2)
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    n_c2s = sum(1 for p in pk if p.c2s)
    assert hop["injected"]["a_to_b"]["duplicates_downstream"] == n_c2s
    assert hop["lost"]["b_to_a"]["duplicate_frames_upstream"] == len(pk) - n_c2s
    assert hop["matched"]["packets"] == len(pk)
    # duplicated upstream instead: still no loss
    a = observe(pk)
    a2 = sorted(a + [(t + 1_000, f) for t, f in a], key=lambda x: x[0])
    doc = run(tmp_path, a2, b)
    assert doc["hops"][0]["verdict"]["kind"] == "no_loss"
    assert doc["hops"][0]["lost"]["a_to_b"]["duplicate_frames_upstream"] == n_c2s


def test_tso_super_segment_split_downstream(tmp_path: Path) -> None:
    pk = conversation(n_data=20)
    data = [p for p in pk if p.tag == "data"]
    merged: list[Pkt] = []
    supers = 0
    skip: set[int] = set()
    for i in range(0, len(data) - 1, 2):
        first, second = data[i], data[i + 1]
        merged.append(replace(first, payload=first.payload + second.payload, meta={}))
        skip.update({id(first), id(second)})
        supers += 1
    host = sorted([p for p in pk if id(p) not in skip] + merged, key=lambda p: p.t_ns)
    doc = run(tmp_path, observe(host), observe(pk, delay_ns=hop_delay))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    assert hop["lost"]["a_to_b"]["matched_by_range"] == supers
    assert hop["lost"]["a_to_b"]["lost"] == 0


def test_capture_loss_downstream_is_not_network_loss(tmp_path: Path) -> None:
    pk = conversation(n_data=30)
    data = [p for p in pk if p.tag == "data"]
    missing = {id(p) for p in data[5:8]}
    b = observe(pk, keep=lambda p: id(p) not in missing, delay_ns=hop_delay)
    doc = run(tmp_path, observe(pk), b)
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "capture_loss"
    assert hop["lost"]["a_to_b"]["capture_loss"] == 3
    assert hop["lost"]["a_to_b"]["lost"] == 0
    assert "edge.pcap" in hop["verdict"]["sentence"]


def test_capture_loss_dominates_unprovable_ack_loss(tmp_path: Path) -> None:
    pk = conversation(n_data=30)
    data = [p for p in pk if p.tag == "data"]
    missing = {id(p) for p in data[5:25]} | {id(pk[2])}  # 20 data segments and the handshake's ACK
    b = observe(pk, keep=lambda p: id(p) not in missing, delay_ns=hop_delay)
    hop = run(tmp_path, observe(pk), b)["hops"][0]
    assert hop["lost"]["a_to_b"]["capture_loss"] == 20
    assert hop["lost"]["a_to_b"]["lost"] == 1  # a pure ACK: nothing proves where it went
    assert hop["verdict"]["kind"] == "capture_loss"
    assert [f["kind"] for f in hop["findings"]] == ["capture_loss", "random_loss"]


def test_three_points_loss_on_second_hop(tmp_path: Path) -> None:
    pk = conversation(n_data=20, drop=lambda p: len(p.payload) > 1000)
    a = observe(pk)
    b = observe(pk, delay_ns=hop_delay)  # the drop is after B

    def two_hops(p: Pkt) -> int:
        return 2 * hop_delay(p)

    c = observe(pk, keep=not_dropped, delay_ns=two_hops, offset_ns=-5_000_000_000)
    doc = run(tmp_path, a, b, c)
    assert [h["verdict"]["kind"] for h in doc["hops"]] == ["no_loss", "size_dependent_loss"]
    assert abs(doc["hops"][1]["clock_offset_s"] + 5.0) < 0.0011
    assert doc["hops"][1]["lost"]["a_to_b"]["lost"] == sum(1 for p in pk if p.meta.get("drop"))


def test_directional_loss(tmp_path: Path) -> None:
    pk = conversation(n_data=60)
    # the server's pure ACKs during the body vanish before reaching A (its data still arrives)
    body = [p for p in pk if p.tag == "data"]
    t0, t1 = body[0].t_ns, body[-1].t_ns

    def vanish(p: Pkt) -> bool:
        return not p.c2s and not p.payload and t0 < p.t_ns <= t1 + HOP_NS

    a = observe(pk, keep=lambda p: not vanish(p))
    b = observe(pk, delay_ns=hop_delay)
    doc = run(tmp_path, a, b)
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "directional_loss"
    assert hop["verdict"]["direction"] == "b_to_a"
    assert hop["lost"]["b_to_a"]["lost"] == sum(1 for p in pk if vanish(p))
    assert hop["lost"]["a_to_b"]["lost"] == 0
    ev = next(e for e in hop["evidence"] if e.get("kind") == "lost" and e["direction"] == "b_to_a")
    assert ev["file"].endswith("edge.pcap")
    assert ev["frames"] == frames_where(pk, vanish, hop_delay)


def test_no_common_traffic(tmp_path: Path) -> None:
    # another session to the same MX with the same dialogue shape: not the same traffic
    pk = conversation(n_data=5)
    other = conversation(
        n_data=5, isn_c=5, isn_s=9, sport=41000, client="192.0.2.99", mail_from="bounce@example.test", seed=8
    )
    doc = run(tmp_path, observe(pk), observe(other))
    assert doc["hops"][0]["verdict"]["kind"] == "no_common_traffic"
    assert doc["hops"][0]["matched"]["connections"] == 0


def test_path_order_inferred_from_ttl(tmp_path: Path) -> None:
    pk = conversation(n_data=10)

    def ttl_after(hops: int) -> Any:
        def rw(p: Pkt) -> Pkt:
            # client->server packets lose one TTL per router; server->client ones gain distance back
            return replace(p, ttl=p.ttl - hops if p.c2s else p.ttl - (2 - hops))

        return rw

    frames = [observe(pk, rewrite=ttl_after(i), delay_ns=lambda p, i=i: i * hop_delay(p)) for i in range(3)]
    paths = [write(tmp_path / f"p{i}.pcap", f) for i, f in enumerate(frames)]
    shuffled = [paths[2], paths[0], paths[1]]
    doc = compare_captures(shuffled, order="infer").to_json()
    jsonschema.validate(doc, load_schema())
    assert doc["path_order"]["source"] == "inferred"
    assert [Path(p).name for p in doc["path_order"]["order"]] == ["p0.pcap", "p1.pcap", "p2.pcap"]
    assert "TTL" in doc["path_order"]["notes"][0]
    assert [h["verdict"]["kind"] for h in doc["hops"]] == ["no_loss", "no_loss"]
    # given order is kept by default, with a note that it looks reversed
    doc = compare_captures([paths[1], paths[0]]).to_json()
    assert doc["path_order"]["source"] == "given"
    assert any("reverse" in n for n in doc["path_order"]["notes"])


def test_sequence_rewriting_firewall_keeps_segment_matching(tmp_path: Path) -> None:
    # a firewall randomises the client's ISN: seq of client packets and ack of server packets shift
    shift = 0x12345678
    pk = conversation(n_data=20, drop=lambda p: len(p.payload) > 1000)

    def rewrite(p: Pkt) -> Pkt:
        if p.c2s:
            return replace(p, seq=(p.seq + shift) & 0xFFFFFFFF)
        return replace(p, ack=(p.ack + shift) & 0xFFFFFFFF)

    b = observe(pk, keep=not_dropped, delay_ns=hop_delay, rewrite=rewrite)
    doc = run(tmp_path, observe(pk), b)
    hop = doc["hops"][0]
    assert hop["matched"]["by_method"] == {"seq_rewrite": 1}
    assert hop["verdict"]["kind"] == "size_dependent_loss"
    assert hop["lost"]["a_to_b"]["lost"] == sum(1 for p in pk if p.meta.get("drop"))
    assert hop["connections"][0]["seq_delta"] == [shift, 0]


def test_mss_clamping_and_ttl_reported(tmp_path: Path) -> None:
    pk = conversation(n_data=10)

    def clamp(p: Pkt) -> Pkt:
        q = replace(p, ttl=p.ttl - 1 if p.c2s else p.ttl)
        if p.c2s and p.mss is not None:
            q = replace(q, mss=1400)
        return q

    doc = run(tmp_path, observe(pk), observe(pk, delay_ns=hop_delay, rewrite=clamp))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    ch = hop["changed"]["a_to_b"]
    assert ch["mss_clamped"] == [{"from": 1460, "to": 1400}]
    assert ch["ttl_decrement"] == {"1": sum(1 for p in pk if p.c2s)}
    assert hop["changed"]["b_to_a"]["mss_clamped"] == []


def test_ip_id_tells_which_transmission_was_lost(tmp_path: Path) -> None:
    # a spurious retransmission 100 ms after the original is lost on a path with 300 ms delay:
    # by time alone the arrival would be credited to the retransmission; the IPv4 id says otherwise
    pk = conversation(n_data=3000, seg=100)  # long enough for B to be running well after the loss
    orig = next(p for p in pk if p.tag == "data")
    rtx = replace(orig, t_ns=orig.t_ns + 100_000_000, ip_id=9999, tag="retx", meta={"drop": 1})
    pk2 = sorted([*pk, rtx], key=lambda p: p.t_ns)

    def slow(p: Pkt) -> int:
        return 300_000_000 if p.c2s else -HOP_NS

    doc = run(tmp_path, observe(pk2), observe(pk2, keep=not_dropped, delay_ns=slow))
    hop = doc["hops"][0]
    assert hop["lost"]["a_to_b"]["lost"] == 1
    ev = next(e for e in hop["evidence"] if e.get("kind") == "lost" and e["direction"] == "a_to_b")
    assert ev["frames"] == frames_where(pk2, lambda p: p is rtx)


@pytest.mark.parametrize("v6", [False, True])
def test_dscp_and_window_rewrites_reported(tmp_path: Path, v6: bool) -> None:
    pk = conversation(n_data=10, v6=v6)
    for p in pk:
        p.tos = 0xB8 if p.c2s else 0  # EF, as the sender marks it

    def bleach(p: Pkt) -> Pkt:
        return replace(p, tos=0, win=8192) if p.c2s else p

    doc = run(tmp_path, observe(pk), observe(pk, delay_ns=hop_delay, rewrite=bleach))
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    n_c2s = sum(1 for p in pk if p.c2s)
    ch = hop["changed"]["a_to_b"]
    assert ch["dscp_changed"] == n_c2s
    assert ch["window_changed"] == n_c2s
    assert ch["ecn_changed"] == 0
    assert hop["changed"]["b_to_a"]["dscp_changed"] == 0

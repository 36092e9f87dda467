"""The corpus's real two-point captures (MANIFEST "Two-vantage-point sets"), with tshark as oracle.

For each pair, tshark lists (ip.src, ip.dst, ip.id, tcp.seq_raw, tcp.len) and the timestamp of
every frame in both files; the packets present in both are the oracle's matching (the MANIFEST's
verified counts: 23, 15 and 2). mailwire must say ``no_loss``, match exactly as many packets, and
report a clock offset under which every matched packet reaches the downstream capture after it
left the upstream one.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from mailwire.compare import compare_captures
from tests.compare.schema import load_schema

# (upstream file, downstream file, address of the host upstream: its packets travel A -> B,
#  MANIFEST's verified matched count, approximate offset in seconds or None)
PAIRS = [
    ("ppa3__mail_sender_client_1.pcapng", "ppa3__mail_sender_server_2.pcapng", "172.16.16.225", 23, -17.3),
    ("ppa3__mail_sender_server_2.pcapng", "ppa3__mail_receiver_server_3.pcapng", "172.16.16.221", 15, None),
    ("ppa3__ip_ttl_source.pcapng", "ppa3__ip_ttl_dest.pcapng", "10.10.0.3", 2, -48.9),
]


def _tshark_rows(tshark: str, path: Path) -> list[tuple[tuple[str, ...], float]]:
    out = subprocess.run(
        [tshark, "-r", str(path), "-T", "fields", "-E", "separator=|", "-e", "frame.time_epoch",
         "-e", "ip.src", "-e", "ip.dst", "-e", "ip.id", "-e", "tcp.seq_raw", "-e", "tcp.len"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        t, *key = line.split("|")
        rows.append((tuple(key), float(t)))
    return rows


@pytest.mark.parametrize(("up", "down", "up_host", "matched", "offset"), PAIRS)
def test_real_pair_no_loss(
    shared_captures: Path, tshark: str, up: str, down: str, up_host: str, matched: int, offset: float | None
) -> None:
    pa, pb = shared_captures / up, shared_captures / down
    doc = compare_captures([pa, pb]).to_json()
    jsonschema.validate(doc, load_schema())
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss", hop["verdict"]["sentence"]
    ra, rb = _tshark_rows(tshark, pa), _tshark_rows(tshark, pb)
    common = Counter(k for k, _ in ra) & Counter(k for k, _ in rb)
    assert sum(common.values()) == matched  # the MANIFEST's verified matching
    assert hop["matched"]["packets"] == matched
    for d in ("a_to_b", "b_to_a"):
        assert hop["lost"][d]["lost"] == 0
        assert hop["injected"][d]["packets"] == 0
    off = hop["clock_offset_s"]
    if offset is not None:
        assert abs(off - offset) < 0.1
    tb = {k: t for k, t in rb if k in common}
    checked = 0
    for k, ta in ra:
        if k not in tb:
            continue
        arrival = tb[k] - off  # downstream time on the upstream clock
        if k[0] == up_host:
            assert arrival >= ta, (k, ta, tb[k])
        else:
            assert ta >= arrival, (k, ta, tb[k])
        checked += 1
    assert checked == matched


def test_real_trio_two_hops(shared_captures: Path) -> None:
    trio = [shared_captures / PAIRS[0][0], shared_captures / PAIRS[0][1], shared_captures / PAIRS[1][1]]
    doc = compare_captures(trio).to_json()
    jsonschema.validate(doc, load_schema())
    assert [h["verdict"]["kind"] for h in doc["hops"]] == ["no_loss", "no_loss"]
    assert [h["matched"]["packets"] for h in doc["hops"]] == [23, 15]
    # each hop shares one connection; the other session on mail01 is not on that hop's path
    assert [h["matched"]["connections"] for h in doc["hops"]] == [1, 1]
    conn0 = doc["hops"][0]["connections"][0]
    assert conn0["upstream"] == "172.16.16.225:49313 -> 172.16.16.221:25"
    assert doc["hops"][1]["connections"][0]["upstream"] == "172.16.16.221:56694 -> 172.16.16.231:25"
    assert doc["path_order"]["notes"] == []


def test_ttl_pair_reports_router_hop(shared_captures: Path) -> None:
    doc = compare_captures([shared_captures / PAIRS[2][0], shared_captures / PAIRS[2][1]]).to_json()
    changed = doc["hops"][0]["changed"]
    # tshark shows TTL 128 -> 127 each way (MANIFEST: one router hop in each direction)
    assert changed["a_to_b"]["ttl_decrement"] == {"1": 1}
    assert changed["b_to_a"]["ttl_decrement"] == {"1": 1}


HOSTILE = [
    "zeek__empty.pcap",
    "tcpdump__empty.pcapng",
    "tcpdump__tcp_header_heapoverflow.pcap",
    "tcpdump__unsupported-link-type-160.pcap",
    "tcpdump__timestamp_invalid_nano.pcap",
    "sv__decode-sll2-01.pcap",
]


@pytest.mark.parametrize("odd", HOSTILE)
def test_odd_captures_compare_without_crashing(shared_captures: Path, odd: str) -> None:
    path = shared_captures / odd
    if not path.is_file():
        pytest.skip(f"{odd} not in the corpus")
    good = shared_captures / PAIRS[0][0]
    for pair in ([path, good], [good, path], [path, path]):
        doc = compare_captures(pair).to_json()
        jsonschema.validate(doc, load_schema())
        assert len(doc["hops"]) == 1
        if pair[0] == pair[1]:
            # a capture compared with itself: everything matches, nothing lost
            assert doc["hops"][0]["verdict"]["kind"] in ("no_loss", "no_common_traffic")


def test_icmp_echo_through_nat(shared_captures: Path, tmp_path: Path) -> None:
    """The TTL pair's echo request/reply, the destination side rewritten as if a NAT had changed
    the source address and the ICMP identifier: still matched, as a translated flow."""
    from mailwire.capture.read import read_table
    from mailwire.capture.write import write_pcap

    src = shared_captures / PAIRS[2][1]
    t = read_table(src)
    frames = []
    for i in range(len(t)):
        f = bytearray(t.frame_bytes(i))
        l3, l4 = int(t["l3_off"][i]), int(t["l4_off"][i])
        for off in (l3 + 12, l3 + 16):  # 10.10.0.3 -> 198.51.100.9
            if bytes(f[off : off + 4]) == bytes([10, 10, 0, 3]):
                f[off : off + 4] = bytes([198, 51, 100, 9])
        f[l4 + 4 : l4 + 6] = b"\x77\x77"  # identifier
        frames.append((int(t["ts_ns"][i]), bytes(f)))
    nat = tmp_path / "dest-nat.pcap"
    write_pcap(nat, frames, link_type=t.interfaces[0].link_type)
    doc = compare_captures([shared_captures / PAIRS[2][0], nat]).to_json()
    hop = doc["hops"][0]
    assert hop["verdict"]["kind"] == "no_loss"
    assert hop["matched"]["packets"] == 2
    assert hop["matched"]["by_method"] == {"nat": 1}

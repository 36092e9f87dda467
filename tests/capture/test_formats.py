"""Crafted captures for each format, link layer and header feature, with tshark reading the same file.

Each capture is built here byte by byte (``capture_craft``); where tshark decodes the feature, its
output is the expectation, otherwise the values the builder wrote are.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zstandard

from mailwire.capture.addr import format_addr
from mailwire.capture.read import iter_tables, read_table
from mailwire.capture.table import COLUMNS, SACK_COLUMNS, Warn
from mailwire.capture.write import write_pcap
from tests.capture.capture_craft import (
    eth,
    ipv4,
    ipv6,
    ng_block,
    ng_epb,
    ng_idb,
    ng_pb,
    ng_shb,
    ng_spb,
    pcap_bytes,
    tcp4_frame,
    tcp_hdr,
    tshark_fields,
    udp_hdr,
)
from tests.conftest import corpus_captures

Write = Callable[..., Path]


def _addr(t, i: int, which: str) -> str:  # type: ignore[no-untyped-def]
    return format_addr(t.columns[which + "_hi"][i], t.columns[which + "_lo"][i])


# --- pcap variants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_pcap_magic_byte_order_and_resolution(tshark: str, tmp_capture: Write, nano: bool, big: bool) -> None:
    frac = [123456789, 5] if nano else [123456, 5]
    recs = [
        (1_700_000_000, frac[0], tcp4_frame(b"EHLO x\r\n", seq=7, ack=9, flags=0x18)),
        (1_700_000_001, frac[1], tcp4_frame(b"", seq=15, flags=0x10, sport=25, dport=40000)),
    ]
    path = tmp_capture(pcap_bytes(recs, nano=nano, big=big))
    t = read_table(path)
    rows = tshark_fields(tshark, path, ["frame.time_epoch", "tcp.seq_raw", "tcp.len", "tcp.srcport"])
    digits = 9 if nano else 6
    assert t.interfaces[0].ts_digits == digits
    for i, row in enumerate(rows):
        sec, frac_s = row[0].split(".")
        assert int(t["ts_ns"][i]) == int(sec) * 10**9 + int(frac_s)
        assert int(t["seq"][i]) == int(row[1])
        assert int(t["payload_len"][i]) == int(row[2])
        assert int(t["sport"][i]) == int(row[3])


def test_pcap_fcs_bits_in_link_type_field(tmp_capture: Write) -> None:
    frame = tcp4_frame(b"data", seq=99) + b"\xde\xad\xbe\xef"  # 4-byte FCS on the wire
    data = bytearray(pcap_bytes([(1, 0, frame)]))
    struct.pack_into("<I", data, 20, 1 | (1 << 26) | (2 << 28))  # Ethernet, FCS present, 2 x 16 bits
    t = read_table(tmp_capture(bytes(data)))
    assert int(t["link_type"][0]) == 1
    assert int(t["seq"][0]) == 99 and int(t["payload_len"][0]) == 4  # payload per IP length, not FCS


@pytest.mark.parametrize("order", ["<", ">"])
def test_null_loopback_both_byte_orders(tshark: str, tmp_capture: Write, order: str) -> None:
    v4 = ipv4(tcp_hdr(seq=1) + b"x", src="127.0.0.1", dst="127.0.0.1")
    v6 = ipv6(tcp_hdr(seq=2) + b"yy", src="::1", dst="::1")
    recs = [(1, 0, struct.pack(order + "I", 2) + v4), (1, 1, struct.pack(order + "I", 30) + v6)]
    path = tmp_capture(pcap_bytes(recs, link_type=0))
    t = read_table(path)
    assert t["ip_version"].tolist() == [4, 6]
    assert t["seq"].tolist() == [1, 2]
    assert t["payload_len"].tolist() == [1, 2]
    rows = tshark_fields(tshark, path, ["tcp.seq_raw", "tcp.len"])
    assert [int(r[0]) for r in rows] == [1, 2]


def test_openbsd_loop_and_raw_link_types(tmp_capture: Write) -> None:
    v4 = ipv4(tcp_hdr(seq=11) + b"abc")
    v6 = ipv6(tcp_hdr(seq=12) + b"abcd")
    for lt, frames, seqs in [
        (108, [b"\x00\x00\x00\x02" + v4, b"\x00\x00\x00\x18" + v6], [11, 12]),
        (101, [v4, v6], [11, 12]),
        (12, [v4, v6], [11, 12]),
        (14, [v4, v6], [11, 12]),
        (228, [v4], [11]),
        (229, [v6], [12]),
    ]:
        t = read_table(tmp_capture(pcap_bytes([(1, k, f) for k, f in enumerate(frames)], link_type=lt)))
        assert t["seq"].tolist() == seqs, lt
        assert (t["warnings"] == 0).all(), lt


def test_vlan_tags_any_depth(tshark: str, tmp_capture: Write) -> None:
    payload = ipv4(tcp_hdr(seq=77) + b"hello")
    frames = [
        eth(payload, vlans=[(0x8100, 10)]),
        eth(payload, vlans=[(0x88A8, 100), (0x8100, 10)]),
        eth(payload, vlans=[(0x88A8, 100), (0x8100, 10), (0x8100, 11), (0x8100, 12)]),
        eth(payload, vlans=[(0x8100, k) for k in range(9)]),  # deeper than we follow
    ]
    path = tmp_capture(pcap_bytes([(1, k, f) for k, f in enumerate(frames)]))
    t = read_table(path)
    rows = tshark_fields(tshark, path, ["tcp.seq_raw", "tcp.len"])
    for i in range(3):
        assert int(t["seq"][i]) == int(rows[i][0]) == 77
        assert int(t["payload_len"][i]) == int(rows[i][1]) == 5
    assert t["warnings"][3] & Warn.VLAN_DEPTH
    assert t["proto"][3] == -1


def test_sll_and_sll2(tshark: str, tmp_capture: Write) -> None:
    pkt = ipv4(tcp_hdr(seq=5) + b"zz")
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\x00\x00", 0x0800) + pkt
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" * 6 + b"\x00\x00") + pkt
    for lt, frame in [(113, sll), (276, sll2)]:
        path = tmp_capture(pcap_bytes([(1, 0, frame)], link_type=lt), name=f"l{lt}.pcap")
        t = read_table(path)
        rows = tshark_fields(tshark, path, ["tcp.seq_raw", "tcp.len", "ip.src"])
        assert int(t["seq"][0]) == int(rows[0][0]) == 5
        assert int(t["payload_len"][0]) == int(rows[0][1]) == 2
        assert _addr(t, 0, "src") == rows[0][2]


def test_ipv4_options_tso_and_fragments(tshark: str, tmp_capture: Write) -> None:
    seg = tcp_hdr(seq=500) + b"x" * 100
    frames = [
        eth(ipv4(seg, ihl=7, options=b"\x01" * 7 + b"\x00")),  # 8 bytes of options
        eth(ipv4(tcp_hdr(seq=600) + b"y" * 3000, total_length=0)),  # TSO: total length 0
        eth(ipv4(seg, flags_frag=0x2000)),  # first fragment (MF)
        eth(ipv4(b"z" * 40, flags_frag=0x0010)),  # later fragment: no transport header
    ]
    path = tmp_capture(pcap_bytes([(1, k, f) for k, f in enumerate(frames)]))
    t = read_table(path)
    prefs = ["ip.defragment:FALSE", "ip.tso_support:TRUE"]
    rows = tshark_fields(tshark, path, ["tcp.seq_raw", "tcp.len", "ip.len"], prefs=prefs)
    assert int(t["seq"][0]) == int(rows[0][0]) and int(t["payload_len"][0]) == int(rows[0][1]) == 100
    assert int(t["payload_len"][1]) == int(rows[1][1]) == 3000
    assert t["warnings"][1] & Warn.TSO_LENGTH_ZERO and t["warnings"][1] & Warn.SUPER_SEGMENT
    assert int(t["seq"][2]) == int(rows[2][0]) == 500 and t["warnings"][2] & Warn.IP_FRAGMENT
    assert t["warnings"][3] & Warn.IP_FRAGMENT and t["sport"][3] == -1


def test_ipv6_extension_header_chain(tshark: str, tmp_capture: Write) -> None:
    seg = tcp_hdr(seq=4242, sport=587) + b"q" * 10
    hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"  # hop-by-hop -> dest opts, PadN
    dst = bytes([44, 0]) + b"\x01\x04\x00\x00\x00\x00"  # dest opts -> fragment
    frag = bytes([6, 0]) + struct.pack("!HI", 0x0001, 0xABCDEF01)  # offset 0, M=1, id
    chain = hop + dst + frag + seg
    frames = [eth(ipv6(chain, nh=0), ethertype=0x86DD)]
    path = tmp_capture(pcap_bytes([(1, 0, f) for f in frames]))
    t = read_table(path)
    rows = tshark_fields(
        tshark,
        path,
        ["tcp.srcport", "tcp.seq_raw", "tcp.len", "ipv6.fraghdr.ident"],
        prefs=["ipv6.defragment:FALSE"],
    )
    assert int(t["sport"][0]) == int(rows[0][0]) == 587
    assert int(t["seq"][0]) == int(rows[0][1]) == 4242
    assert int(t["payload_len"][0]) == 10  # tshark leaves tcp.len empty in a first fragment
    assert rows[0][2] in ("", "10")
    assert int(t["ip_id"][0]) == int(rows[0][3], 16) == 0xABCDEF01
    assert t["warnings"][0] & Warn.IP_FRAGMENT
    # a chain longer than we follow is flagged, not walked forever
    long_chain = b"".join(bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00" for _ in range(12)) + seg
    t2 = read_table(
        tmp_capture(pcap_bytes([(1, 0, eth(ipv6(long_chain, nh=60), ethertype=0x86DD))]), name="l.pcap")
    )
    assert t2["warnings"][0] & Warn.EXT_HEADER_LIMIT


def test_tcp_options(tshark: str, tmp_capture: Write) -> None:
    syn_opts = (
        b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x08\x0a" + struct.pack("!II", 1111, 0) + b"\x01\x03\x03\x07"
    )
    sack = b"\x01\x01\x05\x12" + struct.pack("!IIII", 5000, 6000, 7000, 8000) + b"\x01\x01\x08\x0a"
    sack += struct.pack("!II", 2222, 3333)
    frames = [
        tcp4_frame(b"", seq=1, flags=0x02, options=syn_opts),
        tcp4_frame(b"", seq=2, ack=4000, flags=0x10, options=sack),
        tcp4_frame(b"", seq=3, flags=0x10, options=b"\x02\x09\x05\xb4"),  # length runs past the header
    ]
    path = tmp_capture(pcap_bytes([(1, k, f) for k, f in enumerate(frames)]))
    t = read_table(path)
    f = [
        "tcp.options.mss_val",
        "tcp.options.wscale.shift",
        "tcp.options.sack_perm",
        "tcp.options.timestamp.tsval",
        "tcp.options.timestamp.tsecr",
        "tcp.options.sack_le",
        "tcp.options.sack_re",
    ]
    rows = tshark_fields(tshark, path, f, prefs=["tcp.relative_sequence_numbers:FALSE"])
    assert int(t["opt_mss"][0]) == int(rows[0][0]) == 1460
    assert int(t["opt_wscale"][0]) == int(rows[0][1]) == 7
    assert bool(t["opt_sack_perm"][0]) and rows[0][2] != ""
    assert int(t["opt_ts_val"][0]) == int(rows[0][3]) == 1111
    assert int(t["sack_n"][1]) == 2
    assert t["sack_le"][1][:2].tolist() == [5000, 7000]
    assert t["sack_re"][1][:2].tolist() == [6000, 8000]
    assert int(t["opt_ts_ecr"][1]) == int(rows[1][4]) == 3333
    assert t["warnings"][2] & Warn.BAD_TCP_OPTIONS


def test_udp_and_icmp_errors_quote_the_inner_header(tshark: str, tmp_capture: Write) -> None:
    inner4 = ipv4(
        tcp_hdr(sport=40001, dport=25, seq=9)[:8], src="192.0.2.1", dst="203.0.113.5", total_length=1500
    )
    icmp4 = struct.pack("!BBHHH", 3, 4, 0, 0, 1400) + inner4
    inner6 = ipv6(tcp_hdr(sport=40002, dport=25)[:8], src="2001:db8::1", dst="2001:db8::25", plen=1460)
    icmp6 = struct.pack("!BBHI", 2, 0, 0, 1280) + inner6
    frames = [
        eth(ipv4(icmp4, src="198.51.100.1", dst="192.0.2.1", proto=1)),
        eth(ipv6(icmp6, src="2001:db8::fe", dst="2001:db8::1", nh=58), ethertype=0x86DD),
        eth(ipv4(udp_hdr(5353, 53, b"abcdef"), proto=17)),
    ]
    path = tmp_capture(pcap_bytes([(1, k, f) for k, f in enumerate(frames)]))
    t = read_table(path)
    rows = tshark_fields(tshark, path, ["icmp.mtu", "icmpv6.mtu", "udp.srcport", "udp.length"])
    assert int(t["icmp_type"][0]) == 3 and int(t["icmp_code"][0]) == 4
    assert int(t["icmp_mtu"][0]) == int(rows[0][0]) == 1400
    assert format_addr(t["inner_dst_hi"][0], t["inner_dst_lo"][0]) == "203.0.113.5"
    assert (int(t["inner_proto"][0]), int(t["inner_sport"][0]), int(t["inner_dport"][0])) == (6, 40001, 25)
    assert int(t["icmp_mtu"][1]) == int(rows[1][1]) == 1280
    assert format_addr(t["inner_dst_hi"][1], t["inner_dst_lo"][1]) == "2001:db8::25"
    assert (int(t["inner_sport"][1]), int(t["inner_dport"][1])) == (40002, 25)
    assert int(t["sport"][2]) == int(rows[2][2]) == 5353
    assert int(t["payload_len"][2]) == int(rows[2][3]) - 8 == 6


# --- pcapng ---------------------------------------------------------------------------------------


def test_pcapng_sections_resolutions_offsets_and_block_types(tshark: str, tmp_capture: Write) -> None:
    f1 = tcp4_frame(b"one", seq=1)
    f2 = tcp4_frame(b"two2", seq=2)
    f3 = tcp4_frame(b"three", seq=3)
    data = b"".join(
        [
            ng_shb("<", [(1, b"section zero")]),
            ng_idb(1, 0, "<", [(2, b"eth0"), (9, bytes([3]))]),  # milliseconds
            ng_idb(
                1, 0, "<", [(2, b"eth1"), (9, bytes([0x80 | 20])), (14, struct.pack("<q", 100))]
            ),  # 2^-20 s, +100 s
            ng_block(4, b"\x00\x00\x00\x00", "<"),  # empty NRB
            ng_epb(0, 1_600_000_000_123, f1, "<", opts=[(1, b"a packet comment")]),
            ng_block(0x00000BAD, struct.pack("<I", 32473) + b"custom!!", "<"),  # numbered as a frame
            ng_epb(1, (1_600_000_000 << 20) | (1 << 19), f2, "<"),  # .5 s
            ng_block(5, struct.pack("<IIIII", 0, 0, 0, 0, 0), "<"),  # ISB
            ng_block(0x12345678, b"unknown block body", "<"),  # unknown type: skipped
            ng_shb(">"),
            ng_idb(1, 64, ">", [(9, bytes([9]))]),  # ns, snaplen 64
            ng_epb(0, 1_600_000_002_000_000_007, f3, ">"),
            ng_spb(f1[:64], ">", wirelen=len(f1)),
            ng_pb(0, 1_600_000_003_000_000_000, f2, ">"),
        ]
    )
    path = tmp_capture(data, name="crafted.pcapng")
    t = read_table(path)
    rows = tshark_fields(
        tshark,
        path,
        ["frame.number", "frame.time_epoch", "frame.interface_id", "tcp.seq_raw", "frame.comment"],
    )
    assert len(t) == len(rows) == 6
    assert t["frame"].tolist() == [int(r[0]) for r in rows]
    for i, r in enumerate(rows):
        if r[1]:
            sec, frac = r[1].split(".")
            assert int(t["ts_ns"][i]) == int(sec) * 10**9 + int(frac), i
        else:
            assert t["warnings"][i] & Warn.NO_TIMESTAMP
        if r[3]:
            assert int(t["seq"][i]) == int(r[3])
        if r[2]:
            # tshark 4.0 prints the section-local interface id; ours is global across sections
            g = int(t["interface"][i])
            section_base = min(k for k, f in enumerate(t.interfaces) if f.section == t.interfaces[g].section)
            assert g - section_base == int(r[2])
    assert t.comments == {1: "a packet comment"} and rows[0][4] == "a packet comment"
    assert t["warnings"][1] & Warn.NOT_A_PACKET
    assert [i.name for i in t.interfaces] == ["eth0", "eth1", ""]
    assert [i.ts_digits for i in t.interfaces] == [3, 7, 9]
    assert t.interfaces[1].ts_offset_s == 100
    assert int(t["interface"][3]) == 2 and int(t["seq"][3]) == 3  # second section, big-endian


def test_pcapng_corpus_block_lists(shared_captures: Path) -> None:
    """pcapng-test-generator's .expected.txt lists the blocks; packets = EPB + SPB (+ custom as frames)."""
    for name in ("pcapngtest__le_basic_test006.pcapng", "pcapngtest__le_difficult_test202.pcapng"):
        text = (shared_captures / f"{name}.expected.txt").read_text()
        counts = {}
        for line in text.splitlines():
            if ":" in line and line.startswith("\t"):
                k, v = line.strip().split(":")
                counts[k] = int(v)
        t = read_table(shared_captures / name)
        packets = int(((t["warnings"] & np.uint32(Warn.NOT_A_PACKET)) == 0).sum())
        assert packets == counts.get("EPB", 0) + counts.get("SPB", 0) + counts.get("PB", 0), name
        assert len(t) - packets == counts.get("CB", 0) + counts.get("DCB", 0), name
        assert len({i.section for i in t.interfaces}) == counts["SHB"], name
        assert len(t.interfaces) == counts["IDB"], name
        assert not t.issues


def test_tcpdump_nano_expected_output(shared_captures: Path) -> None:
    """tcpdump -q --nano prints HH:MM:SS.nnnnnnnnn, src.port > dst.port; the same facts from us."""
    t = read_table(shared_captures / "tcpdump__tcp-handshake-nano.pcap")
    lines = (shared_captures / "tcpdump__tcp-handshake-nano.pcap.expected.tcpdump-q--nano.out").read_text()
    for i, line in enumerate(lines.splitlines()):
        parts = line.split()
        clock, src, dst = parts[1], parts[3], parts[5].rstrip(":")
        ns = int(t["ts_ns"][i])
        sec = ns // 10**9
        assert f"{(sec // 3600) % 24:02d}:{(sec // 60) % 60:02d}:{sec % 60:02d}.{ns % 10**9:09d}" == clock
        assert f"{_addr(t, i, 'src')}.{int(t['sport'][i])}" == src
        assert f"{_addr(t, i, 'dst')}.{int(t['dport'][i])}" == dst
    assert t.interfaces[0].ts_digits == 9


def test_unsupported_link_and_heap_overflow_reproducer(shared_captures: Path) -> None:
    t = read_table(shared_captures / "tcpdump__unsupported-link-type-160.pcap")
    out = (shared_captures / "tcpdump__unsupported-link-type-160.pcap.expected.tcpdump.out").read_text()
    assert "UNSUPPORTED" in out and len(t) == 1  # tcpdump shows one frame it cannot decode
    assert t["warnings"][0] & Warn.UNSUPPORTED_LINK and int(t["caplen"][0]) == 23
    t = read_table(shared_captures / "tcpdump__tcp_header_heapoverflow.pcap")
    out = (shared_captures / "tcpdump__tcp_header_heapoverflow.pcap.expected.tcpdump-v.out").read_text()
    # tcpdump: "ttl 48, id 12336 ... 48.48.48.48.12336 > 48.48.48.48.12336:  [|tcp]"
    assert "id 12336" in out and "ttl 48" in out and "[|tcp]" in out
    assert (int(t["ip_id"][0]), int(t["ttl"][0]), int(t["sport"][0]), int(t["dport"][0])) == (
        12336,
        48,
        12336,
        12336,
    )
    assert t["warnings"][0] & Warn.L4_TRUNCATED and int(t["tcp_hdr_len"][0]) == -1


def test_zeek_truncated_ethernet(shared_captures: Path) -> None:
    weird = (
        shared_captures / "zeek__trunc_trunc-hdr.pcap.expected.core.raw-truncation.weird.log"
    ).read_text()
    assert "truncated_ethernet_frame" in weird
    t = read_table(shared_captures / "zeek__trunc_trunc-hdr.pcap")
    assert len(t) == 1 and t["warnings"][0] & Warn.LINK_TRUNCATED
    assert t["warnings"][0] & Warn.CAPLEN_EXCEEDS_SNAPLEN  # 8 bytes captured with snaplen 1


# --- compression, chunking, writer --------------------------------------------------------------


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert len(a) == len(b)
    for k in [*COLUMNS, *SACK_COLUMNS]:
        if k == "pkt_off":
            continue
        assert np.array_equal(a.columns[k], b.columns[k]), k


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, bz2.compress, lzma.compress, zstandard.ZstdCompressor().compress],
    ids=["gzip", "bzip2", "xz", "zstd"],
)
def test_compressed_by_magic_not_name(shared_captures: Path, tmp_capture: Write, compress) -> None:  # type: ignore[no-untyped-def]
    src = shared_captures / "zeek__smtp.pcap"
    path = tmp_capture(compress(src.read_bytes()), name="looks-plain.pcap")
    _same(read_table(path), read_table(src))


@pytest.mark.parametrize(
    "name", ["zeek__smtp.pcap", "pcapngtest__le_difficult_test202.pcapng", "zeek__nflog-http.pcap"]
)
def test_small_chunks_give_the_same_table(shared_captures: Path, name: str) -> None:
    whole = read_table(shared_captures / name)
    parts = list(iter_tables(shared_captures / name, chunk_bytes=4096, max_packets=7))
    assert len(parts) > 1
    frames = np.concatenate([p["frame"] for p in parts])
    assert frames.tolist() == list(range(1, len(whole) + 1))
    for k in ("seq", "ack", "ts_ns", "sport", "payload_len", "warnings", "src_lo"):
        assert np.array_equal(np.concatenate([p[k] for p in parts]), whole[k]), k
    # payload bytes reachable through each chunk's own buffer
    for p in parts:
        for i in range(len(p)):
            start = int(p["pkt_off"][i])
            assert bytes(p.frame_bytes(i)) == p.buf[start : start + int(p["caplen"][i])].tobytes()


def test_write_pcap_round_trip(tshark: str, tmp_path: Path, shared_captures: Path) -> None:
    t = read_table(corpus_captures()[0])
    frames = [(int(t["ts_ns"][i]), bytes(t.frame_bytes(i))) for i in range(len(t))]
    out = tmp_path / "extract.pcap"
    assert write_pcap(out, frames, link_type=int(t["link_type"][0]), nanosecond=True) == len(t)
    back = read_table(out)
    assert back["ts_ns"].tolist() == t["ts_ns"].tolist()
    assert back["seq"].tolist() == t["seq"].tolist()
    assert len(tshark_fields(tshark, out, ["frame.number"])) == len(t)


def test_super_segments_are_the_frames_tshark_sees_above_the_mtu(tshark: str, shared_captures: Path) -> None:
    """Host-side TSO/GSO: TCP data in IP packets larger than 1500 bytes, off loopback."""
    expr = "tcp.len > 0 and ip.len > 1500 and not icmp and not ip.src == 127.0.0.0/8 and not null"

    def both(path: Path) -> tuple[str, list[int], list[int]]:
        t = read_table(path)
        ours = t["frame"][(t["warnings"] & np.uint32(Warn.SUPER_SEGMENT)) != 0].tolist()
        theirs = [int(r[0]) for r in tshark_fields(tshark, path, ["frame.number"], display_filter=expr)]
        return path.name, ours, theirs

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(both, corpus_captures()))
    for name, ours, theirs in results:
        assert ours == theirs, name
    assert sum(len(r[1]) for r in results) >= 10  # the corpus holds real 2960- and 8754-byte super-segments


def test_tcpdump_micro_relative_and_invalid_ns_outputs(shared_captures: Path) -> None:
    base = shared_captures / "tcpdump__tcp-handshake-nano.pcap"
    t = read_table(base)
    ns = t["ts_ns"].tolist()
    micro = (shared_captures / f"{base.name}.expected.tcpdump-q.out").read_text().splitlines()
    rel = (shared_captures / f"{base.name}.expected.tcpdump-ttttt-q--nano.out").read_text().splitlines()
    for i, (m, r) in enumerate(zip(micro, rel, strict=True)):
        assert m.split()[1].endswith(f".{(ns[i] % 10**9) // 1000:06d}")  # tcpdump truncates to µs
        d = ns[i] - ns[0]
        assert (
            r.split()[1]
            == f"{d // 3600 // 10**9:02d}:{d // 60 // 10**9 % 60:02d}:{d // 10**9 % 60:02d}.{d % 10**9:09d}"
        )
    bad = shared_captures / "tcpdump__timestamp_invalid_nano.pcap"
    marked = [
        "(invalid ns)" in line
        for line in (shared_captures / f"{bad.name}.expected.tcpdump-q--nano.out").read_text().splitlines()
    ]
    tb = read_table(bad)
    assert [bool(w & Warn.BAD_TIMESTAMP) for w in tb["warnings"].tolist()] == marked == [False, True, True]


def test_zeek_truncated_header_connection_ids(shared_captures: Path) -> None:
    """Zeek sees one connection in these header-only frames (23 tcp_packet events); so do we."""
    path = shared_captures / "zeek__tcp_truncated-header.pcap"
    t = read_table(path)
    text = (shared_captures / f"{path.name}.expected.core.tcp.truncated-header.out").read_text()
    zeek: set[frozenset[tuple[str, str]]] = set()
    for line in text.splitlines():
        if not line.startswith("XXXXXXXXXX"):
            continue
        f = dict(kv.split("=") for kv in line.split("[", 1)[1].split(", proto")[0].split(", "))
        zeek.add(
            frozenset({(f["orig_h"], f["orig_p"].split("/")[0]), (f["resp_h"], f["resp_p"].split("/")[0])})
        )
    ours = {
        frozenset(
            {(_addr(t, i, "src"), str(int(t["sport"][i]))), (_addr(t, i, "dst"), str(int(t["dport"][i])))}
        )
        for i in range(len(t))
    }
    assert ours == zeek and len(ours) == 1
    assert (t["cap_payload_len"] == 0).all()  # every frame cut right after the headers
    assert (t["tcp_hdr_len"] >= 20).all() and (t["sport"] >= 0).all()


def test_wire_length_below_captured_length(tshark: str, tmp_capture: Write) -> None:
    """A record claiming fewer wire bytes than it holds: like tshark, the captured bytes count."""
    f = tcp4_frame(b"hello world", seq=5)
    path = tmp_capture(pcap_bytes([(1, 0, f, 40), (2, 0, f, 0)]))
    t = read_table(path)
    rows = tshark_fields(tshark, path, ["tcp.len", "ip.len"])
    assert t["payload_len"].tolist() == [int(r[0]) for r in rows] == [11, 11]
    assert t["ip_len"].tolist() == [int(r[1]) for r in rows]

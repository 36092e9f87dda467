"""The --filter language, evaluated in-process on corpus captures; tshark -Y is the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailwire.capture.filter import FilterError, compile_filter
from mailwire.capture.read import read_table
from mailwire.capture.table import Warn
from tests.capture.capture_craft import tshark_fields

CASES = [
    ("zeek__smtp.pcap", "icmp.type == 3 and icmp.code == 4"),
    ("zeek__smtp.pcap", "(ip.len > 1000 || frame.len < 61) and not icmp"),
    ("zeek__smtp.pcap", "tcp.flags == 0x018 and tcp.srcport == 25"),
    ("zeek__smtp.pcap", "udp.port == 53 and ip.ttl < 100"),
    ("zeek__smtp.pcap", "!(ip.addr == 10.10.1.4) and ip"),
    (
        "sv__bug-4376_syn_retransmit_with_ts.pcap",
        "tcp.options.mss_val == 1460 or tcp.options.wscale.shift >= 7",
    ),
    (
        "sv__bug-4376_syn_retransmit_with_ts.pcap",
        "tcp.ack_raw >= 2000000000 and tcp.len eq 0 and tcp.seq_raw < 3000000000",
    ),
    ("zeek__smtp-attachment-msg.pcap", "ipv6.src == ::1 && tcp.dstport == 25"),
    ("zeek__pcapng-multi-interface.pcapng", "frame.interface_id == 1"),
]


@pytest.mark.parametrize(("name", "expr"), CASES)
def test_filter_matches_tshark(shared_captures: Path, tshark: str, name: str, expr: str) -> None:
    path = shared_captures / name
    t = read_table(path)
    ours = t["frame"][compile_filter(expr).mask(t)].tolist()
    theirs = [int(r[0]) for r in tshark_fields(tshark, path, ["frame.number"], display_filter=expr)]
    assert ours == theirs and ours, expr


def test_icmp_mtu_and_warning_fields(shared_captures: Path) -> None:
    t = read_table(shared_captures / "zeek__smtp.pcap")
    frag_needed = compile_filter("icmp.mtu == 1492").mask(t)
    assert t["frame"][frag_needed].tolist()[:4] == [26, 28, 29, 30]
    t = read_table(shared_captures / "zeek__smtp-one-side-only.pcap")
    sup = compile_filter("warn.super_segment and tcp.len > 1460").mask(t)
    assert sup.sum() == int(((t["warnings"] & np.uint32(Warn.SUPER_SEGMENT)) != 0).sum()) > 0


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("tcp.port ==", "ends too early"),
        ("tcp.port = 25", "unexpected character"),
        ("nosuch.field == 1", "unknown field"),
        ("tcp.seq == 1", "use tcp.seq_raw"),
        ("ip.addr > 192.0.2.1", "does not apply to addresses"),
        ("tcp.port == 192.0.2.1", "address can only be compared"),
        ("ip.addr == 25", "needs an address value"),
        ("(tcp", "ends too early"),
        ("tcp )", "unexpected ')'"),
        ("ip.addr == 192.0.2.0/33", "prefix length"),
        ("(" * 200 + "tcp" + ")" * 200, "nested too deeply"),
    ],
)
def test_bad_expressions_say_what_and_where(shared_captures: Path, expr: str, words: str) -> None:
    with pytest.raises(FilterError) as exc:
        flt = compile_filter(expr)
        flt.mask(read_table(shared_captures / "zeek__smtp-multi-addr.pcap"))
    assert words in str(exc.value), str(exc.value)

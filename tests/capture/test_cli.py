"""The real ``mailwire`` command (subprocess) on corpus files: packets, --filter, info, stdin, errors."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.capture.capture_craft import pcap_bytes, tcp4_frame, tshark_fields

MAILWIRE = shutil.which("mailwire")
pytestmark = pytest.mark.skipif(MAILWIRE is None, reason="mailwire command not installed (pip install -e .)")


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    assert MAILWIRE is not None
    return subprocess.run(
        [MAILWIRE, *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        encoding="latin-1",
    )


def test_packets_jsonl_fields_and_values(shared_captures: Path, tshark: str) -> None:
    path = shared_captures / "zeek__smtp.pcap"
    res = run("packets", str(path))
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    rows = tshark_fields(tshark, path, ["frame.number", "tcp.seq_raw", "tcp.window_size_value", "frame.len"])
    assert len(recs) == len(rows) == 125
    required = {
        "frame",
        "ts",
        "interface",
        "caplen",
        "len",
        "link_type",
        "src",
        "dst",
        "ip_id",
        "ttl",
        "proto",
    }
    required |= {"sport", "dport", "seq", "ack", "tcp_flags", "win", "tcp_len", "warnings"}
    for rec, row in zip(recs, rows, strict=True):
        assert required <= rec.keys()
        assert rec["frame"] == int(row[0]) and rec["len"] == int(row[3])
        if rec["proto"] == 6 and row[1]:
            assert rec["seq"] == int(row[1]) and rec["win"] == int(row[2])
        assert len(rec["ts"].split(".")[1]) == 6  # microsecond file: 6 digits


def test_packets_nanosecond_timestamps_keep_nine_digits(shared_captures: Path, tshark: str) -> None:
    path = shared_captures / "tcpdump__tcp-handshake-nano.pcap"
    recs = [json.loads(x) for x in run("packets", str(path)).stdout.splitlines()]
    rows = tshark_fields(tshark, path, ["frame.time_epoch"])
    assert [r["ts"] for r in recs] == [r[0] for r in rows]


@pytest.mark.parametrize(
    "expr",
    [
        "tcp.port == 25 and tcp.len > 0",
        "ip.addr == 10.10.1.4",
        "ip.src == 74.53.140.0/24 || udp",
        "not tcp and not icmp",  # tshark's "tcp" also matches the TCP header quoted inside ICMP errors
        "tcp.flags.syn == 1 && !(tcp.flags.ack == 1)",
        "tcp.window_size_value < 6000 and ip.ttl >= 50",
        "tcp.dstport != 25",
        "icmp",
    ],
)
def test_filter_selects_the_frames_tshark_selects(shared_captures: Path, tshark: str, expr: str) -> None:
    path = shared_captures / "zeek__smtp.pcap"
    res = run("packets", str(path), "--filter", expr)
    assert res.returncode == 0, res.stderr
    ours = [json.loads(x)["frame"] for x in res.stdout.splitlines()]
    theirs = [int(r[0]) for r in tshark_fields(tshark, path, ["frame.number"], display_filter=expr)]
    assert ours == theirs and ours, expr


def test_filter_on_ipv6_capture(shared_captures: Path, tshark: str) -> None:
    path = shared_captures / "zeek__smtp-attachment-msg.pcap"
    expr = "ipv6.addr == 2001:470:e8ce:c100::/64 and tcp.len > 0"
    ours = [json.loads(x)["frame"] for x in run("packets", str(path), "-Y", expr).stdout.splitlines()]
    theirs = [int(r[0]) for r in tshark_fields(tshark, path, ["frame.number"], display_filter=expr)]
    assert ours == theirs


def test_bad_filter_is_a_clear_error() -> None:
    res = run("packets", "/dev/null", "--filter", "tcp.port == ")
    assert res.returncode == 2 and "bad --filter" in res.stderr and "Traceback" not in res.stderr
    res = run("packets", "/dev/null", "--filter", "__import__('os')")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_table_format(shared_captures: Path) -> None:
    res = run("packets", str(shared_captures / "sv__decode-sll2-01.pcap"), "--format", "table")
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and lines[0].split()[:3] == ["frame", "ts", "source"]
    assert len(lines) == 6 and ":" in lines[1]


def test_stdin_and_compressed_stdin(shared_captures: Path) -> None:
    raw = (shared_captures / "zeek__smtp-multi-addr.pcap").read_bytes()
    plain = run("packets", "-", stdin=raw)
    gz = run("packets", "-", stdin=gzip.compress(raw))
    assert plain.returncode == gz.returncode == 0
    assert plain.stdout == gz.stdout and len(plain.stdout.splitlines()) == 21


def test_damaged_file_warns_keeps_packets_and_exits_zero(tmp_path: Path) -> None:
    data = pcap_bytes([(1, k, tcp4_frame(b"x", seq=k)) for k in range(5)])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-5])
    res = run("packets", str(path))
    assert res.returncode == 0
    assert len(res.stdout.splitlines()) == 4
    assert str(path) in res.stderr and "frame 5" in res.stderr and "byte offset" in res.stderr
    assert "Traceback" not in res.stderr


def test_unreadable_file_exits_2_with_message(tmp_path: Path) -> None:
    """Project policy: 2 = no input could be read (as analyze/diagnose/compare/logs do)."""
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture at all")
    for cmd in (["packets", str(bad)], ["info", str(bad)], ["packets", str(tmp_path / "missing.pcap")]):
        res = run(*cmd)
        assert res.returncode == 2 and cmd[1] in res.stderr and "Traceback" not in res.stderr


def test_info_text_and_json(shared_captures: Path) -> None:
    multi = shared_captures / "zeek__pcapng-multi-interface.pcapng"
    res = run("info", str(multi))
    assert res.returncode == 0 and "Packets:             6" in res.stdout
    js = json.loads(run("info", "--json", str(multi)).stdout)
    assert js["packets"] == 6 and js["format"] == "pcapng" and len(js["interfaces"]) == 2
    assert [i["ts_digits"] for i in js["interfaces"]] == [9, 6]
    assert js["first_ts"] == "1767663089.500330493"
    trunc = json.loads(
        run("info", "--json", str(shared_captures / "zeek__tcp_retransmit-fast009.pcap")).stdout
    )
    assert trunc["truncated_frames"] == 21  # MANIFEST: 21 sliced frames (capinfos/tshark)
    unsup = json.loads(
        run("info", "--json", str(shared_captures / "tcpdump__unsupported-link-type-160.pcap")).stdout
    )
    assert unsup["unsupported_link_frames"] == 1 and unsup["link_types"][0]["supported"] is False


def test_info_several_files_one_unreadable(shared_captures: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"junk")
    res = run("info", "--json", str(shared_captures / "zeek__empty.pcap"), str(bad))
    assert res.returncode == 0
    out = json.loads(res.stdout)
    assert out[0]["packets"] == 0 and "error" in out[1] and str(bad) in res.stderr

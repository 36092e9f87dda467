"""Hostile input: corpus reproducers, crafted damage, a decompression bomb, and Hypothesis fuzzing.

The contract checked everywhere: no exception escapes except :class:`CaptureError` for a file that
is not a capture at all; damage becomes a ``DecodeIssue`` naming the file and the frame/byte
offset; packets before the damage are kept, and after it wherever the format lets us resync.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwire.capture.decode import SUPPORTED_LINKS, decode
from mailwire.capture.filter import FilterError, compile_filter
from mailwire.capture.read import CaptureError, iter_tables, read_table
from mailwire.capture.table import PacketTable, Warn, empty_columns
from tests.capture.capture_craft import (
    eth,
    ipv4,
    ng_block,
    ng_epb,
    ng_idb,
    ng_shb,
    pcap_bytes,
    tcp4_frame,
    tcp_hdr,
)
from tests.conftest import corpus_captures, corpus_params

Write = Callable[..., Path]
CORPUS = corpus_captures()


@pytest.mark.parametrize("path", corpus_params(CORPUS), ids=lambda p: p.name)
def test_every_corpus_capture_reads_to_the_end(tshark: str, path: Path) -> None:
    """Same number of frames as tshark, no decode issue (the corpus files are all well-formed)."""
    t = read_table(path)
    res = subprocess.run(
        [tshark, "-r", str(path), "-T", "fields", "-e", "frame.number"], capture_output=True, text=True
    )
    assert len(t) == len(res.stdout.splitlines())
    assert not t.issues, [str(i) for i in t.issues]
    assert (t["frame"] == np.arange(1, len(t) + 1)).all()


def test_empty_captures_have_zero_packets(shared_captures: Path) -> None:
    for name in ("zeek__empty.pcap", "tcpdump__empty.pcapng"):
        tables = list(iter_tables(shared_captures / name))
        assert sum(len(t) for t in tables) == 0 and not any(t.issues for t in tables)
        assert tables[-1].interfaces  # the header was still understood


def test_not_a_capture_is_rejected_with_the_file_name(tmp_capture: Write) -> None:
    for data, words in [
        (b"", "empty"),
        (b"hello world, not a capture", "not a pcap"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "header cut short"),
        (gzip.compress(b"\x00" * 100_000), "not a pcap"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ]:
        path = tmp_capture(data, name="bad.pcap")
        with pytest.raises(CaptureError) as exc:
            read_table(path)
        assert str(path) in str(exc.value) and words in str(exc.value), str(exc.value)


def _records(n: int = 6) -> list[tuple[int, int, bytes]]:
    return [(1_700_000_000 + k, k, tcp4_frame(b"x" * (10 + k), seq=100 + k)) for k in range(n)]


def test_record_cut_mid_way(tmp_capture: Write) -> None:
    data = pcap_bytes(_records())
    path = tmp_capture(data[:-7])
    t = read_table(path)
    assert t["seq"].tolist() == [100, 101, 102, 103, 104]
    (issue,) = t.issues
    assert issue.path == str(path) and issue.frame == 6 and issue.offset is not None
    assert "cut short" in str(issue) and str(path) in str(issue)


def test_caplen_over_snaplen_is_read_and_flagged(tmp_capture: Write) -> None:
    t = read_table(tmp_capture(pcap_bytes(_records(), snaplen=40)))
    assert len(t) == 6 and not t.issues
    assert (t["warnings"] & np.uint32(Warn.CAPLEN_EXCEEDS_SNAPLEN)).all()


@pytest.mark.parametrize("bad_caplen", [0xFFFFFFFF, 0xFFFFFFF0, 1 << 30, 300_000])
def test_impossible_caplen_resyncs(tmp_capture: Write, bad_caplen: int) -> None:
    recs = _records(8)
    data = bytearray(pcap_bytes(recs))
    # damage record 4 (frame 4): its captured length
    off = 24 + sum(16 + len(r[2]) for r in recs[:3])
    struct.pack_into("<I", data, off + 8, bad_caplen)
    path = tmp_capture(bytes(data))
    t = read_table(path)
    assert t["seq"].tolist() == [100, 101, 102, 104, 105, 106, 107]  # before and after kept
    first = t.issues[0]
    assert first.frame == 4 and first.offset == off and str(bad_caplen) in first.message
    assert any("resynchronised" in i.message for i in t.issues)
    # frames after the damage are numbered on: the file holds one record fewer
    assert t["frame"].tolist() == list(range(1, 8))


def test_ihl_below_five_and_tcp_offset_beyond_frame(tmp_capture: Write) -> None:
    bad_ihl = bytearray(eth(ipv4(tcp_hdr(seq=1) + b"abc")))
    bad_ihl[14] = 0x43  # version 4, IHL 3
    frames = [
        bytes(bad_ihl),
        eth(ipv4(tcp_hdr(seq=2, data_offset=15) + b"ab")),  # 60-byte header in a 22-byte segment
        eth(ipv4(tcp_hdr(seq=3, data_offset=2))),  # data offset < 5
        tcp4_frame(b"ok", seq=4),
    ]
    t = read_table(tmp_capture(pcap_bytes([(1, k, f) for k, f in enumerate(frames)])))
    w = t["warnings"]
    assert w[0] & Warn.BAD_IP_HEADER and t["proto"][0] == -1 and t["sport"][0] == -1
    assert w[1] & Warn.BAD_TCP_OFFSET and t["payload_len"][1] == -1 and t["seq"][1] == 2
    assert w[2] & Warn.BAD_TCP_OFFSET and t["payload_len"][2] == -1
    assert t["seq"][3] == 4 and t["payload_len"][3] == 2 and w[3] == 0


def _ng(frames: list[bytes]) -> tuple[bytes, list[int]]:
    blocks = [ng_shb(), ng_idb(1)]
    offs = []
    pos = sum(len(b) for b in blocks)
    for k, f in enumerate(frames):
        b = ng_epb(0, 1_700_000_000_000_000 + k, f)
        blocks.append(b)
        offs.append(pos)
        pos += len(b)
    return b"".join(blocks), offs


def test_pcapng_block_lengths_that_lie(tmp_capture: Write) -> None:
    frames = [tcp4_frame(b"y" * 5, seq=200 + k) for k in range(6)]
    data, offs = _ng(frames)
    for how in ("longer", "shorter", "huge", "unaligned", "caplen"):
        d = bytearray(data)
        o = offs[2]  # frame 3
        blen = struct.unpack_from("<I", d, o + 4)[0]
        if how == "longer":
            struct.pack_into("<I", d, o + 4, blen + 40)
        elif how == "shorter":
            struct.pack_into("<I", d, o + 4, blen - 8)
        elif how == "huge":
            struct.pack_into("<I", d, o + 4, 0xFFFFFFF0)
        elif how == "unaligned":
            struct.pack_into("<I", d, o + 4, blen + 1)
        else:
            struct.pack_into("<I", d, o + 20, 10_000)  # captured length beyond the block
        path = tmp_capture(bytes(d), name=f"{how}.pcapng")
        t = read_table(path)
        assert t["seq"].tolist() == [200, 201, 203, 204, 205], how
        assert t.issues[0].frame == 3 and t.issues[0].offset == o, how
        assert str(path) in str(t.issues[0])


def test_pcapng_cut_mid_block(tmp_capture: Write) -> None:
    data, offs = _ng([tcp4_frame(b"z", seq=k) for k in range(4)])
    t = read_table(tmp_capture(data[: offs[3] + 30], name="cut.pcapng"))
    assert t["seq"].tolist() == [0, 1, 2]
    assert t.issues[-1].offset == offs[3] and "cut short" in t.issues[-1].message


def test_gzip_bomb_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    """128 MB of 0xFF after a pcap header, gzip'd to ~130 KB: read with bounded memory, reported."""
    bomb = tmp_path / "bomb.pcap"
    member = gzip.compress(b"\xff" * (1 << 20))  # concatenated gzip members form one stream
    with open(bomb, "wb") as fh:
        fh.write(gzip.compress(pcap_bytes(_records(2))))
        for _ in range(128):
            fh.write(member)
    assert bomb.stat().st_size < 2 << 20
    code = (
        "import sys, tracemalloc\n"
        "from mailwire.capture.read import iter_tables\n"
        "for t in iter_tables(sys.argv[2]): pass\n"  # load the compiled walkers first
        "tracemalloc.start()\n"
        "n = 0; issues = []\n"
        "for t in iter_tables(sys.argv[1], chunk_bytes=8 << 20):\n"
        "    n += len(t); issues += [str(i) for i in t.issues]\n"
        "print(n, tracemalloc.get_traced_memory()[1] >> 20)\n"
        "print('\\n'.join(issues))\n"
    )
    warm = tmp_path / "warm.pcap"
    warm.write_bytes(pcap_bytes(_records(1)))
    cmd = [sys.executable, "-c", code, str(bomb), str(warm)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    first, *issues = res.stdout.splitlines()
    n, peak_mb = map(int, first.split())
    assert n == 2  # the two real packets
    # two 8 MB buffers (the caller's table keeps the previous one) plus bounded read pieces
    assert peak_mb < 40, f"peak traced memory {peak_mb} MB for 128 MB decompressed"
    assert any("corrupt record header" in i and "bomb.pcap" in i for i in issues)
    assert any("skipped to the end" in i for i in issues)


# --- fuzzing --------------------------------------------------------------------------------------

SMALL = [p for p in CORPUS if p.stat().st_size < 8000 and p.stat().st_size > 100]
# MAILWIRE_FUZZ_EXAMPLES=5000 for a deeper hunt; the default keeps the suite fast
EXAMPLES = int(os.environ.get("MAILWIRE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _read_bytes(data: bytes, suffix: str = ".pcap") -> list[PacketTable] | None:
    with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
        fh.write(data)
        fh.flush()
        try:
            return list(iter_tables(fh.name, chunk_bytes=4096, max_packets=16))
        except CaptureError:
            return None


def _check_bounds(t: PacketTable) -> None:
    c = t.columns
    cap = c["caplen"]
    assert (c["pkt_off"] + cap <= t.buf.shape[0]).all()
    has = c["cap_payload_len"] > 0  # payload_off may point past a cut header; then nothing is captured
    assert (c["payload_off"][has] + c["cap_payload_len"][has] <= cap[has]).all()
    assert (c["cap_payload_len"] <= np.maximum(c["payload_len"], 0)).all()
    assert (c["l3_off"] < np.maximum(cap, 1)).all()
    assert (c["sack_n"] >= 0).all() and (c["sack_n"] <= 4).all()


@pytest.mark.skipif(not SMALL, reason="shared capture corpus not found")
@FUZZ
@given(
    st.sampled_from(SMALL) if SMALL else st.just(Path("missing")),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)), max_size=4),
    st.one_of(st.none(), st.integers(0, 1 << 16)),
)
def test_fuzz_mutated_corpus_files(path: Path, patches: list[tuple[int, bytes]], cut: int | None) -> None:
    data = bytearray(path.read_bytes())
    for pos, b in patches:
        pos %= len(data)
        data[pos : pos + len(b)] = b
    if cut is not None:
        cut %= len(data) + 1
        data = data[:cut]
    tables = _read_bytes(bytes(data), path.suffix)
    if tables is None:
        return
    first_damage = min(
        [p % len(path.read_bytes()) for p, _ in patches] + [cut if cut is not None else 1 << 40]
    )
    orig = read_table(path)
    frames = np.concatenate([t["frame"] for t in tables])
    assert (np.diff(frames) == 1).all() and (frames[:1] == 1).all()
    for t in tables:
        _check_bounds(t)
    # frames whose record lies wholly before the first damaged byte come out unchanged
    intact = (
        int(((orig["pkt_off"] + orig["caplen"] + 4) < first_damage).sum()) if path.suffix == ".pcap" else 0
    )
    seqs = np.concatenate([t["seq"] for t in tables])
    assert len(seqs) >= intact
    assert (seqs[:intact] == orig["seq"][:intact]).all()


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from([True, False]))
def test_fuzz_random_bytes_after_valid_header(body: bytes, ng: bool) -> None:
    head = ng_shb() + ng_idb(1) if ng else pcap_bytes([])
    tables = _read_bytes(head + body, ".pcapng" if ng else ".pcap")
    assert tables is not None
    for t in tables:
        _check_bounds(t)


@FUZZ
@given(
    st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=20),
    st.sampled_from(sorted(SUPPORTED_LINKS)),
)
def test_fuzz_decoders_on_random_frames(frames: list[bytes], link: int) -> None:
    buf = np.frombuffer(b"".join(frames), np.uint8)
    n = len(frames)
    c = empty_columns(n)
    c["frame"] = np.arange(1, n + 1, dtype=np.int64)
    c["caplen"] = np.array([len(f) for f in frames], np.int64)
    c["wirelen"] = c["caplen"] + np.arange(n) % 3
    c["pkt_off"] = np.concatenate([[0], np.cumsum(c["caplen"])[:-1]]).astype(np.int64)
    c["link_type"] = np.full(n, link, np.int32)
    decode(buf, c)
    _check_bounds(PacketTable(path="fuzz", buf=buf, columns=c))


@FUZZ
@given(st.integers(0, 255), st.integers(-(1 << 63), (1 << 63) - 1), st.integers(0, (1 << 64) - 1))
def test_fuzz_pcapng_timestamp_options(tsresol: int, tsoffset: int, units: int) -> None:
    """Any if_tsresol / if_tsoffset / timestamp: a number comes out, never an exception."""
    opts = [(9, bytes([tsresol])), (14, struct.pack("<q", tsoffset))]
    data = ng_shb() + ng_idb(1, 0, "<", opts) + ng_epb(0, units, tcp4_frame(b"x", seq=9))
    tables = _read_bytes(data, ".pcapng")
    assert tables is not None
    t = tables[0]
    assert len(t) == 1 and int(t["seq"][0]) == 9 and t["ts_ns"].dtype == np.int64
    assert 0 <= t.interfaces[0].ts_digits <= 9


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, 3, 4, 5, 6, 9, 10, 0xBAD, 0x40000BAD, 0x0A0D0D0A, 77]),
            st.binary(max_size=120),
            st.sampled_from(["<", ">"]),
        ),
        max_size=12,
    )
)
def test_fuzz_pcapng_block_sequences(blocks: list[tuple[int, bytes, str]]) -> None:
    """Well-framed blocks of every type with random bodies (IDB options, EPB fields, SHBs ...)."""
    data = ng_shb() + ng_idb(1) + b"".join(ng_block(t, body, order) for t, body, order in blocks)
    tables = _read_bytes(data, ".pcapng")
    assert tables is not None
    for t in tables:
        _check_bounds(t)
        assert all(str(i).startswith(t.path) for i in t.issues)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=60))
def test_fuzz_filter_parser_only_raises_filter_error(text: str) -> None:
    try:
        flt = compile_filter(text)
    except FilterError as exc:
        assert str(exc)  # a message saying what is wrong
        return
    table = read_table(CORPUS[0]) if CORPUS else _EMPTY
    mask = flt.mask(table)
    assert mask.dtype == np.bool_ and mask.shape == (len(table),)


_EMPTY = PacketTable(path="", buf=np.zeros(0, np.uint8), columns=empty_columns(0))


def test_ng_block_helper_is_well_formed() -> None:
    """The crafted-block helper writes the length twice (guards the tests above)."""
    b = ng_block(6, b"abc")
    assert struct.unpack("<I", b[4:8]) == struct.unpack("<I", b[-4:]) == (len(b),)


def test_compressed_stream_cut_mid_way(shared_captures: Path, tmp_capture: Write) -> None:
    raw = (shared_captures / "sv__smtp-data-rejected.pcap").read_bytes()
    whole = read_table(shared_captures / "sv__smtp-data-rejected.pcap")
    gz = gzip.compress(raw)
    path = tmp_capture(gz[: len(gz) // 2], name="cut.pcap.gz")
    tables = list(iter_tables(path, chunk_bytes=8192))
    seqs = np.concatenate([t["seq"] for t in tables])
    assert 0 < len(seqs) < len(whole) and (seqs == whole["seq"][: len(seqs)]).all()
    issues = [i for t in tables for i in t.issues]
    cut = f"gzip stream ends early at compressed byte offset {len(gz) // 2}"
    assert any(cut in i.message and i.offset is not None for i in issues)
    assert all(str(i).count(str(path)) == 1 for i in issues)  # the file named once per message

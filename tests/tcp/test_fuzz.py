"""Hostile input: random TCP headers built in memory (no capture file) never crash the stage,
streams are numbered in order of first appearance, and byte streams stay contiguous."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.capture.table import PacketTable, empty_columns
from mailwire.tcp import StreamChunk, analyze


def _table(seed: int, n: int, chunks: int) -> list[PacketTable]:
    rng = np.random.default_rng(seed)
    c = empty_columns(n)
    c["frame"] = np.arange(1, n + 1, dtype=np.int64)
    c["ts_ns"] = np.cumsum(rng.integers(0, 50_000_000, n)).astype(np.int64)
    c["ip_version"][:] = 4
    c["proto"][:] = np.where(rng.random(n) < 0.95, 6, 17)
    hosts = np.array([0xC000020A, 0xC6336414], dtype=np.uint64) | np.uint64(0xFFFF_0000_0000)
    a = rng.integers(0, 2, n)
    c["src_lo"] = hosts[a]
    c["dst_lo"] = hosts[1 - a]
    ports = rng.integers(0, 3, n)
    c["sport"] = np.where(a == 0, 40000 + ports, 25).astype(np.int32)
    c["dport"] = np.where(a == 0, 25, 40000 + ports).astype(np.int32)
    base = rng.integers(0, 2**32, 6)
    # sequence numbers near a few bases (so flows make sense) plus some wild values
    seq = (base[a * 3 + ports] + rng.integers(-3000, 30000, n)) % 2**32
    seq = np.where(rng.random(n) < 0.05, rng.integers(0, 2**32, n), seq)
    c["seq"] = seq.astype(np.uint32)
    c["ack"] = ((base[(1 - a) * 3 + ports] + rng.integers(-3000, 30000, n)) % 2**32).astype(np.uint32)
    c["tcp_flags"] = rng.choice([0x10, 0x18, 0x02, 0x12, 0x11, 0x04, 0x14, 0x03, 0x00, 0xFFF], n).astype(
        np.uint16
    )
    c["win"] = rng.choice([0, 1, 512, 65535], n).astype(np.int32)
    c["tcp_hdr_len"] = rng.choice([20, 32, 4, -1], n, p=[0.6, 0.35, 0.03, 0.02]).astype(np.int16)
    c["payload_len"] = rng.choice([0, 1, 100, 1448, 65000, -1], n).astype(np.int32)
    c["cap_payload_len"] = np.minimum(np.maximum(c["payload_len"], 0), rng.integers(0, 1500, n)).astype(
        np.int32
    )
    c["opt_wscale"] = rng.choice([-1, 0, 7, 14, 200], n).astype(np.int16)
    c["sack_n"] = rng.integers(0, 5, n).astype(np.int8)
    c["sack_le"] = rng.integers(0, 2**32, (n, 4)).astype(np.uint32)
    c["sack_re"] = rng.integers(0, 2**32, (n, 4)).astype(np.uint32)
    c["ip_id"] = rng.integers(-1, 65536, n).astype(np.int32)
    c["ttl"] = rng.integers(-1, 256, n).astype(np.int16)
    c["ip_len"] = (40 + np.maximum(c["payload_len"], 0)).astype(np.int64)
    # payload bytes: one buffer, every frame's payload points into it
    buf = rng.integers(0, 256, 2000, dtype=np.uint8)
    c["pkt_off"][:] = 0
    c["payload_off"][:] = 0
    c["cap_payload_len"] = np.minimum(c["cap_payload_len"], 2000).astype(np.int32)
    c["l4_off"][:] = 0
    c["caplen"][:] = 2000
    cuts = np.linspace(0, n, chunks + 1).astype(int)
    return [
        PacketTable(path="fuzz", buf=buf, columns={k: v[a0:b0] for k, v in c.items()})
        for a0, b0 in itertools.pairwise(cuts)
    ]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), chunks=st.integers(1, 4))
def test_random_headers_never_crash(seed: int, n: int, chunks: int) -> None:
    tables = _table(seed, n, chunks)
    res = analyze(tables)
    stream = res.frames["stream"]
    # tcp.stream numbering: in order of first appearance
    first = np.unique(stream, return_index=True)[1]
    assert np.array_equal(np.sort(stream[np.sort(first)]), np.arange(len(first)))
    assert len(res.connections) == len(first)
    for events in res.streams.values():
        nxt: dict[str, int] = {}
        for e in events:
            assert e.seq_offset == nxt.get(e.direction, 0)
            nxt[e.direction] = e.seq_offset + (len(e.data) if isinstance(e, StreamChunk) else e.length)
    res.to_json()

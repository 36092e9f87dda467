"""Capture-test helpers: frame and pcapng block builders for crafted captures, a tshark runner.

The builders write headers field by field from the RFCs (not from mailwire's decoder), so a crafted
capture plus tshark reading it gives an independent expectation.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

# --- frames -------------------------------------------------------------------------------------

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_hdr(
    sport: int = 40000,
    dport: int = 25,
    seq: int = 1000,
    ack: int = 0,
    flags: int = 0x18,
    win: int = 29200,
    options: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    while len(options) % 4:
        options += b"\x00"
    off = data_offset if data_offset is not None else (20 + len(options)) // 4
    return struct.pack("!HHIIHHHH", sport, dport, seq, ack, (off << 12) | flags, win, 0, 0) + options


def udp_hdr(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(
    payload: bytes,
    src: str = "192.0.2.1",
    dst: str = "198.51.100.2",
    proto: int = 6,
    ident: int = 4660,
    ttl: int = 64,
    flags_frag: int = 0x4000,
    total_length: int | None = None,
    ihl: int = 5,
    options: bytes = b"",
) -> bytes:
    tot = 20 + len(options) + len(payload) if total_length is None else total_length
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        (4 << 4) | ihl,
        0,
        tot,
        ident,
        flags_frag,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr = hdr + options
    c = csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def ipv6(
    payload: bytes,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    nh: int = 6,
    hlim: int = 64,
    plen: int | None = None,
) -> bytes:
    pl = len(payload) if plen is None else plen
    return (
        struct.pack("!IHBB", 6 << 28, pl, nh, hlim)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def eth(payload: bytes, ethertype: int = 0x0800, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Ethernet II; ``vlans`` = [(tpid, vid), ...] outermost first."""
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    return MAC_B + MAC_A + tags + struct.pack("!H", ethertype) + payload


def tcp4_frame(payload: bytes = b"", **kw: object) -> bytes:
    tkw = {k: v for k, v in kw.items() if k in ("sport", "dport", "seq", "ack", "flags", "win", "options")}
    ikw = {k: v for k, v in kw.items() if k in ("src", "dst", "ident", "ttl", "total_length")}
    return eth(ipv4(tcp_hdr(**tkw) + payload, **ikw))  # type: ignore[arg-type]


# --- pcapng blocks ------------------------------------------------------------------------------


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def ng_opts(opts: Sequence[tuple[int, bytes]], order: str = "<") -> bytes:
    if not opts:
        return b""
    out = b""
    for code, val in opts:
        out += struct.pack(order + "HH", code, len(val)) + _pad(val)
    return out + struct.pack(order + "HH", 0, 0)


def ng_block(btype: int, body: bytes, order: str = "<") -> bytes:
    body = _pad(body)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def ng_shb(order: str = "<", opts: Sequence[tuple[int, bytes]] = ()) -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + ng_opts(opts, order)
    return ng_block(0x0A0D0D0A, body, order)


def ng_idb(
    link_type: int = 1, snaplen: int = 0, order: str = "<", opts: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    return ng_block(1, struct.pack(order + "HHI", link_type, 0, snaplen) + ng_opts(opts, order), order)


def ng_epb(
    iface: int,
    ts_units: int,
    frame: bytes,
    order: str = "<",
    wirelen: int | None = None,
    opts: Sequence[tuple[int, bytes]] = (),
    caplen: int | None = None,
) -> bytes:
    cl = len(frame) if caplen is None else caplen
    wl = len(frame) if wirelen is None else wirelen
    body = struct.pack(order + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, cl, wl)
    return ng_block(6, body + _pad(frame) + ng_opts(opts, order), order)


def ng_spb(frame: bytes, order: str = "<", wirelen: int | None = None) -> bytes:
    return ng_block(3, struct.pack(order + "I", len(frame) if wirelen is None else wirelen) + frame, order)


def ng_pb(iface: int, ts_units: int, frame: bytes, order: str = "<") -> bytes:
    n = len(frame)
    body = struct.pack(order + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, n, n)
    return ng_block(2, body + frame, order)


# --- pcap -----------------------------------------------------------------------------------------


def pcap_bytes(
    records: Sequence[tuple[int, int, bytes]] | Sequence[tuple[int, int, bytes, int]],
    *,
    link_type: int = 1,
    nano: bool = False,
    big: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """records: (sec, frac, frame[, wirelen]) with frac in the file's unit."""
    o = ">" if big else "<"
    out = struct.pack(o + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, link_type)
    for r in records:
        sec, frac, frame = r[0], r[1], r[2]
        wl = r[3] if len(r) > 3 else len(frame)  # type: ignore[misc]
        out += struct.pack(o + "IIII", sec, frac, len(frame), wl) + frame
    return out


# --- tshark ---------------------------------------------------------------------------------------


def tshark_fields(
    tshark: str,
    path: Path | str,
    fields: Sequence[str],
    display_filter: str | None = None,
    prefs: Sequence[str] = (),
) -> list[list[str]]:
    cmd = [tshark, "-n", "-r", str(path), "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
    for p in prefs:
        cmd += ["-o", p]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return [line.split("\t") for line in res.stdout.splitlines()]


def random_tcp_frames(seed: int, n: int) -> list[tuple[int, int, bytes, int]]:
    """Seeded, mostly well-formed Ethernet/VLAN + IPv4/IPv6 + TCP frames with damage mixed in:
    odd IHL, total length 0 (TSO) or wrong, fragments, any data offset, random option bytes,
    snaplen cuts. Records for :func:`pcap_bytes` (sec, usec, frame, wire length)."""
    import random

    rng = random.Random(seed)
    out = []
    for k in range(n):
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 1, 5, 40, 200])))
        opts = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 4, 8, 12, 20, 40])))
        if rng.random() < 0.5:
            ts = struct.pack("!II", rng.getrandbits(32), rng.getrandbits(32))
            opts = rng.choice([b"\x02\x04\x05\xb4", b"\x01\x01\x08\x0a" + ts, b"\x01\x01\x05\x0a" + ts, b""])
        seg = tcp_hdr(
            sport=rng.randrange(65536),
            dport=25,
            seq=rng.getrandbits(32),
            ack=rng.getrandbits(32),
            flags=rng.getrandbits(12),
            win=rng.randrange(65536),
            options=opts,
            data_offset=rng.choice([None, None, None, rng.randrange(16)]),
        )
        seg += payload
        if rng.random() < 0.6:
            ihl = rng.choice([5, 5, 5, 6, rng.randrange(16)])
            ip = ipv4(
                seg,
                src=f"192.0.2.{rng.randrange(256)}",
                dst="198.51.100.7",
                total_length=rng.choice([None, None, None, 0, rng.randrange(0, 300)]),
                ihl=ihl,
                options=b"\x01" * ((ihl - 5) * 4) if ihl > 5 else b"",
                flags_frag=rng.choice([0x4000, 0x4000, 0, 0x2000, 0x0005]),
                ident=rng.randrange(65536),
            )
            et = 0x0800
        else:
            ip = ipv6(
                seg,
                src=f"2001:db8::{rng.randrange(65536):x}",
                plen=rng.choice([None, None, 0, rng.randrange(300)]),
            )
            et = 0x86DD
        frame = eth(ip, ethertype=et, vlans=[(0x8100, 5)] * rng.choice([0, 0, 1, 2]))
        wirelen = len(frame)
        if rng.random() < 0.25:
            frame = frame[: rng.randrange(10, len(frame) + 1)]
        out.append((1_700_000_000 + k, rng.randrange(1_000_000), frame, wirelen))
    return out

"""Connections built in memory as packet-table columns, for the report tests."""

from __future__ import annotations

import numpy as np

from mailwire.capture.table import empty_columns

CLIENT = (0, 0xFFFF_0000_0000 | 0xC000020A, 40312)  # 192.0.2.10:40312
SERVER = (0, 0xFFFF_0000_0000 | 0xC6336419, 25)  # 198.51.100.25:25
T0 = 1_700_000_000 * 10**9


def stalled_connection(
    n_ok: int = 40, backoff: tuple[float, ...] = (0.24, 0.49, 0.98, 1.96, 3.9, 7.8)
) -> dict[str, np.ndarray]:
    """A client that sends ``n_ok`` acknowledged 1448-byte segments (one ACK each, 10 ms later),
    then one segment that is never acknowledged and is retransmitted after each ``backoff`` delay.

    Frames alternate data / ACK; the last ``len(backoff) + 1`` rows are the unanswered segment and
    its retransmissions. Window: 1000 << 7 bytes, scale negotiated in the SYNs (rows 0 and 1).
    """
    n = 2 + 2 * n_ok + 1 + len(backoff)
    cols = empty_columns(n)
    cols["frame"][:] = np.arange(1, n + 1)
    cols["proto"][:] = 6
    cols["ip_version"][:] = 4
    isn_c, isn_s = 4_294_000_000, 77  # the client's ISN is near 2**32: the graph must unwrap
    ts = [T0, T0 + 10_000_000]
    rows_c = [0]
    rows_s = [1]
    seqs = [isn_c, isn_s]
    acks = [0, isn_c + 1]
    flags = [0x002, 0x012]
    plen = [0, 0]
    t = T0 + 20_000_000
    for k in range(n_ok):
        seqs += [(isn_c + 1 + k * 1448) % 2**32, isn_s + 1]
        acks += [isn_s + 1, (isn_c + 1 + (k + 1) * 1448) % 2**32]
        flags += [0x018, 0x010]
        plen += [1448, 0]
        ts += [t, t + 10_000_000]
        rows_c.append(len(ts) - 2)
        rows_s.append(len(ts) - 1)
        t += 20_000_000
    stuck = (isn_c + 1 + n_ok * 1448) % 2**32
    for delay in (0.0, *backoff):
        t += int(delay * 1e9)
        seqs.append(stuck)
        acks.append(isn_s + 1)
        flags.append(0x018)
        plen.append(1448)
        ts.append(t)
        rows_c.append(len(ts) - 1)
    cols["ts_ns"][:] = ts
    cols["seq"][:] = np.array(seqs, dtype=np.int64) % 2**32
    cols["ack"][:] = np.array(acks, dtype=np.int64) % 2**32
    cols["tcp_flags"][:] = flags
    cols["payload_len"][:] = plen
    cols["cap_payload_len"][:] = plen
    cols["win"][:] = 1000
    rc, rs = np.array(rows_c), np.array(rows_s)
    for rows, (hi, lo, port), (dhi, dlo, dport) in ((rc, CLIENT, SERVER), (rs, SERVER, CLIENT)):
        cols["src_hi"][rows], cols["src_lo"][rows], cols["sport"][rows] = hi, lo, port
        cols["dst_hi"][rows], cols["dst_lo"][rows], cols["dport"][rows] = dhi, dlo, dport
    cols["opt_wscale"][0:2] = 7
    cols["opt_mss"][0:2] = 1460
    return cols


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_frame(
    src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int, payload: bytes = b""
) -> bytes:
    """One Ethernet/IPv4/TCP frame with valid checksums (MSS option on SYNs)."""
    import ipaddress
    import struct

    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    opts = b"\x02\x04\x05\xb4" if flags & 0x02 else b""
    off = (20 + len(opts)) // 4
    tcp = (
        struct.pack("!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, off << 4, flags, 64240, 0, 0) + opts
    )
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    c = _csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + tcp + payload


def smtp_dialogue_frames(
    lines: list[tuple[str, bytes]],
    client: tuple[str, int] = ("192.0.2.10", 40312),
    server: tuple[str, int] = ("198.51.100.25", 25),
    t0_ns: int = T0,
) -> list[tuple[int, bytes]]:
    """A whole TCP connection carrying ``lines`` (("c"|"s", bytes) in order), each data segment
    acknowledged by the peer 1 ms later, closed with FIN/ACK both ways. Returns (ts_ns, frame)."""
    (ca, cp), (sa, sp) = client, server
    cseq, sseq = 1000, 5000
    t = t0_ns
    out: list[tuple[int, bytes]] = []

    def add(frame: bytes) -> None:
        nonlocal t
        out.append((t, frame))
        t += 1_000_000

    add(tcp_frame(ca, cp, sa, sp, cseq, 0, 0x02))
    add(tcp_frame(sa, sp, ca, cp, sseq, cseq + 1, 0x12))
    cseq, sseq = cseq + 1, sseq + 1
    add(tcp_frame(ca, cp, sa, sp, cseq, sseq, 0x10))
    for who, data in lines:
        if who == "c":
            add(tcp_frame(ca, cp, sa, sp, cseq, sseq, 0x18, data))
            cseq += len(data)
            add(tcp_frame(sa, sp, ca, cp, sseq, cseq, 0x10))
        else:
            add(tcp_frame(sa, sp, ca, cp, sseq, cseq, 0x18, data))
            sseq += len(data)
            add(tcp_frame(ca, cp, sa, sp, cseq, sseq, 0x10))
    add(tcp_frame(sa, sp, ca, cp, sseq, cseq, 0x11))
    add(tcp_frame(ca, cp, sa, sp, cseq, sseq + 1, 0x11))
    add(tcp_frame(sa, sp, ca, cp, sseq + 1, cseq + 1, 0x10))
    return out

"""Crafted two-point captures for the compare tests: one SMTP-like TCP conversation, observed at
two capture points with faults, clocks and translations applied in between.

A conversation is a list of :class:`Pkt` in send order, each with its send time at the sender.
``observe`` turns it into the frames one capture point records: a packet is recorded when the
point lies on its way (dropped packets only where the drop is downstream of the point), at its
time plus the path delay plus the point's clock offset, with whatever a box upstream of the point
rewrote (TTL, addresses, ports). Frames are real Ethernet/IPv4/IPv6/TCP bytes written with
``mailwire.capture.write.write_pcap``, so the tests run the real reader.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mailwire.capture.write import write_pcap

CLIENT = "192.0.2.10"
SERVER = "198.51.100.25"
CLIENT6 = "2001:db8::10"
SERVER6 = "2001:db8:1::25"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass
class Pkt:
    t_ns: int
    c2s: bool
    seq: int
    ack: int
    flags: int
    payload: bytes = b""
    ip_id: int = 0
    ttl: int = 64
    mss: int | None = None
    src: str = CLIENT
    dst: str = SERVER
    sport: int = 40000
    dport: int = 25
    tag: str = ""  # test bookkeeping ("data", "retx", "rst" ...)
    tos: int = 0
    win: int = 65535
    meta: dict[str, int] = field(default_factory=dict)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(p: Pkt) -> bytes:
    """Ethernet + IP + TCP bytes of ``p`` (TCP checksum left 0: nothing here verifies it)."""
    opts = b""
    if p.mss is not None:
        opts = struct.pack("!BBH", 2, 4, p.mss)
    thl = 20 + len(opts)
    tcp = struct.pack(
        "!HHIIBBHHH", p.sport, p.dport, p.seq & 0xFFFFFFFF, p.ack & 0xFFFFFFFF, (thl // 4) << 4, p.flags,
        p.win, 0, 0,
    ) + opts + p.payload  # fmt: skip
    v6 = ":" in p.src
    if v6:
        ip = struct.pack("!IHBB", (6 << 28) | (p.tos << 20), len(tcp), 6, p.ttl)
        ip += ipaddress.IPv6Address(p.src).packed + ipaddress.IPv6Address(p.dst).packed
        eth_type = 0x86DD
    else:
        hdr = struct.pack(
            "!BBHHHBBH4s4s", 0x45, p.tos, 20 + len(tcp), p.ip_id & 0xFFFF, 0x4000, p.ttl, 6, 0,
            ipaddress.IPv4Address(p.src).packed, ipaddress.IPv4Address(p.dst).packed,
        )  # fmt: skip
        ip = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        eth_type = 0x0800
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", eth_type)
    return eth + ip + tcp


def conversation(
    n_data: int = 40,
    seg: int = 1448,
    t0_ns: int = 1_700_000_000_000_000_000,
    rtt_ns: int = 2_000_000,
    v6: bool = False,
    isn_c: int = 1_000_000,
    isn_s: int = 3_000_000_000,
    sport: int = 40000,
    drop: Callable[[Pkt], bool] | None = None,
    max_retx: int = 6,
    body_len: int | None = None,
    client: str | None = None,
    mail_from: str = "a@example.test",
    seed: int = 7,
) -> list[Pkt]:
    """An SMTP-like session: handshake, dialogue, a DATA body of ``n_data`` segments, close.

    ``drop(pkt)`` decides whether a client DATA-body segment is lost between the two capture
    points (recorded as ``pkt.meta["drop"] = 1``). A dropped data segment is sent again
    (RTO doubling from 200 ms, tagged ``retx``) until a copy passes or ``max_retx`` copies were
    lost; the server only acknowledges what reached it, and a session whose body never got through
    ends with the server's 421 instead of 250.
    """
    cli, srv = (CLIENT6, SERVER6) if v6 else (CLIENT, SERVER)
    cli = client or cli
    out: list[Pkt] = []
    t = t0_ns
    cs, ss = isn_c, isn_s
    ids = {True: 100, False: 5000}

    def add(
        c2s: bool, flags: int, payload: bytes = b"", *, mss: int | None = None, tag: str = "", dt: int = 0
    ) -> Pkt:
        nonlocal t, cs, ss
        t += dt
        src, dst = (cli, srv) if c2s else (srv, cli)
        p = Pkt(
            t_ns=t, c2s=c2s, seq=cs if c2s else ss, ack=ss if c2s else cs, flags=flags, payload=payload,
            ip_id=ids[c2s], mss=mss, src=src, dst=dst, sport=sport if c2s else 25, dport=25 if c2s else sport,
            tag=tag,
        )  # fmt: skip
        ids[c2s] += 1
        step = len(payload) + (1 if flags & (SYN | FIN) else 0)
        if c2s:
            cs += step
        else:
            ss += step
        out.append(p)
        return p

    hole: list[int] = []  # seq of client data that never reached the server

    def lose(p: Pkt) -> bool:
        if drop is not None and drop(p):
            p.meta["drop"] = 1
            return True
        return False

    half = rtt_ns // 2
    add(True, SYN, mss=1460, tag="syn")
    add(False, SYN | ACK, mss=1460, tag="synack", dt=half)
    add(True, ACK, dt=half)
    dialogue = [
        (False, b"220 mx.dest.test ESMTP ready\r\n"),
        (True, b"EHLO sender.example.test\r\n"),
        (False, b"250-mx.dest.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
        (True, f"MAIL FROM:<{mail_from}>\r\n".encode()),
        (False, b"250 2.1.0 Ok\r\n"),
        (True, b"RCPT TO:<b@dest.test>\r\n"),
        (False, b"250 2.1.5 Ok\r\n"),
        (True, b"DATA\r\n"),
        (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    ]
    for c2s, text in dialogue:
        add(c2s, PSH | ACK, text, dt=half)

    def srv_ack(p: Pkt) -> Pkt:
        if hole:
            p.ack = min(hole)
        return p

    rng = random.Random(seed)
    blen = body_len if body_len is not None else seg * n_data
    body = bytes(rng.randrange(32, 127) for _ in range(blen))
    for i in range((blen + seg - 1) // seg):
        p = add(True, ACK, body[i * seg : (i + 1) * seg], tag="data", dt=100_000)
        lost = lose(p)
        rto = 200_000_000
        n = 0
        while lost and n < max_retx and not hole:
            q = replace(p, t_ns=t + rto, ip_id=ids[True], tag="retx", meta={})
            ids[True] += 1
            t += rto
            rto *= 2
            n += 1
            out.append(q)
            lost = lose(q)
        if lost:
            hole.append(p.seq)
        if i % 2 == 1:
            srv_ack(add(False, ACK, dt=half))
    if hole:
        # the receiver's idle timer fires long after the last retransmission
        srv_ack(add(False, PSH | ACK, b"421 4.4.2 mx.dest.test Error: timeout exceeded\r\n", dt=5 * 10**9))
        srv_ack(add(False, FIN | ACK, dt=1000))
        return out
    add(True, PSH | ACK, b".\r\n", dt=half)
    add(False, PSH | ACK, b"250 2.0.0 Ok: queued as 4ABC\r\n", dt=half)
    add(True, PSH | ACK, b"QUIT\r\n", dt=half)
    add(False, PSH | ACK, b"221 2.0.0 Bye\r\n", dt=half)
    add(False, FIN | ACK, dt=1000)
    add(True, FIN | ACK, dt=half)
    add(False, ACK, dt=half)
    return out


def observe(
    pkts: list[Pkt],
    *,
    keep: Callable[[Pkt], bool] = lambda p: True,
    delay_ns: Callable[[Pkt], int] = lambda p: 0,
    offset_ns: int = 0,
    rewrite: Callable[[Pkt], Pkt] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> list[tuple[int, bytes]]:
    """The frames a capture point records (see module docstring), in time order."""
    frames = []
    for p in pkts:
        if not keep(p):
            continue
        q = rewrite(p) if rewrite else p
        ts = p.t_ns + delay_ns(p) + offset_ns
        if start_ns is not None and ts - offset_ns < start_ns:
            continue
        if end_ns is not None and ts - offset_ns > end_ns:
            continue
        frames.append((ts, frame(q)))
    frames.sort(key=lambda x: x[0])
    return frames


def write(path: Path, frames: list[tuple[int, bytes]]) -> Path:
    write_pcap(path, frames)
    return path


# Path model used by most tests: A at the sender, B one hop (1 ms) further for client->server
# packets, and 1 ms earlier for server->client ones.
HOP_NS = 1_000_000


def hop_delay(p: Pkt) -> int:
    return HOP_NS if p.c2s else -HOP_NS


def icmp_frag_needed(src: str, dst: str, mtu: int, about: Pkt) -> bytes:
    """An ICMPv4 'fragmentation needed' from router ``src`` to ``dst`` quoting ``about``."""
    quoted = frame(about)[14 : 14 + 28]
    body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted
    body = body[:2] + struct.pack("!H", _csum(body)) + body[4:]
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + hdr + body

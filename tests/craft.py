"""Crafted packets for tests: Ethernet / IPv4 / IPv6 / TCP frames with exactly the fields asked for.

Small and explicit on purpose (dpkt-like field tables are overkill here). Checksums are computed,
so tshark and tcpdump read the frames as real ones. Typical use::

    f = Flow("192.0.2.1", 40000, "198.51.100.2", 25, isn_c=1000, isn_s=5000)
    frames = [f.syn(0), f.synack(ms(10)), f.ack(ms(20)), f.send(ms(30), "c2s", b"EHLO x\\r\\n")]
    write(tmp_path / "x.pcap", frames)

Only documentation address ranges belong in tests (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from mailwire.capture.write import write_pcap

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_FLAG_LETTERS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "A": ACK}

Frame = tuple[int, bytes]


def ms(x: float) -> int:
    """Milliseconds -> nanoseconds (timestamps are integer ns)."""
    return round(x * 1_000_000)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_options(
    *,
    mss: int | None = None,
    wscale: int | None = None,
    sack_perm: bool = False,
    ts: tuple[int, int] | None = None,
    sack: list[tuple[int, int]] | None = None,
) -> bytes:
    """TCP option bytes, padded with NOPs to a multiple of 4."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", 2, 4, mss)
    if sack_perm:
        out += b"\x04\x02"
    if ts is not None:
        out += struct.pack("!BBII", 8, 10, ts[0], ts[1])
    if wscale is not None:
        out += struct.pack("!BBB", 3, 3, wscale)
    if sack:
        out += struct.pack("!BB", 5, 2 + 8 * len(sack)) + b"".join(struct.pack("!II", a, b) for a, b in sack)
    while len(out) % 4:
        out = b"\x01" + out
    return out


def tcp_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    ack: int = 0,
    flags: int | str = "A",
    win: int = 65535,
    payload: bytes = b"",
    *,
    options: bytes = b"",
    ip_id: int = 0,
    ttl: int = 64,
    df: bool = True,
    ip_total_length: int | None = None,
) -> bytes:
    """One Ethernet frame carrying IPv4 or IPv6 (chosen by the address) and TCP."""
    if isinstance(flags, str):
        flags = sum(_FLAG_LETTERS[c] for c in flags)
    s_ip, d_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    hlen = 20 + len(options)
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (hlen // 4) << 4, flags, win, 0, 0
    )
    seg = tcp + options + payload
    if s_ip.version == 4:
        pseudo = s_ip.packed + d_ip.packed + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = s_ip.packed + d_ip.packed + struct.pack("!IxxxB", len(seg), 6)
    c = _csum(pseudo + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    if s_ip.version == 4:
        total = 20 + len(seg) if ip_total_length is None else ip_total_length
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            ip_id & 0xFFFF,
            0x4000 if df else 0,
            ttl,
            6,
            0,
            s_ip.packed,
            d_ip.packed,
        )
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(seg), 6, ttl, s_ip.packed, d_ip.packed)
        ethertype = 0x86DD
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
    return eth + ip + seg


def icmp_unreachable(src: str, dst: str, quoted_frame: bytes, quote: int, *, mtu: int = 1400) -> bytes:
    """An IPv4 ICMP "fragmentation needed" (type 3 code 4) from ``src`` to ``dst`` quoting the IP
    header and the first ``quote`` bytes after it of ``quoted_frame`` (an Ethernet frame)."""
    inner = quoted_frame[14 : 14 + 20 + quote]
    icmp = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + inner
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    s_ip, d_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, s_ip.packed, d_ip.packed)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + icmp


def write(path: str | Path, frames: list[Frame]) -> Path:
    """Write frames (ts_ns, bytes) as a nanosecond pcap (Ethernet)."""
    write_pcap(path, frames, link_type=1, nanosecond=True)
    return Path(path)


class Flow:
    """A TCP connection between a client and a server, keeping both sides' sequence numbers.

    ``send`` advances the sender's sequence number; ``resend`` repeats bytes without advancing.
    Every method returns one ``(ts_ns, frame)`` pair. IP ids increment per direction.
    """

    def __init__(
        self,
        client: str,
        cport: int,
        server: str,
        sport: int,
        *,
        isn_c: int = 1000,
        isn_s: int = 5000,
        win_c: int = 65535,
        win_s: int = 65535,
    ) -> None:
        self.ep = {"c2s": (client, server, cport, sport), "s2c": (server, client, sport, cport)}
        self.isn = {"c2s": isn_c & 0xFFFFFFFF, "s2c": isn_s & 0xFFFFFFFF}
        self.nxt = {"c2s": (isn_c + 1) & 0xFFFFFFFF, "s2c": (isn_s + 1) & 0xFFFFFFFF}
        self.win = {"c2s": win_c, "s2c": win_s}
        self.ipid = {"c2s": 100, "s2c": 9000}

    def _other(self, d: str) -> str:
        return "s2c" if d == "c2s" else "c2s"

    def frame(
        self,
        ts: int,
        d: str,
        seq: int,
        flags: int | str,
        payload: bytes = b"",
        *,
        ack: int | None = None,
        win: int | None = None,
        options: bytes = b"",
        ip_id: int | None = None,
        ip_total_length: int | None = None,
    ) -> Frame:
        src, dst, sp, dp = self.ep[d]
        if ip_id is None:
            self.ipid[d] += 1
            ip_id = self.ipid[d]
        a = self.nxt[self._other(d)] if ack is None else ack
        fl = flags if isinstance(flags, int) else sum(_FLAG_LETTERS[c] for c in flags)
        if not fl & ACK:
            a = 0
        w = self.win[d] if win is None else win
        f = tcp_frame(src, dst, sp, dp, seq, a, fl, w, payload, options=options, ip_id=ip_id,
                      ip_total_length=ip_total_length)  # fmt: skip
        return ts, f

    def syn(self, ts: int, **kw: object) -> Frame:
        opts = kw.pop("options", tcp_options(mss=1460, sack_perm=True, wscale=7))
        return self.frame(ts, "c2s", self.isn["c2s"], "S", options=opts, **kw)  # type: ignore[arg-type]

    def synack(self, ts: int, **kw: object) -> Frame:
        opts = kw.pop("options", tcp_options(mss=1460, sack_perm=True, wscale=7))
        return self.frame(ts, "s2c", self.isn["s2c"], "SA", options=opts, **kw)  # type: ignore[arg-type]

    def ack(self, ts: int, d: str = "c2s", **kw: object) -> Frame:
        return self.frame(ts, d, self.nxt[d], "A", **kw)  # type: ignore[arg-type]

    def send(self, ts: int, d: str, data: bytes, flags: str = "PA", **kw: object) -> Frame:
        seq = self.nxt[d]
        self.nxt[d] = (seq + len(data)) & 0xFFFFFFFF
        return self.frame(ts, d, seq, flags, data, **kw)  # type: ignore[arg-type]

    def resend(self, ts: int, d: str, seq: int, data: bytes, flags: str = "PA", **kw: object) -> Frame:
        return self.frame(ts, d, seq, flags, data, **kw)  # type: ignore[arg-type]

    def fin(self, ts: int, d: str, **kw: object) -> Frame:
        seq = self.nxt[d]
        self.nxt[d] = (seq + 1) & 0xFFFFFFFF
        return self.frame(ts, d, seq, "FA", **kw)  # type: ignore[arg-type]

    def rst(self, ts: int, d: str, **kw: object) -> Frame:
        return self.frame(ts, d, self.nxt[d], "R", **kw)  # type: ignore[arg-type]

    def handshake(self, t0: int, rtt: int = ms(20)) -> list[Frame]:
        return [self.syn(t0), self.synack(t0 + rtt // 2), self.ack(t0 + rtt)]


SMTP_GREETING = b"220 mx.example.net ESMTP\r\n"


def smtp_dialogue(f: Flow, t: int, after_fin: bytes = b"") -> tuple[list[Frame], int]:
    """A short SMTP session on ``f`` from ``t``: handshake, greeting, EHLO, QUIT, the server's FIN
    then the client's, the last ACK; ``after_fin`` is text the client writes after its FIN (RFC
    9293: the server ignores it). Returns the frames and a time after them."""
    out = [*f.handshake(t)]
    t += ms(30)
    lines = [("s2c", SMTP_GREETING), ("c2s", b"EHLO client.example.org\r\n"),
             ("s2c", b"250 mx.example.net\r\n"), ("c2s", b"QUIT\r\n"), ("s2c", b"221 bye\r\n")]  # fmt: skip
    for d, data in lines:
        out.append(f.send(t, d, data))
        t += ms(10)
    out.append(f.fin(t, "s2c"))
    out.append(f.fin(t + ms(5), "c2s"))
    out.append(f.ack(t + ms(10), "s2c"))
    if after_fin:
        out.append(f.send(t + ms(20), "c2s", after_fin))
    return out, t + ms(40)


__all__ = [
    "ACK",
    "FIN",
    "PSH",
    "RST",
    "SMTP_GREETING",
    "SYN",
    "Flow",
    "Frame",
    "icmp_unreachable",
    "ms",
    "smtp_dialogue",
    "tcp_frame",
    "tcp_options",
    "write",
]

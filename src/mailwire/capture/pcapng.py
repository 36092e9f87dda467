"""The pcapng file format: sections, interfaces, packet blocks, and blocks that lie about their length.

Theory of operation
-------------------
A pcapng file is a sequence of blocks ``(type, total_length, body, total_length)``. A Section
Header Block (SHB) starts a section and fixes its byte order; Interface Description Blocks (IDB)
declare, per section, each interface's link type, snaplen, timestamp resolution (``if_tsresol``,
power of 10 or of 2) and offset (``if_tsoffset``). Packets come in Enhanced (EPB), Simple (SPB) and
obsolete Packet Blocks (PB).

The compiled loop :func:`_walk` runs over one buffer and handles the frequent blocks itself: it
emits a row (offset, lengths, raw timestamp, interface) per packet block, finds an EPB's
``opt_comment``, and skips NRB, ISB, DSB and unknown blocks. It stops and hands control back to
Python at the rare blocks that change state (SHB, IDB), which Python parses, and at damage. Every
block is checked before use: total length >= 12, a multiple of 4, below ``MAX_BLOCK``, and equal to
the copy in the block's trailer; a packet's captured length must fit inside its block. A block that
fails is reported (file, frame, byte offset) and the walk looks for the next well-formed block
(:func:`_resync`), so packets after the damage are still read.

Wireshark numbers custom blocks (and systemd journal entries) as frames; so do we (rows flagged
``NOT_A_PACKET``) so that frame numbers agree. Interfaces are numbered globally across sections,
as Wireshark does.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from mailwire.capture.table import DecodeIssue, Interface, Warn
from mailwire.compiled import helper, kernel

if TYPE_CHECKING:
    import numpy.typing as npt

    U8Array = npt.NDArray[np.uint8]


SHB = 0x0A0D0D0A
IDB = 1
PB = 2
SPB = 3
NRB = 4
ISB = 5
EPB = 6
JOURNAL = 9
DSB = 0x0A
CB_COPY = 0x00000BAD
CB_NOCOPY = 0x40000BAD
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_BLOCK = (1 << 24) + 4096  # largest block we accept (16 MiB of packet plus headers)
_KNOWN = (SHB, IDB, PB, SPB, NRB, ISB, EPB, JOURNAL, DSB, CB_COPY, CB_NOCOPY)


# Row kinds emitted by the walker.
K_EPB, K_SPB, K_PB, K_CUSTOM = 0, 1, 2, 3


class PcapngFormatError(Exception):
    """The file is not a pcapng file we can read."""


def sniff(head: bytes) -> bool:
    return len(head) >= 4 and head[:4] == b"\x0a\x0d\x0d\x0a"


@helper(inline=True)
def _rd32(buf: U8Array, p: int, big: bool) -> int:
    if big:
        return (
            (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | buf[p + 3]
        )
    return (np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 1]) << 8) | buf[p]


@helper(inline=True)
def _rd16(buf: U8Array, p: int, big: bool) -> int:
    if big:
        return (np.int64(buf[p]) << 8) | buf[p + 1]
    return (np.int64(buf[p + 1]) << 8) | buf[p]


@kernel(
    "Tuple((i8, i8, i8))(u1[::1], i8, i8, b1, i8, i8, i8[::1], i8[::1], i8[::1], u8[::1], i4[::1], "
    "u1[::1], i8[::1], i8[::1], i8[::1])"
)
def _walk(
    buf: U8Array,
    pos: int,
    end: int,
    big: bool,
    n_if: int,
    snap0: int,
    out_off: npt.NDArray[np.int64],
    out_cap: npt.NDArray[np.int64],
    out_len: npt.NDArray[np.int64],
    out_ts: npt.NDArray[np.uint64],
    out_if: npt.NDArray[np.int32],
    out_kind: npt.NDArray[np.uint8],
    out_com_off: npt.NDArray[np.int64],
    out_com_len: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
) -> tuple[int, int, int]:
    """Walk blocks from ``pos``; return (rows, position, status).

    status 0: the block at position is incomplete (need more bytes); 1: its length is corrupt
    (out of range or trailer mismatch); 2: output full; 3: an SHB or IDB for Python;
    4: a packet block whose contents are inconsistent (skip it, report it).
    counts: [0] NRB, [1] ISB, [2] other/unknown blocks skipped, [3] DSB.
    """
    n = 0
    cap_n = out_off.shape[0]
    while n < cap_n:
        if pos + 12 > end:
            return n, pos, 0
        btype = _rd32(buf, pos, big)
        if btype == SHB:
            return n, pos, 3
        blen = _rd32(buf, pos + 4, big)
        if blen < 12 or (blen & 3) != 0 or blen > MAX_BLOCK:
            return n, pos, 1
        if pos + blen > end:
            return n, pos, 0
        if _rd32(buf, pos + blen - 4, big) != blen:
            return n, pos, 1
        if btype == IDB:
            return n, pos, 3
        if btype in (EPB, PB):
            if blen < 32:
                return n, pos, 4
            iface = _rd32(buf, pos + 8, big) if btype == EPB else _rd16(buf, pos + 8, big)
            caplen = _rd32(buf, pos + 20, big)
            if iface >= n_if or caplen > blen - 32:
                return n, pos, 4
            out_if[n] = iface
            out_ts[n] = (np.uint64(_rd32(buf, pos + 12, big)) << np.uint64(32)) | np.uint64(
                _rd32(buf, pos + 16, big)
            )
            out_cap[n] = caplen
            out_len[n] = _rd32(buf, pos + 24, big)
            out_off[n] = pos + 28
            out_kind[n] = K_EPB if btype == EPB else K_PB
            out_com_off[n] = -1
            out_com_len[n] = 0
            # options: find the first opt_comment
            p = pos + 28 + ((caplen + 3) & ~3)
            oend = pos + blen - 4
            while p + 4 <= oend:
                code = _rd16(buf, p, big)
                olen = _rd16(buf, p + 2, big)
                if code == 0 or p + 4 + olen > oend:
                    break
                if code == 1 and out_com_off[n] < 0:
                    out_com_off[n] = p + 4
                    out_com_len[n] = olen
                p += 4 + ((olen + 3) & ~3)
            n += 1
        elif btype == SPB:
            if n_if < 1 or blen < 16:
                return n, pos, 4
            wirelen = _rd32(buf, pos + 8, big)
            caplen = min(wirelen, blen - 16)
            if snap0 > 0:
                caplen = min(caplen, snap0)
            out_if[n] = 0
            out_ts[n] = 0
            out_cap[n] = caplen
            out_len[n] = wirelen
            out_off[n] = pos + 12
            out_kind[n] = K_SPB
            out_com_off[n] = -1
            out_com_len[n] = 0
            n += 1
        elif btype in (CB_COPY, CB_NOCOPY, JOURNAL):
            body = blen - 16 if btype != JOURNAL else blen - 12
            start = pos + 12 if btype != JOURNAL else pos + 8
            out_if[n] = -1
            out_ts[n] = 0
            out_cap[n] = max(body, 0)
            out_len[n] = max(body, 0)
            out_off[n] = start
            out_kind[n] = K_CUSTOM
            out_com_off[n] = -1
            out_com_len[n] = 0
            n += 1
        elif btype == NRB:
            counts[0] += 1
        elif btype == ISB:
            counts[1] += 1
        elif btype == DSB:
            counts[3] += 1
        else:
            counts[2] += 1
        pos += blen
    return n, pos, 2


@kernel("i8(u1[::1], i8, i8, b1, b1)")
def _resync(buf: U8Array, pos: int, end: int, eof: bool, big: bool) -> int:
    """First 4-aligned offset >= pos (relative to ``pos``) holding a complete, well-formed block.

    Returns -1 when none is in ``buf[pos:end]``, or ``-2 - p`` when the candidate at ``p`` needs
    more bytes to be confirmed.
    """
    p = pos
    while p + 12 <= end:
        btype = _rd32(buf, p, big)
        known = btype in (SHB, IDB, PB, SPB, NRB, ISB, EPB, JOURNAL, DSB, CB_COPY, CB_NOCOPY)
        if known:
            if btype == SHB:
                return p
            blen = _rd32(buf, p + 4, big)
            if blen >= 12 and (blen & 3) == 0 and blen <= MAX_BLOCK:
                if p + blen > end:
                    if not eof:
                        return -2 - p
                elif _rd32(buf, p + blen - 4, big) == blen:
                    return p
        p += 4
    if not eof:
        return -2 - p
    return -1


def _options(body: bytes, order: str) -> list[tuple[int, bytes]]:
    """Parse a pcapng option list (bounded by ``body``); stops at opt_endofopt or damage."""
    out: list[tuple[int, bytes]] = []
    p = 0
    while p + 4 <= len(body):
        code, olen = struct.unpack(order + "HH", body[p : p + 4])
        if code == 0 or p + 4 + olen > len(body):
            break
        out.append((code, body[p + 4 : p + 4 + olen]))
        p += 4 + ((olen + 3) & ~3)
    return out


def _units_to_ns(u: npt.NDArray[np.uint64], pow2: bool, exp: int) -> npt.NDArray[np.int64]:
    """Timestamp units of ``10**-exp`` or ``2**-exp`` seconds to ns; any exponent (0..127) is safe."""
    if pow2:
        if exp < 64:
            secs = (u >> np.uint64(exp)).astype(np.int64)
            frac = (u & np.uint64((1 << exp) - 1)).astype(np.float64)
            return secs * 1_000_000_000 + np.floor(frac * 1e9 / 2.0**exp).astype(np.int64)
        return np.floor(u.astype(np.float64) * 1e9 / 2.0**exp).astype(np.int64)
    if exp <= 9:
        return u.astype(np.int64) * (10 ** (9 - exp))
    if exp - 9 <= 19:
        return (u // np.uint64(10 ** (exp - 9))).astype(np.int64)
    return np.zeros(u.shape, np.int64)  # 10**-28 s and finer: every timestamp rounds to 0 ns


def _text(value: bytes) -> str:
    return value.split(b"\x00", 1)[0].decode("utf-8", "replace")


class PcapngReader:
    """Stateful walker over successive buffers of one pcapng file."""

    format = "pcapng"

    def __init__(self, name: str, head: bytes) -> None:
        if len(head) < 12:
            raise PcapngFormatError(f"{name}: pcapng section header cut short ({len(head)} bytes)")
        self.name = name
        self.big = False
        self.interfaces: list[Interface] = []
        self._section_base = 0  # global index of the current section's first interface
        self._section = -1
        self._res: list[tuple[bool, int]] = []  # per global interface: (power of 2?, exponent)
        self.sections: list[dict[str, object]] = []
        self.counts = np.zeros(4, np.int64)
        self.resyncing = False
        self.skipped_bytes = 0
        self.bad_blocks = 0

    @property
    def header_len(self) -> int:
        return 0

    # --- Python-side blocks -------------------------------------------------------------------

    def _shb(self, buf: np.ndarray, pos: int, end: int, base: int) -> tuple[int, str, DecodeIssue | None]:
        """Parse an SHB at pos; return (new pos, state, issue)."""
        if pos + 12 > end:
            return pos, "need", None
        bom = bytes(buf[pos + 8 : pos + 12])
        if bom == b"\x1a\x2b\x3c\x4d":
            big = True
        elif bom == b"\x4d\x3c\x2b\x1a":
            big = False
        else:
            return (
                pos,
                "bad",
                DecodeIssue(self.name, "section header with an unknown byte-order magic", offset=base + pos),
            )
        order = ">" if big else "<"
        blen = struct.unpack(order + "I", bytes(buf[pos + 4 : pos + 8]))[0]
        if blen < 28 or blen & 3 or blen > MAX_BLOCK:
            return (
                pos,
                "bad",
                DecodeIssue(self.name, f"section header with impossible length {blen}", offset=base + pos),
            )
        if pos + blen > end:
            return pos, "need", None
        block = bytes(buf[pos : pos + blen])
        if struct.unpack(order + "I", block[-4:])[0] != blen:
            return (
                pos,
                "bad",
                DecodeIssue(self.name, "section header trailer length mismatch", offset=base + pos),
            )
        self.big = big
        vmaj, vmin = struct.unpack(order + "HH", block[12:16])
        info: dict[str, object] = {
            "version": f"{vmaj}.{vmin}",
            "byte_order": "big-endian" if big else "little-endian",
        }
        for code, val in _options(block[24:-4], order):
            key = {1: "comment", 2: "hardware", 3: "os", 4: "application"}.get(code)
            if key == "comment":
                info.setdefault("comments", [])
                info["comments"].append(_text(val))  # type: ignore[attr-defined]
            elif key:
                info[key] = _text(val)
        self.sections.append(info)
        self._section += 1
        self._section_base = len(self.interfaces)
        return pos + blen, "ok", None

    def _idb(self, buf: np.ndarray, pos: int) -> int:
        order = ">" if self.big else "<"
        blen = struct.unpack(order + "I", bytes(buf[pos + 4 : pos + 8]))[0]
        block = bytes(buf[pos : pos + blen])
        if blen < 20:
            link_type, snaplen = -1, 0
        else:
            link_type, _res, snaplen = struct.unpack(order + "HHI", block[8:16])
        iface = Interface(link_type=link_type, snaplen=snaplen, ts_digits=6, section=self._section)
        pow2, exp = False, 6
        for code, val in _options(block[16:-4], order):
            if code == 1:
                iface.comments.append(_text(val))
            elif code == 2:
                iface.name = _text(val)
            elif code == 3:
                iface.description = _text(val)
            elif code == 9 and len(val) >= 1:
                pow2, exp = bool(val[0] & 0x80), val[0] & 0x7F
            elif code == 12:
                iface.os = _text(val)
            elif code == 14 and len(val) >= 8:
                iface.ts_offset_s = struct.unpack(order + "q", val[:8])[0]
        if pow2:
            # 2^-exp s: digits needed to show one tick exactly-ish, capped at ns
            iface.ts_digits = min(9, int(np.ceil(exp * np.log10(2)))) if exp else 0
        else:
            iface.ts_digits = min(exp, 9)
        self.interfaces.append(iface)
        self._res.append((pow2, exp))
        return pos + blen

    # --- the walk -----------------------------------------------------------------------------

    def step(
        self, buf: np.ndarray, pos: int, end: int, eof: bool, base: int, frame: int, max_n: int
    ) -> tuple[dict[str, np.ndarray] | None, int, str, list[DecodeIssue]]:
        issues: list[DecodeIssue] = []
        if self.resyncing:
            found = _resync(buf, pos, end, eof, self.big)
            if found < 0:
                keep = end if found == -1 else -2 - found
                self.skipped_bytes += keep - pos
                if found == -1:
                    issues.append(
                        DecodeIssue(
                            self.name,
                            f"no further well-formed block found; {self.skipped_bytes} bytes skipped "
                            "to the end",
                            offset=base + end,
                        )
                    )
                return None, keep, "more", issues
            self.skipped_bytes += found - pos
            issues.append(
                DecodeIssue(
                    self.name,
                    f"resynchronised after skipping {self.skipped_bytes} bytes",
                    offset=base + found,
                )
            )
            pos = found
            self.resyncing = False
        if self._section < 0:
            new_pos, state, issue = self._shb(buf, pos, end, base)
            if state == "need":
                return None, pos, "more", issues
            if state == "bad":
                raise PcapngFormatError(str(issue))
            pos = new_pos
        size = max(1, min(max_n, (end - pos) // 16 + 1))
        off = np.empty(size, np.int64)
        cap = np.empty(size, np.int64)
        wlen = np.empty(size, np.int64)
        ts = np.empty(size, np.uint64)
        ifc = np.empty(size, np.int32)
        kind = np.empty(size, np.uint8)
        com_off = np.empty(size, np.int64)
        com_len = np.empty(size, np.int64)
        n_if = len(self.interfaces) - self._section_base
        snap0 = self.interfaces[self._section_base].snaplen if n_if > 0 else 0
        n, new_pos, status = _walk(
            buf, pos, end, self.big, n_if, snap0, off, cap, wlen, ts, ifc, kind, com_off, com_len, self.counts
        )
        recs = self._records(buf, n, off, cap, wlen, ts, ifc, kind, com_off, com_len, frame) if n else None
        state = "again"
        if status == 0:
            state = "more"
        elif status == 3:
            btype = struct.unpack((">" if self.big else "<") + "I", bytes(buf[new_pos : new_pos + 4]))[0]
            if btype == SHB:
                p2, st, issue = self._shb(buf, new_pos, end, base)
                if st == "need":
                    return recs, new_pos, "more", issues
                if st == "bad":
                    assert issue is not None
                    issues.append(issue)
                    self.resyncing = True
                    self.skipped_bytes = 0
                    self.bad_blocks += 1
                    return recs, new_pos + 4, "again", issues
                new_pos = p2
            else:
                new_pos = self._idb(buf, new_pos)
        elif status in (1, 4):
            order = ">" if self.big else "<"
            btype, blen = struct.unpack(order + "II", bytes(buf[new_pos : new_pos + 8]))
            self.bad_blocks += 1
            if status == 1:
                why = f"block length {blen} is impossible or does not match its trailer"
                if btype not in _KNOWN:
                    why = f"unrecognised block type {btype:#x} with length {blen}"
                issues.append(
                    DecodeIssue(
                        self.name,
                        f"corrupt block ({why}); skipping to the next well-formed block",
                        frame=frame + n,
                        offset=base + new_pos,
                    )
                )
                self.resyncing = True
                self.skipped_bytes = 0
                return recs, new_pos + 4, "again", issues
            issues.append(
                DecodeIssue(
                    self.name,
                    f"packet block type {btype} is inconsistent (interface id or captured length beyond "
                    "the block); block skipped",
                    frame=frame + n,
                    offset=base + new_pos,
                )
            )
            new_pos += blen
        return recs, new_pos, state, issues

    def _records(
        self,
        buf: np.ndarray,
        n: int,
        off: np.ndarray,
        cap: np.ndarray,
        wlen: np.ndarray,
        ts: np.ndarray,
        ifc: np.ndarray,
        kind: np.ndarray,
        com_off: np.ndarray,
        com_len: np.ndarray,
        frame: int,
    ) -> dict[str, np.ndarray]:
        ifc = ifc[:n].copy()
        kind = kind[:n]
        units = ts[:n]
        is_custom = kind == K_CUSTOM
        gif = np.where(is_custom, -1, ifc + self._section_base).astype(np.int32)
        ts_ns = np.zeros(n, np.int64)
        link = np.full(n, -1, np.int32)
        warn = np.zeros(n, np.uint32)
        caplen = cap[:n].copy()  # copies: slices would keep the full-size walker arrays alive
        for g in np.unique(gif):
            if g < 0:
                continue
            sel = gif == g
            iface = self.interfaces[g]
            link[sel] = iface.link_type
            pow2, exp = self._res[g]
            ns = _units_to_ns(units[sel], pow2, exp)
            # if_tsoffset is attacker-controlled int64: clamp it (±2**33 s, ~270 years) before scaling
            offset_s = max(-(1 << 33), min(1 << 33, iface.ts_offset_s))
            ts_ns[sel] = ns + offset_s * 1_000_000_000
            if iface.snaplen > 0:
                over = sel & (caplen > iface.snaplen)
                warn[over] |= np.uint32(Warn.CAPLEN_EXCEEDS_SNAPLEN)
        no_ts = (kind == K_SPB) | is_custom
        ts_ns[no_ts] = 0
        warn[no_ts] |= np.uint32(Warn.NO_TIMESTAMP)
        warn[is_custom] |= np.uint32(Warn.NOT_A_PACKET)
        comments: dict[int, str] = {}
        for i in np.nonzero(com_off[:n] >= 0)[0]:
            o, ln = int(com_off[i]), int(com_len[i])
            comments[frame + int(i)] = _text(bytes(buf[o : o + ln]))
        recs = {
            "pkt_off": off[:n].copy(),
            "caplen": caplen,
            "wirelen": wlen[:n].copy(),
            "ts_ns": ts_ns,
            "interface": gif,
            "link_type": link,
            "warnings": warn,
        }
        if comments:
            recs["_comments"] = comments  # type: ignore[assignment]
        return recs

    def trailing_issue(self, remaining: int, base: int, frame: int) -> DecodeIssue | None:
        if remaining <= 0 or self.resyncing:
            return None
        return DecodeIssue(
            self.name,
            f"file ends inside a block: {remaining} bytes left over (block cut short); "
            "packets before it are kept",
            frame=frame,
            offset=base,
        )

    def describe(self) -> dict[str, object]:
        return {
            "format": "pcapng",
            "sections": self.sections,
            "blocks_skipped": {
                "name_resolution": int(self.counts[0]),
                "interface_statistics": int(self.counts[1]),
                "decryption_secrets": int(self.counts[3]),
                "unknown": int(self.counts[2]),
                "corrupt": self.bad_blocks,
            },
        }


__all__ = ["PcapngFormatError", "PcapngReader", "sniff"]

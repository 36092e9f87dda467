"""The classic libpcap file format: header, record walk, resynchronisation after a bad record.

Theory of operation
-------------------
A pcap file is a 24-byte header followed by records (16-byte header + ``caplen`` bytes). The
reader is handed one buffer at a time by ``capture.read`` and walks the records in it with a
compiled loop (:func:`_walk`), which only produces arrays of offsets and lengths: it never copies
packet bytes. A record whose header does not fit, or whose bytes run past the buffer, is left for
the next buffer (``need more``). A record whose ``caplen`` is impossible (larger than any snaplen
we accept, e.g. 4 GB) is reported as a :class:`DecodeIssue` naming the frame and byte offset;
the walk then looks for the next plausible record header (:func:`_resync`) so the packets after
the damage are still read.

The header's link-type field may carry FCS information in its upper bits (bit 26: FCS present,
bits 28-31: FCS length in 16-bit words); the link type proper is the low 16 bits.
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


MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
# Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: larger captured lengths are corrupt records.
MAX_CAPLEN_STANDARD = 262144
MAX_CAPLEN_HARD = 1 << 24  # upper bound even when the header declares a larger snaplen
# A resync candidate's timestamp must lie this close to the last good one.
RESYNC_WINDOW_S = 7 * 86400
HEADER_LEN = 24


class PcapFormatError(Exception):
    """The file is not a pcap file we can read."""


def sniff(head: bytes) -> bool:
    """True when ``head`` starts with one of the pcap magic numbers (either byte order)."""
    if len(head) < 4:
        return False
    le = struct.unpack("<I", head[:4])[0]
    be = struct.unpack(">I", head[:4])[0]
    return le in (MAGIC_US, MAGIC_NS) or be in (MAGIC_US, MAGIC_NS)


@helper(inline=True)
def _rd32(buf: U8Array, p: int, big: bool) -> int:
    if big:
        return (
            (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | buf[p + 3]
        )
    return (np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 1]) << 8) | buf[p]


@kernel("Tuple((i8, i8, i8))(u1[::1], i8, i8, b1, i8, i8[::1], i8[::1], i8[::1], i8[::1], i8[::1])")
def _walk(
    buf: U8Array,
    pos: int,
    end: int,
    big: bool,
    limit: int,
    out_off: npt.NDArray[np.int64],
    out_cap: npt.NDArray[np.int64],
    out_len: npt.NDArray[np.int64],
    out_sec: npt.NDArray[np.int64],
    out_frac: npt.NDArray[np.int64],
) -> tuple[int, int, int]:
    """Walk records from ``pos``; return (count, next position, status).

    status 0: stopped because the next record is not complete in ``buf[:end]``;
    status 1: the record header at the returned position is corrupt (caplen > limit);
    status 2: the output arrays are full.
    """
    n = 0
    cap_n = out_off.shape[0]
    while n < cap_n:
        if pos + 16 > end:
            return n, pos, 0
        caplen = _rd32(buf, pos + 8, big)
        if caplen > limit:
            return n, pos, 1
        if pos + 16 + caplen > end:
            return n, pos, 0
        out_sec[n] = _rd32(buf, pos, big)
        out_frac[n] = _rd32(buf, pos + 4, big)
        out_cap[n] = caplen
        out_len[n] = _rd32(buf, pos + 12, big)
        out_off[n] = pos + 16
        n += 1
        pos += 16 + caplen
    return n, pos, 2


@helper(inline=True)
def _plausible(buf: U8Array, p: int, end: int, big: bool, limit: int, frac_max: int, prev_sec: int) -> bool:
    if p + 16 > end:
        return False
    caplen = _rd32(buf, p + 8, big)  # the cheapest rejection first: most offsets fail here
    if caplen > limit:
        return False
    wirelen = _rd32(buf, p + 12, big)
    if wirelen < caplen or wirelen > MAX_CAPLEN_HARD:
        return False
    if _rd32(buf, p + 4, big) >= frac_max:
        return False
    sec = _rd32(buf, p, big)
    return not (prev_sec >= 0 and abs(sec - prev_sec) > RESYNC_WINDOW_S)


@kernel("i8(u1[::1], i8, i8, b1, b1, i8, i8, i8)")
def _resync(
    buf: U8Array, pos: int, end: int, eof: bool, big: bool, limit: int, frac_max: int, prev_sec: int
) -> int:
    """First offset >= pos holding a plausible record followed by another (or by the end of file).

    Returns -1 when none is in ``buf[pos:end]``, or ``-2 - p`` when the candidate at ``p`` needs
    more bytes to be confirmed.
    """
    p = pos
    while p + 16 <= end:
        if _plausible(buf, p, end, big, limit, frac_max, prev_sec):
            nxt = p + 16 + _rd32(buf, p + 8, big)
            if nxt == end and eof:
                return p
            if nxt + 16 > end and not eof:
                return -2 - p
            if nxt + 16 <= end and _plausible(buf, nxt, end, big, limit, frac_max, prev_sec):
                return p
        p += 1
    if not eof:
        return -2 - p
    return -1


class PcapReader:
    """Stateful walker over successive buffers of one pcap file."""

    format = "pcap"

    def __init__(self, name: str, head: bytes) -> None:
        if len(head) < HEADER_LEN:
            raise PcapFormatError(f"{name}: pcap file header cut short ({len(head)} of 24 bytes)")
        magic_le = struct.unpack("<I", head[:4])[0]
        self.big = magic_le not in (MAGIC_US, MAGIC_NS)
        order = ">" if self.big else "<"
        magic, vmaj, vmin, _zone, _sigfigs, snaplen, linkfield = struct.unpack(order + "IHHiIII", head[:24])
        self.nano = magic == MAGIC_NS
        self.name = name
        self.version = f"{vmaj}.{vmin}"
        self.snaplen = snaplen
        self.link_type = linkfield & 0xFFFF
        self.fcs_len = ((linkfield >> 28) & 0xF) * 2 if linkfield & (1 << 26) else 0
        self.limit = MAX_CAPLEN_STANDARD if snaplen <= MAX_CAPLEN_STANDARD else min(snaplen, MAX_CAPLEN_HARD)
        self.interfaces = [
            Interface(link_type=self.link_type, snaplen=snaplen, ts_digits=9 if self.nano else 6)
        ]
        self.resyncing = False
        self.prev_sec = -1
        self.skipped_bytes = 0

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    def step(
        self, buf: U8Array, pos: int, end: int, eof: bool, base: int, frame: int, max_n: int
    ) -> tuple[dict[str, np.ndarray] | None, int, str, list[DecodeIssue]]:
        """Walk ``buf[pos:end]``; return (record arrays or None, new pos, state, issues).

        state: "more" (feed the next buffer), "again" (call again on the same buffer).
        """
        issues: list[DecodeIssue] = []
        frac_max = 1_000_000_000 if self.nano else 1_000_000
        if self.resyncing:
            found = _resync(buf, pos, end, eof, self.big, self.limit, frac_max, self.prev_sec)
            if found < 0:
                keep = end if found == -1 else -2 - found
                self.skipped_bytes += keep - pos
                if found == -1:
                    issues.append(self._resync_done(base + end, found=False))
                return None, keep, "more", issues
            self.skipped_bytes += found - pos
            issues.append(self._resync_done(base + found, found=True))
            pos = found
            self.resyncing = False
        size = max(1, min(max_n, (end - pos) // 16 + 1))
        off = np.empty(size, np.int64)
        cap = np.empty(size, np.int64)
        wlen = np.empty(size, np.int64)
        sec = np.empty(size, np.int64)
        frac = np.empty(size, np.int64)
        n, new_pos, status = _walk(buf, pos, end, self.big, self.limit, off, cap, wlen, sec, frac)
        recs = self._records(n, off, cap, wlen, sec, frac) if n else None
        if n:
            self.prev_sec = int(sec[n - 1])
        if status == 1:
            bad_cap = int(_rd32(buf, new_pos + 8, self.big))
            issues.append(
                DecodeIssue(
                    self.name,
                    f"corrupt record header: captured length {bad_cap} exceeds the maximum {self.limit}; "
                    "skipping to the next plausible record",
                    frame=frame + n,
                    offset=base + new_pos,
                )
            )
            self.resyncing = True
            self.skipped_bytes = 0
            return recs, new_pos + 1, "again", issues
        return recs, new_pos, ("again" if status == 2 else "more"), issues

    def _resync_done(self, offset: int, *, found: bool) -> DecodeIssue:
        if found:
            msg = f"resynchronised after skipping {self.skipped_bytes} bytes"
        else:
            msg = f"no further plausible record found; {self.skipped_bytes} bytes skipped to the end"
        return DecodeIssue(self.name, msg, offset=offset)

    def _records(
        self,
        n: int,
        off: np.ndarray,
        cap: np.ndarray,
        wlen: np.ndarray,
        sec: np.ndarray,
        frac: np.ndarray,
    ) -> dict[str, np.ndarray]:
        # copies: slices would keep the walker's full-size output arrays alive with the table
        frac = frac[:n].copy()
        scale = 1 if self.nano else 1000
        warn = np.zeros(n, np.uint32)
        bad_frac = frac >= (1_000_000_000 if self.nano else 1_000_000)
        warn[bad_frac] |= np.uint32(Warn.BAD_TIMESTAMP)
        caplen = cap[:n].copy()
        warn[caplen > self.snaplen] |= np.uint32(Warn.CAPLEN_EXCEEDS_SNAPLEN)
        return {
            "pkt_off": off[:n].copy(),
            "caplen": caplen,
            "wirelen": wlen[:n].copy(),
            "ts_ns": sec[:n] * 1_000_000_000 + frac * scale,
            "interface": np.zeros(n, np.int32),
            "link_type": np.full(n, self.link_type, np.int32),
            "warnings": warn,
        }

    def trailing_issue(self, remaining: int, base: int, frame: int) -> DecodeIssue | None:
        """Message for bytes left over at the end of the file (a record cut mid-way)."""
        if remaining <= 0 or self.resyncing:
            return None
        return DecodeIssue(
            self.name,
            f"file ends inside a record: {remaining} bytes left over (record cut short); "
            "packets before it are kept",
            frame=frame,
            offset=base,
        )

    def describe(self) -> dict[str, object]:
        return {
            "format": "pcap (nanosecond)" if self.nano else "pcap",
            "version": self.version,
            "byte_order": "big-endian" if self.big else "little-endian",
            "snaplen": self.snaplen,
            "fcs_len": self.fcs_len,
        }


__all__ = ["PcapFormatError", "PcapReader", "sniff"]

"""A plain pcap writer: extracts of the frames that matter (``--extract``) and test captures.

Writes the classic libpcap format in native little-endian order, nanosecond (magic a1b23c4d) or
microsecond timestamps. It knows nothing about what the frames contain.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO


def pcap_header(link_type: int = 1, *, nanosecond: bool = True, snaplen: int = 262144) -> bytes:
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, link_type)


def pcap_record(ts_ns: int, frame: bytes, *, nanosecond: bool = True, wirelen: int | None = None) -> bytes:
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    frac = ns if nanosecond else ns // 1000
    wl = len(frame) if wirelen is None else wirelen
    return struct.pack("<IIII", sec & 0xFFFFFFFF, frac, len(frame), wl) + bytes(frame)


def write_pcap(
    path: str | Path | BinaryIO,
    frames: Iterable[tuple[int, bytes]],
    link_type: int = 1,
    nanosecond: bool = True,
    *,
    snaplen: int = 262144,
) -> int:
    """Write ``(ts_ns, frame_bytes)`` pairs as a pcap file; returns the number of frames written."""
    n = 0
    if isinstance(path, (str, Path)):
        with open(path, "wb") as out:
            return write_pcap(out, frames, link_type, nanosecond, snaplen=snaplen)
    fh: BinaryIO = path
    fh.write(pcap_header(link_type, nanosecond=nanosecond, snaplen=snaplen))
    for ts_ns, frame in frames:
        fh.write(pcap_record(ts_ns, frame, nanosecond=nanosecond))
        n += 1
    return n


__all__ = ["pcap_header", "pcap_record", "write_pcap"]

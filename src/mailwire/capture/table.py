"""The columnar packet table: the one data structure every later stage reads.

Theory of operation
-------------------
A capture is decoded into a :class:`PacketTable`: one NumPy array per field, one row per frame,
in file order. Stages downstream (tcp, smtp, compare) work on whole columns at once and touch
payload bytes only through ``buf`` + ``pkt_off`` + ``payload_off`` for the few frames that need
deep inspection. A large capture arrives as several tables (chunks) in file order; ``frame``
keeps Wireshark's 1-based numbering across the whole file, so chunks can be processed with
per-flow state carried from one to the next.

"Unset" is never encoded as 0 where 0 is a legal value: optional integer fields use -1
(hence signed dtypes), with the exceptions named on the field.

This module owns the schema only; readers (``capture.pcap``, ``capture.pcapng``) and decoders
(``capture.decode``) fill it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt


class Warn(enum.IntFlag):
    """Per-frame decode warnings (bit mask in ``PacketTable.warnings``)."""

    SNAPLEN_TRUNCATED = 1 << 0  # caplen < wire length
    LINK_TRUNCATED = 1 << 1  # link-layer header cut short
    UNSUPPORTED_LINK = 1 << 2  # link type we do not decode
    NOT_IP = 1 << 3  # link payload is not IPv4/IPv6 (ARP, LLDP ...)
    IP_TRUNCATED = 1 << 4  # IP header cut short
    BAD_IP_HEADER = 1 << 5  # IHL < 5, version mismatch, total length < header
    IP_FRAGMENT = 1 << 6  # MF set or fragment offset != 0 (transport not decoded beyond 1st)
    TSO_LENGTH_ZERO = 1 << 7  # IPv4 total length 0: TSO frame, captured length used
    IP_LENGTH_EXCEEDS_FRAME = 1 << 8  # IP total length larger than the wire frame
    L4_TRUNCATED = 1 << 9  # TCP/UDP/ICMP header cut short
    BAD_TCP_OFFSET = 1 << 10  # TCP data offset < 5 or beyond the IP payload
    BAD_TCP_OPTIONS = 1 << 11  # option list malformed (length runs past header)
    PAYLOAD_TRUNCATED = 1 << 12  # TCP payload not fully captured (snaplen)
    EXT_HEADER_LIMIT = 1 << 13  # IPv6 extension chain too long / malformed
    SUPER_SEGMENT = 1 << 14  # TCP data in an IP packet > 1500 B off loopback: host TSO/GSO/GRO (or jumbo)
    VLAN_DEPTH = 1 << 15  # more VLAN tags than we follow
    CAPLEN_EXCEEDS_SNAPLEN = 1 << 16  # record holds more bytes than the file/interface snaplen
    BAD_TIMESTAMP = 1 << 17  # fractional part out of range (e.g. >= 1e9 ns); carried into seconds
    NO_TIMESTAMP = 1 << 18  # record type without a timestamp (pcapng SPB, custom block): ts_ns = 0
    NOT_A_PACKET = 1 << 19  # pcapng custom block that Wireshark numbers as a frame; no packet bytes


WARN_NAMES: dict[int, str] = {int(w): (w.name or "").lower() for w in Warn}


def warning_names(mask: int) -> list[str]:
    """The names of the bits set in a ``warnings`` mask, lowest bit first."""
    return [name for bit, name in WARN_NAMES.items() if mask & bit]


# Column name -> dtype. The order is the documented schema order.
COLUMNS: dict[str, npt.DTypeLike] = {
    "frame": np.int64,  # 1-based Wireshark frame number across the whole file
    "ts_ns": np.int64,  # capture timestamp, integer ns since the Unix epoch (if_tsoffset applied)
    "interface": np.int32,  # pcapng interface id; 0 for pcap
    "caplen": np.int64,  # bytes captured
    "wirelen": np.int64,  # original length on the wire
    "link_type": np.int32,  # LINKTYPE_* of the frame's interface
    "pkt_off": np.int64,  # offset of the frame's first byte in ``buf``
    "l3_off": np.int32,  # offset of the IP header from the frame start; -1 if none
    "ip_version": np.int8,  # 4, 6, or 0 when the frame carries no decodable IP
    # Addresses as 128-bit integers split in two halves; IPv4 is IPv4-mapped (::ffff:a.b.c.d).
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "ip_id": np.int64,  # IPv4 identification; IPv6 fragment id (32 bits) when present; -1 otherwise
    "ttl": np.int16,  # TTL / hop limit; -1 if no IP
    "tos": np.int16,  # IPv4 TOS / IPv6 traffic class (DSCP << 2 | ECN); -1 if no IP
    "df": np.bool_,  # IPv4 don't-fragment bit
    "ip_len": np.int64,  # IP total length as used (IPv4 total length, IPv6 40 + payload length)
    "proto": np.int16,  # transport protocol after extension headers (6, 17, 1, 58 ...); -1 if none
    "l4_off": np.int32,  # offset of the transport header from the frame start; -1 if none
    "sport": np.int32,  # -1 when not TCP/UDP
    "dport": np.int32,
    "seq": np.uint32,  # raw TCP sequence number (0 when not TCP; check proto)
    "ack": np.uint32,  # raw TCP acknowledgement number (0 when not TCP)
    "tcp_flags": np.uint16,  # 12 bits as tshark's tcp.flags (res, AE, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN)
    "win": np.int32,  # raw TCP window field; -1 when not TCP
    "tcp_hdr_len": np.int16,  # TCP header length in bytes; -1 when not TCP
    "payload_off": np.int32,  # offset of the TCP/UDP payload from the frame start; -1 if none
    "payload_len": np.int32,  # TCP/UDP payload length per the IP header (tshark tcp.len); -1 if none
    "cap_payload_len": np.int32,  # payload bytes actually present in the capture (<= payload_len)
    # TCP options (-1 when absent)
    "opt_mss": np.int32,
    "opt_wscale": np.int16,
    "opt_sack_perm": np.bool_,
    "opt_ts_val": np.int64,  # -1 when no timestamp option
    "opt_ts_ecr": np.int64,
    "sack_n": np.int8,  # number of SACK blocks (0..4)
    # ICMP / ICMPv6 (-1 when absent); the quoted inner header for unreachable / too big
    "icmp_type": np.int16,
    "icmp_code": np.int16,
    "icmp_mtu": np.int32,  # next-hop MTU (frag needed) or PTB MTU
    "inner_dst_hi": np.uint64,
    "inner_dst_lo": np.uint64,
    "inner_proto": np.int16,
    "inner_sport": np.int32,
    "inner_dport": np.int32,
    "warnings": np.uint32,  # Warn bit mask
}

# Two-dimensional columns: SACK block edges, shape (n, 4).
SACK_COLUMNS = ("sack_le", "sack_re")


@dataclass
class Interface:
    """One capture interface (pcap has exactly one)."""

    link_type: int
    snaplen: int
    ts_digits: int  # decimal digits of the timestamp resolution (6 = µs, 9 = ns)
    name: str = ""
    description: str = ""
    ts_offset_s: int = 0
    comments: list[str] = field(default_factory=list)  # pcapng opt_comment values of the IDB
    os: str = ""  # pcapng if_os
    section: int = 0  # pcapng section (SHB) index the interface belongs to


@dataclass
class DecodeIssue:
    """A problem met while reading or decoding: where it is and what it is."""

    path: str
    message: str
    frame: int | None = None  # Wireshark frame number, when the problem belongs to a frame
    offset: int | None = None  # byte offset in the (decompressed) file

    def __str__(self) -> str:
        where = self.path
        if self.frame is not None:
            where += f", frame {self.frame}"
        if self.offset is not None:
            where += f", byte offset {self.offset}"
        return f"{where}: {self.message}"


@dataclass
class PacketTable:
    """Decoded packets of one capture file (or one chunk of it), one array per column.

    ``buf`` holds the raw bytes the frames were decoded from; frame ``i`` occupies
    ``buf[pkt_off[i] : pkt_off[i] + caplen[i]]``.
    """

    path: str
    buf: npt.NDArray[np.uint8]
    columns: dict[str, np.ndarray]
    interfaces: list[Interface] = field(default_factory=list)
    issues: list[DecodeIssue] = field(default_factory=list)
    comments: dict[int, str] = field(default_factory=dict)  # frame number -> pcapng packet comment

    def __len__(self) -> int:
        return int(self.columns["frame"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def frame_bytes(self, i: int) -> memoryview:
        """The captured bytes of row ``i`` (no copy)."""
        start = int(self.columns["pkt_off"][i])
        return memoryview(self.buf)[start : start + int(self.columns["caplen"][i])]  # type: ignore[arg-type]

    def payload(self, i: int) -> memoryview:
        """The captured TCP/UDP payload bytes of row ``i`` (no copy); empty if none."""
        off = int(self.columns["payload_off"][i])
        n = int(self.columns["cap_payload_len"][i])
        if off < 0 or n <= 0:
            return memoryview(b"")
        start = int(self.columns["pkt_off"][i]) + off
        return memoryview(self.buf)[start : start + n]  # type: ignore[arg-type]


def empty_columns(n: int) -> dict[str, np.ndarray]:
    """Columns for ``n`` rows, filled with each field's "absent" value."""
    cols: dict[str, np.ndarray] = {}
    for name, dtype in COLUMNS.items():
        dt = np.dtype(dtype)
        if dt.kind == "i":
            cols[name] = np.full(n, -1, dtype=dt)
        else:
            cols[name] = np.zeros(n, dtype=dt)
    for name in ("ip_version", "sack_n", "warnings"):
        cols[name][:] = 0
    for name in SACK_COLUMNS:
        cols[name] = np.zeros((n, 4), dtype=np.uint32)
    return cols


def schema_fields() -> list[str]:
    """All column names in schema order (SACK columns last)."""
    return [*COLUMNS, *SACK_COLUMNS]


__all__ = [
    "COLUMNS",
    "SACK_COLUMNS",
    "DecodeIssue",
    "Interface",
    "PacketTable",
    "Warn",
    "empty_columns",
    "schema_fields",
    "warning_names",
]

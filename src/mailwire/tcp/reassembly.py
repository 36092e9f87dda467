"""Ordered, byte-accurate TCP stream reassembly per connection direction, with explicit gaps.

Theory of operation
-------------------
Each direction of a connection is a byte stream numbered from 0 at the first byte after the
SYN (or, without a SYN, at the lowest sequence number seen for that direction). Segments are
delivered to the consumer (the SMTP dissector) strictly in stream order, as events:

* :class:`StreamChunk` -- ``data`` occupies ``[seq_offset, seq_offset + len(data))`` of the stream;
* :class:`StreamGap` -- ``length`` bytes starting at ``seq_offset`` were never captured (or were
  dropped because the out-of-order buffer was full); the consumer must resynchronise.

Every byte offset is covered by exactly one event, in increasing order. Retransmitted bytes
already delivered are not delivered again. Out-of-order data is held in a per-direction buffer
capped at ``max_buffer`` bytes; when the cap is exceeded the hole in front of the buffered data
is declared a gap so that memory stays bounded, and the count of bytes given up is reported.

This module knows nothing about SMTP and never reads files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["c2s", "s2c"]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """In-order bytes of one direction of a connection."""

    conn_id: int  # connection number (== tshark tcp.stream)
    direction: Direction  # "c2s" client -> server, "s2c" server -> client
    seq_offset: int  # stream offset of data[0] (0 = first byte after the SYN)
    data: bytes
    frame: int  # Wireshark frame number of the segment that carried (the start of) these bytes
    ts_ns: int  # capture time of that frame


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Bytes of one direction that are missing from the capture (never seen, or given up)."""

    conn_id: int
    direction: Direction
    seq_offset: int  # stream offset of the first missing byte
    length: int  # number of missing bytes
    frame: int  # frame whose arrival revealed the gap (first byte after it), or the last frame seen
    ts_ns: int


StreamEvent = StreamChunk | StreamGap

__all__ = ["Direction", "StreamChunk", "StreamEvent", "StreamGap"]

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

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
    reason: str = "not_captured"  # or "snaplen" (payload cut), "buffer_limit" (given up, memory cap)


StreamEvent = StreamChunk | StreamGap

M32 = 0xFFFFFFFF
_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10


@dataclass
class _Dir:
    """Reassembly state of one direction."""

    base: int = -1  # raw sequence number of stream offset 0; -1 until known
    next_off: int = 0  # next stream offset to deliver
    held: dict[int, tuple[bytes, int, int]] = field(default_factory=dict)  # off -> (data, frame, ts)
    held_bytes: int = 0
    last_frame: int = 0
    last_ts: int = 0
    acked: int = -1  # highest stream offset the other side acknowledged
    fin: int = -1  # stream offset of the FIN (it takes a sequence number, not a byte)


class Reassembler:
    """Turns each direction's segments into ordered StreamChunk / StreamGap events.

    Memory: out-of-order data is held up to ``budget`` bytes per direction; past that the hole
    in front of it is declared a gap (``reason="buffer_limit"``) and counted in ``dropped``.
    Events go to ``on_event`` as they are produced, or are kept per connection (``keep=True``)
    up to ``keep_limit`` payload bytes per direction (further data becomes gaps with
    ``reason="buffer_limit"``, counted in ``not_kept``).
    """

    def __init__(
        self,
        *,
        budget: int = 8 << 20,
        on_event: Callable[[StreamEvent], None] | None = None,
        keep: bool = True,
        keep_limit: int = 64 << 20,
    ) -> None:
        self.budget = budget
        self.on_event = on_event
        self.keep = keep and on_event is None
        self.keep_limit = keep_limit
        self.dirs: dict[tuple[int, int], _Dir] = {}
        self.client_kdir: dict[int, int] = {}
        self.events: dict[int, list[StreamEvent]] = {}
        self.kept: dict[tuple[int, int], int] = {}
        self.dropped = 0
        self.not_kept = 0
        self._pending: dict[int, list[Any]] = {}  # conv -> [kdir, offset, length, pieces, frame, ts]

    # -- feeding ---------------------------------------------------------------------------------
    def feed(self, table: Any, sel: Any, part: dict[str, np.ndarray], ws: Any = None) -> None:
        cols = sel.cols
        fl = cols["tflags"]
        # segments with bytes, SYN/FIN (they fix offsets), and ACKs of data never captured (tshark's
        # ack_lost_segment: the only ACKs that can reveal a hole); other ACKs change nothing here
        interesting = cols["analysable"] & (
            (cols["seglen"] > 0) | ((fl & (_SYN | _FIN)) != 0) | ((part["wireshark"] & 0x20) != 0)
        )
        idx = np.flatnonzero(interesting)
        if idx.size == 0:
            return
        c = table.columns
        r = sel.rows[idx]
        start_l = (c["pkt_off"][r] + c["payload_off"][r]).tolist()
        cap_l = c["cap_payload_len"][r].tolist()
        buf = memoryview(table.buf)
        dupf = ((part["mailwire"][idx] & 0x10000) != 0).tolist()  # DUPLICATE_FRAME: adds nothing
        lists = [part["stream"][idx], cols["kdir"][idx], fl[idx], cols["seq"][idx], cols["ack"][idx],
                 cols["seglen"][idx], cols["frame"][idx], cols["ts"][idx]]  # fmt: skip
        it = zip(*(x.tolist() for x in lists), start_l, cap_l, dupf, strict=True)
        dirs = self.dirs
        for conv, kd, f, s, ack, n, fr, t, start, cap, dup in it:  # one step per such segment
            if (f & _SYN) and conv not in self.client_kdir:
                self.client_kdir[conv] = kd if not (f & _ACK) else 1 - kd
            d = dirs.get((conv, kd))
            if d is None:
                d = dirs[(conv, kd)] = _Dir()
            if f & _SYN:
                if d.base < 0 or not d.next_off:
                    d.base = (s + 1) & M32
                continue
            if n == 0 and (f & _ACK):
                o = dirs.get((conv, 1 - kd))
                if o is not None and o.base >= 0:
                    a = _near(o.next_off, (ack - o.base) & M32)
                    if o.fin >= 0:
                        a = min(a, o.fin)
                    o.acked = max(o.acked, a)
                    if not o.held and a > o.next_off:  # ACK passed a hole we never saw
                        self._gap(conv, 1 - kd, o, a - o.next_off, fr, t, "not_captured")
            if d.base < 0:
                d.base = s
            if f & _FIN:
                d.fin = _near(d.next_off, (s - d.base) & M32) + n
            if n <= 0 or dup:
                continue
            off = _near(d.next_off, (s - d.base) & M32)
            d.last_frame, d.last_ts = fr, t
            if off + n <= d.next_off:
                continue  # all of it delivered already (retransmission)
            data = buf[start : start + cap]
            if off <= d.next_off and not d.held:
                self._deliver(conv, kd, d, off, data, n, fr, t)
            elif off <= d.next_off:
                self._deliver(conv, kd, d, off, data, n, fr, t)
                self._release(conv, kd, d)
            else:
                if off not in d.held or len(d.held[off][0]) < len(data):
                    d.held_bytes += len(data) - (len(d.held[off][0]) if off in d.held else 0)
                    d.held[off] = (bytes(data), fr, t)
                if d.held_bytes > self.budget:
                    first = min(d.held)
                    self.dropped += first - d.next_off
                    self._gap(conv, kd, d, first - d.next_off, fr, t, "buffer_limit")
                    self._release(conv, kd, d)
        self._flush_all()

    def _deliver(
        self, conv: int, kd: int, d: _Dir, off: int, data: bytes | memoryview, n: int, fr: int, t: int
    ) -> None:
        skip = d.next_off - off
        if skip < len(data):
            self._emit_chunk(conv, kd, d.next_off, data[skip:] if skip else data, fr, t)
        end = off + n
        captured_end = off + len(data)
        if captured_end < end:  # payload cut by the snaplen
            gstart = max(captured_end, d.next_off)
            if end > gstart:
                self._emit(StreamGap(conv, self._dir(conv, kd), gstart, end - gstart, fr, t, "snaplen"))
        d.next_off = max(d.next_off, end)

    def _release(self, conv: int, kd: int, d: _Dir) -> None:
        while d.held:
            first = min(d.held)
            if first > d.next_off:
                return
            data, fr, t = d.held.pop(first)
            d.held_bytes -= len(data)
            if first + len(data) > d.next_off:
                self._deliver(conv, kd, d, first, data, len(data), fr, t)

    def _gap(self, conv: int, kd: int, d: _Dir, length: int, fr: int, t: int, reason: str) -> None:
        if length <= 0:
            return
        self._emit(StreamGap(conv, self._dir(conv, kd), d.next_off, length, fr, t, reason))
        d.next_off += length

    def _dir(self, conv: int, kd: int) -> Direction:
        return "c2s" if kd == self.client_kdir.get(conv, kd) else "s2c"

    def _emit_chunk(self, conv: int, kd: int, off: int, data: bytes | memoryview, fr: int, t: int) -> None:
        """Queue in-order bytes; contiguous pieces of one direction become one StreamChunk."""
        run = self._pending.get(conv)
        if run is not None:
            if run[0] == kd and run[1] + run[2] == off:
                run[3].append(data)
                run[2] += len(data)
                return
            self._flush(conv)
        self._pending[conv] = [kd, off, len(data), [data], fr, t]

    def _flush(self, conv: int) -> None:
        run = self._pending.pop(conv, None)
        if run is None:
            return
        kd, off, n, pieces, fr, t = run
        data = b"".join(pieces)
        if self.keep:
            used = self.kept.get((conv, kd), 0)
            if used + n > self.keep_limit:
                self.not_kept += n
                self._emit(StreamGap(conv, self._dir(conv, kd), off, n, fr, t, "buffer_limit"))
                return
            self.kept[(conv, kd)] = used + n
        self._emit(StreamChunk(conv, self._dir(conv, kd), off, data, fr, t))

    def _flush_all(self) -> None:
        for conv in list(self._pending):
            self._flush(conv)

    def _emit(self, ev: StreamEvent) -> None:
        if self._pending and ev.conn_id in self._pending and isinstance(ev, StreamGap):
            self._flush(ev.conn_id)  # queued bytes of this connection come first
        if self.on_event is not None:
            self.on_event(ev)
        elif self.keep:
            self.events.setdefault(ev.conn_id, []).append(ev)

    # -- end of capture --------------------------------------------------------------------------
    def finish(self, connections: Any = None) -> dict[int, list[StreamEvent]]:
        """Flush held data (a gap, then the data); return the kept events per connection."""
        self._flush_all()
        for (conv, kd), d in sorted(self.dirs.items()):
            while d.held:
                first = min(d.held)
                self._gap(conv, kd, d, first - d.next_off, d.last_frame, d.last_ts, "not_captured")
                self._release(conv, kd, d)
            if d.acked > d.next_off:
                self._gap(conv, kd, d, d.acked - d.next_off, d.last_frame, d.last_ts, "not_captured")
        self._flush_all()
        return self.events


def _near(ref: int, off32: int) -> int:
    """The unwrapped offset congruent to ``off32`` (mod 2^32) closest to ``ref``."""
    delta = (off32 - (ref & M32)) & M32
    if delta >= 0x80000000:
        delta -= 0x100000000
    return ref + delta


__all__ = ["Direction", "Reassembler", "StreamChunk", "StreamEvent", "StreamGap"]

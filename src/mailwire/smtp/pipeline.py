"""The analyze pipeline: capture → packet tables → TCP → SMTP sessions → verdicts → findings.

Theory of operation
-------------------
For each capture, :func:`analyze_capture` streams the packet tables (``mailwire.capture.read``)
through ``mailwire.tcp``'s analyzer, which calls back with reassembly events
(``StreamChunk`` / ``StreamGap``) as it goes. Each connection's first bytes decide whether it
is SMTP (:func:`mailwire.smtp.machine.looks_like_smtp`: a 220 greeting on any port, a client
opening with EHLO/HELO, SMTP inside an HTTP CONNECT tunnel) — connections to ports 25/587/2525
are kept even without payload so that refused or unanswered connection attempts get a verdict.
Events of SMTP connections go straight into a :class:`~mailwire.smtp.session.SessionBuilder`;
the first few events of an undecided connection are held (bounded) until its first bytes are
known. Alongside, a few per-frame facts the verdicts need and the TCP summary may not carry
(SYN/RST/FIN frames with TTL and IP id, ICMP errors quoting a connection) are collected with
column operations per chunk.

After the last chunk, each session's :class:`~mailwire.smtp.verdict.TcpFacts` is assembled from
the TCP result (connections, retransmission chains) and those facts and its verdict decided; the
record (:class:`~mailwire.smtp.findings.Judged`) is fed to the capture's finders and goes to a
:class:`~mailwire.spill.Spill` (a temporary file once there are many), and so do the connection
records. The findings of a single capture are those its finders gathered; over several captures
they are computed in one pass over all records, a session seen again in a later capture counted
once.

This module does I/O only through ``mailwire.capture.read``; it renders nothing.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailwire.capture.addr import format_addr
from mailwire.capture.read import CaptureError, CaptureInfo, iter_tables
from mailwire.capture.table import PacketTable
from mailwire.heap import paused, release_free_memory
from mailwire.smtp.findings import Finders, Finding, Judged, findings
from mailwire.smtp.machine import looks_like_smtp
from mailwire.smtp.session import MAX_ANOMALY_SAMPLES, SessionBuilder, SmtpSession
from mailwire.smtp.verdict import (
    SEVERITY,
    ChainFact,
    IcmpFact,
    Resend,
    RstFact,
    TcpFacts,
    Verdict,
    ZeroWindowFact,
    decide,
)
from mailwire.spill import ByKey, Field, Parked, Picked, Spill, Spilled, spilled
from mailwire.tcp.analysis import Flag
from mailwire.tcp.chains import original_rows, resent_rows
from mailwire.tcp.quality import CaptureQuality, merged
from mailwire.tcp.reassembly import materialized
from mailwire.workers import map_captures

SCHEMA_VERSION = "mailwire.analyze/1"
SMTP_PORTS = frozenset({25, 587, 2525})
_HOLD_EVENTS = 32  # events held per undecided connection
_HOLD_BYTES = 64 * 1024
_CHUNK_BYTES = 16 << 20  # capture bytes per packet table: bounds the reassembled bytes held per batch
_LAZY_MIN = 4096  # events this long (message content, mostly) are read from the capture buffer
_HOLD_DEFERRED = 4096  # server events held per connection while client bytes are outstanding
_KEEP_RESENDS = 64  # resends kept per chain as evidence (all are counted)

TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10
# a connection finished at its close (analyze_capture's ``gone``): its session parked, the
# same with client and server swapped, or decided not SMTP
_GONE_PARKED, _GONE_SWAPPED, _GONE_OTHER = 1, 2, 3


@dataclass(slots=True)
class _Conn:
    """Per-connection SMTP detection state."""

    decided: bool = False
    smtp: bool = False
    held: list[Any] = field(default_factory=list)
    held_bytes: int = 0
    first: dict[str, bytes] = field(default_factory=lambda: {"c2s": b"", "s2c": b""})
    swap: bool = False
    builder: SessionBuilder | None = None
    detected_by: str = ""
    c2s_base: int | None = None  # raw sequence number of client stream offset 0
    c2s_next: int = 0  # client stream offset routed so far
    deferred: deque[Any] | None = None  # server events waiting for client bytes (made when needed)
    # finished as soon as the connection closed (see finish_closed), its session parked till the end
    done: bool = False
    late_data: int = 0  # data events after the session was finished (defensive, see deliver)


# a SYN, FIN or RST row as the per-connection sums keep it (each field as wide as its column:
# 29 bytes, where a row of int64 took 56)
_SPECIAL = np.dtype(
    [("stream", np.int32), ("frame", np.int64), ("ts_ns", np.int64), ("tcp_flags", np.int16),
     ("kdir", np.int8), ("ttl", np.int16), ("ip_id", np.int32)]
)  # fmt: skip

# the packet-table columns the verdicts read per TCP frame, kept in the TCP stage's frame store
RAW_COLUMNS: dict[str, Any] = {
    "tcp_flags": np.int16,
    "ttl": np.int16,
    "ip_id": np.int32,
    "payload_len": np.int32,
    "seq": np.uint32,
    "ack": np.uint32,
}


class _Spans(Mapping[int, tuple[int, int, int]]):
    """(first time, last time, last frame) of each connection with rows, from the sums' array."""

    def __init__(self, span: np.ndarray) -> None:
        self._a = span

    def __getitem__(self, cid: int) -> tuple[int, int, int]:
        if not 0 <= cid < self._a.shape[0] or self._a[cid, 0] < 0:
            raise KeyError(cid)
        first, last, frame = self._a[cid].tolist()
        return first, last, frame

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(self._a[:, 0] >= 0).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self._a[:, 0] >= 0))


class _Specials(Mapping[int, list[tuple[int, ...]]]):
    """Each connection's SYN, FIN and RST rows as (frame, ts_ns, tcp flags, direction, ttl,
    ip id) tuples, made from the records (sorted by connection, frame order kept) when read."""

    def __init__(self, sp: np.ndarray, dir_of: Callable[[int, int], int]) -> None:
        self._sp = sp
        self._conns, self._start = np.unique(sp["stream"], return_index=True)
        self._dir_of = dir_of

    def __getitem__(self, cid: int) -> list[tuple[int, ...]]:
        j = int(np.searchsorted(self._conns, cid))
        if j >= self._conns.shape[0] or self._conns[j] != cid:
            raise KeyError(cid)
        a = int(self._start[j])
        b = int(self._start[j + 1]) if j + 1 < self._start.shape[0] else self._sp.shape[0]
        d = self._dir_of
        return [(fr, ts, fl, d(cid, kd), ttl, ip) for _, fr, ts, fl, kd, ttl, ip in self._sp[a:b].tolist()]

    def __iter__(self) -> Iterator[int]:
        return iter(self._conns.tolist())

    def __len__(self) -> int:
        return int(self._conns.shape[0])


class _ByPair(Mapping[tuple[int, int], Any]):
    """Values per (connection, direction) from arrays: one column (the value) or several (a
    tuple of them)."""

    def __init__(self, cid: np.ndarray, d: np.ndarray, cols: list[np.ndarray]) -> None:
        key = cid.astype(np.int64) * 2 + d
        order = np.argsort(key, kind="stable")
        self._key = key[order]
        self._cols = [c[order] for c in cols]

    def __getitem__(self, k: tuple[int, int]) -> Any:
        want = 2 * k[0] + k[1]
        j = int(np.searchsorted(self._key, want))
        if j >= self._key.shape[0] or self._key[j] != want:
            raise KeyError(k)
        vals = tuple(int(c[j]) for c in self._cols)
        return vals[0] if len(vals) == 1 else vals

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((k >> 1, k & 1) for k in self._key.tolist())

    def items(self) -> Iterator[tuple[tuple[int, int], Any]]:  # type: ignore[override]
        """(key, value) pairs in key order, without a lookup each."""
        cols = [c.tolist() for c in self._cols]
        vals = cols[0] if len(cols) == 1 else list(zip(*cols, strict=True))
        return zip(self, vals, strict=True)

    def __len__(self) -> int:
        return int(self._key.shape[0])


@dataclass
class _Raw:
    """What the verdicts need of each TCP frame, beyond the TCP stage's records.

    Per connection, sums over its frames (highest ACKs, first and last frame, largest segment,
    usual TTL, its SYN, FIN and RST frames) are made from the rows the TCP stage's store gives up
    (:meth:`reduce`, called by ``TcpAnalyzer.compact`` for finished connections) and from the rows
    still there at the end; those rows (``cols``, with "dir") are kept for the connections that
    are read row by row (retransmission chains, resets). Keyed by the key direction ("kdir") until
    the end, when the connections' roles are known. Plus ICMP errors quoting TCP."""

    icmp: list[tuple[int, int, int, int, int, int, int, str]] = field(default_factory=list)
    # (frame, ts_ns, type, code, mtu, inner_sport, inner_dport, inner_dst)
    last_ts_ns: int = 0
    cols: dict[str, np.ndarray] = field(default_factory=dict)  # rows kept to the end, with "dir"
    ttl_mode: Mapping[tuple[int, int], tuple[int, int]] = field(
        default_factory=dict
    )  # (conn, dir) -> (ttl, count)
    max_seg: Mapping[tuple[int, int], int] = field(default_factory=dict)
    # conn -> (frame, seq_offset) of its first data event, until its base (the raw sequence
    # number of stream offset 0, in _base_a) is found
    first_c2s: dict[int, tuple[int, int]] = field(default_factory=dict)
    first_s2c: dict[int, tuple[int, int]] = field(default_factory=dict)
    # per connection, once finished: (first ts, last ts, last frame); SYN/FIN/RST frames as
    # (frame, ts_ns, tcp flags, direction, ttl, ip id); highest offsets acknowledged
    span: Mapping[int, tuple[int, int, int]] = field(default_factory=dict)
    special: Mapping[int, list[tuple[int, ...]]] = field(default_factory=dict)
    s2c_acked: dict[int, int] = field(default_factory=dict)
    c2s_acked: dict[int, int] = field(default_factory=dict)
    # the sums while rows arrive, in arrays indexed by connection (rows "conn * 2 + kdir" where by
    # direction; a few dozen bytes a connection, where dictionaries of tuples took hundreds):
    # first time, last time and last frame (-1: no row yet); the highest ACK beyond each base
    # (row 0: the client's, 1: the server's; -1: none); the largest segment; and, for the TTLs,
    # counts keyed (conn * 2 + kdir) * 512 + ttl + 1. SYN, FIN and RST rows are kept as arrays
    # of _SPECIAL records, one per reduce.
    _span_a: np.ndarray = field(default_factory=lambda: np.full((0, 3), -1, np.int64))
    # per connection, row 0 the client's stream, 1 the server's: the raw sequence number of
    # stream offset 0 (-1: not known yet)
    _base_a: np.ndarray = field(default_factory=lambda: np.full((2, 0), -1, np.int64))
    _acked_a: np.ndarray = field(default_factory=lambda: np.full((2, 0), -1, np.int64))
    _max_seg_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _special_a: list[np.ndarray] = field(default_factory=list)
    # TTL counts as (key, count) arrays: merged (sorted, unique keys) and pending, one pair a reduce
    _ttl_k: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _ttl_n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _ttl_pending: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    _ttl_rows: int = 0  # entries pending
    _by_stream: np.ndarray | None = None
    _bounds: list[int] = field(default_factory=list)  # rows of connection k: _by_stream[b[k]:b[k + 1]]

    def grouping(self) -> tuple[np.ndarray, list[int]]:
        """Rows sorted by connection (frame order kept within one) and the bounds of each:
        connection k's rows are ``rows[b[k]:b[k + 1]]``."""
        if self._by_stream is None:
            st = self.cols["stream"]
            order = np.argsort(st, kind="stable")
            # row numbers fit 32 bits far past any capture this reads: half the memory kept
            self._by_stream = order.astype(np.int32) if order.shape[0] < (1 << 31) else order
            del order
            counts = np.bincount(st, minlength=1) if st.shape[0] else np.zeros(1, np.int64)
            self._bounds = [0, *np.cumsum(counts).tolist()]
        return self._by_stream, self._bounds

    def drop(self) -> None:
        """Forget the per-frame columns (the facts are made)."""
        self.cols, self._by_stream, self._bounds = {}, None, []

    def rows_of(self, conn: int) -> np.ndarray:
        """Rows (frame order) of one connection."""
        by, b = self.grouping()
        if not 0 <= conn < len(b) - 1:
            return by[:0]
        return by[b[conn] : b[conn + 1]]

    def reduce(self, c: dict[str, np.ndarray]) -> None:
        """Add rows (file order; every row of a connection so far, or later rows of one already
        added) to the per-connection sums."""
        keep = c["stream"] >= 0
        if not keep.all():
            c = {name: v[keep] for name, v in c.items()}
        st = c["stream"]
        if not st.shape[0]:
            return
        ncon = int(st.max()) + 1
        self._room(ncon)
        # client and server stream offset 0 in raw sequence numbers, from the first data event
        frames = np.ascontiguousarray(c["frame"])  # the rows may be a record's strided fields
        for first, bases in ((self.first_c2s, self._base_a[0]), (self.first_s2c, self._base_a[1])):
            todo = [(conn, fo[0], fo[1]) for conn, fo in first.items()]
            if not todo:
                continue
            want = np.fromiter((t[1] for t in todo), np.int64, len(todo))
            j = np.minimum(np.searchsorted(frames, want), frames.shape[0] - 1)
            hit = np.flatnonzero(frames[j] == want)
            seqs = c["seq"][j[hit]].tolist()
            for h, sq in zip(hit.tolist(), seqs, strict=True):
                conn, _, off = todo[h]
                bases[conn] = (int(sq) - off) % (1 << 32)
                del first[conn]  # pending no more: each reduce looks only at the unresolved
        key = st.astype(np.int64)
        key *= 2
        key += c["kdir"]
        # the highest ACK beyond each base, per connection and key direction
        rows = np.flatnonzero((c["tcp_flags"] & TH_ACK) != 0)
        for bases, acked in zip(self._base_a, self._acked_a, strict=True):
            if not rows.shape[0]:
                continue
            b = bases[st[rows]]
            has = b >= 0
            r, b = rows[has], b[has]
            rel = c["ack"][r].astype(np.int64)
            rel -= b
            rel %= 1 << 32
            good = rel < (1 << 31)
            np.maximum.at(acked, key[r][good], rel[good])
        # first and last frame (rows in file order: the first row of a connection new here, the
        # last row of every connection here)
        _, first_i = np.unique(st, return_index=True)
        rev = st[::-1]
        conns_u, last = np.unique(rev, return_index=True)
        last = st.shape[0] - 1 - last
        span = self._span_a
        new = span[conns_u, 0] < 0
        span[conns_u[new], 0] = c["ts_ns"][first_i[new]]
        span[conns_u, 1] = c["ts_ns"][last]
        span[conns_u, 2] = c["frame"][last]
        # SYN, FIN and RST frames
        sr = np.flatnonzero((c["tcp_flags"] & (TH_SYN | TH_FIN | TH_RST)) != 0)
        if sr.shape[0]:
            rec = np.empty(sr.shape[0], dtype=_SPECIAL)
            for k in _SPECIAL.names or ():
                rec[k] = c[k][sr]
            self._special_a.append(rec)
        # largest segment and TTLs seen, per connection and key direction
        np.maximum.at(self._max_seg_a, key, c["payload_len"])
        pair = key
        pair *= 512
        pair += c["ttl"]
        pair += 1
        uniq, counts = np.unique(pair, return_counts=True)
        self._ttl_pending.append((uniq, counts.astype(np.int64)))
        self._ttl_rows += uniq.shape[0]
        if self._ttl_rows > max(4096, self._ttl_k.shape[0]):  # amortised: merged when doubled
            self._ttl_merge()

    def _ttl_merge(self) -> None:
        """The pending TTL counts added into the merged ones."""
        if not self._ttl_pending:
            return
        keys = np.concatenate([self._ttl_k, *(k for k, _ in self._ttl_pending)])
        counts = np.concatenate([self._ttl_n, *(n for _, n in self._ttl_pending)])
        self._ttl_k, inv = np.unique(keys, return_inverse=True)
        self._ttl_n = np.zeros(self._ttl_k.shape[0], np.int64)
        np.add.at(self._ttl_n, inv.reshape(-1), counts)
        self._ttl_pending, self._ttl_rows = [], 0

    def forget(self, conns: np.ndarray) -> None:
        """Drop the sums of these connections (their rows are to be added again, all at once)."""
        gone = set(conns.tolist())
        if not gone:
            return
        cid = conns[conns < self._span_a.shape[0]].astype(np.int64)
        self._span_a[cid] = -1
        both = np.concatenate([2 * cid, 2 * cid + 1])
        self._acked_a[:, both] = -1
        self._max_seg_a[both] = 0
        self._special_a = [a[~np.isin(a["stream"], cid)] for a in self._special_a]
        self._ttl_merge()
        stay = ~np.isin((self._ttl_k // 512) // 2, cid)
        self._ttl_k, self._ttl_n = self._ttl_k[stay], self._ttl_n[stay]

    def _room(self, ncon: int) -> None:
        """The sums' arrays grown to hold connections below ``ncon`` (doubling)."""
        have = self._span_a.shape[0]
        if ncon <= have:
            return
        cap = max(ncon, 2 * have, 1024)
        span = np.full((cap, 3), -1, np.int64)
        span[:have] = self._span_a
        acked = np.full((2, 2 * cap), -1, np.int64)
        acked[:, : 2 * have] = self._acked_a
        mx = np.zeros(2 * cap, np.int64)
        mx[: 2 * have] = self._max_seg_a
        base = np.full((2, cap), -1, np.int64)
        base[:, :have] = self._base_a
        self._span_a, self._acked_a, self._max_seg_a, self._base_a = span, acked, mx, base

    def base(self, d: int, conn: int) -> int | None:
        """The raw sequence number of stream offset 0 of connection ``conn``'s client (``d`` 0)
        or server (1) stream, if known yet."""
        if conn >= self._base_a.shape[1]:
            return None
        b = int(self._base_a[d, conn])
        return b if b >= 0 else None

    def witnesses(self, c: dict[str, np.ndarray]) -> np.ndarray:
        """Of finished connections' rows (whole connections, file order), the ones :func:`_facts`
        and :meth:`max_passed` read beyond the resends and the frames first carrying their bytes
        (the TCP stage keeps those): SYN, FIN and RST frames, zero-window probes, the sender's last
        frame before each reset (its IP id), per resent original the peer's first ACK after it
        that covers it, and per direction the largest segments sent before its first resent
        original. With these rows alone, those facts come out as with every row."""
        n = c["frame"].shape[0]
        fl = c["tcp_flags"].astype(np.int64)
        keep = (fl & (TH_SYN | TH_FIN | TH_RST)) != 0
        keep |= (c["mailwire"] & np.uint32(Flag.ZERO_WINDOW_PROBE)) != 0
        g = c["stream"].astype(np.int64) * 2 + c["kdir"]  # connection and direction
        frame = c["frame"].astype(np.int64)
        rst = np.flatnonzero((fl & TH_RST) != 0)
        if rst.shape[0]:
            # the last row without RST before each RST, of the same connection and direction
            order = np.argsort(g, kind="stable")
            at = np.empty(n, np.int64)
            at[order] = np.arange(n)  # each row's place in that order
            last = np.where((fl[order] & TH_RST) == 0, np.arange(n), -1)
            np.maximum.accumulate(last, out=last)
            i = at[rst]
            prev = last[np.maximum(i - 1, 0)]
            ok = (i > 0) & (prev >= 0)
            ok[ok] = g[order[prev[ok]]] == g[rst[ok]]
            keep[order[prev[ok]]] = True
        resent = resent_rows(c["mailwire"], c["orig_frame"])
        if not resent.shape[0]:
            return keep
        orig = original_rows(frame, c["orig_frame"][resent].astype(np.int64))
        # per original, the peer's first ACK after it at or past its end (wrap-safe)
        acks = np.flatnonzero((fl & TH_ACK) != 0)
        key = (g[acks] << 32) | frame[acks]
        srt = np.argsort(key, kind="stable")
        key, acks = key[srt], acks[srt]
        ack_val = c["ack"][acks].astype(np.int64)
        peer = g[orig] ^ 1
        lo = np.searchsorted(key, (peer << 32) | frame[orig], side="right")
        hi = np.searchsorted(key, (peer + 1) << 32, side="left")
        ends = (c["seq"][orig].astype(np.int64) + c["seglen"][orig]) % (1 << 32)
        for a, b, end in zip(lo.tolist(), hi.tolist(), ends.tolist(), strict=True):  # one per chain
            if b > a:
                ok = ((ack_val[a:b] - end) % (1 << 32)) < (1 << 31)
                j = int(np.argmax(ok))
                if ok[j]:
                    keep[acks[a + j]] = True
        # the largest segments of each direction before its first resent original
        cut = np.full(int(g.max()) + 1, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(cut, g[orig], frame[orig])
        plen = c["payload_len"].astype(np.int64)
        # (a direction without one is summed as rows pass: max_seg)
        before = (plen > 0) & (frame < cut[g]) & (cut[g] != np.iinfo(np.int64).max)
        if before.any():
            best = np.full(cut.shape[0], -1, np.int64)
            np.maximum.at(best, g[before], plen[before])
            keep |= before & (plen == best[g])
        return keep

    def max_passed(self, cutoff: dict[int, int]) -> dict[int, int]:
        """Per connection, the largest client segment sent before frame ``cutoff[conn]`` (the
        first segment that was lost, if any): the sizes that demonstrably got through (the
        connections with retransmissions: their rows are kept)."""
        # without a cutoff, the largest client segment (counted as rows came)
        out = {cid: v for (cid, d), v in self.max_seg.items() if d == 0 and cid not in cutoff}
        c = self.cols
        if not c["frame"].shape[0] or not cutoff:
            return out
        st = c["stream"]
        no_limit = np.iinfo(np.int64).max
        limit = np.full(int(st.max()) + 1, no_limit, np.int64)
        for conn, frame in cutoff.items():
            if conn < limit.shape[0]:
                limit[conn] = frame
        rows = np.flatnonzero((c["dir"] == 0) & (c["payload_len"] > 0))
        rows = rows[c["frame"][rows] < limit[st[rows]]]
        rows = rows[limit[st[rows]] != no_limit]
        out.update(_max_by_conn(st[rows], c["payload_len"][rows].astype(np.int64), limit.shape[0]))
        return out

    def finish(
        self,
        frames: dict[str, np.ndarray],
        client_kdir: dict[int, int],
        revived: np.ndarray,
        summed: np.ndarray | None = None,
    ) -> None:
        """Add the TCP stage's remaining rows (``revived``: connections whose earlier rows were
        added already and are among them again; ``summed``: connections all of whose rows were
        added when they were thinned, whose remaining rows are only read) and settle the sums by
        direction (client or server, from each connection's ``client_kdir``)."""
        self.forget(revived)
        names = ("frame", "ts_ns", "stream", "kdir", *RAW_COLUMNS)
        c = {k: frames[k] for k in names if k in frames}
        if "frame" in c and c["frame"].shape[0]:
            if summed is not None and summed.shape[0]:
                st = c["stream"].astype(np.int64)
                done = np.zeros(max(int(st.max()), int(summed.max())) + 1, np.bool_)
                done[summed] = True
                fresh = (st < 0) | ~done[np.maximum(st, 0)]
                self.reduce({k: v[fresh] for k, v in c.items()})
            else:
                self.reduce(c)
        d = frames["direction"] if "direction" in frames else np.zeros(0, np.int8)
        if "frame" not in c:
            empty = (("frame", np.int64), ("ts_ns", np.int64), ("stream", np.int32))
            c = {k: np.zeros(0, dt) for k, dt in empty}
            c.update({k: np.zeros(0, dt) for k, dt in RAW_COLUMNS.items()})
        keep = c["stream"] >= 0
        if not keep.all():
            c = {name: v[keep] for name, v in c.items()}
            d = d[keep]
        c.pop("kdir", None)
        c["dir"] = d
        self.cols = c

        def dir_of(cid: int, kdir: int) -> int:
            return int(kdir != client_kdir.get(cid, 0))

        # the sums stay arrays; the mappings below make one connection's values when it is read
        # (dictionaries of tuples for every connection took about 2 kB a connection at the end)
        ckd = np.zeros(self._span_a.shape[0] + 1, np.int64)
        roles = np.array(list(client_kdir.items()), dtype=np.int64).reshape(-1, 2)
        roles = roles[(roles[:, 0] >= 0) & (roles[:, 0] < ckd.shape[0])]
        ckd[roles[:, 0]] = roles[:, 1]

        def dirs(cid: np.ndarray, kdir: np.ndarray) -> np.ndarray:  # dir_of, for arrays
            return (kdir != ckd[np.minimum(cid, ckd.shape[0] - 1)]).astype(np.int64)

        self.span = _Spans(self._span_a)
        # SYN, FIN and RST rows by connection, each in frame order (a connection's rows arrive in
        # frame order, and those of a revived one were forgotten before they came again)
        sp = np.concatenate(self._special_a) if self._special_a else np.zeros(0, _SPECIAL)
        self.special = _Specials(sp[np.argsort(sp["stream"], kind="stable")], dir_of)
        mx = self._max_seg_a
        seg = np.flatnonzero(mx > 0)
        self.max_seg = _ByPair(seg // 2, dirs(seg // 2, seg % 2), [mx[seg]])
        # the usual TTL: the most frequent, the lowest of equally frequent ones
        self._ttl_merge()
        p = self._ttl_k
        cid, ttl, n = p >> 10, p % 512 - 1, self._ttl_n
        dd = dirs(cid, (p >> 9) & 1)
        order = np.lexsort((ttl, -n, dd, cid))
        cid, dd, ttl, n = cid[order], dd[order], ttl[order], n[order]
        first = np.ones(cid.shape[0], np.bool_)
        first[1:] = (cid[1:] != cid[:-1]) | (dd[1:] != dd[:-1])
        self.ttl_mode = _ByPair(cid[first], dd[first], [ttl[first], n[first]])
        # the server's ACKs of the client's stream and the client's of the server's
        for base, (out, by) in enumerate(((self.c2s_acked, 1), (self.s2c_acked, 0))):
            acked = self._acked_a[base]
            for k in np.flatnonzero(acked >= 0).tolist():
                if dir_of(k // 2, k % 2) == by:
                    out[k // 2] = int(acked[k])
        self._ttl_k, self._ttl_n, self._special_a = np.zeros(0, np.int64), np.zeros(0, np.int64), []
        self._span_a = np.full((0, 3), -1, np.int64)  # self.span keeps the array it had
        self._acked_a = np.full((2, 0), -1, np.int64)
        self._max_seg_a = np.zeros(0, np.int64)


def _max_by_conn(conn: np.ndarray, values: np.ndarray, n_conn: int) -> dict[int, int]:
    """The largest of ``values`` (non-negative) per connection number, for those that have one."""
    best = np.full(n_conn, -1, np.int64)
    np.maximum.at(best, conn, values)
    found = np.flatnonzero(best >= 0)
    return dict(zip(found.tolist(), best[found].tolist(), strict=True))


@dataclass
class CaptureAnalysis:
    """One capture's results. ``judged``: one record per SMTP session in connection order, each
    with the key ``(connection number, verdict rank)``; ``connections``: the TCP connection
    records, keyed by number. Both are :class:`~mailwire.spill.Spilled`: in a temporary file when
    the capture is large."""

    path: str
    info: dict[str, Any]
    judged: Spilled[Judged]
    connections: Spilled[Any]  # mailwire.tcp Connection records (JSON made on demand)
    quality: dict[str, Any]
    issues: list[str]
    frames: int
    finders: Finders | None = None  # fed every session of this capture (the findings of it alone)

    @property
    def sessions(self) -> Sequence[SmtpSession]:
        return Field(self.judged, _session_of)

    @property
    def facts(self) -> Mapping[int, TcpFacts]:
        return ByKey(self.judged, (k[0] for k in self.judged.keys), _facts_of)

    @property
    def verdicts(self) -> Mapping[int, Verdict]:
        return ByKey(self.judged, (k[0] for k in self.judged.keys), _verdict_of)


def _session_of(j: Judged) -> SmtpSession:
    assert j.session is not None
    return j.session


def _facts_of(j: Judged) -> TcpFacts:
    return j.tcp


def _verdict_of(j: Judged) -> Verdict:
    return j.verdict


@dataclass
class AnalyzeResult:
    """Everything ``mailwire analyze`` found, for rendering, JSON, and the diagnose stage."""

    captures: list[CaptureAnalysis]
    judged: Sequence[Judged]  # every capture's, in capture order
    findings: list[Finding]

    @property
    def sessions(self) -> list[SmtpSession]:
        return [j.session for j in self.judged if j.session is not None]

    def worst_first(self, without: Collection[str] = ()) -> Sequence[Judged]:
        """The sessions by verdict rank, then capture and connection, leaving out the outcomes
        ``without`` (ranked by the records' keys: none is read until it is reached)."""
        skip = {SEVERITY.get(o, 99) for o in without}
        order = sorted(
            ((rank, cap.path, cid), (p, i))
            for p, cap in enumerate(self.captures)
            for i, (cid, rank) in enumerate(cap.judged.keys)
            if rank not in skip
        )
        return Picked([c.judged for c in self.captures], (pick for _, pick in order))

    def to_json(self) -> dict[str, Any]:
        """The ``mailwire.analyze/1`` document (``schemas/analyze.schema.json``)."""
        return {k: list(v) if isinstance(v, Iterator) else v for k, v in self.json_parts()}

    def json_parts(self) -> Iterator[tuple[str, Any]]:
        """The document's members in order; the long lists (connections, sessions) as iterators
        that make each record when it is read (:func:`mailwire.jsonout.write_streamed`)."""
        yield "schema", SCHEMA_VERSION
        yield (
            "captures",
            [
                {
                    "path": c.path,
                    "frames": c.frames,
                    "smtp_sessions": len(c.sessions),
                    "info": c.info,
                    "quality": c.quality,
                    "issues": c.issues,
                }
                for c in self.captures
            ],
        )
        yield (
            "connections",
            (dict(conn.to_json(), capture=c.path) for c in self.captures for conn in c.connections),
        )
        yield "smtp_sessions", (self._session_json(j) for j in self.judged)
        yield "findings", [f.to_dict() for f in self.findings]

    @staticmethod
    def _session_json(j: Judged) -> dict[str, Any]:
        d = j.session.to_dict() if j.session is not None else _bare_session(j)
        d["verdict"] = j.verdict.to_dict()
        return d


def _bare_session(j: Judged) -> dict[str, Any]:
    s = SmtpSession(conn_id=j.tcp.conn_id, capture=j.capture)
    return s.to_dict()


# --- TCP adapter --------------------------------------------------------------------------------


def _collect_raw(table: PacketTable, raw: _Raw) -> None:
    """The capture's last time stamp and ICMP errors quoting TCP (the per-frame TCP columns
    the verdicts read are kept in the TCP stage's frame store: ``RAW_COLUMNS``)."""
    cols = table.columns
    if len(table) == 0:
        return
    raw.last_ts_ns = max(raw.last_ts_ns, int(cols["ts_ns"][-1]))
    icmp = (cols["icmp_type"] >= 0) & (cols["inner_proto"] == 6)
    for i in np.nonzero(icmp)[0][:10000]:
        raw.icmp.append(
            (
                int(cols["frame"][i]),
                int(cols["ts_ns"][i]),
                int(cols["icmp_type"][i]),
                int(cols["icmp_code"][i]),
                int(cols["icmp_mtu"][i]),
                int(cols["inner_sport"][i]),
                int(cols["inner_dport"][i]),
                format_addr(int(cols["inner_dst_hi"][i]), int(cols["inner_dst_lo"][i])),
            )
        )


@dataclass
class _Bulk:
    """Per-connection facts computed for all connections at once (see :func:`_bulk`)."""

    s2c_acked: dict[int, int]
    c2s_acked: dict[int, int]
    max_passed: dict[int, int]
    # (first time, last time, last frame) per connection with frames
    span: Mapping[int, tuple[int, int, int]] = field(default_factory=dict)
    # SYN, FIN and RST frames per connection, in frame order:
    # (frame, ts_ns, tcp flags, direction, ttl, ip id)
    special: Mapping[int, list[tuple[int, ...]]] = field(default_factory=dict)
    orig_row: dict[int, int] = field(default_factory=dict)  # chain original frame -> row
    wire_len: dict[int, int] = field(default_factory=dict)  # resend frame -> payload length
    probes: dict[int, np.ndarray] = field(default_factory=dict)  # zero-window probe frames per connection


def _probes(frames: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Zero-window probe frames per connection (the TCP stage's per-frame flags)."""
    if "mailwire" not in frames:
        return {}
    hit = np.flatnonzero((frames["mailwire"] & int(Flag.ZERO_WINDOW_PROBE)) != 0)
    conn, frame = frames["stream"][hit].astype(np.int64), frames["frame"][hit].astype(np.int64)
    order = np.argsort(conn, kind="stable")
    conn, frame = conn[order], frame[order]
    cut = np.flatnonzero(np.diff(conn)) + 1
    return {int(c[0]): f for c, f in zip(np.split(conn, cut), np.split(frame, cut), strict=True) if c.size}


def _bulk(raw: _Raw, chains_by_conn: dict[int, list[Any]]) -> _Bulk:
    lost = {
        cid: min(ch.original_frame for ch in chs if ch.direction == "c2s" and ch.resends)
        for cid, chs in chains_by_conn.items()
        if any(ch.direction == "c2s" and ch.resends for ch in chs)
    }
    out = _Bulk(raw.s2c_acked, raw.c2s_acked, raw.max_passed(lost), raw.span, raw.special)
    c = raw.cols
    if not c["frame"].shape[0]:
        return out
    origs = np.fromiter((ch.original_frame for chs in chains_by_conn.values() for ch in chs), np.int64)
    resends = np.fromiter(
        (r.frame for chs in chains_by_conn.values() for ch in chs for r in ch.resends), np.int64
    )
    found, rows = _rows_of_frames(c["frame"], origs)
    out.orig_row = dict(zip(found.tolist(), rows.tolist(), strict=True))
    found, rows = _rows_of_frames(c["frame"], resends)
    out.wire_len = dict(zip(found.tolist(), c["payload_len"][rows].tolist(), strict=True))
    return out


def _rows_of_frames(frames: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``wanted`` frame numbers found in the sorted ``frames``, and their rows."""
    idx = np.searchsorted(frames, wanted)
    np.clip(idx, 0, max(frames.shape[0] - 1, 0), out=idx)
    hit = frames[idx] == wanted
    return wanted[hit], idx[hit]


def _facts(
    conn: Any,
    conn_id: int,
    raw: _Raw,
    chains: list[Any],
    path: str,
    session: SmtpSession | None,
    bulk: _Bulk,
) -> TcpFacts:
    t = TcpFacts(conn_id=conn_id, capture=path, capture_end_ts_ns=raw.last_ts_ns)
    role = {0: "client", 1: "server"}
    c = raw.cols
    if conn_id in bulk.span:
        t.first_ts_ns, t.last_ts_ns, t.last_frame = bulk.span[conn_id]
    mine: np.ndarray | None = None  # this connection's rows, only where a fact needs to look back
    for frame, ts, fl, d, ttl, ip_id in bulk.special.get(conn_id, ()):
        who = role[d]
        if fl & TH_SYN and not fl & TH_ACK:
            t.syn_frames.append(frame)
            t.handshake_seen = True
        elif fl & TH_SYN:
            if t.syn_ack_frame < 0:
                t.syn_ack_frame = frame
            t.handshake_seen = True
        if fl & TH_RST:
            mine = raw.rows_of(conn_id) if mine is None else mine
            usual_ttl, usual_n = raw.ttl_mode.get((conn_id, d), (-1, 0))
            # the sender's IP id just before the RST (ids of one host grow; a forged RST's rarely fit)
            earlier = mine[c["frame"][mine] < frame]  # a connection with a reset keeps its rows
            before = earlier[
                (c["dir"][earlier] == d) & ((c["tcp_flags"][earlier].astype(np.int64) & TH_RST) == 0)
            ]
            prev = int(c["ip_id"][before[-1]]) if before.shape[0] else None
            near = None if prev is None or ip_id < 0 or prev < 0 else (ip_id - prev) % 65536 < 2048
            ttl_odd = usual_ttl >= 0 and ttl >= 0 and usual_n > 2 and abs(ttl - usual_ttl) > 1
            t.rsts.append(
                RstFact(
                    frame,
                    ts,
                    who,
                    ttl,
                    ip_id,
                    usual_ttl,
                    near,
                    bool(ttl_odd or (near is False and ip_id != 0)),
                )
            )
        elif fl & TH_FIN:
            t.fins.append((frame, who))
    has_payload_s2c = session is not None and session.bytes_s2c_sent > 0
    t.established = t.syn_ack_frame >= 0 or not t.syn_frames or has_payload_s2c
    if session is not None:
        ports = {(session.client_port, session.server_port)}
        for frame, ts, ty, code, mtu, isp, idp, _dst in raw.icmp:
            if (isp, idp) in ports:
                frag = (ty == 3 and code == 4) or ty == 2
                unreach = (ty == 3 and code != 4) or (ty == 1)
                t.icmp.append(IcmpFact(frame, ts, ty, code, mtu, frag, unreach))
    t.max_c2s_segment = raw.max_seg.get((conn_id, 0), 0)
    if conn_id in bulk.max_passed:
        t.max_c2s_passed_segment = bulk.max_passed[conn_id]
    if conn is not None:
        # the client's segments are bounded by the MSS the server advertised
        mss = conn.s2c.mss if conn.s2c.mss else conn.c2s.mss
        t.mss = int(mss) if mss else -1
        probe_frames = bulk.probes.get(conn_id, np.zeros(0, dtype=np.int64))
        for z in conn.zero_window:
            end = z.end_frame if z.end_frame is not None else 1 << 62
            probes = int(((probe_frames > z.start_frame) & (probe_frames < end)).sum())
            t.zero_windows.append(
                ZeroWindowFact(
                    "server" if z.direction == "s2c" else "client",
                    int(z.start_frame),
                    int(z.start_ns),
                    int(z.end_frame) if z.end_frame is not None else -1,
                    float(z.duration_s if z.duration_s is not None else (raw.last_ts_ns - z.start_ns) / 1e9),
                    probes,
                )
            )
    t.s2c_acked = bulk.s2c_acked.get(conn_id)
    if conn_id in bulk.c2s_acked:
        t.c2s_acked = bulk.c2s_acked[conn_id]
    base = raw.base(0, conn_id)
    acks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # peer -> its ACK frames, acks
    for ch in chains:
        real = [r for r in ch.resends if r.cause != "network_duplicate"]
        seq_off, acked, ack_frame = 0, False, -1
        j = bulk.orig_row.get(ch.original_frame)
        if j is not None:
            end = (int(c["seq"][j]) + ch.length) % (1 << 32)
            if ch.direction == "c2s" and base is not None:
                seq_off = (int(c["seq"][j]) - base) % (1 << 32)
            peer = 1 if ch.direction == "c2s" else 0
            if peer not in acks:
                mine = raw.rows_of(conn_id) if mine is None else mine
                pr = mine[(c["dir"][mine] == peer) & ((c["tcp_flags"][mine].astype(np.int64) & TH_ACK) != 0)]
                acks[peer] = (c["frame"][pr], c["ack"][pr].astype(np.int64), pr)
            pf, pa, _ = acks[peer]
            k = int(np.searchsorted(pf, ch.original_frame, side="right"))  # ACKs after the original
            if k < pf.shape[0]:
                ok = ((pa[k:] - end) % (1 << 32)) < (1 << 31)
                first_ok = int(np.argmax(ok))
                if ok[first_ok]:
                    acked, ack_frame = True, int(pf[k + first_ok])
        kept = real[:_KEEP_RESENDS]
        # the wire size: a host-side capture shows a TSO super-segment whose resends go out as
        # single segments, so the smallest captured copy is the size on the wire
        sizes = [ch.length] + [x for x in (bulk.wire_len.get(r.frame, 0) for r in kept) if x > 0]
        t.chains.append(
            ChainFact(
                ch.direction,
                ch.original_frame,
                ch.original_ts_ns,
                ch.length,
                seq_off,
                [Resend(r.frame, r.ts_ns, r.interval_s) for r in kept],
                acked,
                ack_frame,
                len(real),
                real[-1].since_original_s if real else 0.0,
                min(sizes),
            )
        )
    return t


# --- the pipeline -------------------------------------------------------------------------------


def analyze_capture(
    path: str | Path, *, progress: Callable[[int], None] | None = None, shard: tuple[int, int] | None = None
) -> CaptureAnalysis:
    """Analyse one capture file (see the module docstring). ``shard=(k, w)``: only the
    connections numbered ``k`` modulo ``w`` (one of ``w`` workers; :func:`merge_shards` joins
    their parts into what one process finds)."""
    from mailwire.tcp.engine import TcpAnalyzer

    name = str(path)
    conns: dict[int, _Conn] = defaultdict(_Conn)

    def start(cid: int, c: _Conn) -> None:
        c.decided, c.smtp = True, True
        c.first = {}  # only the undecided read it
        c.builder = SessionBuilder(
            SmtpSession(conn_id=cid, capture=name, detected_by=c.detected_by or "greeting")
        )
        for ev in c.held:
            deliver(c, ev)
        c.held = []

    def deliver(c: _Conn, ev: Any) -> None:
        if c.builder is None and c.done:  # finished: the reassembler drops bytes
            c.late_data += 1  # past a FIN, so this is defensive only
            return
        assert c.builder is not None
        d = ev.direction
        if c.swap:
            d = "s2c" if d == "c2s" else "c2s"
        if hasattr(ev, "data"):
            c.builder.feed(d, ev.data, ev.frame, ev.ts_ns)
        else:
            c.builder.gap(d, ev.length, ev.frame, ev.ts_ns)

    def route(ev: Any) -> None:
        first, d = (raw.first_c2s, 0) if ev.direction == "c2s" else (raw.first_s2c, 1)
        if ev.conn_id not in first and hasattr(ev, "data") and raw.base(d, ev.conn_id) is None:
            first[ev.conn_id] = (ev.frame, ev.seq_offset)
        g = int(gone[ev.conn_id]) if ev.conn_id < gone.shape[0] else 0
        if g:  # finished at its close: counted as the finished session's late data (deliver)
            if g != _GONE_OTHER:
                late[ev.conn_id] = late.get(ev.conn_id, 0) + 1
            return
        c = conns[ev.conn_id]
        if c.decided:
            if c.smtp:
                deliver(c, ev)
            return
        ev = materialized(ev)  # held past this chunk: its bytes leave the capture buffer
        c.held.append(ev)
        data = getattr(ev, "data", b"")
        c.held_bytes += len(data)
        if data and not c.first[ev.direction]:
            c.first[ev.direction] = bytes(data[:512])
        f = c.first
        if looks_like_smtp(f["s2c"], f["c2s"]):
            c.detected_by = (
                "greeting"
                if f["s2c"][:3] == b"220"
                else ("tunnel" if f["c2s"][:8] == b"CONNECT " else "client_hello")
            )
            start(ev.conn_id, c)
        elif looks_like_smtp(f["c2s"], f["s2c"]) and f["c2s"][:3] == b"220":
            c.swap, c.detected_by = True, "greeting"
            start(ev.conn_id, c)
        elif _server_port(cur, ev) in SMTP_PORTS:
            c.detected_by = "port"
            start(ev.conn_id, c)
        elif (f["s2c"] and f["c2s"]) or len(c.held) > _HOLD_EVENTS or c.held_bytes > _HOLD_BYTES:
            c.decided = True  # decided "not by content"; the port may still make it SMTP later
            c.smtp = False
            c.first = {}
            c.held = []  # not SMTP: keep nothing (a capture of other traffic must not pile up here)
            c.held_bytes = 0

    batch: list[Any] = []

    def on_event(ev: Any) -> None:
        batch.append(ev)

    def process_batch(table: PacketTable | None) -> None:
        events = list(batch)
        batch.clear()
        f0 = int(table.columns["frame"][0]) if table is not None and len(table) else 0
        n = len(table) if table is not None else 0
        for ev in _merge_directions(events):
            if ev.conn_id < gone.shape[0] and gone[ev.conn_id]:
                route(ev)  # nothing waits for its client bytes any more: straight on
                continue
            c = conns[ev.conn_id]
            row = ev.frame - f0
            in_table = table is not None and 0 <= row < n
            if ev.direction == "c2s":
                if c.c2s_base is None and in_table and hasattr(ev, "data"):
                    assert table is not None
                    c.c2s_base = (int(table.columns["seq"][row]) - ev.seq_offset) % (1 << 32)
                route(ev)
                c.c2s_next = max(
                    c.c2s_next, ev.seq_offset + (len(ev.data) if hasattr(ev, "data") else ev.length)
                )
                while c.deferred and c.deferred[0][0] <= c.c2s_next:
                    route(c.deferred.popleft()[1])
                continue
            # A server segment acknowledging client bytes not handed over yet (the reassembler
            # holds them behind a capture hole) waits for them, so replies meet their commands.
            need = 0
            if in_table and c.c2s_base is not None and hasattr(ev, "data"):
                assert table is not None
                rel = (int(table.columns["ack"][row]) - c.c2s_base) % (1 << 32)
                need = rel if rel < (1 << 31) else 0
            if c.deferred or need > c.c2s_next:
                if c.deferred is None:
                    c.deferred = deque()
                c.deferred.append((need, materialized(ev)))
                if len(c.deferred) > _HOLD_DEFERRED:
                    while c.deferred:
                        route(c.deferred.popleft()[1])
                continue
            route(ev)

    finished = np.zeros(0, dtype=np.bool_)
    parked: Parked[SmtpSession] = Parked()
    # connections finished at their close leave ``conns`` (hundreds of bytes each): per number,
    # _GONE_PARKED / _GONE_SWAPPED (its session parked; roles swapped) or _GONE_OTHER (decided
    # not SMTP); later events of theirs are only counted (``late``: the sessions' late data)
    gone = np.zeros(0, dtype=np.int8)
    late: dict[int, int] = {}

    def finish_closed(analyzer: TcpAnalyzer) -> None:
        """Sessions whose connection closed (both FINs reached in order, nothing held) are
        finished now: their dissector state goes at once instead of at the end of the capture."""
        nonlocal finished, gone
        closed = analyzer.closed()
        if closed.shape[0] > finished.shape[0]:
            finished = np.concatenate([finished, np.zeros(closed.shape[0] - finished.shape[0], np.bool_)])
            gone = np.concatenate([gone, np.zeros(closed.shape[0] - gone.shape[0], np.int8)])
        new = np.flatnonzero(closed & ~finished[: closed.shape[0]])
        for cid in new.tolist():
            c = conns.get(cid)
            if c is None or not c.decided:
                continue  # not decided yet: nothing to finish (the end of the capture decides)
            finished[cid] = True
            if c.smtp and c.builder is not None and not c.deferred:
                # out of memory till the end of the capture once many are (mailwire.spill)
                parked.put(cid, c.builder.finish())
                c.done = True
                c.builder = None
            if c.deferred or c.held:
                continue
            if c.done:
                gone[cid] = _GONE_SWAPPED if c.swap else _GONE_PARKED
                if c.late_data:
                    late[cid] = c.late_data
            elif not c.smtp:
                gone[cid] = _GONE_OTHER
            else:
                continue
            del conns[cid]
        if analyzer.compaction_due:
            # rows of closed connections leave the TCP stage's store, summed up first; not those
            # with server events still waiting (their first server bytes are not routed yet)
            done = closed.copy()
            for cid, c in conns.items():
                if c.deferred and cid < done.shape[0]:
                    done[cid] = False
            analyzer.compact(done, raw.reduce, raw.witnesses)

    def flush_deferred() -> None:
        for c in conns.values():
            while c.deferred:
                route(c.deferred.popleft()[1])

    cur: list[PacketTable | None] = [None]  # the table being fed (events name its frames)
    info = CaptureInfo(path=name)
    # one event per segment (each names its frame) but for message content; long events are
    # read from the capture buffer only as far as the dissector needs them
    analyzer = TcpAnalyzer(
        on_stream=on_event,
        segment_events=True,
        lazy_min=_LAZY_MIN,
        frame_fields="analysis",
        shard=shard,
        keep_columns=RAW_COLUMNS,
    )
    raw = _Raw()
    issues: list[str] = []
    n_frames = 0
    try:
        table: PacketTable | None = None
        for table in iter_tables(path, info=info, chunk_bytes=_CHUNK_BYTES):
            cur[0] = table
            analyzer.feed(table)
            process_batch(table)
            finish_closed(analyzer)
            n_frames += len(table)
            _collect_raw(table, raw)
            issues.extend(str(i) for i in table.issues[:100])
            if progress is not None:
                progress(len(table))
    except CaptureError as exc:
        issues.append(str(exc))
    # the last chunk's buffer (a chunk's worth of capture bytes) goes before the TCP stage's
    # records are made, the pass's memory peak: events held past their chunk own their bytes
    cur[0] = None
    table = None
    result = analyzer.finish()
    process_batch(None)  # held data and gaps declared at the end of the capture
    flush_deferred()
    # the TCP stage's state (kernels, accumulators, reassembly) is done with: drop it before
    # the per-session records are built
    del analyzer
    release_free_memory()  # the pass's freed chunk buffers, before the end-of-capture steps
    # the client's key direction per connection (read there as 0 when absent)
    roles = dict.fromkeys(np.flatnonzero(result.client_kdir).tolist(), 1)
    raw.finish(result.frames, roles, result.revived, result.summed)
    probes = _probes(result.frames)
    # raw holds the frame number, time, connection and direction columns it needs; the other
    # per-frame fields are done with (17 bytes a frame)
    result.frames = {}
    chains_by_conn: dict[int, list[Any]] = defaultdict(list)
    for chain in result.chains:
        chains_by_conn[chain.conn_id].append(chain)
    judged: Spill[Judged] = Spill()
    finders = Finders()
    bulk = _bulk(raw, chains_by_conn)
    bulk.probes = probes
    for conn in result.connections:  # in number order; read a piece at a time past a few thousand
        cid = conn.id
        state = int(gone[cid]) if cid < gone.shape[0] else 0
        if state in (_GONE_PARKED, _GONE_SWAPPED):
            s = parked.take(cid)
            if cid in late:
                s.anomalies["data_after_fin"] += late.pop(cid)
            swap = state == _GONE_SWAPPED
        else:
            c = conns.get(cid)
            server_port = conn.server_port
            is_smtp = c is not None and c.smtp
            if not is_smtp and server_port in SMTP_PORTS:
                if c is None:
                    c = conns[cid]  # decided not SMTP at its close, or never seen: a new one
                c.detected_by = "port"
                start(cid, c)
                is_smtp = True
            if not is_smtp or c is None or (c.builder is None and not c.done):
                continue
            if c.done:
                s = parked.take(cid)
                if c.late_data:
                    s.anomalies["data_after_fin"] += c.late_data
            else:
                assert c.builder is not None
                s = c.builder.finish()
            c.builder = None
            swap = c.swap
            del conns[cid]
        if cid in result.after_fin:  # the receiving host ignores them too (RFC 9293, 3.10.7.4)
            ignored, first, dirn = result.after_fin[cid]
            if swap:
                dirn = "s2c" if dirn == "c2s" else "c2s"
            s.anomalies["data_after_fin"] += 1
            if len(s.anomaly_samples) < MAX_ANOMALY_SAMPLES:
                detail = f"{ignored} bytes after the FIN, ignored"
                s.anomaly_samples.append(
                    {"frame": first, "direction": dirn, "kind": "data_after_fin", "detail": detail}
                )  # the dissector's state goes as each session is done: lower peak
        s.client, s.server = conn.client, conn.server
        s.client_port, s.server_port = conn.client_port, conn.server_port
        if swap:
            s.client, s.server, s.client_port, s.server_port = (
                s.server,
                s.client,
                s.server_port,
                s.client_port,
            )
        f = _facts(conn, cid, raw, chains_by_conn.get(cid, []), name, s, bulk)
        # acknowledgements count the FIN's sequence number too: clip to the stream's length
        for d, acked in (("c2s", f.c2s_acked), ("s2c", f.s2c_acked)):
            if acked is None:
                continue
            length = (s.bytes_c2s_sent if d == "c2s" else s.bytes_s2c_sent) + sum(
                g["length"] for g in s.gaps if g["direction"] == d
            )
            if d == "c2s":
                s.bytes_c2s_acked = min(acked, length)
            else:
                s.bytes_s2c_acked = min(acked, length)
        # decided here, so that shards decide theirs in parallel; the record leaves memory
        # with the next piece of the spill (large captures), and its dissector state at once
        v = decide(s, f, name)
        rec = Judged(name, s.server, s, f, v)
        judged.append(rec, (cid, SEVERITY.get(v.outcome, 99)))
        finders.add(rec, cid)
    conn_recs = (
        result.connections
        if isinstance(result.connections, Spilled)
        else spilled(result.connections, _conn_number)
    )
    quality = result.quality.to_json()
    cinfo = {"format": getattr(info, "format", ""), "compression": getattr(info, "compression", "")}
    del result, bulk, chains_by_conn
    raw.drop()
    conns.clear()
    parked.close()
    return CaptureAnalysis(name, cinfo, judged.done(), conn_recs, quality, issues, n_frames, finders)


def _conn_number(c: Any) -> int:
    return int(c.id)


def merge_shards(parts: list[CaptureAnalysis]) -> CaptureAnalysis:
    """One capture's analysis from its shards' (each read every frame; their connections are
    disjoint and numbered as in the whole capture)."""
    first = parts[0]
    quality = merged([CaptureQuality.from_json(p.quality) for p in parts]).to_json()
    found = first.finders
    for p in parts[1:]:
        if found is None or p.finders is None:
            found = None
            break
        found.merge(p.finders)
    return CaptureAnalysis(
        first.path,
        first.info,
        _merged([p.judged for p in parts], lambda k: int(k[0])),
        _merged([p.connections for p in parts], int),
        quality,
        first.issues,
        first.frames,
        found,
    )


def _merged(parts: list[Spilled[Any]], number: Callable[[Any], int]) -> Spilled[Any]:
    """The shards' records in connection order (their numbers are disjoint), by their keys: the
    records are read once, in the order they are written to the merged list."""
    order = sorted((number(k), p, i) for p, part in enumerate(parts) for i, k in enumerate(part.keys))
    picked = Picked(parts, ((p, i) for _, p, i in order))
    keys = [parts[p].keys[i] for _, p, i in order]
    return Spilled(keys, items=picked if any(part.in_file for part in parts) else list(picked))


def _merge_directions(events: list[Any]) -> list[Any]:
    """Per connection, interleave the two directions by frame number, each kept in stream order
    (the reassembler may hand one direction's data over late, after a hole was resolved)."""
    by_conn: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {"c2s": [], "s2c": []})
    order: list[int] = []
    for ev in events:
        if ev.conn_id not in by_conn:
            order.append(ev.conn_id)
        by_conn[ev.conn_id][ev.direction].append(ev)
    out: list[Any] = []
    for cid in order:
        qs = by_conn[cid]
        if not qs["c2s"] or not qs["s2c"]:  # one direction in this batch: nothing to interleave
            out.extend(qs["c2s"] or qs["s2c"])
            continue
        keyed: dict[str, list[int]] = {}
        for d, q in qs.items():
            ks = [0] * len(q)
            nxt = 1 << 62
            for i in range(len(q) - 1, -1, -1):  # a gap sorts with the data that follows it
                ev = q[i]
                ks[i] = min(ev.frame, nxt) if not hasattr(ev, "data") else ev.frame
                nxt = ks[i]
            keyed[d] = ks
        i = j = 0
        a, b = qs["c2s"], qs["s2c"]
        ka, kb = keyed["c2s"], keyed["s2c"]
        while i < len(a) or j < len(b):
            if j >= len(b) or (i < len(a) and ka[i] <= kb[j]):
                out.append(a[i])
                i += 1
            else:
                out.append(b[j])
                j += 1
    return out


def _server_port(cur: list[PacketTable | None], ev: Any) -> int:
    """The server port of an event's connection, from its frame in the table being fed (-1 if
    that frame belongs to an earlier chunk)."""
    table = cur[0]
    if table is None or len(table) == 0:
        return -1
    row = ev.frame - int(table.columns["frame"][0])
    if not 0 <= row < len(table):
        return -1
    port = table.columns["dport"][row] if ev.direction == "c2s" else table.columns["sport"][row]
    return int(port)


def analyze_captures(
    paths: Iterable[str | Path],
    *,
    progress: Callable[[int], None] | None = None,
    jobs: int | None = None,
) -> AnalyzeResult:
    """Analyse captures; verdicts per SMTP session and findings across all of them. Several large
    captures are analysed at once in worker processes (``jobs``: how many; 1: none; None: one per
    capture up to the CPUs, see :mod:`mailwire.workers`)."""
    with paused():  # the cyclic collector only slows this down (mailwire.heap)
        caps = map_captures(analyze_capture, list(paths), jobs=jobs, progress=progress, merge=merge_shards)
        judged = Picked.joined([cap.judged for cap in caps])
        one = caps[0].finders if len(caps) == 1 else None
        # one capture: its findings were gathered as its records were made (no pass over them)
        found = one.done() if one is not None else findings(judged)
        return AnalyzeResult(caps, judged, found)


__all__ = [
    "SCHEMA_VERSION",
    "AnalyzeResult",
    "CaptureAnalysis",
    "analyze_capture",
    "analyze_captures",
    "merge_shards",
]

"""The TCP stage's driver: PacketTable chunks in, per-frame analysis and per-connection records out.

Theory of operation
-------------------
:class:`TcpAnalyzer` is fed the chunks of one capture in file order. For each chunk it selects the
TCP frames (``connections.select_tcp``), runs the analysis kernel twice (Wireshark-compatible and
mailwire mode, ``analysis.run_kernel``), feeds the per-connection accumulators
(``summary.SummaryState``) and the stream reassembler (``reassembly.Reassembler``) and returns a
:class:`ChunkAnalysis` aligned with the chunk's rows (what ``mailwire packets`` prints). All state
lives in arrays carried from chunk to chunk; per-frame results are kept in compact arrays for the
frames that matter later (TCP frames), and reassembled bytes only within a per-direction budget.

:func:`analyze` is the one-call form: ``analyze(tables) -> TcpResult``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mailwire.capture.table import PacketTable
from mailwire.tcp.analysis import (
    F_DUPLICATE_FRAME,
    F_OUT_OF_ORDER,
    F_RETRANSMISSION,
    F_ZERO_WINDOW_PROBE,
    FLAG_NAMES,
    Flag,
    KernelState,
)
from mailwire.tcp.chains import Chain, build_chains, original_rows, resent_rows
from mailwire.tcp.connections import KeyRegistry, TcpFrames, select_tcp
from mailwire.tcp.quality import CaptureQuality, QualityCounter, capture_quality
from mailwire.tcp.reassembly import Reassembler, StreamEvent
from mailwire.tcp.rtt import RttSamples
from mailwire.tcp.summary import Connection, SummaryState

if TYPE_CHECKING:
    import numpy.typing as npt


# Per-frame output arrays of one kernel run, and their dtypes
_OUT: dict[str, npt.DTypeLike] = {
    "conv": np.int32,
    "flags": np.uint32,
    "dupack_num": np.int32,
    "dupack_frame": np.int32,
    "acks_frame": np.int32,
    "ack_rtt": np.int64,
    "initial_rtt": np.int64,
    "bytes_in_flight": np.int64,
    "rto": np.int64,
    "rto_frame": np.int32,
    "orig_frame": np.int32,
}

# What is kept per TCP frame for the whole capture (compact dtypes: bounded memory per frame)
FRAME_FIELDS: dict[str, npt.DTypeLike] = {
    "frame": np.int64,
    "ts_ns": np.int64,
    "stream": np.int32,
    "direction": np.int8,  # 0 = client -> server, 1 = server -> client (set in finish())
    "kdir": np.int8,  # canonical key direction (internal)
    "seglen": np.int32,
    "wireshark": np.uint32,  # Flag mask, Wireshark-compatible
    "mailwire": np.uint32,  # Flag mask, mailwire
    "dupack_num": np.int32,
    "dupack_frame": np.int64,
    "acks_frame": np.int64,
    "ack_rtt_ns": np.int64,
    "initial_rtt_ns": np.int64,
    "bytes_in_flight": np.int64,
    "rto_ns": np.int64,  # Wireshark's rto
    "rto_frame": np.int64,
    "mw_rto_ns": np.int64,  # mailwire: time since the first frame carrying these bytes
    "mw_rto_frame": np.int32,
    "orig_frame": np.int32,  # mailwire: first frame that carried these bytes (resends only)
}


# The fields the TCP stage's own finish() reads (chains, capture quality, connection records);
# ``TcpAnalyzer(frame_fields="analysis")`` keeps only these (38 of the 120 bytes a frame)
ANALYSIS_FIELDS = ("frame", "ts_ns", "stream", "kdir", "seglen", "wireshark", "mailwire", "orig_frame")

# A connection with one of these (mailwire mask) is read row by row at the end (retransmission
# chains, window probes); so is one with a reset (the IP id before it): its rows stay in the store
_ROW_NEEDS = F_RETRANSMISSION | F_OUT_OF_ORDER | F_DUPLICATE_FRAME | F_ZERO_WINDOW_PROBE
_TH_RST = 0x04
_TH_FIN = 0x01
_ENDED = 3  # per-connection end bits (_closing): 1, 2 a FIN in key direction 0, 1; 4 a reset
_RETIRE_BATCH = 256  # closed connections whose kernel state is retired at once
_COMPACT_MIN = 1 << 16  # rows in the store before a compaction is worth its pass
_SPILL_BLOCK = 1 << 18  # rows read back from the spill file at a time
_MOVE_BLOCK = 1 << 16  # rows moved out of the store (and given to the reducer) at a time

_VALUES = ("ack_rtt_ns", "initial_rtt_ns", "bytes_in_flight", "rto_ns", "rto_frame",
           "dupack_num", "dupack_frame", "acks_frame")  # fmt: skip


class ChunkAnalysis:
    """Analysis of one chunk, aligned with the chunk's rows (-1 / 0 for non-TCP rows).

    ``stream`` is made at once; the flag masks and ``values`` (ack_rtt_ns, initial_rtt_ns,
    bytes_in_flight, …) are spread over the chunk's rows when first read (``mailwire packets``
    reads them; the analysis pipeline does not, and saves eleven full-length arrays a chunk).
    """

    def __init__(self, n: int, rows: npt.NDArray[np.int64], part: dict[str, np.ndarray]) -> None:
        self._n, self._part = n, part
        self.rows = rows  # the chunk's TCP rows, in the order of the TCP stage's frame store
        self.stream = np.full(n, -1, dtype=np.int64)
        self.stream[rows] = part["stream"]

    def _spread(self, name: str, fill: int, dtype: npt.DTypeLike) -> np.ndarray:
        out = np.full(self._n, fill, dtype=dtype)
        out[self.rows] = self._part[name]
        return out

    @cached_property
    def wireshark(self) -> npt.NDArray[np.uint32]:
        return self._spread("wireshark", 0, np.uint32)

    @cached_property
    def mailwire(self) -> npt.NDArray[np.uint32]:
        return self._spread("mailwire", 0, np.uint32)

    @cached_property
    def values(self) -> dict[str, npt.NDArray[np.int64]]:
        return {name: self._spread(name, -1, np.int64) for name in _VALUES}


@dataclass
class TcpResult:
    """Everything the TCP stage learnt about one capture."""

    # FRAME_FIELDS, one row per TCP frame kept (all, unless TcpAnalyzer.compact moved some out), file order
    frames: dict[str, np.ndarray]
    # in number order; past a few thousand, read from a temporary file (mailwire.spill)
    connections: Sequence[Connection]
    chains: list[Chain]
    quality: CaptureQuality
    streams: dict[int, list[StreamEvent]] = field(default_factory=dict)
    n_frames: int = 0  # all frames of the capture, TCP or not
    # connection -> (payload bytes past a FIN, ignored as the receiver ignores them; first frame; direction)
    after_fin: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    # connections whose rows had left the store (TcpAnalyzer.compact) and were read back for the
    # end: the caller's per-connection sums of those rows count them twice unless it drops them
    revived: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # connections thinned by TcpAnalyzer.compact: every row was given to the caller's reducer
    # there, and only the rows its end reads are in ``frames``; its sums must not add them again
    summed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # per connection number: the key direction (0/1) of the client's packets (0 for
    # connections not in this result: another shard's)
    client_kdir: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    def flags_of(self, frame: int, *, mode: str = "mailwire") -> list[str]:
        """Flag names of one frame (Wireshark frame number)."""
        idx = np.searchsorted(self.frames["frame"], frame)
        if idx >= self.frames["frame"].shape[0] or self.frames["frame"][idx] != frame:
            return []
        mask = int(self.frames[mode][idx])
        return [name for bit, name in FLAG_NAMES.items() if mask & bit]

    def stream_events(self, conn_id: int) -> list[StreamEvent]:
        """Reassembly events of one connection, both directions, in capture order."""
        return self.streams.get(conn_id, [])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view: connections, retransmission chains, capture quality."""
        return {
            "connections": [c.to_json() for c in self.connections],
            "chains": [ch.to_json() for ch in self.chains],
            "quality": self.quality.to_json(),
        }


class TcpAnalyzer:
    """Feed chunks in file order with :meth:`feed`; call :meth:`finish` once at the end."""

    def __init__(
        self,
        *,
        reassemble: bool = True,
        stream_budget: int = 8 << 20,
        on_stream: Callable[[StreamEvent], None] | None = None,
        keep_total: int = 256 << 20,
        segment_events: bool = False,
        lazy_min: int | None = None,
        frame_fields: Literal["all", "analysis", "none"] = "all",
        shard: tuple[int, int] | None = None,
        keep_columns: dict[str, npt.DTypeLike] | None = None,
    ) -> None:
        """``frame_fields`` says what is kept per TCP frame for the result's ``frames``: every
        field of :data:`FRAME_FIELDS` (``"all"``, the library default), only what the analysis
        reads at the end (``"analysis"``: the SMTP pipeline) or nothing (``"none"``: callers that
        read each chunk's :class:`ChunkAnalysis` and never call :meth:`finish`).

        ``shard=(k, w)``: only connections whose number is ``k`` modulo ``w`` are analysed past
        the numbering (one of ``w`` processes each reading the whole capture). Connection numbers
        stay those of the whole capture, so the ``w`` results are disjoint parts of one result:
        frames, connections and chains of their connections, capture quality counted over them
        (:func:`mailwire.tcp.quality.merged` joins the parts).

        ``keep_columns``: packet-table columns kept in the frame store beside ``frame_fields``
        (name -> dtype), for callers that read more of each TCP frame at the end.

        :meth:`compact` moves the rows of finished connections out of the store (see there)."""
        if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            raise ValueError(f"shard {shard!r}: want (k, w) with 0 <= k < w")
        self.keys = KeyRegistry()
        self.ws = KernelState(mw=False)
        self.mw = KernelState(mw=True)
        self.summary = SummaryState(shard)
        # per connection: end bits (_closing), and the connections closed per chunk, oldest first
        self._ends = np.zeros(0, dtype=np.uint8)
        self._ended: list[tuple[int, np.ndarray]] = []
        self._chunk = 0
        # per-frame fields for the whole capture: one growable array per field (capacity doubles),
        # so finish() slices instead of concatenating chunk parts (measured on 1 M packets: the
        # concatenation cost ~50 MB of extra peak RSS, heap fragmentation included, and 0.1-0.2 s)
        self._store: dict[str, np.ndarray] = {}
        self._fields: tuple[str, ...] = (
            tuple(k for k in FRAME_FIELDS if k != "direction")
            if frame_fields == "all"
            else ANALYSIS_FIELDS
            if frame_fields == "analysis"
            else ()
        )
        # RTT samples (tshark's ack_rtt) kept apart from the frame store: about one frame in
        # three has one, and the connection records need them all (median)
        self.rtt = RttSamples()
        self._rows = 0
        # the rows a thinning kept (finished connections read row by row at the end): per field,
        # one array per compaction, exactly sized and never moved again; in the store they were
        # copied at every later compaction and held twice over by its doubling
        self._evidence: dict[str, list[np.ndarray]] = {}
        self._evidence_rows = 0
        self._n_frames = 0
        self.quality = QualityCounter()
        # without on_stream, events are kept in the result, up to keep_total payload bytes in all
        self._reasm = (
            Reassembler(
                budget=stream_budget,
                on_event=on_stream,
                keep_total=keep_total,
                segment_events=segment_events,
                lazy_min=lazy_min,
            )
            if reassemble
            else None
        )
        self._path = ""
        self._shard = shard
        self._extra = dict(keep_columns or {})
        if self._fields:
            self._fields = (*self._fields, *(k for k in self._extra if k not in self._fields))
        # mailwire flag counts per connection (the connection records), counted as frames pass
        self._flag_counts: dict[str, np.ndarray] = {}
        # per connection: read row by row at the end (_ROW_NEEDS or a reset); rows left the store
        self._needs = np.zeros(0, dtype=np.bool_)
        self._left = np.zeros(0, dtype=np.bool_)
        # per connection: thinned by a compaction (only the rows its end reads stayed), and
        # thinned but given more rows since (its spilled rows are read back after all)
        self._thinned = np.zeros(0, dtype=np.bool_)
        self._dirty = np.zeros(0, dtype=np.bool_)
        self._kept_after = 0  # rows in the store after the last compaction
        self._spill: Any = None  # temporary file of the rows that left, in file order
        self._spill_dtype: np.dtype[Any] | None = None
        self._spill_ok = True

    def feed(self, table: PacketTable) -> ChunkAnalysis:
        n = len(table)
        self._path = self._path or table.path
        self._n_frames += n
        sel = select_tcp(table, self.keys)
        m = sel.rows.shape[0]
        self.ws.ensure_keys(len(self.keys))
        self.mw.ensure_keys(len(self.keys))
        ws_out = {k: np.empty(m, dtype=dt) for k, dt in _OUT.items()}
        self.ws.run(sel.cols, ws_out)
        self._closing(ws_out["conv"], sel.cols["kdir"], sel.cols["tflags"])
        if self._shard is not None:
            # the numbering needs every frame (first appearance, port reuse); the rest only ours
            k, w = self._shard
            mine = np.flatnonzero(ws_out["conv"] % w == k)
            sel = TcpFrames(rows=sel.rows[mine], cols={c: v[mine] for c, v in sel.cols.items()})
            ws_out = {c: v[mine] for c, v in ws_out.items()}
            m = mine.shape[0]
        mw_out = {k: np.empty(m, dtype=dt) for k, dt in _OUT.items()}
        # the mailwire-mode state of a shard holds its own connections only: numbered n // w
        mw_out["conv"][:] = ws_out["conv"] if self._shard is None else ws_out["conv"] // self._shard[1]
        self.mw.run(sel.cols, mw_out)

        part: dict[str, np.ndarray] = {
            "frame": sel.cols["frame"],
            "ts_ns": sel.cols["ts"],
            "stream": ws_out["conv"],
            "kdir": sel.cols["kdir"].astype(np.int8),
            "seglen": sel.cols["seglen"].astype(np.int32),
            "wireshark": ws_out["flags"],
            "mailwire": mw_out["flags"],
            "dupack_num": ws_out["dupack_num"],
            "dupack_frame": ws_out["dupack_frame"].astype(np.int32),
            "acks_frame": ws_out["acks_frame"].astype(np.int32),
            "ack_rtt_ns": ws_out["ack_rtt"],
            "initial_rtt_ns": ws_out["initial_rtt"],
            "bytes_in_flight": ws_out["bytes_in_flight"],
            "rto_ns": ws_out["rto"],
            "rto_frame": ws_out["rto_frame"].astype(np.int32),
            "mw_rto_ns": mw_out["rto"],
            "mw_rto_frame": mw_out["rto_frame"].astype(np.int32),
            "orig_frame": mw_out["orig_frame"].astype(np.int32),
        }
        for name, dt in self._extra.items():
            part[name] = table.columns[name][sel.rows].astype(dt)
        self._mark(part, sel.cols["tflags"])
        self._keep(part)
        self.summary.feed(table, sel, part)
        self.quality.feed(table, sel, part)
        if self._reasm is not None:
            self._reasm.feed(table, sel, part, self.ws)
        self._retire()
        return ChunkAnalysis(n, sel.rows, part)

    def _closing(self, conv: np.ndarray, kdir: np.ndarray, tflags: np.ndarray) -> None:
        """Note the connections this chunk closed (a FIN each way, or a reset): their kernel
        state is retired a chunk later (:meth:`_retire`)."""
        n = self.ws.n_conv
        if self._ends.shape[0] < n:
            grown = np.zeros(max(n, 2 * self._ends.shape[0], 1024), np.uint8)
            grown[: self._ends.shape[0]] = self._ends
            self._ends = grown
        self._chunk += 1
        hit = np.flatnonzero((tflags & (_TH_FIN | _TH_RST)) != 0)
        if hit.size == 0:
            return
        c, fl = conv[hit].astype(np.int64), tflags[hit]
        before = self._ends[c] >= _ENDED
        bits = np.where((fl & _TH_RST) != 0, 4, np.where(kdir[hit] != 0, 2, 1)).astype(np.uint8)
        np.bitwise_or.at(self._ends, c, bits)
        now = np.unique(c[~before & (self._ends[c] >= _ENDED)])
        if now.size:
            self._ended.append((self._chunk, now))

    def _retire(self) -> None:
        """Retire the kernel state of connections closed at least a whole chunk ago (their last
        ACKs have passed; a later frame brings the state back: ``KernelState.revive``), in
        batches; so are their connection accumulators (``SummaryState.retire``) and RTT samples
        (``RttSamples.retire``). The frame store keeps their rows (``compact`` moves those)."""
        # connections brought back (a late frame, a reused port pair's SYN) leave again later
        back = self.ws.back
        k, w = self._shard if self._shard is not None else (0, 1)
        back += [j * w + k for j in self.mw.back] + [j * w + k for j in self.summary.back]
        if back:
            self._ended.append((self._chunk, np.unique(np.array(back, dtype=np.int64))))
            self.ws.back, self.mw.back, self.summary.back = [], [], []
        due = 0
        for chunk, convs in self._ended:
            if chunk >= self._chunk - 1:
                break
            due += convs.shape[0]
        if due < _RETIRE_BATCH:
            return
        ready: list[np.ndarray] = []
        while self._ended and self._ended[0][0] < self._chunk - 1:
            ready.append(self._ended.pop(0)[1])
        convs = np.concatenate(ready)
        self.ws.retire(self.ws.live(convs))
        self.rtt.retire(convs)  # a shard's samples are of its own connections (numbered as here)
        if self._shard is not None:
            k, w = self._shard
            convs = convs[convs % w == k] // w
        self.mw.retire(self.mw.live(convs))
        self.summary.retire(convs)

    def _mark(self, part: dict[str, np.ndarray], tflags: np.ndarray) -> None:
        """Per-connection bookkeeping of one chunk: flag counts, and which connections the end
        of the capture reads row by row."""
        n = self.ws.n_conv
        if self._needs.shape[0] < n:
            cap = max(2 * self._needs.shape[0], n, 1024)
            self._needs = np.concatenate([self._needs, np.zeros(cap - self._needs.shape[0], np.bool_)])
            self._left = np.concatenate([self._left, np.zeros(cap - self._left.shape[0], np.bool_)])
            self._thinned = np.concatenate([self._thinned, np.zeros(cap - self._thinned.shape[0], np.bool_)])
            self._dirty = np.concatenate([self._dirty, np.zeros(cap - self._dirty.shape[0], np.bool_)])
        stream, mw = part["stream"], part["mailwire"]
        late = self._thinned[stream]
        if late.any():
            self._dirty[stream[late]] = True
        need = ((mw & np.uint32(_ROW_NEEDS)) != 0) | ((tflags & _TH_RST) != 0)
        if need.any():
            self._needs[stream[need]] = True
        nz = np.flatnonzero(mw)
        if not nz.size:
            return
        s, m = stream[nz], mw[nz]
        for bit, name in FLAG_NAMES.items():
            hit = (m & np.uint32(bit)) != 0
            if not hit.any():
                continue
            arr = self._flag_counts.get(name)
            if arr is None or arr.shape[0] < n:
                grown = np.zeros(max(n, 2 * (0 if arr is None else arr.shape[0]), 1024), np.int64)
                if arr is not None:
                    grown[: arr.shape[0]] = arr
                self._flag_counts[name] = arr = grown
            u, c = np.unique(s[hit], return_counts=True)
            arr[u] += c

    @property
    def compaction_due(self) -> bool:
        """Whether :meth:`compact` would look at the store now."""
        return bool(self._store) and self._spill_ok and self._rows >= max(_COMPACT_MIN, 2 * self._kept_after)

    def compact(
        self,
        done: np.ndarray,
        reduce: Callable[[dict[str, np.ndarray]], None] | None = None,
        keep: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None,
    ) -> int:
        """Move the rows of connections marked in ``done`` (per connection number: finished, no
        frame can change what was found for them) out of the frame store, so that the store holds
        the open connections and, of those read row by row at the end (resent bytes, window
        probes, resets), the rows that end reads, not the whole capture. ``reduce`` is given the
        leaving rows' columns first (for per-connection sums the caller keeps); the rows go to a
        temporary file, read back in :meth:`finish` for a connection that gains such a frame
        later.

        With ``keep`` (and ``reduce``), a finished connection that is read row by row is
        *thinned*: ``reduce`` is given all its rows, and only its resends, the frames first
        carrying their bytes, and the rows ``keep`` marks (what the caller's end reads, as a
        mask over the rows it is given: rows of whole connections, file order) stay; the others
        go to the file. A later frame of a thinned connection brings its rows back at the end
        (:attr:`TcpResult.revived`); the others are listed in :attr:`TcpResult.summed`.

        Runs only once the store has doubled since the last compaction (amortised: each row is
        moved a bounded number of times). Returns the number of rows moved."""
        if not self.compaction_due:
            return 0
        n = self._rows
        st = self._store["stream"][:n]
        go = np.zeros(self._needs.shape[0], dtype=np.bool_)
        m = min(done.shape[0], go.shape[0])
        go[:m] = done[:m]
        thin = None
        if keep is not None and reduce is not None:
            thin = go & self._needs & ~self._left & ~self._thinned
        go &= ~self._needs
        leave = go[st]
        thin_rows = kept_rows = np.zeros(0, np.int64)
        thin_cols: dict[str, np.ndarray] = {}
        if thin is not None and thin.any():
            thin_rows = np.flatnonzero(thin[st])
            thin_cols = {f: a[:n][thin_rows] for f, a in self._store.items()}
            stays = np.zeros(thin_rows.shape[0], np.bool_)
            resent = resent_rows(thin_cols["mailwire"], thin_cols["orig_frame"])
            stays[resent] = True
            stays[original_rows(thin_cols["frame"], thin_cols["orig_frame"][resent].astype(np.int64))] = True
            assert keep is not None
            stays |= keep(thin_cols)
            leave[thin_rows[~stays]] = True
            kept_rows = thin_rows[stays]
        k = int(np.count_nonzero(leave))
        if k == 0:
            self._kept_after = n
            return 0
        # the leaving rows go a block at a time, to the file and then to the reducer: all at once,
        # their copies and the reducer's per-row temporaries were the pass's peak (84 MB above
        # what it held, on 6 M packets)
        idx = np.flatnonzero(leave)
        pos = -1
        try:
            if self._spill is None:
                # closed in finish() (or with the analyzer): it outlives this call
                self._spill = tempfile.TemporaryFile(prefix="mailwire-rows-")  # noqa: SIM115
                self._spill_dtype = np.dtype([(f, a.dtype) for f, a in self._store.items()])
            pos = self._spill.tell()
            for b in range(0, k, _MOVE_BLOCK):
                part = idx[b : b + _MOVE_BLOCK]
                rec = np.empty(part.shape[0], dtype=self._spill_dtype)
                for f, a in self._store.items():
                    rec[f] = a[part]
                rec.tofile(self._spill)
                del rec
        except OSError:
            # no room for the file: keep every row in memory from here on (the result is the
            # same); a part written is cut off, so that no row is read back twice
            self._spill_ok = False
            if pos >= 0:
                try:
                    self._spill.truncate(pos)
                except OSError:
                    self._spill.close()
                    self._spill = None
            return 0
        if reduce is not None:
            # in file order, a block at a time (the reducer takes a connection's rows in parts)
            for b in range(0, k, _MOVE_BLOCK):
                part = idx[b : b + _MOVE_BLOCK]
                if thin_rows.shape[0]:
                    part = part[go[st[part]]]  # rows of connections leaving whole
                reduce({f: a[part] for f, a in self._store.items()})
            if thin_rows.shape[0]:
                reduce(thin_cols)  # a thinned connection's rows, all of them
        self._left[np.unique(st[idx])] = True
        if thin_rows.shape[0]:
            self._thinned[np.unique(thin_cols["stream"])] = True
        del idx, thin_cols
        stay = ~leave
        if kept_rows.shape[0]:
            # the thinned connections' remaining rows leave the store for the evidence
            for f, a in self._store.items():
                self._evidence.setdefault(f, []).append(a[kept_rows])
            self._evidence_rows += kept_rows.shape[0]
            stay[kept_rows] = False
        kept = int(np.count_nonzero(stay))
        for a in self._store.values():
            a[:kept] = a[:n][stay]
        self._rows = self._kept_after = kept
        return k

    def _frames(self) -> dict[str, np.ndarray]:
        """The store's rows and the evidence, in file order (views of the store without evidence;
        with it, joined a field at a time, each field's parts let go as it is made)."""
        frames: dict[str, np.ndarray] = {}
        n = self._rows
        if not self._evidence_rows:
            for k in self._fields:
                dt = FRAME_FIELDS[k] if k in FRAME_FIELDS else self._extra[k]
                frames[k] = self._store[k][:n] if self._store else np.zeros(0, dt)
            return frames
        order = np.argsort(
            np.concatenate([*self._evidence["frame"], self._store["frame"][:n]]), kind="stable"
        )
        for k in self._fields:
            joined = np.concatenate([*self._evidence.pop(k), self._store[k][:n]])
            frames[k] = joined[order]
            del joined
            self._store[k] = self._store[k][:0].copy()
        self._evidence, self._evidence_rows, self._rows = {}, 0, 0
        return frames

    def _read_back(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The store's rows joined with the spilled rows of connections that need them after all
        (file order kept), and those connections' numbers."""
        # thinned connections come back if they had frames after, whether or not any of their
        # rows left (their sums are redone from all of them)
        revived = np.flatnonzero((self._needs & self._left & ~self._thinned) | self._dirty)
        if self._spill is None or revived.size == 0 or self._spill_dtype is None:
            return frames, revived[:0]
        want = np.zeros(self._needs.shape[0], dtype=np.bool_)
        want[revived] = True
        got: list[np.ndarray] = []
        self._spill.flush()
        self._spill.seek(0)
        while True:
            block = np.fromfile(self._spill, dtype=self._spill_dtype, count=_SPILL_BLOCK)
            if block.shape[0] == 0:
                break
            got.append(block[want[block["stream"]]])
        back = np.concatenate(got) if got else np.zeros(0, self._spill_dtype)
        order = np.argsort(np.concatenate([frames["frame"], back["frame"]]), kind="stable")
        joined = {f: np.concatenate([frames[f], back[f]])[order] for f in frames}
        return joined, revived

    def _keep(self, part: dict[str, np.ndarray]) -> None:
        has = part["ack_rtt_ns"] > 0
        if has.any():
            self.rtt.add(part["stream"][has], part["ack_rtt_ns"][has])
        if not self._fields:
            return
        m = part["frame"].shape[0]
        n = self._rows
        if not self._store:
            cap = max(m, 1 << 16)
            self._store = {k: np.empty(cap, dtype=part[k].dtype) for k in self._fields}
        elif n + m > self._store["frame"].shape[0]:
            cap = max(2 * self._store["frame"].shape[0], n + m)
            for k, old in self._store.items():  # one field at a time: the transient is one field
                new = np.empty(cap, dtype=old.dtype)
                new[:n] = old[:n]
                self._store[k] = new
                del old
        for k, arr in self._store.items():
            arr[n : n + m] = part[k]
        self._rows = n + m

    def closed(self) -> np.ndarray:
        """Per connection number: closed for the reassembler (see ``Reassembler.closed``); all
        False without reassembly."""
        n = self.ws.n_conv
        out = np.zeros(n, dtype=np.bool_)
        if self._reasm is not None:
            got = self._reasm.closed()[:n]
            out[: got.shape[0]] = got
        return out

    def finish(self) -> TcpResult:
        if not self._fields:
            raise RuntimeError("TcpAnalyzer(frame_fields='none') keeps no frames to finish with")
        frames = self._frames()
        frames, revived = self._read_back(frames)
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        nrows = frames["frame"].shape[0]
        # the kernels' per-connection state is done with (the records read a few columns of
        # the Wireshark mode's): freed before the records are built, the end's memory peak
        self.mw.release()
        self.ws.release(keep_summary=True)
        nconv = self.ws.n_conv
        counts = {}
        for name in FLAG_NAMES.values():  # in flag order, as the records list them
            if name not in self._flag_counts:
                continue
            arr = self._flag_counts[name]
            full = np.zeros(nconv, np.int64)
            full[: min(nconv, arr.shape[0])] = arr[:nconv]
            counts[name] = full
        rtt = self.rtt.figures(nconv)
        self.rtt.release()
        connections = self.summary.finish(self.keys, self.ws, counts, rtt)
        client_kdir = self.summary.client_kdir
        del rtt
        # the accumulators and the rest of the kernels' state are in the records now: let them go
        # before the chains and the reassembler's last events are made
        self.summary.release()
        self.ws.release()
        # client -> server direction per frame, from each connection's roles
        frames["direction"] = np.zeros(nrows, dtype=np.int8)
        if frames["stream"].shape[0]:
            np.not_equal(
                frames["kdir"], client_kdir[frames["stream"]], out=frames["direction"], casting="unsafe"
            )
        chains = build_chains(frames, connections)
        quality = capture_quality(self._path, self._n_frames, connections, self.quality)
        streams = self._reasm.finish(connections) if self._reasm is not None else {}
        return TcpResult(
            frames=frames,
            connections=connections,
            chains=chains,
            quality=quality,
            streams=streams,
            n_frames=self._n_frames,
            after_fin=dict(self._reasm.after_fin) if self._reasm is not None else {},
            revived=revived,
            summed=np.flatnonzero(self._thinned & ~self._dirty),
            client_kdir=client_kdir,
        )


def analyze(tables: Iterable[PacketTable], **kwargs: Any) -> TcpResult:
    """Analyse a capture given as PacketTable chunks in file order (state carried across chunks)."""
    analyzer = TcpAnalyzer(**kwargs)
    for table in tables:
        analyzer.feed(table)
    return analyzer.finish()


def packet_fields(analysis: ChunkAnalysis, i: int, *, mode: str = "wireshark") -> dict[str, Any]:
    """``stream`` and ``analysis`` (flag names) plus the numeric values for row ``i`` of a chunk."""
    mask = int((analysis.wireshark if mode == "wireshark" else analysis.mailwire)[i])
    out: dict[str, Any] = {
        "stream": int(analysis.stream[i]) if analysis.stream[i] >= 0 else None,
        "analysis": [name for bit, name in FLAG_NAMES.items() if mask & bit],
    }
    if mode == "wireshark" and analysis.mailwire[i] & Flag.DUPLICATE_FRAME:
        out["analysis_mailwire"] = ["duplicate_frame"]
    for name, v in analysis.values.items():
        val = int(v[i])
        if val >= 0 and not (name == "dupack_num" and val == 0):
            out[name] = val
    return out


__all__ = [
    "ANALYSIS_FIELDS",
    "FRAME_FIELDS",
    "ChunkAnalysis",
    "TcpAnalyzer",
    "TcpResult",
    "analyze",
    "packet_fields",
]

"""Per-connection summary records (conn.log-like): roles, counts, Zeek conn_state and history, stalls.

Theory of operation
-------------------
One compiled pass per chunk (:func:`_accumulate`) folds every TCP frame into per-connection and
per-direction accumulators (arrays indexed by connection / ``2 * connection + kdir``, where
``kdir`` is the canonical key direction of ``connections.py``): packet and byte counts, first and
last SYN/FIN/RST, Zeek history letters in order, zero-window episodes, the longest idle gap, the
longest stall (data outstanding while no ACK advances), TTL and IP-id patterns. At the end,
:meth:`SummaryState.finish` decides client/server roles (the pure SYN's sender; else the SYN/ACK's
receiver; else the lower port is the server, as Zeek's "likely server port" heuristic does for
SMTP) and turns accumulators into :class:`Connection` records. Upper-case history letters are the
originator's (the client), lower-case the responder's, as in Zeek.

Zeek's ``conn_state`` is derived from simplified endpoint states (SYN_SENT, SYN_ACK_SENT,
PARTIAL, ESTABLISHED, CLOSED, RESET) with Zeek's own decision table (conn/main.zeek).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mailwire.capture.addr import format_addr
from mailwire.capture.table import PacketTable
from mailwire.compiled import helper, kernel
from mailwire.jsonout import as_record
from mailwire.spill import Spill, Spilled, WordFile, positional
from mailwire.tcp.analysis import (
    F_DUPLICATE_FRAME,
    F_OUT_OF_ORDER,
    F_RETRANSMISSION,
    SLOT_NONE,
    SLOT_RETIRED,
    KernelState,
)
from mailwire.tcp.connections import KeyRegistry, TcpFrames
from mailwire.tcp.rtt import R_COUNT, R_MAX, R_MID_HI, R_MID_LO, R_MIN

if TYPE_CHECKING:
    import numpy.typing as npt


FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
HIST_MAX = 48  # history letters kept per connection (Zeek's strings are short too)

# per-direction accumulator columns (int64 matrix)
A_PKTS = 0
A_BYTES = 1  # TCP payload bytes
A_IP_BYTES = 2
A_RTX_BYTES = 3  # payload bytes of retransmissions / duplicates (mailwire flags)
A_RTX_PKTS = 4
A_SYN = 5  # pure SYN seen
A_SYNACK = 6
A_FIN = 7
A_RST = 8
A_FIRST_FIN_FRAME = 9
A_FIRST_RST_FRAME = 10
A_TTL_MIN = 11
A_TTL_MAX = 12
A_IPID_LAST = 13
A_IPID_INCR = 14  # consecutive ids that grew by 1..64
A_IPID_ZERO = 15
A_IPID_N = 16
A_MSS = 17
A_HI_END = 18  # highest seq+len sent (unwrapped, relative to first seq)
A_HI_ACK = 19  # highest ack received from the other side about this direction's data (unwrapped)
A_BASE = 20  # first seq seen (raw)
A_BASE_SET = 21
A_STALL_START = 22
A_STALL_START_FRAME = 23
A_STALL_MAX = 24
A_STALL_FROM = 25
A_STALL_TO = 26
A_ZW_OPEN = 27  # ts of the open zero-window episode, -1 none
A_ZW_OPEN_FRAME = 28
A_HIST_ONCE = 29  # bit mask: a d i q recorded
A_LAST_S = 30
A_LAST_F = 31
A_LAST_R = 32
A_CNT_T = 33
A_CNT_W = 34
A_CNT_G = 35
A_NEXT_T = 36
A_NEXT_W = 37
A_NEXT_G = 38
A_STATE = 39  # endpoint state (see _ST_*)
A_DATA = 40  # any payload seen
A_NFIELDS = 41

# per-connection columns
K_FIRST_TS = 0
K_LAST_TS = 1
K_FIRST_FRAME = 2
K_LAST_FRAME = 3
K_IDLE_MAX = 4
K_IDLE_FROM = 5
K_IDLE_TO = 6
K_FIRST_KDIR = 7
K_HLEN = 8
K_PKTS = 9
K_CLOSED_TS = 10  # when both sides had sent a FIN (0: not yet)
K_NFIELDS = 11
_ROW = 2 * A_NFIELDS + K_NFIELDS + HIST_MAX // 8  # words a retired connection takes on disk

# endpoint states
ST_INACTIVE, ST_SYN_SENT, ST_SYN_ACK_SENT, ST_PARTIAL, ST_ESTABLISHED, ST_CLOSED, ST_RESET = range(7)
_ST_NAMES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")

# history letter codes (lower case; kdir in bit 7)
_LETTERS = "sahdfrtwgqi"
# code -> character, for a client whose canonical direction is 0 or 1 (client letters upper case)
_HIST_CHARS = [
    [(_LETTERS[x & 0x7F].upper() if (x >> 7) == ckd else _LETTERS[x & 0x7F]) if (x & 0x7F) < 11 else "?"
     for x in range(256)]
    for ckd in (0, 1)
]  # fmt: skip


@helper(inline=True)
def _hist(k: int, kd: int, letter: int, hist: np.ndarray, cs: np.ndarray) -> None:
    n = cs[k, K_HLEN]
    if n < hist.shape[1]:
        hist[k, n] = letter | (kd << 7)
        cs[k, K_HLEN] = n + 1


@helper(inline=True)
def _log_letter(k: int, kd: int, d: int, letter: int, cnt: int, nxt: int, acc: np.ndarray,
                hist: np.ndarray, cs: np.ndarray) -> None:  # fmt: skip
    acc[d, cnt] += 1
    if acc[d, cnt] >= acc[d, nxt]:
        _hist(k, kd, letter, hist, cs)
        acc[d, nxt] *= 10


@helper()
def _unwrap(prev_hi: int, raw: int, base: int) -> int:
    """Sequence number ``raw`` as an offset from ``base``, unwrapped near ``prev_hi``."""
    off = (raw - base) & 0xFFFFFFFF
    cand = (prev_hi & ~0xFFFFFFFF) + off
    if cand < prev_hi - 0x80000000:
        cand += 0x100000000
    elif cand > prev_hi + 0x80000000 and cand >= 0x100000000:
        cand -= 0x100000000
    return cand


@kernel(
    "i8(i8[::1], i8[::1], b1[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], "
    "i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[:, ::1], i8[:, ::1], u1[:, "
    "::1], i8[:, ::1], i8)"
)
def _accumulate(
    conv: np.ndarray, kdir: np.ndarray, analysable: np.ndarray, tflags: np.ndarray, seq: np.ndarray,
    ack: np.ndarray, seglen: np.ndarray, win: np.ndarray, ts: np.ndarray, frame: np.ndarray,
    ip_len: np.ndarray, ttl: np.ndarray, ip_id: np.ndarray, mss: np.ndarray, wsflags: np.ndarray,
    mwflags: np.ndarray, capln: np.ndarray, acc: np.ndarray, cs: np.ndarray, hist: np.ndarray,
    zw: np.ndarray, nzw: int,
) -> int:  # fmt: skip
    """Fold frames into the accumulators; closed zero-window episodes go to ``zw``. Returns nzw."""
    for i in range(conv.shape[0]):
        k = conv[i]
        kd = kdir[i]
        d = 2 * k + kd
        r = 2 * k + 1 - kd
        t = ts[i]
        fr = frame[i]
        fl = tflags[i]
        ln = seglen[i]
        if cs[k, K_PKTS] == 0:
            cs[k, K_FIRST_TS] = t
            cs[k, K_FIRST_FRAME] = fr
            cs[k, K_FIRST_KDIR] = kd
            cs[k, K_IDLE_MAX] = -1
            for x in (d, r):
                acc[x, A_TTL_MIN] = 1 << 30
                acc[x, A_TTL_MAX] = -1
                acc[x, A_IPID_LAST] = -1
                acc[x, A_MSS] = -1
                acc[x, A_ZW_OPEN] = -1
                acc[x, A_STALL_START] = -1
                acc[x, A_STALL_MAX] = -1
                acc[x, A_NEXT_T] = 1
                acc[x, A_NEXT_W] = 1
                acc[x, A_NEXT_G] = 1
                acc[x, A_LAST_S] = -1
                acc[x, A_LAST_F] = -1
                acc[x, A_LAST_R] = -1
                acc[x, A_FIRST_FIN_FRAME] = -1
                acc[x, A_FIRST_RST_FRAME] = -1
        else:
            gap = t - cs[k, K_LAST_TS]
            if gap > cs[k, K_IDLE_MAX]:
                cs[k, K_IDLE_MAX] = gap
                cs[k, K_IDLE_FROM] = cs[k, K_LAST_FRAME]
                cs[k, K_IDLE_TO] = fr
        cs[k, K_PKTS] += 1
        cs[k, K_LAST_TS] = t
        cs[k, K_LAST_FRAME] = fr
        acc[d, A_PKTS] += 1
        acc[d, A_IP_BYTES] += ip_len[i]
        if ttl[i] >= 0:
            acc[d, A_TTL_MIN] = min(acc[d, A_TTL_MIN], ttl[i])
            acc[d, A_TTL_MAX] = max(acc[d, A_TTL_MAX], ttl[i])
        if ip_id[i] >= 0:
            acc[d, A_IPID_N] += 1
            if ip_id[i] == 0:
                acc[d, A_IPID_ZERO] += 1
            last = acc[d, A_IPID_LAST]
            if last >= 0 and 0 < ((ip_id[i] - last) & 0xFFFF) <= 64:
                acc[d, A_IPID_INCR] += 1
            acc[d, A_IPID_LAST] = ip_id[i]
        if not analysable[i]:
            continue
        acc[d, A_BYTES] += ln
        mwf = mwflags[i]
        if ln > 0 and (mwf & (F_RETRANSMISSION | F_DUPLICATE_FRAME)):
            acc[d, A_RTX_BYTES] += ln
            acc[d, A_RTX_PKTS] += 1
        if ln > 0:
            acc[d, A_DATA] = 1

        # --- history letters (Zeek) ---------------------------------------------------------------
        s = seq[i]
        if fl & SYN:
            if fl & ACK:
                acc[d, A_SYNACK] += 1
                if acc[d, A_LAST_S] != s:
                    _hist(k, kd, 2, hist, cs)  # h
                    acc[d, A_LAST_S] = s
            else:
                acc[d, A_SYN] += 1
                if acc[d, A_LAST_S] != s:
                    _hist(k, kd, 0, hist, cs)  # s
                    acc[d, A_LAST_S] = s
            if acc[d, A_MSS] < 0 and mss[i] >= 0:
                acc[d, A_MSS] = mss[i]
            if (fl & (FIN | RST)) and not (acc[d, A_HIST_ONCE] & 8):
                acc[d, A_HIST_ONCE] |= 8
                _hist(k, kd, 9, hist, cs)  # q
        if fl & FIN:
            if acc[r, A_FIN] > 0 and acc[d, A_FIN] == 0 and cs[k, K_CLOSED_TS] == 0:
                cs[k, K_CLOSED_TS] = t
            acc[d, A_FIN] += 1
            if acc[d, A_FIRST_FIN_FRAME] < 0:
                acc[d, A_FIRST_FIN_FRAME] = fr
            if acc[d, A_LAST_F] != s:
                _hist(k, kd, 4, hist, cs)  # f
                acc[d, A_LAST_F] = s
        if fl & RST:
            acc[d, A_RST] += 1
            if acc[d, A_FIRST_RST_FRAME] < 0:
                acc[d, A_FIRST_RST_FRAME] = fr
            if acc[d, A_LAST_R] != s:
                _hist(k, kd, 5, hist, cs)  # r
                acc[d, A_LAST_R] = s
        if ln > 0 and not (acc[d, A_HIST_ONCE] & 2):
            acc[d, A_HIST_ONCE] |= 2
            _hist(k, kd, 3, hist, cs)  # d
        elif ln == 0 and (fl & ACK) and not (fl & (SYN | FIN | RST)) and not (acc[d, A_HIST_ONCE] & 1):
            acc[d, A_HIST_ONCE] |= 1
            _hist(k, kd, 1, hist, cs)  # a
        wsf = wsflags[i]
        if ln > 0 and ((wsf & (F_RETRANSMISSION | F_OUT_OF_ORDER)) or (mwf & F_DUPLICATE_FRAME)):
            _log_letter(k, kd, d, 6, A_CNT_T, A_NEXT_T, acc, hist, cs)  # t
        if win[i] == 0 and not (fl & (SYN | RST)):
            _log_letter(k, kd, d, 7, A_CNT_W, A_NEXT_W, acc, hist, cs)  # w
        if ln > capln[i]:  # payload cut by the snaplen: a content gap, as Zeek reports it
            _log_letter(k, kd, d, 8, A_CNT_G, A_NEXT_G, acc, hist, cs)  # g

        # --- endpoint states (Zeek-like) -------------------------------------------------------
        st = acc[d, A_STATE]
        if fl & RST:
            acc[d, A_STATE] = ST_RESET
        elif fl & FIN:
            acc[d, A_STATE] = ST_CLOSED
        elif fl & SYN:
            if st == ST_INACTIVE:
                acc[d, A_STATE] = ST_SYN_ACK_SENT if (fl & ACK) else ST_SYN_SENT
        elif st == ST_INACTIVE:
            acc[d, A_STATE] = ST_PARTIAL
        elif st in (ST_SYN_SENT, ST_SYN_ACK_SENT) and (fl & ACK):
            acc[d, A_STATE] = ST_ESTABLISHED
            if acc[r, A_STATE] in (ST_SYN_SENT, ST_SYN_ACK_SENT):
                acc[r, A_STATE] = ST_ESTABLISHED
        if (fl & ACK) and not (fl & (SYN | RST)) and acc[r, A_STATE] == ST_SYN_ACK_SENT:
            acc[r, A_STATE] = ST_ESTABLISHED
            if acc[d, A_STATE] in (ST_SYN_SENT, ST_SYN_ACK_SENT):
                acc[d, A_STATE] = ST_ESTABLISHED

        # --- zero-window episodes (advertised by d) ----------------------------------------------
        if not (fl & (SYN | RST)):
            if win[i] == 0 and not (fl & FIN):
                if acc[d, A_ZW_OPEN] < 0:
                    acc[d, A_ZW_OPEN] = t
                    acc[d, A_ZW_OPEN_FRAME] = fr
            elif win[i] > 0 and acc[d, A_ZW_OPEN] >= 0:
                if nzw < zw.shape[0]:
                    zw[nzw, 0] = k
                    zw[nzw, 1] = kd
                    zw[nzw, 2] = acc[d, A_ZW_OPEN]
                    zw[nzw, 3] = t
                    zw[nzw, 4] = acc[d, A_ZW_OPEN_FRAME]
                    zw[nzw, 5] = fr
                    nzw += 1
                acc[d, A_ZW_OPEN] = -1

        # --- stalls: d's data outstanding, no ACK progress from r ----------------------------------
        if acc[d, A_BASE_SET] == 0:
            acc[d, A_BASE] = s
            acc[d, A_BASE_SET] = 1
            acc[d, A_HI_END] = 0
            acc[d, A_HI_ACK] = 0
        span = ln + (1 if (fl & (SYN | FIN)) else 0)
        if span > 0:
            end = _unwrap(acc[d, A_HI_END], (s + span) & 0xFFFFFFFF, acc[d, A_BASE])
            if end > acc[d, A_HI_END]:
                if acc[d, A_HI_END] <= acc[d, A_HI_ACK] or acc[d, A_STALL_START] < 0:
                    acc[d, A_STALL_START] = t
                    acc[d, A_STALL_START_FRAME] = fr
                acc[d, A_HI_END] = end
        if (fl & ACK) and acc[r, A_BASE_SET] != 0:
            a = _unwrap(acc[r, A_HI_ACK], ack[i], acc[r, A_BASE])
            if a > acc[r, A_HI_ACK]:
                if acc[r, A_HI_END] > acc[r, A_HI_ACK] and acc[r, A_STALL_START] >= 0:
                    dur = t - acc[r, A_STALL_START]
                    if dur > acc[r, A_STALL_MAX]:
                        acc[r, A_STALL_MAX] = dur
                        acc[r, A_STALL_FROM] = acc[r, A_STALL_START_FRAME]
                        acc[r, A_STALL_TO] = fr
                acc[r, A_HI_ACK] = a
                acc[r, A_STALL_START] = t
                acc[r, A_STALL_START_FRAME] = fr
    return nzw


@positional
@dataclass(slots=True)
class ZeroWindowEpisode:
    """A receiver advertised window 0 from ``start_frame`` until ``end_frame`` (None: never reopened)."""

    direction: str  # "c2s": the client advertised zero, "s2c": the server did
    start_ns: int
    end_ns: int | None
    duration_s: float | None  # until the window reopened, or (open_at_end) the connection's last frame
    start_frame: int
    end_frame: int | None
    open_at_end: bool = False


@positional
@dataclass(slots=True)
class Direction:
    """What one endpoint sent."""

    pkts: int
    bytes: int  # TCP payload bytes (tshark tcp.len sums; Zeek counts from sequence numbers)
    ip_bytes: int
    stream_bytes: int  # highest sequence number reached minus the first (Zeek's orig/resp_bytes)
    unique_bytes: int  # payload bytes minus retransmitted / duplicated bytes
    retransmitted_bytes: int
    retransmitted_pkts: int
    syn: int
    fin: int
    rst: int
    mss: int | None
    window_scale: int | None  # None: unknown (handshake not seen), -2 shown as 0: not used
    ttl_min: int | None
    ttl_max: int | None
    ip_id_pattern: str  # "incrementing", "zero", "random", "none" (IPv6)
    longest_stall_s: float | None  # this side's data outstanding with no ACK progress
    stall_frames: tuple[int, int] | None  # (frame that started the wait, frame that ended it)
    stall_unresolved: bool  # the capture ended inside that stall


@positional
@dataclass(slots=True)
class Connection:
    """One TCP connection (stable record; ``id`` == tshark's ``tcp.stream``)."""

    id: int
    client: str
    client_port: int
    server: str
    server_port: int
    roles_from: str  # "syn", "synack", "port" (inferred)
    start_ns: int
    duration_s: float  # first to last frame (tshark's conversation duration)
    duration_zeek_s: float  # first frame to the second FIN when both sides closed (Zeek's duration)
    first_frame: int
    last_frame: int
    conn_state: str  # Zeek's
    history: str  # Zeek's letters (upper case: client)
    c2s: Direction
    s2c: Direction
    rtt_handshake_s: float | None  # SYN -> ACK of the SYN/ACK (tshark's iRTT)
    rtt_min_s: float | None
    rtt_median_s: float | None
    rtt_max_s: float | None
    rtt_samples: int
    zero_window: list[ZeroWindowEpisode] = field(default_factory=list)
    longest_idle_s: float | None = None
    idle_frames: tuple[int, int] | None = None
    closed_by: str | None = None  # "client" / "server": first FIN
    reset_by: str | None = None  # "client" / "server": first RST
    reset_frame: int | None = None
    flags: dict[str, int] = field(default_factory=dict)  # mailwire flag counts
    client_kdir: int = 0  # internal: canonical key direction of client -> server

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = as_record(self)
        d.pop("client_kdir", None)
        return d


class SummaryState:
    """Per-connection accumulators, carried across chunks."""

    def __init__(self, shard: tuple[int, int] | None = None) -> None:
        # a shard's connections (numbers k, k + w, k + 2w …) have rows n // w: a shard holds its
        # own, not every connection's
        self._k, self._w = shard if shard is not None else (0, 1)
        # accumulator rows are slots (a connection's: rows 2s, 2s+1 of acc, row s of cs and
        # hist), given back when the connection is retired (:meth:`retire`) and reused
        self.acc = np.zeros((0, A_NFIELDS), dtype=np.int64)
        self.cs = np.zeros((0, K_NFIELDS), dtype=np.int64)
        # one byte a letter (a code below 11, the direction in bit 7)
        self.hist = np.zeros((0, HIST_MAX), dtype=np.uint8)
        self.zw: list[np.ndarray] = []
        self.n_conv = 0
        self.slot = np.full(1024, SLOT_NONE, dtype=np.int64)  # per own connection (number // w)
        self.slot_conv = np.zeros(0, dtype=np.int64)  # per slot: its own connection
        self._free = np.zeros(0, dtype=np.int64)  # free slots, the first _nfree entries
        self._nfree = 0
        self._grow_slots(1024)
        # retired connections' rows, _ROW words each, in a temporary file: offset per connection
        self._file = WordFile("mailwire-conn-")
        self._at = np.zeros(0, dtype=np.int64)
        self.retired = 0
        self.revived = 0
        self.back: list[int] = []  # own connections brought back since the caller last took them
        # per connection number, set by finish(): the key direction of the client's packets
        self.client_kdir = np.zeros(0, dtype=np.int8)

    def _grow_slots(self, extra: int) -> None:
        old = self.cs.shape[0]
        cap = old + extra
        for name, rows in (("acc", 2 * cap), ("cs", cap), ("hist", cap)):
            arr = getattr(self, name)
            new = np.zeros((rows, arr.shape[1]), dtype=arr.dtype)
            new[: arr.shape[0]] = arr
            setattr(self, name, new)
        owner = np.full(cap, -1, dtype=np.int64)
        owner[:old] = self.slot_conv
        self.slot_conv = owner
        stack = np.empty(cap, dtype=np.int64)
        stack[:extra] = np.arange(cap - 1, old - 1, -1)  # popped from the end: lowest first
        stack[extra : extra + self._nfree] = self._free[: self._nfree]
        self._free, self._nfree = stack, self._nfree + extra

    @property
    def slots(self) -> int:
        return int(self.cs.shape[0])

    def _assign(self, own: np.ndarray) -> None:
        """Give each of the own connections ``own`` (unique) that holds no slot one: a fresh
        one, or its rows read back when it was retired."""
        need = own[self.slot[own] < 0]
        if need.size == 0:
            return
        if self._nfree < need.size:
            self._grow_slots(max(need.size, self.cs.shape[0]))
        take = self._free[self._nfree - need.size : self._nfree][::-1].copy()
        self._nfree -= need.size
        back = self.slot[need] == SLOT_RETIRED
        self.slot[need] = take
        self.slot_conv[take] = need
        for j in need[back].tolist():  # one step per connection seen again after its retirement
            a0, a1, ck, hist = self._read(j)
            s = int(self.slot[j])
            self.acc[2 * s], self.acc[2 * s + 1], self.cs[s], self.hist[s] = a0, a1, ck, hist
            self.revived += 1
            self.back.append(j)

    def _read(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Retired connection ``j``'s rows, from the temporary file."""
        row = self._file.read(int(self._at[j]), _ROW, f"accumulators of connection {j}")
        a = 2 * A_NFIELDS
        return row[:A_NFIELDS], row[A_NFIELDS:a], row[a : a + K_NFIELDS], row[a + K_NFIELDS :].view(np.uint8)

    def retire(self, own: np.ndarray) -> int:
        """Write the rows of own connections ``own`` (unique numbers // w) that hold a slot to
        the temporary file and free their slots; a later frame of one brings them back
        (:meth:`_assign`), and :meth:`finish` reads them from there. Returns how many left (0
        when the file cannot be written: they keep their slots, same results)."""
        own = own[own < self.slot.shape[0]]
        own = own[self.slot[own] >= 0]
        if own.size == 0:
            return 0
        sl = self.slot[own]
        data = np.concatenate(
            [self.acc[2 * sl], self.acc[2 * sl + 1], self.cs[sl], self.hist[sl].view(np.int64)], axis=1
        )
        try:
            start = self._file.append(data)
        except OSError:
            return 0
        if self._at.shape[0] < self.slot.shape[0]:
            at = np.full(self.slot.shape[0], -1, dtype=np.int64)
            at[: self._at.shape[0]] = self._at
            self._at = at
        self._at[own] = start + 8 * _ROW * np.arange(own.shape[0])
        self.acc[2 * sl], self.acc[2 * sl + 1], self.cs[sl], self.hist[sl] = 0, 0, 0, 0
        self.slot[own] = SLOT_RETIRED
        self.slot_conv[sl] = -1
        self._free[self._nfree : self._nfree + sl.shape[0]] = sl[::-1]
        self._nfree += sl.shape[0]
        self.retired += int(own.shape[0])
        return int(own.shape[0])

    def _rows(self, j: int) -> tuple[list[int], list[int], list[int], list[int]]:
        """Own connection ``j``'s rows as Python ints, wherever they are."""
        s = int(self.slot[j]) if j < self.slot.shape[0] else SLOT_NONE
        if s >= 0:
            return (
                self.acc[2 * s].tolist(),
                self.acc[2 * s + 1].tolist(),
                self.cs[s].tolist(),
                self.hist[s].tolist(),
            )
        if s == SLOT_RETIRED:
            a0, a1, ck, hist = self._read(j)
            return a0.tolist(), a1.tolist(), ck.tolist(), hist.tolist()
        return [0] * A_NFIELDS, [0] * A_NFIELDS, [0] * K_NFIELDS, [0] * HIST_MAX

    def release(self) -> None:
        """Free the accumulators once :meth:`finish` has made the records (nothing may be fed or
        finished after this)."""
        self.acc = np.zeros((0, A_NFIELDS), dtype=np.int64)
        self.cs = np.zeros((0, K_NFIELDS), dtype=np.int64)
        self.hist = np.zeros((0, HIST_MAX), dtype=np.uint8)
        self.zw = []
        self.slot, self.slot_conv, self._free, self._nfree = (
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            0,
        )
        self._file.close()

    def feed(self, table: PacketTable, sel: TcpFrames, part: dict[str, np.ndarray]) -> None:
        if sel.rows.shape[0] == 0:
            return
        conv = part["stream"].astype(np.int64)
        if self._w > 1:
            conv //= self._w
        self.n_conv = max(self.n_conv, int(conv.max()) + 1)
        if self.slot.shape[0] < self.n_conv:
            grown = np.full(max(self.n_conv, 2 * self.slot.shape[0]), SLOT_NONE, dtype=np.int64)
            grown[: self.slot.shape[0]] = self.slot
            self.slot = grown
        self._assign(np.unique(conv))
        own = conv
        conv = self.slot[own]
        c = table.columns
        rows = sel.rows
        zw = np.zeros((int(np.count_nonzero(sel.cols["win"] > 0)) + 1, 6), dtype=np.int64)
        n = _accumulate(
            conv, sel.cols["kdir"], sel.cols["analysable"], sel.cols["tflags"], sel.cols["seq"],
            sel.cols["ack"], sel.cols["seglen"], sel.cols["win"], sel.cols["ts"], sel.cols["frame"],
            c["ip_len"][rows].astype(np.int64), c["ttl"][rows].astype(np.int64),
            c["ip_id"][rows].astype(np.int64), c["opt_mss"][rows].astype(np.int64),
            part["wireshark"].astype(np.int64), part["mailwire"].astype(np.int64),
            c["cap_payload_len"][rows].astype(np.int64), self.acc, self.cs, self.hist, zw, 0,
        )  # fmt: skip
        if n:
            zw[:n, 0] = self.slot_conv[zw[:n, 0]]  # the kernel names slots: back to connections
            if self._w > 1:
                zw[:n, 0] = zw[:n, 0] * self._w + self._k  # episodes name the connection number
            self.zw.append(zw[:n])

    def finish(
        self,
        keys: KeyRegistry,
        ws: KernelState,
        flag_counts: dict[str, npt.NDArray[np.int64]],
        rtt: npt.NDArray[np.int64],
    ) -> Spilled[Connection]:
        """Connection records in number order, written out as they are made past a few
        thousand (``mailwire.spill``), and :attr:`client_kdir` (per connection number) set.
        ``flag_counts`` is, per mailwire flag name, the frames flagged per connection number (at
        least ``ws.n_conv`` long); ``rtt`` is, per connection number, its RTT figures
        (``RttSamples.figures``). A shard's state gives the records of its own connections
        (numbered ``k`` modulo ``w``)."""
        words = keys.words()
        nconv = ws.n_conv
        w = self._w
        key_of = ws.keys_of()
        wscale = ws.win_scale()
        irtt = ws.first_rtt()
        zw = np.concatenate(self.zw) if self.zw else np.zeros((0, 6), dtype=np.int64)
        # per-connection assembly in plain Python ints (one step per connection, not per packet);
        # rows are converted one connection at a time: whole-array lists of Python ints cost
        # ~100 MB of peak at 13 k connections
        words_l = words.tolist()
        key_l = key_of.tolist()
        wscale_l = wscale.tolist()
        irtt_l = irtt.tolist()
        zw_by: dict[int, list[list[int]]] = {}
        for row in zw.tolist():
            zw_by.setdefault(row[0], []).append(row)
        counts = {n: v.tolist() for n, v in flag_counts.items()}
        addr_cache: dict[tuple[int, int], str] = {}
        out: Spill[Connection] = Spill()
        kdir = np.zeros(nconv, dtype=np.int8)
        for k in range(self._k, nconv, w):
            rtts = rtt[k].tolist()
            a0, a1, ck, hist_row = self._rows(k // w)  # its accumulator rows
            rec = self._one(
                k, a0, a1, ck, hist_row, words_l[key_l[k]], wscale_l, irtt_l[k], zw_by.get(k, []), rtts,
                {n: v[k] for n, v in counts.items() if v[k]}, addr_cache,
            )  # fmt: skip
            kdir[k] = rec.client_kdir
            out.append(rec, k)
        self.client_kdir = kdir
        return out.done()

    def _one(
        self,
        k: int,
        a0: list[int],
        a1: list[int],
        ck: list[int],
        hist_row: list[int],
        w: list[int],
        wscale: list[int],
        irtt: int,
        zw: list[list[int]],
        rtts: list[int],  # the RTT figures (R_* columns)
        flags: dict[str, int],
        addr_cache: dict[tuple[int, int], str],
    ) -> Connection:
        ports = w[4]
        names = []
        for hi, lo in ((w[0], w[1]), (w[2], w[3])):
            name = addr_cache.get((hi, lo))
            if name is None:
                name = addr_cache[(hi, lo)] = format_addr(hi, lo)
            names.append(name)
        ep = [(names[0], ports >> 16), (names[1], ports & 0xFFFF)]
        # roles: pure SYN sender is the client; else SYN/ACK sender is the server; else lower port
        if a0[A_SYN] or a1[A_SYN]:
            ckd, how = (0 if a0[A_SYN] else 1), "syn"
        elif a0[A_SYNACK] or a1[A_SYNACK]:
            ckd, how = (1 if a0[A_SYNACK] else 0), "synack"
        else:
            ckd, how = (1 if ep[0][1] < ep[1][1] else 0), "port"
        c, s = (a0, a1) if ckd == 0 else (a1, a0)
        ci, si = 2 * k + ckd, 2 * k + 1 - ckd
        hist = "".join(map(_HIST_CHARS[ckd].__getitem__, hist_row[: ck[K_HLEN]]))
        if how == "port" and ck[K_FIRST_KDIR] != ckd:
            hist = "^" + hist  # Zeek marks a flipped direction
        eps = []
        for row in zw:
            t0, t1 = row[2], row[3]
            side = "c2s" if row[1] == ckd else "s2c"
            eps.append(ZeroWindowEpisode(side, t0, t1, (t1 - t0) / 1e9, row[4], row[5]))
        last = int(ck[K_LAST_TS])
        for side, a in (("c2s", c), ("s2c", s)):
            if a[A_ZW_OPEN] >= 0:  # still closed at the connection's last frame: lasted at least this
                t0 = int(a[A_ZW_OPEN])
                eps.append(
                    ZeroWindowEpisode(side, t0, None, (last - t0) / 1e9, int(a[A_ZW_OPEN_FRAME]), None, True)
                )
        nrtt = rtts[R_COUNT]
        fin_by = _first_by(int(c[A_FIRST_FIN_FRAME]), int(s[A_FIRST_FIN_FRAME]))
        rst_by = _first_by(int(c[A_FIRST_RST_FRAME]), int(s[A_FIRST_RST_FRAME]))
        rst_frame = [f for f in (int(c[A_FIRST_RST_FRAME]), int(s[A_FIRST_RST_FRAME])) if f >= 0]
        return Connection(
            id=k,
            client=ep[ckd][0],
            client_port=int(ep[ckd][1]),
            server=ep[1 - ckd][0],
            server_port=int(ep[1 - ckd][1]),
            roles_from=how,
            start_ns=int(ck[K_FIRST_TS]),
            duration_s=(last - int(ck[K_FIRST_TS])) / 1e9,
            duration_zeek_s=((int(ck[K_CLOSED_TS]) or last) - int(ck[K_FIRST_TS])) / 1e9,
            first_frame=int(ck[K_FIRST_FRAME]),
            last_frame=int(ck[K_LAST_FRAME]),
            conn_state=_conn_state(int(c[A_STATE]), int(s[A_STATE]), hist, int(c[A_BYTES]), int(s[A_BYTES])),
            history=hist,
            c2s=_direction(c, int(wscale[ci]), last),
            s2c=_direction(s, int(wscale[si]), last),
            rtt_handshake_s=irtt / 1e9 if irtt >= 0 else None,
            rtt_min_s=float(rtts[R_MIN]) / 1e9 if nrtt else None,
            rtt_median_s=(rtts[R_MID_LO] + rtts[R_MID_HI]) / 2e9 if nrtt else None,
            rtt_max_s=float(rtts[R_MAX]) / 1e9 if nrtt else None,
            rtt_samples=nrtt,
            zero_window=eps,
            longest_idle_s=ck[K_IDLE_MAX] / 1e9 if ck[K_IDLE_MAX] >= 0 else None,
            idle_frames=(int(ck[K_IDLE_FROM]), int(ck[K_IDLE_TO])) if ck[K_IDLE_MAX] >= 0 else None,
            closed_by=None if fin_by is None else ("client" if fin_by == 0 else "server"),
            reset_by=None if rst_by is None else ("client" if rst_by == 0 else "server"),
            reset_frame=min(rst_frame) if rst_frame else None,
            flags=flags,
            client_kdir=ckd,
        )


def _first_by(c_frame: int, s_frame: int) -> int | None:
    if c_frame < 0 and s_frame < 0:
        return None
    if s_frame < 0 or (0 <= c_frame < s_frame):
        return 0
    return 1


def _direction(a: list[int], wscale: int, last_ts: int) -> Direction:
    n = int(a[A_IPID_N])
    if n == 0:
        pattern = "none"
    elif a[A_IPID_ZERO] == n:
        pattern = "zero"
    elif n > 1 and a[A_IPID_INCR] >= 0.9 * (n - 1):
        pattern = "incrementing"
    else:
        pattern = "random" if n > 1 else "single"
    stall = int(a[A_STALL_MAX])
    stall_frames: tuple[int, int] | None = (int(a[A_STALL_FROM]), int(a[A_STALL_TO])) if stall >= 0 else None
    unresolved = False
    if a[A_HI_END] > a[A_HI_ACK] and a[A_STALL_START] >= 0:  # still waiting at capture end
        open_dur = last_ts - int(a[A_STALL_START])
        if open_dur > stall:
            stall, stall_frames, unresolved = open_dur, (int(a[A_STALL_START_FRAME]), -1), True
    rtx = int(a[A_RTX_BYTES])
    return Direction(
        pkts=int(a[A_PKTS]),
        bytes=int(a[A_BYTES]),
        ip_bytes=int(a[A_IP_BYTES]),
        stream_bytes=max(0, int(a[A_HI_END]) - (1 if a[A_SYN] + a[A_SYNACK] else 0) - (1 if a[A_FIN] else 0)),
        unique_bytes=int(a[A_BYTES]) - rtx,
        retransmitted_bytes=rtx,
        retransmitted_pkts=int(a[A_RTX_PKTS]),
        syn=int(a[A_SYN] + a[A_SYNACK]),
        fin=int(a[A_FIN]),
        rst=int(a[A_RST]),
        mss=int(a[A_MSS]) if a[A_MSS] >= 0 else None,
        window_scale=None if wscale == -1 else (0 if wscale == -2 else wscale),
        ttl_min=int(a[A_TTL_MIN]) if a[A_TTL_MAX] >= 0 else None,
        ttl_max=int(a[A_TTL_MAX]) if a[A_TTL_MAX] >= 0 else None,
        ip_id_pattern=pattern,
        longest_stall_s=stall / 1e9 if stall >= 0 else None,
        stall_frames=stall_frames,
        stall_unresolved=unresolved,
    )


def _conn_state(os_: int, rs: int, history: str, obytes: int, rbytes: int) -> str:
    """Zeek's conn_state decision table (base/protocols/conn/main.zeek), on our endpoint states."""
    o_inactive = os_ in (ST_INACTIVE, ST_PARTIAL)
    r_inactive = rs in (ST_INACTIVE, ST_PARTIAL)
    if rs == ST_RESET:
        if os_ in (ST_SYN_SENT, ST_SYN_ACK_SENT) or (os_ == ST_RESET and obytes == 0 and rbytes == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == ST_RESET:
        if r_inactive:
            h = history.lstrip("^")
            if h.startswith("S") and "R" in h and not any(ch in h[: h.index("R")] for ch in "HAFGIQ"):
                return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == ST_CLOSED and os_ == ST_CLOSED:
        return "SF"
    if os_ == ST_CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == ST_CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == ST_SYN_SENT and rs == ST_INACTIVE:
        return "S0"
    if os_ == ST_ESTABLISHED and rs == ST_ESTABLISHED:
        return "S1"
    return "OTH"


__all__ = ["Connection", "Direction", "SummaryState", "ZeroWindowEpisode"]

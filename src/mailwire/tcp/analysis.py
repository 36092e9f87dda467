"""Per-frame TCP sequence analysis: Wireshark's expert flags, in Wireshark's order, plus ours.

Theory of operation
-------------------
Wireshark's ``tcp_analyze_sequence_number()`` (epan/dissectors/packet-tcp.c, 4.0) is a state
machine run once over the frames in file order, with state per connection direction. It is
inherently sequential, so it lives here as one Numba-compiled loop over a chunk of frames; all
state is kept in NumPy arrays (one row per connection direction, one row per connection, and a
pool of "unacked segment" records linked into per-direction lists, newest first, as Wireshark
keeps them). The loop can stop before the end of a chunk when a pool is full; the caller grows
the pool and resumes at the returned index, so memory follows the capture, not a fixed guess.

The rules, in the order Wireshark evaluates them for the frame's own direction ("fwd"); the
reverse direction is "rev":

====  ======================  ==================================================================
step  flag                    condition (wrap-safe sequence compares throughout)
====  ======================  ==================================================================
0     reused_ports            pure SYN, fwd base seq known, seq differs -> new connection;
                              SYN/ACK with a different seq -> fwd base seq replaced
1     zero_window_probe       len == 1, seq == fwd.nextseq, rev.window == 0 -> skip to step 9
2     zero_window             raw window 0, none of SYN/FIN/RST
3     lost_segment            fwd.nextseq set, seq > fwd.nextseq, not RST (disables bytes in flight)
4     keep_alive              len <= 1, seq == fwd.nextseq - 1, none of SYN/FIN/RST
5     window_update           len 0, window != 0 and changed, seq == nextseq, ack == lastack
6     window_full             len > 0, rev scale known, seq+len == rev.lastack + rev.window << scale
7     keep_alive_ack          len 0, window unchanged != 0, seq/ack repeat, rev last was keep-alive
                              -> skip to step 9
8     zero_window_probe_ack   as 7 with window 0 and rev last a zero-window probe -> skip to 9
8b    duplicate_ack           len 0, window unchanged != 0, seq == nextseq, ack == lastack
9     (ack changed)           reset the dup-ACK counter, remember this frame
10    ack_lost_segment        ACK set, ack > rev.maxseqtobeacked; then maxseqtobeacked := nextseq
11    retransmission family   only if len > 0 or SYN/FIN, and not a keep-alive:
                              spurious (seq+len <= rev.lastack), then fast (>= 2 rev dup-ACKs,
                              or a bare FIN: see the code; seq == rev.lastack, < 20 ms after
                              rev's last ACK), then
                              out_of_order (< iRTT or 3 ms after fwd.nextseqtime, and seq+len
                              != nextseq), else retransmission when seq < fwd.nextseq
12    (state update)          append to the unacked list (max 10000 per direction), advance
                              nextseq / maxseqtobeacked, store ack, window, flags
13    (ACK processing)        rev list: exact end match -> ack_rtt, partial -> trim, older -> drop
14    bytes_in_flight         span of the fwd unacked list minus the rev SACK blocks
15    (connection)            SYN time; iRTT at the first ACK after it; window scale from the
                              SYN options (-1 unknown, -2 "not used" once a SYN lacks it); the
                              first-ACK rule of issue 14690 (SYN/ACK windows are never scaled)
====  ======================  ==================================================================

Where the source we read and tshark 4.0.17 disagreed, tshark's observed behaviour on the corpus
decided (ack_lost_segment's once-per-hole boundary; the FIN-only fast retransmission) and the
code says so.

As in Wireshark's display filters, ``retransmission`` is also set on fast and spurious
retransmissions (tshark's ``tcp.analysis.retransmission`` field is present on all three).

Two runs, one kernel
--------------------
The same loop runs twice: once in Wireshark-compatible mode (flags comparable with tshark 4.0
field by field, including its known mistakes) and once in mailwire mode, which differs exactly
as listed in :data:`DIFFERENCES`. Both flag masks are kept per frame.

This module knows nothing about files, SMTP or rendering.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

from mailwire.compiled import helper, kernel
from mailwire.spill import WordFile

if TYPE_CHECKING:
    import numpy.typing as npt


class Flag(enum.IntFlag):
    """Per-frame analysis flags. Names and meaning follow tshark's ``tcp.analysis.*`` fields."""

    RETRANSMISSION = 1 << 0
    FAST_RETRANSMISSION = 1 << 1
    SPURIOUS_RETRANSMISSION = 1 << 2
    OUT_OF_ORDER = 1 << 3
    LOST_SEGMENT = 1 << 4
    ACK_LOST_SEGMENT = 1 << 5
    DUPLICATE_ACK = 1 << 6
    ZERO_WINDOW = 1 << 7
    ZERO_WINDOW_PROBE = 1 << 8
    ZERO_WINDOW_PROBE_ACK = 1 << 9
    WINDOW_FULL = 1 << 10
    WINDOW_UPDATE = 1 << 11
    KEEP_ALIVE = 1 << 12
    KEEP_ALIVE_ACK = 1 << 13
    REUSED_PORTS = 1 << 14
    # mailwire only (never set in the Wireshark-compatible mask)
    DUPLICATE_FRAME = 1 << 16


FLAG_NAMES: dict[int, str] = {int(f): (f.name or "").lower() for f in Flag}
WIRESHARK_FLAGS: tuple[str, ...] = tuple(n for b, n in FLAG_NAMES.items() if b < (1 << 16))


def flag_names(mask: int) -> list[str]:
    """Names of the bits set in a flag mask, in :class:`Flag` order."""
    return [name for bit, name in FLAG_NAMES.items() if mask & bit]


# Where the mailwire mask deliberately differs from Wireshark's (the tshark comparison test
# reads this table: a disagreement on a frame is accepted only if it falls in one of these).
DIFFERENCES: dict[str, str] = {
    "duplicate_frame": (
        "The same IP packet captured twice (same IP id, seq, ack, length, flags, window and TCP "
        "timestamp, among the last 8 segments of the direction, within 100 ms; for IP id 0 or IPv6 "
        "within 2 ms) is flagged duplicate_frame and otherwise ignored. Wireshark calls the copy a "
        "retransmission / duplicate ACK (wireshark issue 19463)."
    ),
    "byte_range_reordering": (
        "A segment below nextseq is out_of_order only if its bytes fall in a hole that was never "
        "captured (recorded when lost_segment fired); bytes seen before make it a retransmission. "
        "Wireshark decides by a time threshold (iRTT or 3 ms) and ignores SACK (issue 13863)."
    ),
    "sack_fast_retransmission": (
        "A retransmission starting at rev's last ACK after >= 2 duplicate ACKs or a SACK block "
        "from rev is a fast retransmission when it comes within max(20 ms, iRTT) of that ACK; "
        "Wireshark needs >= 2 dup ACKs and < 20 ms."
    ),
    "rto_by_byte_range": (
        "rto / rto_frame of a retransmission refer to the first captured frame that carried the "
        "retransmitted sequence number (TSO super-segments included); Wireshark uses the oldest "
        "unacked segment of the direction whatever bytes it held (issue 17714)."
    ),
    "zero_window_probe_keepalive_style": (
        "A keep-alive-shaped segment (0 or 1 byte at nextseq - 1) sent while the peer advertises a "
        "zero window is a zero_window_probe (Linux probes this way), and the peer's answer a "
        "zero_window_probe_ack; Wireshark calls them keep_alive / (nothing)."
    ),
    "no_zero_as_unset": (
        "nextseq, lastack, maxseqtobeacked and the SYN time have explicit 'known' bits; a "
        "sequence number that happens to be 0 is a sequence number. Wireshark uses 0 as unset."
    ),
}

# Plain-int copies of the flag bits for the compiled kernel (Numba does not type IntFlag)
F_RETRANSMISSION = int(Flag.RETRANSMISSION)
F_FAST_RETRANSMISSION = int(Flag.FAST_RETRANSMISSION)
F_SPURIOUS_RETRANSMISSION = int(Flag.SPURIOUS_RETRANSMISSION)
F_OUT_OF_ORDER = int(Flag.OUT_OF_ORDER)
F_LOST_SEGMENT = int(Flag.LOST_SEGMENT)
F_ACK_LOST_SEGMENT = int(Flag.ACK_LOST_SEGMENT)
F_DUPLICATE_ACK = int(Flag.DUPLICATE_ACK)
F_ZERO_WINDOW = int(Flag.ZERO_WINDOW)
F_ZERO_WINDOW_PROBE = int(Flag.ZERO_WINDOW_PROBE)
F_ZERO_WINDOW_PROBE_ACK = int(Flag.ZERO_WINDOW_PROBE_ACK)
F_WINDOW_FULL = int(Flag.WINDOW_FULL)
F_WINDOW_UPDATE = int(Flag.WINDOW_UPDATE)
F_KEEP_ALIVE = int(Flag.KEEP_ALIVE)
F_KEEP_ALIVE_ACK = int(Flag.KEEP_ALIVE_ACK)
F_REUSED_PORTS = int(Flag.REUSED_PORTS)
F_DUPLICATE_FRAME = int(Flag.DUPLICATE_FRAME)

# TCP flag bits as in tcp_flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

MAX_UNACKED = 10000  # TCP_MAX_UNACKED_SEGMENTS, per direction
N_HOLES = 8  # holes remembered per direction (mailwire mode)
N_DUPRING = 8  # recent segments remembered per direction for duplicate-frame detection

# Per-direction state columns (int64 matrix ``ds``)
D_BASE_SEQ = 0
D_BASE_SET = 1
D_NEXTSEQ = 2
D_NEXTSEQ_SET = 3
D_NEXTSEQFRAME = 4
D_NEXTSEQTIME = 5
D_MAXSEQ = 6
D_MAXSEQ_SET = 7
D_LASTACK = 8
D_LASTACK_SET = 9
D_LASTACKTIME = 10
D_WINDOW = 11
D_WIN_SCALE = 12
D_DUPACKNUM = 13
D_LASTNONDUPACK = 14
D_LASTSEGFLAGS = 15
D_VALID_BIF = 16
D_IS_FIRST_ACK = 17
D_SEG_HEAD = 18
D_SEG_COUNT = 19
D_SACK_SUM = 20
D_SACK_SEEN = 21  # mailwire: rev sent SACK blocks since its ack last advanced
D_NHOLES = 22
D_DUP_POS = 23
D_NFIELDS = 24

# Per-connection state columns (int64 matrix ``cs``)
C_KEY = 0
C_MRU_SYN = 1
C_MRU_SYN_SET = 2
C_FIRST_RTT = 3
C_FIRST_RTT_SET = 4
C_NFIELDS = 5

# Unacked-segment pool columns
P_SEQ = 0
P_NEXTSEQ = 1
P_FRAME = 2
P_TS = 3
P_NEXT = 4
P_ORIG = 5  # mailwire: root frame of the bytes this record carries
P_NFIELDS = 6

# Globals (int64 vector ``g``)
G_FREE = 0  # head of the pool free list (-1: empty)
G_NCONV = 1  # connections allocated
G_NSLOTS = 2  # free state slots left on the stack ``free_slots``
G_NFIELDS = 3

# ``conv_slot``: a connection's state slot (row of ``cs``; rows 2s, 2s+1 of ``ds``), or one of
SLOT_NONE = -1  # never seen (mailwire mode: numbers may jump)
SLOT_RETIRED = -2  # retired (KernelState.retire): its state waits on disk

M32 = 0xFFFFFFFF
H31 = 0x80000000


@helper(inline=True)
def _lt(a: int, b: int) -> bool:  # LT_SEQ: (int32)(a - b) < 0
    return ((a - b) & M32) >= H31


@helper(inline=True)
def _gt(a: int, b: int) -> bool:  # GT_SEQ: (int32)(b - a) < 0
    return ((b - a) & M32) >= H31


@helper(inline=True)
def _le(a: int, b: int) -> bool:  # LE_SEQ: (int32)(a - b) <= 0
    d = (a - b) & M32
    return d == 0 or d >= H31


@helper()
def _new_slot(
    c: int,
    key: int,
    cs: np.ndarray,
    ds: np.ndarray,
    g: np.ndarray,
    conv_slot: np.ndarray,
    free_slots: np.ndarray,
) -> int:
    """Give connection ``c`` a fresh state slot from the stack (the caller made sure one is left)."""
    n = g[G_NSLOTS] - 1
    g[G_NSLOTS] = n
    sl = free_slots[n]
    conv_slot[c] = sl
    cs[sl, :] = 0
    cs[sl, C_KEY] = key
    for d in (2 * sl, 2 * sl + 1):
        ds[d, :] = 0
        ds[d, D_WINDOW] = M32  # Wireshark starts with G_MAXUINT32
        ds[d, D_WIN_SCALE] = -1
        ds[d, D_VALID_BIF] = 1
        ds[d, D_SEG_HEAD] = -1
        ds[d, D_LASTNONDUPACK] = 0
    return sl


@helper()
def _new_conv(
    key: int,
    key_conv: np.ndarray,
    cs: np.ndarray,
    ds: np.ndarray,
    g: np.ndarray,
    conv_slot: np.ndarray,
    free_slots: np.ndarray,
) -> int:
    c = g[G_NCONV]
    g[G_NCONV] = c + 1
    key_conv[key] = c
    _new_slot(c, key, cs, ds, g, conv_slot, free_slots)
    return c


@helper()
def _free_list(d: int, ds: np.ndarray, pool: np.ndarray, g: np.ndarray) -> None:
    """Return every record of direction ``d``'s unacked list to the pool."""
    p = ds[d, D_SEG_HEAD]
    while p >= 0:
        nxt = pool[p, P_NEXT]
        pool[p, P_NEXT] = g[G_FREE]
        g[G_FREE] = p
        p = nxt
    ds[d, D_SEG_HEAD] = -1
    ds[d, D_SEG_COUNT] = 0


@kernel(
    "i8(b1, i8, i8[::1], i8[::1], b1[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], "
    "i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[:, ::1], i8[:, ::1], "
    "i8[:, ::1], i8[:, :, ::1], i8[:, :, ::1], i8[::1], i8[::1], i8[::1], i4[::1], u4[::1], "
    "i4[::1], i4[::1], i4[::1], i8[::1], i8[::1], i8[::1], i8[::1], i4[::1], i4[::1])"
)
def run_kernel(
    mw: bool,
    start: int,
    key: np.ndarray,
    kdir: np.ndarray,
    analysable: np.ndarray,
    seq: np.ndarray,
    ack: np.ndarray,
    tflags: np.ndarray,
    win: np.ndarray,
    seglen: np.ndarray,
    ts: np.ndarray,
    frame: np.ndarray,
    wscale: np.ndarray,
    sack_sum: np.ndarray,
    ip_id: np.ndarray,
    fp: np.ndarray,
    key_conv: np.ndarray,
    cs: np.ndarray,
    ds: np.ndarray,
    pool: np.ndarray,
    holes: np.ndarray,
    dupring: np.ndarray,
    g: np.ndarray,
    conv_slot: np.ndarray,
    free_slots: np.ndarray,
    conv_out: np.ndarray,
    flags_out: np.ndarray,
    dupnum_out: np.ndarray,
    dupframe_out: np.ndarray,
    acks_frame_out: np.ndarray,
    ack_rtt_out: np.ndarray,
    irtt_out: np.ndarray,
    bif_out: np.ndarray,
    rto_out: np.ndarray,
    rto_frame_out: np.ndarray,
    orig_out: np.ndarray,
) -> int:
    """Analyse frames ``start..n-1``; return the index reached (``n`` when done).

    In mailwire mode (``mw``) ``conv_out`` is an input (the connection numbers of the
    Wireshark-compatible run), so both runs agree on what a connection is.

    State lives in slots (``conv_slot``: connection number -> slot), so that a finished
    connection's slot can be given to a new one; the caller brings a retired connection's state
    back (``KernelState.revive``) before a frame of it is run.
    """
    n = key.shape[0]
    conv_cap = conv_slot.shape[0]
    for i in range(start, n):
        # connections this frame may create: one, or in mailwire mode up to its given number
        # (a shard of connections sees every w-th one, so numbers jump); two slots at most
        # (a new connection, then a reused port pair's)
        top = g[G_NCONV]
        if mw and conv_out[i] + 1 > top:
            top = conv_out[i] + 1
        if g[G_FREE] < 0 or top + 1 >= conv_cap or g[G_NSLOTS] < 2:
            return i  # caller grows the pools and resumes here; nothing of frame i was touched
        known = conv_out[i] if mw else key_conv[key[i]]
        if known >= 0 and conv_slot[known] == SLOT_RETIRED:
            return i  # caller brings the connection's state back and resumes here
        k = key[i]
        kd = kdir[i]
        fl = tflags[i]
        s = seq[i]
        a = ack[i]
        w = win[i]
        ln = seglen[i]
        t = ts[i]
        fr = frame[i]
        f = 0  # flags of this frame
        has_ta = False

        # --- step 0: which connection; port reuse ---------------------------------------------
        if mw:
            c = conv_out[i]
            if g[G_NCONV] <= c:
                g[G_NCONV] = c + 1
            if conv_slot[c] < 0:
                _new_slot(c, k, cs, ds, g, conv_slot, free_slots)
        else:
            c = key_conv[k]
            if c < 0:
                c = _new_conv(k, key_conv, cs, ds, g, conv_slot, free_slots)
            fwd = 2 * conv_slot[c] + kd
            if (fl & (SYN | ACK)) == SYN and ds[fwd, D_BASE_SET] != 0:
                if s != ds[fwd, D_BASE_SEQ]:
                    c = _new_conv(k, key_conv, cs, ds, g, conv_slot, free_slots)
                    f |= F_REUSED_PORTS
            elif (fl & (SYN | ACK)) == (SYN | ACK) and ds[fwd, D_BASE_SET] != 0 and s != ds[fwd, D_BASE_SEQ]:
                ds[fwd, D_BASE_SEQ] = s
                f |= F_REUSED_PORTS
            conv_out[i] = c
        c = conv_slot[c]  # from here on, the state slot
        fwd = 2 * c + kd
        rev = 2 * c + 1 - kd

        dupnum_out[i] = 0
        dupframe_out[i] = -1
        acks_frame_out[i] = -1
        ack_rtt_out[i] = -1
        irtt_out[i] = -1
        bif_out[i] = -1
        rto_out[i] = -1
        rto_frame_out[i] = -1
        orig_out[i] = -1
        if not analysable[i]:
            flags_out[i] = f
            continue

        # --- mailwire: the same packet captured twice is a capture fact, not TCP behaviour ----
        if mw:
            is_dup = False
            for r in range(N_DUPRING):
                same = dupring[fwd, r, 0] == fp[i] and dupring[fwd, r, 2] != 0
                if same and t - dupring[fwd, r, 1] < (100_000_000 if ip_id[i] > 0 else 2_000_000):
                    is_dup = True
                    orig_out[i] = dupring[fwd, r, 2]
                    break
            if is_dup:
                flags_out[i] = F_DUPLICATE_FRAME
                continue
            pos = ds[fwd, D_DUP_POS]
            dupring[fwd, pos, 0] = fp[i]
            dupring[fwd, pos, 1] = t
            dupring[fwd, pos, 2] = fr
            ds[fwd, D_DUP_POS] = (pos + 1) % N_DUPRING

        # "unset" tests: Wireshark reads 0 as unset, mailwire has explicit bits
        if mw:
            nextseq_known = ds[fwd, D_NEXTSEQ_SET] != 0
            rev_lastack_known = ds[rev, D_LASTACK_SET] != 0
            rev_maxseq_known = ds[rev, D_MAXSEQ_SET] != 0
        else:
            nextseq_known = ds[fwd, D_NEXTSEQ] != 0
            rev_lastack_known = ds[rev, D_LASTACK] != 0
            rev_maxseq_known = ds[rev, D_MAXSEQ] != 0

        # base sequence numbers (relative numbering; also "was the SYN seen")
        if ds[fwd, D_BASE_SET] == 0:
            ds[fwd, D_BASE_SEQ] = s if (fl & SYN) else (s - 1) & M32
            ds[fwd, D_BASE_SET] = 1
        if ds[rev, D_BASE_SET] == 0 and (fl & ACK):
            ds[rev, D_BASE_SEQ] = (a - 1) & M32
            ds[rev, D_BASE_SET] = 1
        if fl & ACK:
            ds[rev, D_VALID_BIF] = 1

        nextseq = ds[fwd, D_NEXTSEQ]
        lastack = ds[fwd, D_LASTACK]
        fwin = ds[fwd, D_WINDOW]
        no_sfr = (fl & (SYN | FIN | RST)) == 0
        skip_fwd = False

        # --- step 1: zero window probe ---------------------------------------------------------
        if ln == 1 and s == nextseq and ds[rev, D_WINDOW] == 0:
            f |= F_ZERO_WINDOW_PROBE
            skip_fwd = True
        if not skip_fwd:
            # --- step 2: zero window
            if w == 0 and no_sfr:
                f |= F_ZERO_WINDOW
            # --- step 3: previous segment not captured
            if nextseq_known and _gt(s, nextseq) and (fl & RST) == 0:
                f |= F_LOST_SEGMENT
                ds[fwd, D_VALID_BIF] = 0
                if mw:  # remember the hole [nextseq, seq): bytes never captured
                    nh = ds[fwd, D_NHOLES]
                    if nh == N_HOLES:  # forget the oldest hole
                        for h in range(N_HOLES - 1):
                            holes[fwd, h, 0] = holes[fwd, h + 1, 0]
                            holes[fwd, h, 1] = holes[fwd, h + 1, 1]
                        nh -= 1
                    holes[fwd, nh, 0] = nextseq
                    holes[fwd, nh, 1] = s
                    ds[fwd, D_NHOLES] = nh + 1
            # --- step 4: keep-alive
            if (ln == 0 or ln == 1) and s == ((nextseq - 1) & M32) and no_sfr and (nextseq_known or not mw):
                if mw and ds[rev, D_WINDOW] == 0:
                    f |= F_ZERO_WINDOW_PROBE  # Linux probes a zero window with keep-alive segments
                else:
                    f |= F_KEEP_ALIVE
            # --- step 5: window update
            if ln == 0 and w != 0 and w != fwin and s == nextseq and a == lastack and no_sfr:
                f |= F_WINDOW_UPDATE
            # --- step 6: window full
            rscale = ds[rev, D_WIN_SCALE]
            if ln > 0 and rscale != -1 and no_sfr:
                sh = 0 if (ds[rev, D_IS_FIRST_ACK] != 0 or rscale == -2) else rscale
                edge = (ds[rev, D_LASTACK] + (ds[rev, D_WINDOW] << sh)) & M32
                if ((s + ln) & M32) == edge:
                    f |= F_WINDOW_FULL
            same = ln == 0 and w == fwin and s == nextseq and a == lastack and no_sfr
            # --- step 7: keep-alive ACK
            if same and w != 0 and (ds[rev, D_LASTSEGFLAGS] & F_KEEP_ALIVE):
                f |= F_KEEP_ALIVE_ACK
                skip_fwd = True
            # --- step 8: zero window probe ACK
            elif same and w == 0 and (ds[rev, D_LASTSEGFLAGS] & F_ZERO_WINDOW_PROBE):
                f |= F_ZERO_WINDOW_PROBE_ACK
                skip_fwd = True
            # --- step 8b: duplicate ACK
            elif same and w != 0:
                if ds[fwd, D_DUPACKNUM] == -1:
                    ds[fwd, D_DUPACKNUM] = 1
                else:
                    ds[fwd, D_DUPACKNUM] += 1
                f |= F_DUPLICATE_ACK
                dupnum_out[i] = ds[fwd, D_DUPACKNUM]
                dupframe_out[i] = ds[fwd, D_LASTNONDUPACK]

        # --- step 9: the ack moved: reset the dup-ACK counter ------------------------------------
        if a != lastack:
            ds[fwd, D_LASTNONDUPACK] = fr
            ds[fwd, D_DUPACKNUM] = 0
            ds[fwd, D_SACK_SEEN] = 0

        # --- step 10: ACKed unseen segment ---------------------------------------------------------
        if rev_maxseq_known and _gt(a, ds[rev, D_MAXSEQ]) and (fl & ACK):
            # reported once per hole: the boundary jumps to rev's nextseq (4.0; 4.2 reworked this)
            f |= F_ACK_LOST_SEGMENT
            ds[rev, D_MAXSEQ] = ds[rev, D_NEXTSEQ]
        if mw and (fl & ACK):  # holes the receiver acknowledged are capture loss, not reordering
            nh = ds[rev, D_NHOLES]
            h = 0
            while h < nh:
                if _le(holes[rev, h, 1], a):
                    for h2 in range(h, nh - 1):
                        holes[rev, h2, 0] = holes[rev, h2 + 1, 0]
                        holes[rev, h2, 1] = holes[rev, h2 + 1, 1]
                    nh -= 1
                else:
                    h += 1
            ds[rev, D_NHOLES] = nh

        # --- step 11: retransmission / fast / spurious / out-of-order --------------------------
        orig = -1
        not_adv = False
        end = (s + ln) & M32
        if (ln > 0 or (fl & (SYN | FIN))) and not (f & F_KEEP_ALIVE):
            not_adv = nextseq_known and _lt(s, nextseq)
            if ln > 1 and ((nextseq - 1) & M32) == s:
                not_adv = False  # new data right after a zero-window probe
            done = False
            do_rto = False
            if ln > 0 and rev_lastack_known and _le(end, ds[rev, D_LASTACK]):
                f |= F_SPURIOUS_RETRANSMISSION | F_RETRANSMISSION
                done = True
                do_rto = mw
            if mw and not done and not_adv:
                # bytes never captured before -> reordering (or late arrival); otherwise resent
                in_hole = False
                for h in range(ds[fwd, D_NHOLES]):
                    if _lt(s, holes[fwd, h, 1]) and _gt(end, holes[fwd, h, 0]):
                        in_hole = True
                if in_hole:
                    f |= F_OUT_OF_ORDER
                else:
                    thr = 20_000_000
                    if cs[c, C_FIRST_RTT_SET] != 0 and cs[c, C_FIRST_RTT] > thr:
                        thr = cs[c, C_FIRST_RTT]
                    dt = t - ds[rev, D_LASTACKTIME]
                    hint = ds[rev, D_DUPACKNUM] >= 2 or ds[rev, D_SACK_SEEN] != 0
                    if hint and ds[rev, D_LASTACK] == s and dt < thr:
                        f |= F_FAST_RETRANSMISSION | F_RETRANSMISSION
                    else:
                        f |= F_RETRANSMISSION
                    do_rto = True
                done = True
            if not mw and not done:
                dt = t - ds[rev, D_LASTACKTIME]
                # "or ln == 0": tshark 4.0.17 calls a bare FIN resent within 20 ms of rev's ACK
                # of its seq a fast retransmission without 2 dup ACKs (measured on the corpus)
                if (
                    not_adv
                    and (ds[rev, D_DUPACKNUM] >= 2 or ln == 0)
                    and ds[rev, D_LASTACK] == s
                    and dt < 20_000_000
                ):
                    f |= F_FAST_RETRANSMISSION | F_RETRANSMISSION
                    done = True
                if not done:
                    thres = cs[c, C_FIRST_RTT] if cs[c, C_FIRST_RTT] != 0 else 3_000_000
                    nxt = (end + (1 if (fl & (SYN | FIN)) else 0)) & M32
                    if not_adv and t - ds[fwd, D_NEXTSEQTIME] < thres and nextseq != nxt:
                        f |= F_OUT_OF_ORDER
                        done = True
                if not done and not_adv:
                    f |= F_RETRANSMISSION
                    do_rto = True
            if do_rto and not mw:
                # Wireshark: time since the oldest unacked segment of this direction
                rto_out[i] = t - ds[fwd, D_NEXTSEQTIME]
                rto_frame_out[i] = ds[fwd, D_NEXTSEQFRAME]
                p = ds[fwd, D_SEG_HEAD]
                while p >= 0:
                    rto_out[i] = t - pool[p, P_TS]
                    rto_frame_out[i] = pool[p, P_FRAME]
                    p = pool[p, P_NEXT]
            if mw and (f & (F_RETRANSMISSION | F_OUT_OF_ORDER)):
                # mailwire: the oldest record still listed that carried this sequence number
                p = ds[fwd, D_SEG_HEAD]
                while p >= 0:
                    if (_le(pool[p, P_SEQ], s) and _lt(s, pool[p, P_NEXTSEQ])) or pool[p, P_SEQ] == s:
                        if do_rto:
                            rto_out[i] = t - pool[p, P_TS]
                            rto_frame_out[i] = pool[p, P_FRAME]
                        orig = pool[p, P_ORIG]
                    p = pool[p, P_NEXT]
            if mw and not_adv:  # these bytes are no longer missing
                nh = ds[fwd, D_NHOLES]
                h = 0
                while h < nh:
                    lo = holes[fwd, h, 0]
                    hi = holes[fwd, h, 1]
                    if _le(s, lo) and _le(hi, end):  # fully filled
                        for h2 in range(h, nh - 1):
                            holes[fwd, h2, 0] = holes[fwd, h2 + 1, 0]
                            holes[fwd, h2, 1] = holes[fwd, h2 + 1, 1]
                        nh -= 1
                        continue
                    if _le(s, lo) and _gt(end, lo):
                        holes[fwd, h, 0] = end
                    elif _lt(s, hi) and _le(hi, end):
                        holes[fwd, h, 1] = s
                    h += 1
                ds[fwd, D_NHOLES] = nh
        if f & (F_RETRANSMISSION | F_OUT_OF_ORDER):
            orig_out[i] = orig

        # --- step 12: state update ------------------------------------------------------------------
        nxt = (s + ln) & M32
        if ln > 0 or (fl & (SYN | FIN)):
            if fl & (SYN | FIN):
                nxt = (nxt + 1) & M32
            if ds[fwd, D_SEG_COUNT] < MAX_UNACKED:
                p = g[G_FREE]
                g[G_FREE] = pool[p, P_NEXT]
                pool[p, P_SEQ] = s
                pool[p, P_NEXTSEQ] = nxt
                pool[p, P_FRAME] = fr
                pool[p, P_TS] = t
                pool[p, P_ORIG] = orig if orig >= 0 else fr
                pool[p, P_NEXT] = ds[fwd, D_SEG_HEAD]
                ds[fwd, D_SEG_HEAD] = p
                ds[fwd, D_SEG_COUNT] += 1
        is_zwp = (f & F_ZERO_WINDOW_PROBE) != 0
        if (_gt(nxt, nextseq) or not nextseq_known) and not is_zwp:
            ds[fwd, D_NEXTSEQ] = nxt
            ds[fwd, D_NEXTSEQ_SET] = 1
            ds[fwd, D_NEXTSEQFRAME] = fr
            ds[fwd, D_NEXTSEQTIME] = t
        maxseq_known = ds[fwd, D_MAXSEQ_SET] != 0 if mw else ds[fwd, D_MAXSEQ] != 0
        if (s == ds[fwd, D_MAXSEQ] or not maxseq_known) and not is_zwp:
            ds[fwd, D_MAXSEQ] = ds[fwd, D_NEXTSEQ]
            ds[fwd, D_MAXSEQ_SET] = 1
        ds[fwd, D_WINDOW] = w
        ds[fwd, D_LASTACK] = a
        if fl & ACK:
            ds[fwd, D_LASTACK_SET] = 1
        ds[fwd, D_LASTACKTIME] = t
        ds[fwd, D_LASTSEGFLAGS] = f
        ds[fwd, D_SACK_SUM] = sack_sum[i]
        if mw and sack_sum[i] > 0:
            ds[fwd, D_SACK_SEEN] = 1

        # --- step 13: ACK processing against rev's unacked list ----------------------------------
        prev = -1
        p = ds[rev, D_SEG_HEAD]
        while p >= 0:
            pnext = pool[p, P_NEXTSEQ]
            if a == pnext:
                has_ta = True
                acks_frame_out[i] = pool[p, P_FRAME]
                ack_rtt_out[i] = t - pool[p, P_TS]
            elif _gt(a, pool[p, P_SEQ]) and _le(a, pnext):
                pool[p, P_SEQ] = a  # partial ACK (e.g. of a TSO super-segment): trim
                continue
            elif _gt(pnext, a):
                prev = p
                p = pool[p, P_NEXT]
                continue
            nx = pool[p, P_NEXT]
            if prev < 0:
                ds[rev, D_SEG_HEAD] = nx
            else:
                pool[prev, P_NEXT] = nx
            pool[p, P_NEXT] = g[G_FREE]
            g[G_FREE] = p
            ds[rev, D_SEG_COUNT] -= 1
            p = nx

        # --- step 14: bytes in flight ---------------------------------------------------------------
        p = ds[fwd, D_SEG_HEAD]
        if ln != 0 and p >= 0 and ds[fwd, D_VALID_BIF] != 0:
            has_ta = True
            base = ds[fwd, D_BASE_SEQ]
            first = (pool[p, P_SEQ] - base) & M32
            last = (pool[p, P_NEXTSEQ] - base) & M32
            while p >= 0:
                v = (pool[p, P_NEXTSEQ] - base) & M32
                if v > last:
                    last = v
                v = (pool[p, P_SEQ] - base) & M32
                if v < first:
                    first = v
                p = pool[p, P_NEXT]
            inflight = (last - first - ds[rev, D_SACK_SUM]) & M32
            if 0 < inflight < 2_000_000_000:
                inflight -= 1 if (fl & (SYN | FIN)) else 0
                if inflight != 0:
                    bif_out[i] = inflight

        # --- connection-level: SYN time, initial RTT, window scale, first ACK ---------------------
        if fl & SYN:
            if not (fl & ACK):
                cs[c, C_MRU_SYN] = t
                cs[c, C_MRU_SYN_SET] = 1
            if wscale[i] >= 0:
                ds[fwd, D_WIN_SCALE] = min(wscale[i], 14)
            # verify_tcp_window_scaling()
            if ds[fwd, D_WIN_SCALE] == -1:
                ds[fwd, D_WIN_SCALE] = -2
                ds[rev, D_WIN_SCALE] = -2
            elif (fl & ACK) and ds[rev, D_WIN_SCALE] == -2:
                ds[fwd, D_WIN_SCALE] = -2
            ds[fwd, D_IS_FIRST_ACK] = 1
        if (fl & (SYN | ACK)) == ACK:
            syn_known = cs[c, C_MRU_SYN_SET] != 0 if mw else cs[c, C_MRU_SYN] != 0
            rtt_known = cs[c, C_FIRST_RTT_SET] != 0 if mw else cs[c, C_FIRST_RTT] != 0
            if syn_known and not rtt_known:
                cs[c, C_FIRST_RTT] = t - cs[c, C_MRU_SYN]
                cs[c, C_FIRST_RTT_SET] = 1
            ds[fwd, D_IS_FIRST_ACK] = 0
        if f != 0:
            has_ta = True
        rtt_known = cs[c, C_FIRST_RTT_SET] != 0 if mw else cs[c, C_FIRST_RTT] != 0
        if has_ta and rtt_known:
            irtt_out[i] = cs[c, C_FIRST_RTT]
        flags_out[i] = f
    return n


class KernelState:
    """All state one mode of the kernel carries from chunk to chunk (grown on demand).

    Per-connection state is held in *slots*; :meth:`retire` writes a finished connection's slot
    to a temporary file and gives the slot to the next new connection, so the memory follows the
    connections open at once, not all those of the capture. A frame of a retired connection
    (the last ACK of a close, a late retransmission) stops the kernel, which resumes once
    :meth:`revive` has read the state back: every frame is judged on the same state as if it had
    never left. What the connection records read at the end (:meth:`first_rtt`,
    :meth:`win_scale`, :meth:`base_seq`, :meth:`keys_of`) is kept per connection at retirement
    (seven numbers).
    """

    def __init__(self, mw: bool) -> None:
        self.mw = mw
        self.key_conv = np.full(1024, -1, dtype=np.int64)
        self.conv_slot = np.full(1024, SLOT_NONE, dtype=np.int64)
        self.cs = np.zeros((0, C_NFIELDS), dtype=np.int64)
        self.ds = np.zeros((0, D_NFIELDS), dtype=np.int64)
        # holes and the duplicate ring are mailwire mode's alone (every use is under `if mw`):
        # one row for the Wireshark mode, 640 bytes a connection less
        self.holes = np.zeros((0 if mw else 1, N_HOLES, 2), dtype=np.int64)
        self.dupring = np.zeros((0 if mw else 1, N_DUPRING, 3), dtype=np.int64)
        self.free_slots = np.zeros(0, dtype=np.int64)
        self.pool = np.zeros((0, P_NFIELDS), dtype=np.int64)
        self.g = np.zeros(G_NFIELDS, dtype=np.int64)
        self.g[G_FREE] = -1
        self._grow_pool(4096)
        self._grow_slots(1024)
        # retired connections: their slot's state in a temporary file (offset, words), and what
        # the records read at the end, per connection number (_KEPT columns)
        self._file = WordFile("mailwire-state-")
        self._at = np.zeros((0, 2), dtype=np.int64)
        self._kept = np.zeros((0, _K_NFIELDS), dtype=np.int64)
        self._released = False
        self.retired = 0  # connections retired (counted once per retirement)
        self.revived = 0  # connections brought back
        self.back: list[int] = []  # connections brought back since the caller last took them

    @property
    def n_conv(self) -> int:
        return int(self.g[G_NCONV])

    @property
    def slots(self) -> int:
        """State slots allocated (the memory the state takes: ~0.6 kB a slot, 1.2 kB in
        mailwire mode)."""
        return int(self.cs.shape[0])

    def _grow_pool(self, extra: int) -> None:
        old = self.pool.shape[0]
        pool = np.zeros((old + extra, P_NFIELDS), dtype=np.int64)
        pool[:old] = self.pool
        idx = np.arange(old, old + extra, dtype=np.int64)
        pool[idx, P_NEXT] = idx + 1
        pool[old + extra - 1, P_NEXT] = self.g[G_FREE]
        self.g[G_FREE] = old
        self.pool = pool

    def _grow_slots(self, extra: int) -> None:
        old = self.cs.shape[0]
        cap = old + extra
        self.cs = _grown(self.cs, cap)
        self.ds = _grown(self.ds, 2 * cap)
        if self.mw:
            self.holes = _grown(self.holes, 2 * cap)
            self.dupring = _grown(self.dupring, 2 * cap)
        # the stack pops from the top: new slots are taken lowest first
        # as long as the slots (a freed slot is pushed back); the first G_NSLOTS entries are free
        n = int(self.g[G_NSLOTS])
        stack = np.empty(cap, dtype=np.int64)
        stack[:extra] = np.arange(cap - 1, old - 1, -1)
        stack[extra : extra + n] = self.free_slots[:n]
        self.free_slots = stack
        self.g[G_NSLOTS] = n + extra

    def ensure_keys(self, n_keys: int) -> None:
        if n_keys > self.key_conv.shape[0]:
            new = np.full(max(n_keys, 2 * self.key_conv.shape[0]), -1, dtype=np.int64)
            new[: self.key_conv.shape[0]] = self.key_conv
            self.key_conv = new

    def _grow_convs(self, top: int) -> None:
        cap = max(2 * self.conv_slot.shape[0], top + 2)
        new = np.full(cap, SLOT_NONE, dtype=np.int64)
        new[: self.conv_slot.shape[0]] = self.conv_slot
        self.conv_slot = new

    def run(self, cols: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> None:
        """Run the kernel over one chunk's TCP frames (``cols``), writing ``out``."""
        i = 0
        n = cols["key"].shape[0]
        while True:
            i = run_kernel(
                self.mw, i, cols["key"], cols["kdir"], cols["analysable"], cols["seq"], cols["ack"],
                cols["tflags"], cols["win"], cols["seglen"], cols["ts"], cols["frame"], cols["wscale"],
                cols["sack_sum"], cols["ip_id"], cols["fp"], self.key_conv, self.cs, self.ds, self.pool,
                self.holes, self.dupring, self.g, self.conv_slot, self.free_slots, out["conv"],
                out["flags"], out["dupack_num"], out["dupack_frame"], out["acks_frame"], out["ack_rtt"],
                out["initial_rtt"], out["bytes_in_flight"], out["rto"], out["rto_frame"], out["orig_frame"],
            )  # fmt: skip
            if i >= n:
                return
            if self.g[G_FREE] < 0:
                self._grow_pool(max(4096, self.pool.shape[0]))
            top = int(self.g[G_NCONV])
            if self.mw:
                top = max(top, int(out["conv"][i]) + 1)
            if top + 1 >= self.conv_slot.shape[0]:
                self._grow_convs(top)
            if self.g[G_NSLOTS] < 2:
                self._grow_slots(max(1024, self.cs.shape[0]))
            c = int(out["conv"][i]) if self.mw else int(self.key_conv[cols["key"][i]])
            if c >= 0 and self.conv_slot[c] == SLOT_RETIRED:
                self.revive(c)

    # -- retirement ------------------------------------------------------------------------------
    def live(self, convs: np.ndarray) -> np.ndarray:
        """Those of the connection numbers ``convs`` that hold a slot."""
        convs = convs[convs < self.n_conv]
        return convs[self.conv_slot[convs] >= 0]

    def retire(self, convs: np.ndarray) -> int:
        """Write the state of connections ``convs`` (numbers holding a slot: :meth:`live`) to the
        temporary file and free their slots and unacked-segment records. Returns how many left;
        0 when the file cannot be written (the state stays where it was: same results)."""
        if convs.size == 0:
            return 0
        sl = self.conv_slot[convs]
        # a fixed part per connection (one vectorised gather), then its unacked records, if any
        fixed = [self.cs[sl], self.ds[2 * sl], self.ds[2 * sl + 1]]
        if self.mw:
            fixed += [
                self.holes[2 * sl].reshape(sl.shape[0], -1),
                self.holes[2 * sl + 1].reshape(sl.shape[0], -1),
            ]
            fixed += [
                self.dupring[2 * sl].reshape(sl.shape[0], -1),
                self.dupring[2 * sl + 1].reshape(sl.shape[0], -1),
            ]
        counts = np.zeros((sl.shape[0], 2), dtype=np.int64)
        heads = np.stack([self.ds[2 * sl, D_SEG_HEAD], self.ds[2 * sl + 1, D_SEG_HEAD]], axis=1)
        with_recs = np.flatnonzero((heads >= 0).any(axis=1))
        lists: dict[int, np.ndarray] = {}
        for j in with_recs.tolist():  # one step per connection with unacked segments left
            a, b = self._records(2 * int(sl[j])), self._records(2 * int(sl[j]) + 1)
            counts[j] = a.shape[0], b.shape[0]
            lists[j] = np.concatenate([a.ravel(), b.ravel()])
        head = np.concatenate([*fixed, counts], axis=1)
        if lists:
            blobs = [
                np.concatenate([head[j], lists[j]]) if j in lists else head[j] for j in range(head.shape[0])
            ]
            sizes = np.array([b.shape[0] for b in blobs], dtype=np.int64)
            data = np.concatenate(blobs)
        else:
            sizes = np.full(head.shape[0], head.shape[1], dtype=np.int64)
            data = head.ravel()
        try:
            at = self._file.append(data)
        except OSError:
            return 0  # no room: these connections keep their slots
        nconv = self.n_conv
        if self._at.shape[0] < nconv:
            self._at = _grown(self._at, max(nconv, 2 * self._at.shape[0], 1024))
            if not self.mw:
                self._kept = _grown(self._kept, self._at.shape[0])
        if not self.mw:  # the records read the Wireshark mode's (release(keep_summary=True))
            self._kept[convs] = self._summary(sl)
        self._at[convs, 0] = at + 8 * (np.cumsum(sizes) - sizes)
        self._at[convs, 1] = sizes
        for j in with_recs.tolist():
            _free_list(2 * int(sl[j]), self.ds, self.pool, self.g)
            _free_list(2 * int(sl[j]) + 1, self.ds, self.pool, self.g)
        if self.mw:
            self.holes[2 * sl], self.holes[2 * sl + 1] = 0, 0
            self.dupring[2 * sl], self.dupring[2 * sl + 1] = 0, 0
        self.conv_slot[convs] = SLOT_RETIRED
        n = int(self.g[G_NSLOTS])
        self.free_slots[n : n + sl.shape[0]] = sl[::-1]
        self.g[G_NSLOTS] = n + sl.shape[0]
        self.retired += int(convs.shape[0])
        return int(convs.shape[0])

    def _records(self, d: int) -> np.ndarray:
        """Direction row ``d``'s unacked-segment records, in list order (newest first)."""
        out = []
        p = int(self.ds[d, D_SEG_HEAD])
        while p >= 0:
            out.append(p)
            p = int(self.pool[p, P_NEXT])
        return self.pool[np.array(out, dtype=np.int64)] if out else np.zeros((0, P_NFIELDS), np.int64)

    def revive(self, c: int) -> None:
        """Bring retired connection ``c``'s state back into a free slot (exactly as it left)."""
        if self.g[G_NSLOTS] < 1:
            self._grow_slots(max(1024, self.cs.shape[0]))
        off, size = (int(v) for v in self._at[c])
        blob = self._file.read(off, size, f"state of connection {c}")
        n = int(self.g[G_NSLOTS]) - 1
        s = int(self.free_slots[n])
        self.g[G_NSLOTS] = n
        self.cs[s] = blob[:C_NFIELDS]
        at = C_NFIELDS
        self.ds[2 * s] = blob[at : at + D_NFIELDS]
        self.ds[2 * s + 1] = blob[at + D_NFIELDS : at + 2 * D_NFIELDS]
        at += 2 * D_NFIELDS
        if self.mw:
            self.holes[2 * s : 2 * s + 2] = blob[at : at + 2 * N_HOLES * 2].reshape(2, N_HOLES, 2)
            at += 2 * N_HOLES * 2
            self.dupring[2 * s : 2 * s + 2] = blob[at : at + 2 * N_DUPRING * 3].reshape(2, N_DUPRING, 3)
            at += 2 * N_DUPRING * 3
        counts = blob[at : at + 2].tolist()
        at += 2
        for d, k in zip((2 * s, 2 * s + 1), counts, strict=True):
            recs = blob[at : at + k * P_NFIELDS].reshape(k, P_NFIELDS)
            at += k * P_NFIELDS
            head = -1
            for r in range(k - 1, -1, -1):  # linked back to front, so the list keeps its order
                if self.g[G_FREE] < 0:
                    self._grow_pool(max(4096, self.pool.shape[0]))
                p = int(self.g[G_FREE])
                self.g[G_FREE] = self.pool[p, P_NEXT]
                self.pool[p] = recs[r]
                self.pool[p, P_NEXT] = head
                head = p
            self.ds[d, D_SEG_HEAD] = head
        self.conv_slot[c] = s
        self.revived += 1
        self.back.append(c)

    def _summary(self, sl: np.ndarray) -> np.ndarray:
        """The _KEPT columns of slots ``sl``."""
        out = np.empty((sl.shape[0], _K_NFIELDS), dtype=np.int64)
        out[:, _K_KEY] = self.cs[sl, C_KEY]
        out[:, _K_RTT] = np.where(self.cs[sl, C_FIRST_RTT_SET] != 0, self.cs[sl, C_FIRST_RTT], -1)
        for d in (0, 1):
            rows = 2 * sl + d
            out[:, _K_WSCALE + d] = self.ds[rows, D_WIN_SCALE]
            out[:, _K_BASE + d] = self.ds[rows, D_BASE_SEQ]
            out[:, _K_BASE_SET + d] = self.ds[rows, D_BASE_SET]
        return out

    def _per_conv(self) -> np.ndarray:
        """The _KEPT columns of every connection, live or retired."""
        nc = self.n_conv
        out = np.zeros((nc, _K_NFIELDS), dtype=np.int64)
        m = min(nc, self._kept.shape[0])
        out[:m] = self._kept[:m]
        live = np.flatnonzero(self.conv_slot[:nc] >= 0)
        if live.size:
            out[live] = self._summary(self.conv_slot[live])
        return out

    def release(self, *, keep_summary: bool = False) -> None:
        """Free the per-connection state once the last chunk is done (the end-of-capture records
        are built after this). ``keep_summary``: keep what :meth:`first_rtt`, :meth:`win_scale`,
        :meth:`base_seq` and :meth:`keys_of` read. No chunk may be run after this."""
        if keep_summary and not self._released:
            self._kept, self._at = self._per_conv(), np.zeros((0, 2), np.int64)
        elif not keep_summary:
            self._kept, self._at = np.zeros((0, _K_NFIELDS), np.int64), np.zeros((0, 2), np.int64)
        self._released = True
        self.conv_slot = np.full(self.n_conv, SLOT_RETIRED, dtype=np.int64)
        self.pool = np.zeros((0, P_NFIELDS), dtype=np.int64)
        self.holes = np.zeros((0, N_HOLES, 2), dtype=np.int64)
        self.dupring = np.zeros((0, N_DUPRING, 3), dtype=np.int64)
        self.key_conv = np.zeros(0, dtype=np.int64)
        self.cs, self.ds = np.zeros((0, C_NFIELDS), np.int64), np.zeros((0, D_NFIELDS), np.int64)
        self.free_slots = np.zeros(0, dtype=np.int64)
        self._file.close()

    def _columns(self) -> np.ndarray:
        return self._kept[: self.n_conv] if self._released else self._per_conv()

    def keys_of(self) -> npt.NDArray[np.int64]:
        """Key (``KeyRegistry`` index) per connection."""
        return self._columns()[:, _K_KEY].copy()

    def first_rtt(self) -> npt.NDArray[np.int64]:
        """Initial RTT per connection in ns, -1 when unknown."""
        return self._columns()[:, _K_RTT].copy()

    def win_scale(self) -> npt.NDArray[np.int64]:
        """Window scale per connection direction (row 2c+d): >= 0, -1 unknown, -2 not used."""
        return self._columns()[:, _K_WSCALE : _K_WSCALE + 2].ravel().copy()

    def base_seq(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(base sequence number, known) per connection direction (row 2c+d)."""
        cols = self._columns()
        return cols[:, _K_BASE : _K_BASE + 2].ravel().copy(), cols[
            :, _K_BASE_SET : _K_BASE_SET + 2
        ].ravel() != 0


# KernelState._kept columns: what the connection records read of a connection's kernel state
_K_KEY, _K_RTT, _K_WSCALE, _K_BASE, _K_BASE_SET = 0, 1, 2, 4, 6
_K_NFIELDS = 8


def _grown(a: np.ndarray, rows: int) -> np.ndarray:
    new = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
    new[: a.shape[0]] = a
    return new


__all__ = [
    "DIFFERENCES",
    "FLAG_NAMES",
    "WIRESHARK_FLAGS",
    "Flag",
    "KernelState",
    "flag_names",
    "run_kernel",
]

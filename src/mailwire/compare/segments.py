"""Segment matching across two captures: every transmission upstream paired with its arrival downstream.

Theory of operation
-------------------
All packets of matched (non-proxy) connections from both captures become *instances*: capture
side, row, A-half (the direction of the upstream connection it belongs to), time on A's clock and
an identity key in A's sequence space (B's seq/ack are translated by the per-direction delta from
``match``). Per half the clock stage says which capture sees it first: that capture is the
*upstream* (U) of the instance, the other the *downstream* (D).

1. **Exact**: instances with the same key are transmissions of the same packet. Retransmissions
   and duplicates are counted, never collapsed: when a key has as many U as D instances, they pair
   in time order; otherwise an IPv4 id occurring once on each side pairs them (the tie-breaker:
   each retransmission gets a new id), and the rest pair by time: each D instance takes the latest
   U instance not later than itself (a later one when none is earlier: a clock error, counted),
   one D per U; surplus D instances are duplicates. IP id is never part of the key (TSO rewrites
   it, IPv6 has none, some NATs change it).
2. **By byte range** (TSO/GSO upstream, GRO/LRO downstream): leftover data segments are matched
   by containment in the same half: a U segment whose bytes are covered by several D segments is
   delivered (split); a U segment inside a larger D segment is delivered (coalesced).
3. **What is left**: U instances are lost, unless the downstream capture was not running when
   they would have arrived (outside the window, not loss) or the downstream capture holds an ACK
   covering data it never captured (capture loss: the downstream *capture* dropped it). D
   instances with no U counterpart are injected (inside the upstream window) or outside it.

Everything is column operations on the concatenated instances (sort, searchsorted, bincount).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mailwire.compare.clock import Clock, estimate
from mailwire.compare.flows import ACK, FIN, RST, SYN, TCP, Digest, group_ids, mix
from mailwire.compare.match import ConnMatch
from mailwire.compare.match import unique_pairs as _unique_pairs

if TYPE_CHECKING:
    import numpy.typing as npt

    I64 = npt.NDArray[np.int64]


# instance status
MATCHED = 0
SPLIT = 1  # delivered, matched by byte range (TSO split / GRO coalesce)
LOST = 2
OUTSIDE = 3  # the other capture was not running: neither loss nor injection
CAPTURE_LOSS = 4
DUPLICATE = 5
INJECTED = 6
MISSED_UPSTREAM = 7  # seen downstream only, inside a stretch the upstream capture saw: it missed it

STATUS_NAMES = {
    MATCHED: "matched",
    SPLIT: "matched_by_range",
    LOST: "lost",
    OUTSIDE: "outside_window",
    CAPTURE_LOSS: "capture_loss",
    DUPLICATE: "duplicate",
    INJECTED: "injected",
    MISSED_UPSTREAM: "missed_by_upstream_capture",
}

_MASK = 0xFFFFFFFF


@dataclass
class Instances:
    """One row per packet of matched connections, from both captures (A rows first)."""

    side: npt.NDArray[np.int8]  # 0 = capture A, 1 = capture B
    row: I64  # row in that capture's digest
    half: I64  # A half (2 * A conn + A fdir)
    t: I64  # timestamp on A's clock, ns
    key: npt.NDArray[np.uint64]
    up: npt.NDArray[np.bool_]  # this instance is on the upstream side of its direction
    a_to_b: npt.NDArray[np.bool_]  # its direction goes from A to B
    rel: I64  # TCP: relative seq in A's space (base - 2**30 offset); 0 otherwise
    plen: I64
    flags: I64
    ip_id: I64  # IPv4 id (-1 for IPv6): a tie-breaker between retransmissions, never a key
    is_tcp: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int8]
    partner: I64  # index of the paired instance (exact matches), -1 otherwise
    ack_rel: I64  # relative ACK in the acked half's space; -1 without ACK
    n_a: int = 0
    late_pairs: int = 0  # D instances only explainable by arriving before they left (clock error)
    frame_dups: int = 0  # duplicate frames within one capture (see mark_frame_duplicates)
    d_copies: I64 | None = None  # per instance: downstream copies of its key
    covered: npt.NDArray[np.float64] | None = None  # per instance: bytes covered by range matching


def _fields(d: Digest, rows: I64, delta_seq: np.ndarray, delta_ack: np.ndarray) -> dict[str, np.ndarray]:
    c = d.c
    seq = (c["seq"][rows].astype(np.int64) - delta_seq.astype(np.int64)) & _MASK
    flags = c["tcp_flags"][rows].astype(np.int64)
    ack = (c["ack"][rows].astype(np.int64) - delta_ack.astype(np.int64)) & _MASK
    ackv = np.where((flags & ACK) != 0, ack, 0)
    return {"seq": seq, "ack": ackv, "flags": flags, "plen": c["payload_len"][rows].astype(np.int64)}


def build_instances(a: Digest, b: Digest, m: ConnMatch, use_payload: bool) -> Instances:
    """Instances of both captures with keys in A's sequence space; B times still on B's clock."""
    ok_a = (m.a2b >= 0) & np.array([meth != "full_proxy" for meth in m.method], dtype=bool)
    if m.unanswered is not None:
        ok_a |= m.unanswered
    ra = np.flatnonzero(ok_a[a.c["conn"]]) if len(a) else np.zeros(0, np.int64)
    cb_a = m.b2a[b.c["conn"]] if len(b) else np.zeros(0, np.int64)
    if len(b) and a.n_conns:
        rb = np.flatnonzero((cb_a >= 0) & ok_a[np.maximum(cb_a, 0)])
    else:
        rb = np.zeros(0, np.int64)
    ha = a.c["half"][ra]
    ca_b = cb_a[rb]
    hb = 2 * ca_b + (b.c["fdir"][rb] ^ m.flip[ca_b].astype(np.int64))
    zero = np.zeros(ra.size, np.uint32)
    fa = _fields(a, ra, zero, zero)
    fb = _fields(b, rb, m.delta[hb], m.delta[hb ^ 1])
    half = np.concatenate([ha, hb])
    seq = np.concatenate([fa["seq"], fb["seq"]])
    ackv = np.concatenate([fa["ack"], fb["ack"]])
    flags = np.concatenate([fa["flags"], fb["flags"]])
    plen = np.concatenate([fa["plen"], fb["plen"]])

    def col(name: str) -> np.ndarray:
        return np.concatenate([a.c[name][ra], b.c[name][rb]])

    proto = col("proto")
    is_tcp = proto == TCP
    ph = col("phash") if use_payload else np.zeros(half.size, np.uint64)
    k_tcp = mix(half, seq, ackv, flags & (FIN | SYN | RST | ACK), plen, ph)
    k_oth = mix(half, proto.astype(np.int64) + 1000, col("ip_len"), col("icmp_type"), ph)
    key = np.where(is_tcp, k_tcp, k_oth)
    t = np.concatenate([a.c["ts_ns"][ra], b.c["ts_ns"][rb]])
    side = np.concatenate([np.zeros(ra.size, np.int8), np.ones(rb.size, np.int8)])
    # relative sequence in A's space per half, base = first seen seq - 2**30 (room for older data)
    n_h = 2 * a.n_conns
    first = np.full(n_h, half.size, dtype=np.int64)
    tcp_idx = np.flatnonzero(is_tcp)
    np.minimum.at(first, half[tcp_idx], tcp_idx)
    base = np.zeros(n_h, dtype=np.int64)
    okb = first < half.size
    base[okb] = (seq[first[okb]] - (1 << 30)) & _MASK
    rel = np.where(is_tcp, (seq - base[half]) & _MASK, 0)
    inst = Instances(
        side=side,
        row=np.concatenate([ra, rb]).astype(np.int64),
        half=half,
        t=t,
        key=key,
        up=np.zeros(half.size, dtype=bool),
        a_to_b=np.zeros(half.size, dtype=bool),
        rel=rel,
        plen=np.where(plen > 0, plen, 0),
        flags=np.where(is_tcp, flags, 0),
        ip_id=col("ip_id").astype(np.int64),
        is_tcp=is_tcp,
        status=np.full(half.size, -1, np.int8),
        partner=np.full(half.size, -1, np.int64),
        ack_rel=np.where(is_tcp & ((flags & ACK) != 0), (ackv - base[half ^ 1]) & _MASK, -1),
        n_a=int(ra.size),
    )
    return inst


def clock_pairs(inst: Instances) -> tuple[I64, I64]:
    """Instance pairs (A, B) for the clock: keys occurring once in A, first copy in B."""
    na = inst.n_a
    ka, kb = inst.key[:na], inst.key[na:]
    ua, ia, ca = np.unique(ka, return_index=True, return_counts=True)
    ok = inst.status[na:] != DUPLICATE
    ub, ib = np.unique(kb[ok], return_index=True)
    ib = np.flatnonzero(ok)[ib]
    _, xa, xb = np.intersect1d(ua[ca == 1], ub, assume_unique=True, return_indices=True)
    return ia[ca == 1][xa].astype(np.int64), (ib[xb] + na).astype(np.int64)


def mark_frame_duplicates(inst: Instances, a: Digest, b: Digest, window_ns: int = 5_000_000) -> None:
    """Duplicate *frames* within one capture (same packet captured twice: two interfaces, a
    mirror port): same key and IP id as the previous copy in that capture, within ``window_ns``.
    They are counted as duplicates, never paired and never taken for loss."""
    ipid = np.concatenate([a.c["ip_id"][inst.row[: inst.n_a]], b.c["ip_id"][inst.row[inst.n_a :]]])
    o = np.lexsort((inst.t, inst.key, inst.side))
    same = np.zeros(o.size, dtype=bool)
    if o.size > 1:
        k, sd, t, ii = inst.key[o], inst.side[o], inst.t[o], ipid[o]
        same[1:] = (
            (k[1:] == k[:-1]) & (sd[1:] == sd[:-1]) & (ii[1:] == ii[:-1]) & (t[1:] - t[:-1] <= window_ns)
        )
    inst.status[o[same]] = DUPLICATE
    inst.frame_dups = int(same.sum())


def orient(inst: Instances, a: Digest, clock: Clock, forward: npt.NDArray[np.int8]) -> None:
    """Put B's times on A's clock and say, per instance, its direction and whether it is upstream."""
    na = inst.n_a
    inst.t[na:] = clock.b_to_a(inst.t[na:])
    # direction per half; unknown halves: the client's direction is taken to flow A -> B
    fw = forward.copy()
    unknown = np.flatnonzero(fw < 0)
    if unknown.size:
        fw[unknown] = (a.conn_client[unknown // 2] == (unknown % 2)).astype(np.int8)
    inst.a_to_b = fw[inst.half] == 1
    inst.up = (inst.side == 0) == inst.a_to_b


def _pair_exact(inst: Instances, slack_ns: int) -> None:
    """Exact-key pairing of U and D instances (see module docstring, step 1)."""
    free = inst.status < 0
    u = np.flatnonzero(inst.up & free)
    dn = np.flatnonzero(~inst.up & free)
    if u.size == 0 or dn.size == 0:
        return
    gid, ng = group_ids(inst.key)
    cu = np.bincount(gid[u], minlength=ng)
    cd = np.bincount(gid[dn], minlength=ng)
    # U and D each sorted by (group, time)
    us = u[np.lexsort((inst.t[u], gid[u]))]
    ds = dn[np.lexsort((inst.t[dn], gid[dn]))]
    equal = cu == cd
    ue, de = us[equal[gid[us]]], ds[equal[gid[ds]]]
    inst.partner[ue], inst.partner[de] = de, ue
    # unequal groups: D takes the latest U not later than itself (+ slack)
    uq = us[~equal[gid[us]] & (cd[gid[us]] > 0)]
    dq = ds[~equal[gid[ds]] & (cu[gid[ds]] > 0)]
    if uq.size and dq.size:
        # tie-breaker: among transmissions of the same packet, an IPv4 id occurring once on each
        # side pairs them (Linux gives each retransmission a new id; a NAT keeps it)
        vu, vd = uq[inst.ip_id[uq] >= 0], dq[inst.ip_id[dq] >= 0]
        if vu.size and vd.size:
            iu, idd = _unique_pairs(mix(inst.key[vu], inst.ip_id[vu]), mix(inst.key[vd], inst.ip_id[vd]))
            pu, pd = vu[iu], vd[idd]
            inst.partner[pu], inst.partner[pd] = pd, pu
            uq = uq[inst.partner[uq] < 0]
            dq = dq[inst.partner[dq] < 0]
    if uq.size and dq.size:
        gu, gd = gid[uq], gid[dq]
        # composite sort: group major, time minor; U before D on ties
        allx = np.concatenate([uq, dq])
        g = np.concatenate([gu, gd])
        tt = np.concatenate([inst.t[uq], inst.t[dq] + slack_ns])
        isd = np.concatenate([np.zeros(uq.size, np.int8), np.ones(dq.size, np.int8)])
        o = np.lexsort((isd, tt, g))
        allx, g, isd = allx[o], g[o], isd[o]
        pos = np.arange(allx.size)
        last_u = np.maximum.accumulate(np.where(isd == 0, pos, -1))
        nxt = np.where(isd == 0, pos, allx.size)
        next_u = np.minimum.accumulate(nxt[::-1])[::-1]
        dpos = np.flatnonzero(isd == 1)
        cand = last_u[dpos]
        good = (cand >= 0) & (g[np.maximum(cand, 0)] == g[dpos])
        nu = next_u[dpos]
        alt = (~good) & (nu < allx.size) & (g[np.minimum(nu, allx.size - 1)] == g[dpos])
        cand = np.where(good, cand, np.where(alt, nu, -1))
        inst.late_pairs += int(alt.sum())
        okc = cand >= 0
        dsel, csel = dpos[okc], cand[okc]
        # one D per U: the earliest D wins (dpos is already time-ordered within the group)
        _, first_idx = np.unique(csel, return_index=True)
        dwin, uwin = allx[dsel[first_idx]], allx[csel[first_idx]]
        inst.partner[dwin], inst.partner[uwin] = uwin, dwin
    paired = inst.partner >= 0
    inst.status[paired] = MATCHED
    # leftovers: D with some U of its key are duplicates, others stay unresolved for now
    dleft = dn[~paired[dn]]
    inst.status[dleft[cu[gid[dleft]] > 0]] = DUPLICATE
    inst.d_copies = cd[gid]


def _contain(inst: Instances, big: I64, small: I64) -> tuple[I64, np.ndarray]:
    """Small segments lying inside a big one of the same half.

    Returns, per ``small``, the index into ``big`` of its container (-1 if none), and per ``big``
    the number of bytes covered by contained small segments.
    """
    cover = np.zeros(big.size, dtype=np.float64)
    if big.size == 0 or small.size == 0:
        return np.full(small.size, -1, np.int64), cover
    kb = (inst.half[big] << 32) | inst.rel[big]
    o = np.lexsort((inst.t[big], kb))
    kbs = kb[o]
    ks = (inst.half[small] << 32) | inst.rel[small]
    idx = np.searchsorted(kbs, ks, side="right") - 1
    ok = idx >= 0
    j = o[np.maximum(idx, 0)]
    ok &= inst.half[big[j]] == inst.half[small]
    ok &= inst.rel[big[j]] + inst.plen[big[j]] >= inst.rel[small] + inst.plen[small]
    ok &= inst.plen[big[j]] > inst.plen[small]
    res = np.where(ok, j, -1)
    cover += np.bincount(j[ok], weights=inst.plen[small][ok], minlength=big.size)
    return res, cover


def _pair_ranges(inst: Instances) -> None:
    """Byte-range matching of the TCP data left over by exact pairing (step 2)."""
    left = (inst.status < 0) & inst.is_tcp & (inst.plen > 0)
    u = np.flatnonzero(left & inst.up)
    dn = np.flatnonzero(left & ~inst.up)
    # TSO/GSO: a big upstream segment covered by several downstream pieces
    cont, cover = _contain(inst, u, dn)
    got = cont >= 0
    inst.status[dn[got]] = SPLIT
    full = cover >= inst.plen[u]
    inst.status[u[full]] = SPLIT
    inst.covered = np.zeros(inst.half.size)
    inst.covered[u] = cover
    # GRO/LRO: small upstream segments inside a big downstream one
    u2 = u[~full]
    d2 = dn[~got]
    cont2, cover2 = _contain(inst, d2, u2)
    got2 = cont2 >= 0
    inst.status[u2[got2]] = SPLIT
    inst.status[d2[cover2 > 0]] = SPLIT


def _classify_leftovers(
    inst: Instances, a: Digest, b: Digest, clock: Clock, margin_ns: dict[bool, int]
) -> None:
    """Step 3: lost / capture loss / outside window; injected / outside window."""
    first = {0: a.first_ts, 1: int(clock.b_to_a(np.array([b.first_ts]))[0])}
    last = {0: a.last_ts, 1: int(clock.b_to_a(np.array([b.last_ts]))[0])}
    # max relative ACK per (capture side, acked half), for the capture-loss rule
    n_h = int(inst.half.max()) + 1 if inst.half.size else 0
    ack_rel = inst.ack_rel
    maxack = np.full((2, max(n_h, 1)), -1, dtype=np.int64)
    has = ack_rel >= 0
    np.maximum.at(maxack, (inst.side[has].astype(np.int64), inst.half[has] ^ 1), ack_rel[has])
    cd = inst.d_copies if inst.d_copies is not None else np.zeros(inst.half.size, np.int64)
    # sequence space each packet occupies (SYN and FIN count one)
    span = inst.plen + ((inst.flags & SYN) != 0) + ((inst.flags & FIN) != 0)
    # time span of each (capture side, half) in that capture
    key = inst.side.astype(np.int64) * max(n_h, 1) + inst.half
    t_min = np.full(2 * max(n_h, 1), np.iinfo(np.int64).max, dtype=np.int64)
    t_max = np.full(2 * max(n_h, 1), np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(t_min, key, inst.t)
    np.maximum.at(t_max, key, inst.t)
    left = np.flatnonzero(inst.status < 0)
    for ab in (True, False):
        # direction A->B: upstream capture 0, downstream 1; B->A the reverse
        us, ds = (0, 1) if ab else (1, 0)
        mg = margin_ns[ab]
        sel = left[inst.a_to_b[left] == ab]
        uu = sel[inst.up[sel]]
        t = inst.t[uu]
        inside = (t >= first[ds]) & (t + mg <= last[ds])
        inst.status[uu[~inside]] = OUTSIDE
        lost = uu[inside]
        end = inst.rel[lost] + span[lost]
        acked = inst.is_tcp[lost] & (span[lost] > 0) & (cd[lost] == 0) & (maxack[ds, inst.half[lost]] >= end)
        inst.status[lost[acked]] = CAPTURE_LOSS
        inst.status[lost[~acked]] = LOST
        dd = sel[~inst.up[sel]]
        t = inst.t[dd]
        inside = (t >= first[us] + mg) & (t <= last[us])
        # not a reset, and the upstream capture saw this direction both before and after it
        uk = us * max(n_h, 1) + inst.half[dd]
        missed = inside & ((inst.flags[dd] & RST) == 0) & (t_min[uk] < t) & (t_max[uk] > t)
        inst.status[dd[inside & ~missed]] = INJECTED
        inst.status[dd[missed]] = MISSED_UPSTREAM
        inst.status[dd[~inside]] = OUTSIDE


def match_segments(
    a: Digest,
    b: Digest,
    m: ConnMatch,
    use_payload: bool = True,
) -> tuple[Instances, Clock]:
    """Estimate the clock, then pair, range-match and classify every packet of matched connections."""
    inst = build_instances(a, b, m, use_payload)
    mark_frame_duplicates(inst, a, b)
    ia, ib = clock_pairs(inst)
    clock, forward = estimate(inst.t[ia], inst.t[ib], inst.half[ia], 2 * a.n_conns)
    orient(inst, a, clock, forward)
    slack = int(max(clock.violation_ns, 0.0)) + 1_000_000  # 1 ms + measured clock inconsistency
    _pair_exact(inst, slack)
    _pair_ranges(inst)
    margin: dict[bool, int] = {}
    for ab, name in ((True, "a_to_b"), (False, "b_to_a")):
        dmax = clock.in_flight.get(name, 0.0)  # not the max: one mispaired resend would set it
        margin[ab] = int(max(2.0 * dmax * 1e9, 2_000_000)) + slack
    _classify_leftovers(inst, a, b, clock, margin)
    return inst, clock


__all__ = [
    "CAPTURE_LOSS",
    "DUPLICATE",
    "INJECTED",
    "LOST",
    "MATCHED",
    "MISSED_UPSTREAM",
    "OUTSIDE",
    "SPLIT",
    "STATUS_NAMES",
    "Instances",
    "build_instances",
    "clock_pairs",
    "match_segments",
    "orient",
]

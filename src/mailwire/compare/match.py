"""Connection matching across two captures, robust to NAT/PAT, SNAT, sequence rewriting and proxies.

Theory of operation
-------------------
Addresses and ports are what a translating box changes, so they are the *last* thing we key on.
Connections are matched by votes of packets that are unique within their capture:

1. **Packet identity** (the common case, and plain NAT/PAT/SNAT): a TCP packet is identified by
   (seq, ack, SYN/FIN/RST/ACK bits, payload length, payload fingerprint); a non-TCP packet by
   (protocol, IP length, transport-bytes fingerprint). A key occurring once in each capture is a
   vote for the pair of half-connections carrying it. Each connection of the upstream capture is
   given the downstream connection with the most votes (greedy, best pairs first, one-to-one).
   Whether the 5-tuple is the same or was translated is reported as the method.
2. **Payload only** (sequence numbers rewritten, or a full proxy terminating TCP): for the
   connections still unmatched, data segments vote by (payload length, fingerprint). The sequence
   delta between the captures is then the mode of ``seq_b - seq_a``: one byte stream relayed keeps
   every line at the same stream offset, so at least 95 % of the votes must agree on it (similar
   dialogues of two different sessions do not). One direction rewritten is a
   sequence-randomising firewall (segment-level comparison stays valid); independent ISNs in both
   directions or different segmentation is a full proxy, compared at byte-stream level only (the
   same SMTP dialogue, byte counts per direction).
3. **5-tuple**: connections with the same endpoints that no packet tied together (e.g. everything
   after the handshake lost) are paired when the tuple is unique in both captures.

The result says, per upstream connection, its downstream partner, whether the direction flag is
flipped between the two captures' canonical orientations, the per-direction sequence delta and how
the match was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mailwire.compare.flows import ACK, FIN, RST, SYN, TCP, Digest, group_ids, mix

if TYPE_CHECKING:
    import numpy.typing as npt

    I64 = npt.NDArray[np.int64]


METHOD_SAME_TUPLE = "5-tuple"
METHOD_NAT = "nat"  # packets identical, addresses and/or ports translated
METHOD_SEQ_REWRITE = "seq_rewrite"
METHOD_FULL_PROXY = "full_proxy"
METHOD_TUPLE_ONLY = "5-tuple-only"
AGREE = 0.95  # share of payload votes that must agree on one sequence delta per direction


@dataclass
class ConnMatch:
    """Connection pairing between upstream capture A and downstream capture B."""

    a2b: I64  # per A conn: B conn or -1
    b2a: I64  # per B conn: A conn or -1
    flip: npt.NDArray[np.bool_]  # per A conn: B's fdir == A's fdir ^ flip
    delta: npt.NDArray[np.uint32]  # per A half: seq_b - seq_a (mod 2**32) of that direction
    method: list[str]  # per A conn ("" when unmatched)
    votes: I64  # per A conn
    unanswered: npt.NDArray[np.bool_] | None = None  # per A conn: attempt that never got through

    def is_proxy(self, conn_a: int) -> bool:
        return self.method[conn_a] == METHOD_FULL_PROXY


def packet_keys(d: Digest, use_payload: bool) -> npt.NDArray[np.uint64]:
    """Address-free identity of each packet (see the module docstring)."""
    c = d.c
    flags = c["tcp_flags"].astype(np.int64)
    is_tcp = c["proto"] == TCP
    ackv = np.where((flags & ACK) != 0, c["ack"].astype(np.int64), 0)
    ph = c["phash"] if use_payload else np.zeros(len(d), np.uint64)
    k_tcp = mix(c["seq"], ackv, flags & (FIN | SYN | RST | ACK), c["payload_len"], ph)
    k_other = mix(c["proto"].astype(np.int64) + 1000, c["ip_len"], c["icmp_type"], ph)
    return np.where(is_tcp, k_tcp, k_other)


def unique_pairs(ka: np.ndarray, kb: np.ndarray) -> tuple[I64, I64]:
    """Row pairs (ia, ib) whose key occurs exactly once in each side."""
    ua, ia, ca = np.unique(ka, return_index=True, return_counts=True)
    ub, ib, cb = np.unique(kb, return_index=True, return_counts=True)
    ua, ia = ua[ca == 1], ia[ca == 1]
    ub, ib = ub[cb == 1], ib[cb == 1]
    _, xa, xb = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    return ia[xa].astype(np.int64), ib[xb].astype(np.int64)


def _assign(
    a: Digest, b: Digest, ia: I64, ib: I64, a2b: I64, b2a: I64, flip: np.ndarray, votes: I64, min_votes: int
) -> list[int]:
    """Greedy one-to-one assignment of conn pairs by vote count; returns the newly matched A conns."""
    if ia.size == 0:
        return []
    ca, cb = a.c["conn"][ia], b.c["conn"][ib]
    fl = (a.c["fdir"][ia] != b.c["fdir"][ib]).astype(np.int64)
    gid, ng = group_ids(ca, cb, fl)
    cnt = np.bincount(gid, minlength=ng)
    first = np.full(ng, ia.size, dtype=np.int64)
    np.minimum.at(first, gid, np.arange(ia.size))
    order = np.argsort(-cnt, kind="stable")
    new: list[int] = []
    # A loop over candidate connection pairs (not packets): one entry per (conn A, conn B, flip).
    for g in order.tolist():
        if cnt[g] < min_votes:
            break
        r = int(first[g])
        x, y = int(ca[r]), int(cb[r])
        if a2b[x] >= 0 or b2a[y] >= 0:
            continue
        a2b[x], b2a[y] = y, x
        flip[x] = bool(fl[r])
        votes[x] = int(cnt[g])
        new.append(x)
    return new


def _mode_delta(a: Digest, b: Digest, ia: I64, ib: I64, m: ConnMatch) -> tuple[np.ndarray, np.ndarray]:
    """Per A half: mode of seq_b - seq_a over voting pairs, and the share of pairs agreeing."""
    nh = 2 * a.n_conns
    delta = np.zeros(nh, dtype=np.uint32)
    agree = np.ones(nh, dtype=np.float64)
    ok = (a.c["proto"][ia] == TCP) & (m.a2b[a.c["conn"][ia]] == b.c["conn"][ib])
    ia, ib = ia[ok], ib[ok]
    if ia.size == 0:
        return delta, agree
    h = a.c["half"][ia]
    dv = (b.c["seq"][ib].astype(np.int64) - a.c["seq"][ia].astype(np.int64)) & 0xFFFFFFFF
    gid, ng = group_ids(h, dv)
    cnt = np.bincount(gid, minlength=ng)
    gh = np.zeros(ng, dtype=np.int64)
    gd = np.zeros(ng, dtype=np.int64)
    gh[gid], gd[gid] = h, dv
    # best delta per half: sort groups by (half, -count) and take the first of each half
    o = np.lexsort((-cnt, gh))
    firsts = np.ones(ng, dtype=bool)
    firsts[1:] = gh[o][1:] != gh[o][:-1]
    best = o[firsts]
    tot = np.bincount(h, minlength=nh)
    delta[gh[best]] = gd[best].astype(np.uint32)
    agree[gh[best]] = cnt[best] / np.maximum(tot[gh[best]], 1)
    return delta, agree


def _tuple_key(d: Digest) -> np.ndarray:
    c, r = d.c, d.conn_row
    src = (c["src_hi"][r], c["src_lo"][r], np.maximum(c["sport"][r], 0))
    dst = (c["dst_hi"][r], c["dst_lo"][r], np.maximum(c["dport"][r], 0))
    low = c["fdir"][r] == 0
    ends = [np.where(low, s, t) for s, t in zip(src, dst, strict=True)]
    ends += [np.where(low, t, s) for s, t in zip(src, dst, strict=True)]
    return mix(c["proto"][r], *ends)


def match_connections(a: Digest, b: Digest, use_payload: bool = True) -> ConnMatch:
    """Pair the connections of ``a`` (upstream) with those of ``b`` (downstream)."""
    na, nb = a.n_conns, b.n_conns
    m = ConnMatch(
        a2b=np.full(na, -1, np.int64),
        b2a=np.full(nb, -1, np.int64),
        flip=np.zeros(na, dtype=bool),
        delta=np.zeros(2 * na, dtype=np.uint32),
        method=[""] * na,
        votes=np.zeros(na, np.int64),
    )
    if len(a) == 0 or len(b) == 0:
        m.unanswered = unanswered_attempts(a, m)
        return m
    # 1. packet identity
    ia, ib = unique_pairs(packet_keys(a, use_payload), packet_keys(b, use_payload))
    new1 = _assign(a, b, ia, ib, m.a2b, m.b2a, m.flip, m.votes, 1)
    ta, tb = _tuple_key(a), _tuple_key(b)
    for x in new1:
        m.method[x] = METHOD_SAME_TUPLE if ta[x] == tb[m.a2b[x]] else METHOD_NAT
    d1, _ = _mode_delta(a, b, ia, ib, m)
    m.delta[:] = d1
    # 2. payload only, among the still unmatched TCP connections
    if use_payload:
        ra = (m.a2b[a.c["conn"]] < 0) & (a.c["proto"] == TCP) & (a.c["payload_len"] > 0)
        rb = (m.b2a[b.c["conn"]] < 0) & (b.c["proto"] == TCP) & (b.c["payload_len"] > 0)
        rows_a, rows_b = np.flatnonzero(ra), np.flatnonzero(rb)
        if rows_a.size and rows_b.size:
            ka = mix(a.c["payload_len"][rows_a], a.c["phash"][rows_a])
            kb = mix(b.c["payload_len"][rows_b], b.c["phash"][rows_b])
            pa, pb = unique_pairs(ka, kb)
            pa, pb = rows_a[pa], rows_b[pb]
            new2 = _assign(a, b, pa, pb, m.a2b, m.b2a, m.flip, m.votes, 2)
            if new2:
                d2, agree = _mode_delta(a, b, pa, pb, m)
                nx = np.asarray(new2, dtype=np.int64)
                hh = np.concatenate([2 * nx, 2 * nx + 1])
                m.delta[hh] = d2[hh]
                reseg = _resegmented(a, b, nx, m)
                for i, x in enumerate(new2):
                    h0, h1 = 2 * x, 2 * x + 1
                    if agree[h0] < AGREE or agree[h1] < AGREE:
                        # the same lines at different stream offsets: two sessions with a similar
                        # dialogue, not one byte stream relayed; undo the pairing
                        m.b2a[m.a2b[x]] = -1
                        m.a2b[x], m.votes[x], m.flip[x] = -1, 0, False
                        continue
                    both_rewritten = d2[h0] != 0 and d2[h1] != 0
                    proxy = both_rewritten or bool(reseg[i])
                    m.method[x] = METHOD_FULL_PROXY if proxy else METHOD_SEQ_REWRITE
    # 3. same 5-tuple, nothing else in common
    ua = np.flatnonzero(m.a2b < 0)
    ub = np.flatnonzero(m.b2a < 0)
    if ua.size and ub.size:
        pa, pb = unique_pairs(ta[ua], tb[ub])
        for x, y in zip(ua[pa].tolist(), ub[pb].tolist(), strict=True):
            m.a2b[x], m.b2a[y] = y, x
            m.method[x] = METHOD_TUPLE_ONLY
            # same canonical tuple: same orientation
    m.unanswered = unanswered_attempts(a, m)
    return m


def unanswered_attempts(a: Digest, m: ConnMatch) -> npt.NDArray[np.bool_]:
    """Unmatched upstream TCP connections that are only attempts (SYNs, all from the client, no
    answer) towards a server other matched connections reach, or when nothing matched at all:
    they should have passed the downstream point, so their packets count as lost there (the
    time-window rule still applies). Other unmatched connections may simply not use this path."""
    n = a.n_conns
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    c = a.c
    conn, fdir = c["conn"], c["fdir"]
    client = a.conn_client.astype(np.int64)
    from_server = np.bincount(conn[fdir != client[conn]], minlength=n)
    syn = (c["proto"] == TCP) & ((c["tcp_flags"].astype(np.int64) & (SYN | ACK)) == SYN)
    has_syn = np.bincount(conn[syn], minlength=n) > 0
    cand = (m.a2b < 0) & has_syn & (from_server == 0)
    if not cand.any():
        return out
    matched = m.a2b >= 0
    if not matched.any():
        return cand
    # server endpoint of each connection (destination of its client-direction packets)
    r = a.conn_row
    to_srv = fdir[r] == client
    srv = mix(
        np.where(to_srv, c["dst_hi"][r], c["src_hi"][r]),
        np.where(to_srv, c["dst_lo"][r], c["src_lo"][r]),
        np.where(to_srv, c["dport"][r], c["sport"][r]),
    )
    return cand & np.isin(srv, srv[matched])


def _resegmented(a: Digest, b: Digest, conns: I64, m: ConnMatch) -> npt.NDArray[np.bool_]:
    """Per A conn in ``conns``: is the segmentation different? True when fewer than 80 % of the
    data segments on *either* side have a counterpart (same translated seq and length) on the
    other: loss removes segments from one side only, a proxy re-cuts the stream on both."""
    sel = np.zeros(a.n_conns, dtype=bool)
    sel[conns] = True
    ra = np.flatnonzero(sel[a.c["conn"]] & (a.c["payload_len"] > 0))
    bconn = b.c["conn"]
    rb = np.flatnonzero((m.b2a[bconn] >= 0) & (b.c["payload_len"] > 0))
    rb = rb[sel[m.b2a[bconn[rb]]]]
    ca = a.c["conn"][ra]
    seq_t = (a.c["seq"][ra].astype(np.int64) + m.delta[a.c["half"][ra]].astype(np.int64)) & 0xFFFFFFFF
    ka = mix(ca, a.c["fdir"][ra], seq_t, a.c["payload_len"][ra])
    cb = m.b2a[bconn[rb]]
    fb = b.c["fdir"][rb] ^ m.flip[cb].astype(np.int64)
    kb = mix(cb, fb, b.c["seq"][rb], b.c["payload_len"][rb])
    tot_a = np.bincount(ca, minlength=a.n_conns)[conns]
    good_a = np.bincount(ca, weights=np.isin(ka, kb), minlength=a.n_conns)[conns]
    tot_b = np.bincount(cb, minlength=a.n_conns)[conns]
    good_b = np.bincount(cb, weights=np.isin(kb, ka), minlength=a.n_conns)[conns]
    share = np.maximum(good_a / np.maximum(tot_a, 1), good_b / np.maximum(tot_b, 1))
    return (tot_a > 0) & (tot_b > 0) & (share < 0.8)


__all__ = [
    "METHOD_FULL_PROXY",
    "METHOD_NAT",
    "METHOD_SAME_TUPLE",
    "METHOD_SEQ_REWRITE",
    "METHOD_TUPLE_ONLY",
    "ConnMatch",
    "match_connections",
    "packet_keys",
    "unique_pairs",
]

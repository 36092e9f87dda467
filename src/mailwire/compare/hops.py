"""Per hop and direction: what was sent upstream, what arrived downstream, what vanished or appeared.

Theory of operation
-------------------
Given the classified instances of ``segments``, this module only counts: per direction (A→B and
B→A), packets and bytes sent upstream inside the downstream capture's window, matched, lost (by
IP-length size class, by time, by connection), lost to the downstream *capture*, injected and
duplicated downstream; and, over exactly matched pairs, what a box in between changed (TTL,
DSCP/ECN, window, MSS clamping, TCP options stripped, IP id, addresses and ports). It also lists
ICMP "fragmentation needed" / "packet too big" messages found in either capture. Evidence is
Wireshark frame numbers in the capture where the packet was (or was not) seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mailwire.capture.addr import format_addr
from mailwire.compare.flows import ACK, RST, SYN, TCP, Digest
from mailwire.compare.match import ConnMatch
from mailwire.compare.segments import (
    CAPTURE_LOSS,
    DUPLICATE,
    INJECTED,
    LOST,
    MATCHED,
    MISSED_UPSTREAM,
    SPLIT,
    Instances,
)

if TYPE_CHECKING:
    import numpy.typing as npt


SIZE_EDGES = (0, 100, 500, 1000, 1400, 1500)
SIZE_LABELS = ("<100", "100-499", "500-999", "1000-1399", "1400-1499", ">=1500")
EVIDENCE_MAX = 50  # frames listed per evidence item
DIRECTIONS = ("a_to_b", "b_to_a")


def size_class(ip_len: np.ndarray) -> npt.NDArray[np.int64]:
    return np.searchsorted(np.asarray(SIZE_EDGES[1:]), ip_len, side="right").astype(np.int64)


def _col(inst: Instances, a: Digest, b: Digest, name: str, idx: np.ndarray) -> np.ndarray:
    """Digest column ``name`` for instances ``idx`` (reading A or B rows as appropriate)."""
    out = np.empty(idx.size, dtype=a.c[name].dtype)
    sa = inst.side[idx] == 0
    out[sa] = a.c[name][inst.row[idx[sa]]]
    out[~sa] = b.c[name][inst.row[idx[~sa]]]
    return out


def frames_of(inst: Instances, a: Digest, b: Digest, idx: np.ndarray) -> list[int]:
    return [int(x) for x in _col(inst, a, b, "frame", idx[:EVIDENCE_MAX])]


def next_downstream(inst: Instances, lost: np.ndarray) -> np.ndarray:
    """For (at most EVIDENCE_MAX) lost instances: the first instance of the same half that did
    arrive downstream after it (-1 if none): where the downstream capture shows the gap."""
    q = lost[:EVIDENCE_MAX]
    if q.size == 0:
        return np.zeros(0, np.int64)
    arrived = np.flatnonzero(~inst.up & np.isin(inst.status, (MATCHED, SPLIT)))
    arrived = arrived[np.isin(inst.half[arrived], inst.half[q])]
    if arrived.size == 0:
        return np.full(q.size, -1, np.int64)
    all_t = np.sort(np.concatenate([inst.t[arrived], inst.t[q]]))
    m = all_t.size + 1
    ka = inst.half[arrived] * m + np.searchsorted(all_t, inst.t[arrived])
    kq = inst.half[q] * m + np.searchsorted(all_t, inst.t[q])
    o = np.argsort(ka, kind="stable")
    pos = np.searchsorted(ka[o], kq, side="left")
    ok = pos < o.size
    cand = np.where(ok, arrived[o[np.minimum(pos, o.size - 1)]], -1)
    ok &= inst.half[np.maximum(cand, 0)] == inst.half[q]
    return np.where(ok, cand, -1)


def direction_stats(inst: Instances, a: Digest, b: Digest, ab: bool) -> dict[str, Any]:
    """Counts for one direction of one hop."""
    sel = inst.a_to_b == ab
    up = np.flatnonzero(sel & inst.up)
    dn = np.flatnonzero(sel & ~inst.up)
    st = inst.status[up]
    counted = np.isin(st, (MATCHED, SPLIT, LOST, CAPTURE_LOSS))
    sent = up[counted]
    ipl = _col(inst, a, b, "ip_len", sent).astype(np.int64)
    lost_m = inst.status[sent] == LOST
    cls = size_class(ipl)
    k = len(SIZE_LABELS)
    by_size = []
    n_sent = np.bincount(cls, minlength=k)
    n_lost = np.bincount(cls[lost_m], minlength=k)
    b_sent = np.bincount(cls, weights=ipl, minlength=k)
    b_lost = np.bincount(cls[lost_m], weights=ipl[lost_m], minlength=k)
    for i, label in enumerate(SIZE_LABELS):
        by_size.append(
            {
                "class": label,
                "sent": int(n_sent[i]),
                "lost": int(n_lost[i]),
                "sent_bytes": int(b_sent[i]),
                "lost_bytes": int(b_lost[i]),
            }
        )
    lost = sent[lost_m]
    lost_flags = _col(inst, a, b, "tcp_flags", lost).astype(np.int64)
    caploss = up[st == CAPTURE_LOSS]
    inj = dn[inst.status[dn] == INJECTED]
    dup = dn[inst.status[dn] == DUPLICATE]
    missed = dn[inst.status[dn] == MISSED_UPSTREAM]
    inj_flags = _col(inst, a, b, "tcp_flags", inj).astype(np.int64)
    inj_proto = _col(inst, a, b, "proto", inj)
    inj_rst = inj[(inj_proto == TCP) & ((inj_flags & RST) != 0)]
    # by time: ten equal bins over the span of what was sent
    by_time: list[dict[str, Any]] = []
    if sent.size:
        t = inst.t[sent]
        t0, t1 = int(t.min()), int(t.max())
        nb = 10 if t1 > t0 else 1
        bi = np.minimum(((t - t0) * nb) // max(t1 - t0, 1), nb - 1).astype(np.int64)
        s_cnt = np.bincount(bi, minlength=nb)
        l_cnt = np.bincount(bi[lost_m], minlength=nb)
        w = (t1 - t0) / nb / 1e9
        for i in range(nb):
            by_time.append({"start_s": round(i * w, 6), "sent": int(s_cnt[i]), "lost": int(l_cnt[i])})
    up_side = 0 if ab else 1
    dn_side = 1 - up_side
    data = inst.plen[sent] > 0
    return {
        "sent": int(sent.size),
        "sent_bytes": int(ipl.sum()),
        "matched": int((inst.status[sent] == MATCHED).sum()),
        "matched_by_range": int((inst.status[sent] == SPLIT).sum()),
        "lost": int(lost.size),
        "lost_bytes": int(ipl[lost_m].sum()),
        "rate": float(lost.size / sent.size) if sent.size else 0.0,
        "data_segments_sent": int(data.sum()),
        "data_segments_lost": int((data & lost_m).sum()),
        "capture_loss": int(caploss.size),
        "missed_by_upstream_capture": int(missed.size),
        "injected": int(inj.size),
        "injected_rst": int(inj_rst.size),
        "duplicates_downstream": int(dup.size),
        "duplicate_frames_upstream": int((st == DUPLICATE).sum()),
        "outside_window": int((st == 3).sum()),
        "by_size_class": by_size,
        "by_time": by_time,
        "first_lost_s": float((inst.t[lost].min() - a.first_ts) / 1e9) if lost.size else None,
        "last_lost_s": float((inst.t[lost].max() - a.first_ts) / 1e9) if lost.size else None,
        "_idx": {
            "lost": lost,
            "capture_loss": caploss,
            "injected": inj,
            "injected_rst": inj_rst,
            "dup": dup,
            "missed": missed,
        },
        "lost_syn": int(((lost_flags & (SYN | ACK)) == SYN).sum()),
        "_sizes": (ipl, lost_m),
        "_conns": inst.half[sent] // 2,
        "_sides": (up_side, dn_side),
    }


def changes(inst: Instances, a: Digest, b: Digest) -> dict[str, Any]:
    """What changed in flight, over exactly matched upstream/downstream pairs."""
    up = np.flatnonzero(inst.up & (inst.status == MATCHED) & (inst.partner >= 0))
    dn = inst.partner[up]
    out: dict[str, Any] = {}
    if up.size == 0:
        return out

    def pair(name: str) -> tuple[np.ndarray, np.ndarray]:
        return _col(inst, a, b, name, up).astype(np.int64), _col(inst, a, b, name, dn).astype(np.int64)

    for ab in (True, False):
        sel = inst.a_to_b[up] == ab
        if not sel.any():
            continue
        d = "a_to_b" if ab else "b_to_a"
        tu, td = pair("ttl")
        dec = (tu - td)[sel]
        vals, cnts = np.unique(dec, return_counts=True)
        tos_u, tos_d = pair("tos")
        win_u, win_d = pair("win")
        id_u, id_d = pair("ip_id")
        ts_u, ts_d = pair("opt_ts_val")
        fl_u, _ = pair("tcp_flags")
        mss_u, mss_d = pair("opt_mss")
        ws_u, ws_d = pair("opt_wscale")
        sp_u, sp_d = pair("opt_sack_perm")
        syn = sel & ((fl_u & SYN) != 0)
        tcp = sel & (_col(inst, a, b, "proto", up) == TCP)
        dscp_changed = sel & ((tos_u >> 2) != (tos_d >> 2)) & (tos_u >= 0)
        ecn_changed = sel & ((tos_u & 3) != (tos_d & 3)) & (tos_u >= 0)
        mss_changed = syn & (mss_u != mss_d)
        out[d] = {
            "packets": int(sel.sum()),
            "ttl_decrement": {str(int(v)): int(c) for v, c in zip(vals, cnts, strict=True)},
            "dscp_changed": int(dscp_changed.sum()),
            "ecn_changed": int(ecn_changed.sum()),
            "window_changed": int((tcp & (win_u != win_d)).sum()),
            "ip_id_changed": int((sel & (id_u >= 0) & (id_u != id_d)).sum()),
            "mss_clamped": [
                {"from": int(x), "to": int(y)}
                for x, y in sorted(
                    set(zip(mss_u[mss_changed].tolist(), mss_d[mss_changed].tolist(), strict=True))
                )
            ],
            "options_stripped": {
                "timestamps": int((tcp & (ts_u >= 0) & (ts_d < 0)).sum()),
                "window_scale": int((syn & (ws_u >= 0) & (ws_d < 0)).sum()),
                "sack_permitted": int((syn & (sp_u != 0) & (sp_d == 0)).sum()),
                "mss": int((syn & (mss_u >= 0) & (mss_d < 0)).sum()),
            },
            "examples": [
                {"upstream_frame": int(x), "downstream_frame": int(y)}
                for x, y in zip(
                    _col(inst, a, b, "frame", up[sel][:3]).tolist(),
                    _col(inst, a, b, "frame", dn[sel][:3]).tolist(),
                    strict=True,
                )
            ],
        }
    return out


def icmp_too_big(d: Digest) -> list[dict[str, Any]]:
    """ICMP fragmentation-needed (v4 type 3 code 4) and ICMPv6 packet-too-big (type 2) messages."""
    c = d.c
    sel = np.flatnonzero(
        ((c["proto"] == 1) & (c["icmp_type"] == 3) & (c["icmp_code"] == 4))
        | ((c["proto"] == 58) & (c["icmp_type"] == 2))
    )
    out = []
    for r in sel[:EVIDENCE_MAX].tolist():
        out.append(
            {
                "file": d.path,
                "frame": int(c["frame"][r]),
                "from": format_addr(int(c["src_hi"][r]), int(c["src_lo"][r])),
                "mtu": int(c["icmp_mtu"][r]),
                "about": f"{format_addr(int(c['inner_dst_hi'][r]), int(c['inner_dst_lo'][r]))}"
                f":{int(c['inner_dport'][r])}",
            }
        )
    return out


def endpoint_str(d: Digest, row: int, fdir_from: int) -> str:
    """'addr:port -> addr:port' for connection row, oriented from the side with fdir ``fdir_from``."""
    c = d.c
    src = (format_addr(int(c["src_hi"][row]), int(c["src_lo"][row])), int(c["sport"][row]))
    dst = (format_addr(int(c["dst_hi"][row]), int(c["dst_lo"][row])), int(c["dport"][row]))
    if int(c["fdir"][row]) != fdir_from:
        src, dst = dst, src

    def fmt(e: tuple[str, int]) -> str:
        host = f"[{e[0]}]" if ":" in e[0] else e[0]
        return f"{host}:{e[1]}" if e[1] >= 0 else host

    return f"{fmt(src)} -> {fmt(dst)}"


def connection_detail(
    inst: Instances, a: Digest, b: Digest, m: ConnMatch, limit: int = 1000
) -> list[dict[str, Any]]:
    """Per matched connection: tuples on each side, method, per-direction counts."""
    matched = np.flatnonzero(m.a2b >= 0)[:limit]
    if matched.size == 0:
        return []
    na = a.n_conns
    conn = inst.half // 2
    # counts per (A conn, direction, status) for upstream instances, injected/dup for downstream
    res = []
    key = conn * 2 + (~inst.a_to_b).astype(np.int64)
    sent_m = inst.up & np.isin(inst.status, (MATCHED, SPLIT, LOST, CAPTURE_LOSS))
    sent = np.bincount(key[sent_m], minlength=2 * na)
    lost = np.bincount(key[inst.up & (inst.status == LOST)], minlength=2 * na)
    inj = np.bincount(key[~inst.up & (inst.status == INJECTED)], minlength=2 * na)
    half_ab = np.zeros(2 * na, dtype=np.int8)  # 1 if the half flows A -> B
    half_ab[inst.half[inst.a_to_b]] = 1
    has_half = np.bincount(inst.half, minlength=2 * na) > 0
    for x in matched.tolist():
        y = int(m.a2b[x])
        cl = int(a.conn_client[x])
        ra, rb = int(a.conn_row[x]), int(b.conn_row[y])
        cl_b = cl ^ int(m.flip[x])
        if has_half[2 * x + cl]:
            fwd_client = bool(half_ab[2 * x + cl])
        elif has_half[2 * x + 1 - cl]:
            fwd_client = not half_ab[2 * x + 1 - cl]
        else:
            fwd_client = True
        item: dict[str, Any] = {
            "upstream": endpoint_str(a, ra, cl),
            "downstream": endpoint_str(b, rb, cl_b),
            "method": m.method[x],
            "votes": int(m.votes[x]),
            "seq_delta": [int(m.delta[2 * x + cl]), int(m.delta[2 * x + (1 - cl)])],
            "client_to_server": "a_to_b" if fwd_client else "b_to_a",
        }
        for d_i, d in enumerate(DIRECTIONS):
            item[d] = {
                "sent": int(sent[2 * x + d_i]),
                "lost": int(lost[2 * x + d_i]),
                "injected": int(inj[2 * x + d_i]),
            }
        res.append(item)
    return res


def rows_by_conn(d: Digest) -> Callable[[int], np.ndarray]:
    """A lookup conn -> its rows (file order), from one sort instead of a scan per connection."""
    order = np.argsort(d.c["conn"], kind="stable")
    bounds = np.searchsorted(d.c["conn"][order], np.arange(d.n_conns + 1))

    def rows(x: int) -> np.ndarray:
        return order[bounds[x] : bounds[x + 1]]

    return rows


def proxy_detail(a: Digest, b: Digest, m: ConnMatch) -> list[dict[str, Any]]:
    """Connections terminated by a full proxy: compared by payload bytes per direction."""
    out: list[dict[str, Any]] = []
    proxied = [i for i, meth in enumerate(m.method) if meth == "full_proxy"][:1000]
    if not proxied:
        return out
    rows_of_a, rows_of_b = rows_by_conn(a), rows_by_conn(b)
    for x in proxied:
        y = int(m.a2b[x])
        cl = int(a.conn_client[x])
        rows_a = rows_of_a(x)
        rows_b = rows_of_b(y)
        item: dict[str, Any] = {
            "upstream": endpoint_str(a, int(a.conn_row[x]), cl),
            "downstream": endpoint_str(b, int(b.conn_row[y]), cl ^ int(m.flip[x])),
            "method": "full_proxy",
        }
        for name, fa in (("client_to_server", cl), ("server_to_client", 1 - cl)):
            fb = fa ^ int(m.flip[x])
            ua = _stream_bytes(a, rows_a[a.c["fdir"][rows_a] == fa])
            ub = _stream_bytes(b, rows_b[b.c["fdir"][rows_b] == fb])
            item[name] = {"upstream_bytes": ua, "downstream_bytes": ub}
        out.append(item)
    return out


def _stream_bytes(d: Digest, rows: np.ndarray) -> int:
    """Distinct sequence-space bytes carried (retransmissions counted once)."""
    rows = rows[d.c["payload_len"][rows] > 0]
    if rows.size == 0:
        return 0
    s0 = int(d.c["seq"][rows[0]])
    start = (d.c["seq"][rows].astype(np.int64) - s0 + (1 << 30)) & 0xFFFFFFFF
    end = start + d.c["payload_len"][rows].astype(np.int64)
    o = np.argsort(start, kind="stable")
    start, end = start[o], end[o]
    reach = np.maximum.accumulate(end)
    prev = np.concatenate([[start[0]], reach[:-1]])
    return int(np.maximum(end - np.maximum(start, prev), 0).sum())


__all__ = [
    "DIRECTIONS",
    "SIZE_LABELS",
    "changes",
    "connection_detail",
    "direction_stats",
    "frames_of",
    "icmp_too_big",
    "proxy_detail",
    "rows_by_conn",
    "size_class",
]

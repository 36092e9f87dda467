"""Per-capture digest for comparison: the columns the matcher needs, payload fingerprints, flows.

Theory of operation
-------------------
Each capture is digested on its own (captures are never merged): the chunks of one file are
reduced to the few columns cross-capture matching reads, plus two derived per-packet values:

* ``phash``: a 64-bit fingerprint of the first ``HASH_BYTES`` captured payload bytes (TCP/UDP
  payload; for other protocols the transport bytes, e.g. the ICMP header and body). It is computed
  by a compiled loop over the chunk's buffer, so the buffer can be dropped afterwards.
* ``flow`` / ``fdir`` / ``conn``: a flow is the unordered pair of endpoints plus the protocol,
  numbered per capture; ``fdir`` says whether the packet goes from the lower endpoint to the higher
  one (0) or back (1). A TCP flow is cut into connections where a SYN with a new ISN appears
  (port reuse). ``half = 2 * conn + fdir`` names one direction of one connection.

Nothing here is specific to a second capture; NAT-normalisation happens in ``match`` by keying on
what a NAT leaves alone (sequence numbers, payload), never on addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mailwire.capture.table import PacketTable, Warn
from mailwire.compiled import kernel

if TYPE_CHECKING:
    import numpy.typing as npt

    I64 = npt.NDArray[np.int64]
    U64 = npt.NDArray[np.uint64]


HASH_BYTES = 64  # payload bytes fingerprinted per packet (matching works on this prefix + length)

# Columns kept from the packet table (everything else, including the buffer, is dropped).
KEEP = (
    "frame", "ts_ns", "ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo", "ip_id", "ttl", "tos",
    "df", "ip_len", "proto", "sport", "dport", "seq", "ack", "tcp_flags", "win", "payload_len",
    "cap_payload_len", "opt_mss", "opt_wscale", "opt_sack_perm", "opt_ts_val", "icmp_type",
    "icmp_code", "icmp_mtu", "inner_dst_hi", "inner_dst_lo", "inner_proto", "inner_sport",
    "inner_dport", "warnings",
)  # fmt: skip

TCP = 6
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@kernel("u8[::1](u1[::1], i8[::1], i8[::1], i8)")
def _hash_ranges(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, limit: int) -> np.ndarray:
    """FNV-1a-style 64-bit hash of ``buf[starts[i] : starts[i] + min(lens[i], limit)]`` per row."""
    n = starts.shape[0]
    out = np.zeros(n, dtype=np.uint64)
    size = buf.shape[0]
    for i in range(n):
        h = np.uint64(0xCBF29CE484222325)
        s = starts[i]
        m = min(lens[i], limit)
        if s < 0 or m <= 0 or s + m > size:
            out[i] = np.uint64(0)
            continue
        for j in range(s, s + m):
            h = (h ^ np.uint64(buf[j])) * np.uint64(0x100000001B3)
        out[i] = h | np.uint64(1)  # never 0: 0 means "no content"
    return out


def mix(*parts: np.ndarray) -> U64:
    """Combine integer columns into one 64-bit key per row (splitmix-style, wrapping arithmetic)."""
    h = np.full(parts[0].shape[0], 0x9E3779B97F4A7C15, dtype=np.uint64)
    for p in parts:
        x = p.astype(np.uint64, copy=False) if p.dtype != np.uint64 else p
        h = h ^ (x + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2)))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(31))
    return h


def group_ids(*keys: np.ndarray) -> tuple[I64, int]:
    """Dense group number per row for the tuple of ``keys`` (rows with equal keys share a number).

    Several keys are first mixed into one 64-bit value (one sort instead of a lexsort over all
    columns; two distinct tuples collide with probability ~n²/2**65, 3e-8 for a million groups).
    """
    n = keys[0].shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if len(keys) > 1:
        _, inv = np.unique(mix(*keys), return_inverse=True)
        gid = inv.astype(np.int64).reshape(-1)
        return gid, int(gid.max()) + 1
    order = np.argsort(keys[0], kind="stable")
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for k in keys:
        ks = k[order]
        new[1:] |= ks[1:] != ks[:-1]
    gid_sorted = np.cumsum(new) - 1
    gid = np.empty(n, dtype=np.int64)
    gid[order] = gid_sorted
    return gid, int(gid_sorted[-1]) + 1


@dataclass
class Digest:
    """One capture, reduced for comparison. ``c`` holds per-packet columns in file order."""

    path: str
    c: dict[str, np.ndarray]
    n_conns: int = 0
    issues: list[str] = field(default_factory=list)
    truncated_payloads: int = 0  # frames whose payload was cut by the snaplen
    first_ts: int = 0
    last_ts: int = 0
    # per connection (index = conn id)
    conn_proto: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))
    conn_first: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    conn_last: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    conn_row: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # first packet row
    conn_client: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))

    def __len__(self) -> int:
        return int(self.c["frame"].shape[0])

    def endpoint(self, row: int, side: int) -> tuple[int, int, int]:
        """(addr hi, addr lo, port) of the packet's source (side 0) or destination (side 1)."""
        c = self.c
        if side == 0:
            return int(c["src_hi"][row]), int(c["src_lo"][row]), int(c["sport"][row])
        return int(c["dst_hi"][row]), int(c["dst_lo"][row]), int(c["dport"][row])


def _digest_chunk(t: PacketTable) -> dict[str, np.ndarray]:
    cols = t.columns
    out = {k: np.asarray(cols[k]) for k in KEEP}
    pkt_off = cols["pkt_off"].astype(np.int64)
    po = cols["payload_off"].astype(np.int64)
    plen = cols["cap_payload_len"].astype(np.int64)
    # Non-TCP/UDP (ICMP ...): fingerprint the transport bytes up to the IP end (not the padding).
    l4 = cols["l4_off"].astype(np.int64)
    l3 = cols["l3_off"].astype(np.int64)
    other = (po < 0) & (l4 >= 0)
    ip_end = np.minimum(l3 + cols["ip_len"].astype(np.int64), cols["caplen"].astype(np.int64))
    starts = np.where(po >= 0, pkt_off + po, np.where(other, pkt_off + l4, -1))
    lens = np.where(po >= 0, plen, np.where(other, ip_end - l4, 0))
    buf = np.asarray(t.buf, dtype=np.uint8)
    ph = _hash_ranges(buf, starts.astype(np.int64), lens.astype(np.int64), HASH_BYTES)
    # ICMP/ICMPv6: leave out the checksum and the identifier (bytes 2-5), which a NAT rewrites
    icmp = other & np.isin(cols["proto"], (1, 58)) & (lens >= 8)
    if icmp.any():
        s, n = starts[icmp].astype(np.int64), lens[icmp].astype(np.int64)
        head = _hash_ranges(buf, s, np.full(s.size, 2, np.int64), 2)
        tail = _hash_ranges(buf, s + 6, n - 6, HASH_BYTES)
        ph[icmp] = mix(head, tail) | np.uint64(1)
    out["phash"] = ph
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def digest(tables: Iterable[PacketTable], path: str) -> Digest:
    """Digest the chunks of one capture (in file order) for comparison."""
    parts: list[dict[str, np.ndarray]] = []
    issues: list[str] = []
    span = [np.iinfo(np.int64).max, np.iinfo(np.int64).min]
    for t in tables:
        part = _digest_chunk(t)
        if len(t):  # the capture's time span counts every frame, ARP included: it was running
            span = [min(span[0], int(t.columns["ts_ns"].min())), max(span[1], int(t.columns["ts_ns"].max()))]
        # frames without IP (ARP, LLDP ...) carry nothing to match across a routed path
        keep = part["ip_version"] != 0
        if not keep.all():
            part = {k: v[keep] for k, v in part.items()}
        parts.append(part)
        issues.extend(str(i) for i in t.issues)
    if parts:
        c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        from mailwire.capture.table import empty_columns

        ec = empty_columns(0)
        c = {k: ec[k] for k in KEEP}
        c["phash"] = np.zeros(0, np.uint64)
    d = Digest(path=path, c=c, issues=issues)
    _flows(d)
    if span[0] <= span[1]:
        d.first_ts, d.last_ts = span[0], span[1]
    return d


def _flows(d: Digest) -> None:
    c = d.c
    n = len(d)
    if n == 0:
        for k in ("flow", "fdir", "conn", "half"):
            c[k] = np.zeros(0, np.int64)
        return
    d.first_ts = int(c["ts_ns"].min())
    d.last_ts = int(c["ts_ns"].max())
    d.truncated_payloads = int(np.count_nonzero(c["warnings"] & np.uint32(Warn.PAYLOAD_TRUNCATED)))
    sport = np.where(c["sport"] >= 0, c["sport"], 0).astype(np.int64)
    dport = np.where(c["dport"] >= 0, c["dport"], 0).astype(np.int64)
    # Source is the "low" endpoint when (hi, lo, port) compares below the destination's.
    shi, slo, dhi, dlo = c["src_hi"], c["src_lo"], c["dst_hi"], c["dst_lo"]
    src_low = (shi < dhi) | ((shi == dhi) & ((slo < dlo) | ((slo == dlo) & (sport <= dport))))
    fdir = np.where(src_low, 0, 1).astype(np.int64)
    a_hi, a_lo, a_p = (
        np.where(src_low, shi, dhi),
        np.where(src_low, slo, dlo),
        np.where(src_low, sport, dport),
    )
    b_hi, b_lo, b_p = (
        np.where(src_low, dhi, shi),
        np.where(src_low, dlo, slo),
        np.where(src_low, dport, sport),
    )
    proto = c["proto"].astype(np.int64)
    flow, _ = group_ids(proto, a_hi, a_lo, a_p, b_hi, b_lo, b_p)
    # Connections: within a TCP flow, a SYN (without ACK) whose seq differs from the previous SYN's
    # starts a new connection (port reuse). Everything before the first SYN belongs to the first one.
    ts = c["ts_ns"]
    order = np.lexsort((np.arange(n), ts, flow))
    flags = c["tcp_flags"].astype(np.int64)
    is_syn = (proto == TCP) & ((flags & (SYN | ACK)) == SYN)
    fo = flow[order]
    so = is_syn[order]
    syn_pos = np.flatnonzero(so)
    newc = np.zeros(n, dtype=np.int64)
    if syn_pos.size > 1:
        sf = fo[syn_pos]
        sq = c["seq"][order][syn_pos]
        change = (sf[1:] == sf[:-1]) & (sq[1:] != sq[:-1])
        newc[syn_pos[1:][change]] = 1
    # epoch = number of new-connection SYNs seen so far within the flow
    cum = np.cumsum(newc)
    flow_start = np.ones(n, dtype=bool)
    flow_start[1:] = fo[1:] != fo[:-1]
    base = np.maximum.accumulate(np.where(flow_start, cum - newc, 0))
    epoch_sorted = cum - base
    epoch = np.empty(n, dtype=np.int64)
    epoch[order] = epoch_sorted
    conn, n_conns = group_ids(flow, epoch)
    # number connections in order of first appearance (stable, readable output)
    first_seen = np.full(n_conns, n, dtype=np.int64)
    np.minimum.at(first_seen, conn, np.arange(n))
    rank = np.empty(n_conns, dtype=np.int64)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(n_conns)
    conn = rank[conn]
    c["flow"], c["fdir"], c["conn"] = flow, fdir, conn
    c["half"] = conn * 2 + fdir
    d.n_conns = n_conns
    # per-connection facts
    first_row = np.full(n_conns, n, dtype=np.int64)
    np.minimum.at(first_row, conn, np.arange(n))
    d.conn_row = first_row
    d.conn_proto = c["proto"][first_row].astype(np.int16)
    cf = np.full(n_conns, np.iinfo(np.int64).max, dtype=np.int64)
    cl = np.full(n_conns, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(cf, conn, ts)
    np.maximum.at(cl, conn, ts)
    d.conn_first, d.conn_last = cf, cl
    # client side: the fdir of the first SYN; else the side with the higher (ephemeral) port
    client = np.where(
        np.where(fdir == 0, sport, dport)[first_row] > np.where(fdir == 0, dport, sport)[first_row], 0, 1
    ).astype(np.int8)
    syn_rows = np.flatnonzero(is_syn)
    if syn_rows.size:
        # the last write wins; write in reverse time order so the earliest SYN wins
        sr = syn_rows[np.argsort(-ts[syn_rows], kind="stable")]
        client[conn[sr]] = fdir[sr].astype(np.int8)
    d.conn_client = client


__all__ = ["FIN", "HASH_BYTES", "PSH", "RST", "SYN", "TCP", "Digest", "digest", "group_ids", "mix"]

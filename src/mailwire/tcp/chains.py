"""Retransmission chains: every resend of the same bytes, with times, intervals and a cause.

Theory of operation
-------------------
The mailwire-mode kernel run records, for each resent frame, the first captured frame that
carried the same starting sequence number (``orig_frame``; byte-range lookup in the unacked
list, so TSO super-segments and partial ACKs are handled). Grouping resends by that root gives
one chain per original segment, e.g. the stalled DATA segment of an SMTP session resent at
0.25, 0.5, 1, 2, 4 s intervals. Each resend gets a cause class in the spirit of tstat
(Mellia et al. 2008):

* ``rto`` -- resent after the retransmission timer (no duplicate-ACK / SACK trigger)
* ``fast_retransmit`` -- resent after >= 2 duplicate ACKs or SACK from the receiver
* ``unnecessary`` -- the receiver had already acknowledged those bytes (spurious)
* ``reordering`` -- bytes never captured before arriving late (out of order)
* ``network_duplicate`` -- the same IP packet captured twice (not a TCP resend at all)
* ``unknown`` -- a plain resend sooner than the handshake RTT (10 ms if unknown): no timer
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mailwire.jsonout import as_record
from mailwire.spill import positional
from mailwire.tcp.analysis import (
    F_DUPLICATE_FRAME,
    F_FAST_RETRANSMISSION,
    F_OUT_OF_ORDER,
    F_RETRANSMISSION,
    F_SPURIOUS_RETRANSMISSION,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mailwire.tcp.summary import Connection


@positional
@dataclass(slots=True)
class Resend:
    frame: int
    ts_ns: int
    since_original_s: float
    interval_s: float  # since the previous send of these bytes
    cause: str


@positional
@dataclass(slots=True)
class Chain:
    """One original segment and every later copy of it."""

    conn_id: int
    direction: str  # "c2s" / "s2c"
    original_frame: int
    original_ts_ns: int
    length: int  # payload bytes of the original
    resends: list[Resend] = field(default_factory=list)
    doubling: bool = False  # intervals grow by ~2x each time (exponential RTO backoff)

    @property
    def intervals_s(self) -> list[float]:
        return [r.interval_s for r in self.resends]

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = as_record(self)
        d["intervals_s"] = self.intervals_s
        return d


def cause_of(mask: int, interval_s: float = 1.0, irtt_s: float | None = None) -> str:
    """tstat-like cause of one resend; a plain resend sooner than the RTT is no timer's doing."""
    if mask & F_DUPLICATE_FRAME:
        return "network_duplicate"
    if mask & F_SPURIOUS_RETRANSMISSION:
        return "unnecessary"
    if mask & F_FAST_RETRANSMISSION:
        return "fast_retransmit"
    if mask & F_OUT_OF_ORDER:
        return "reordering"
    if interval_s < (irtt_s if irtt_s else 0.010):
        return "unknown"
    return "rto"


def is_doubling(intervals: list[float]) -> bool:
    """At least two intervals, each 1.4x to 2.6x the previous one (RTO backoff; the first step is
    often below 2x because the first RTO includes the RTT variance term)."""
    if len(intervals) < 2:
        return False
    return all(b > 0 and 1.4 <= b / a <= 2.6 for a, b in itertools.pairwise(intervals) if a > 0)


def resent_rows(mailwire: np.ndarray, orig_frame: np.ndarray) -> np.ndarray:
    """Rows that carry bytes sent before (a chain's resends): their mailwire flag says so and
    they name the frame that first carried the bytes."""
    flagged = (mailwire & np.uint32(F_RETRANSMISSION | F_OUT_OF_ORDER | F_DUPLICATE_FRAME)) != 0
    return np.flatnonzero(flagged & (orig_frame >= 0))


def original_rows(frame: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of the ``wanted`` frame numbers in the sorted ``frame`` column (those found)."""
    if frame.shape[0] == 0:
        return np.zeros(0, np.int64)
    j = np.minimum(np.searchsorted(frame, wanted), frame.shape[0] - 1)
    return np.unique(j[frame[j] == wanted])


def build_chains(frames: dict[str, np.ndarray], connections: Sequence[Connection]) -> list[Chain]:
    mw = frames["mailwire"]
    idx = resent_rows(mw, frames["orig_frame"])
    if idx.size == 0:
        return []
    orig = frames["orig_frame"][idx]
    order = np.lexsort((frames["frame"][idx], orig))
    idx, orig = idx[order], orig[order]
    starts = np.flatnonzero(np.r_[True, orig[1:] != orig[:-1]])
    ends = np.r_[starts[1:], idx.size]
    fnum = frames["frame"]
    # the handshake RTT of the connections with chains (a shard's records are not indexed by
    # number; they may be on disk: one pass, keeping only what is read)
    with_chains = set(np.unique(frames["stream"][idx]).tolist())
    irtt_of = {c.id: c.rtt_handshake_s for c in connections if c.id in with_chains}
    chains: list[Chain] = []
    for a, b in zip(starts, ends, strict=True):  # one step per chain
        of = int(orig[a])
        j = int(np.searchsorted(fnum, of))
        if j >= fnum.shape[0] or fnum[j] != of:
            continue
        t0 = int(frames["ts_ns"][j])
        conn = int(frames["stream"][j])
        ch = Chain(
            conn_id=conn,
            direction="c2s" if int(frames["direction"][j]) == 0 else "s2c",
            original_frame=of,
            original_ts_ns=t0,
            length=int(frames["seglen"][j]),
        )
        prev = t0
        for i in idx[a:b]:
            t = int(frames["ts_ns"][i])
            iv = (t - prev) / 1e9
            irtt = irtt_of.get(conn)
            ch.resends.append(Resend(int(fnum[i]), t, (t - t0) / 1e9, iv, cause_of(int(mw[i]), iv, irtt)))
            prev = t
        rto_iv = [r.interval_s for r in ch.resends if r.cause == "rto"]
        ch.doubling = is_doubling(rto_iv)
        chains.append(ch)
    return chains


__all__ = ["Chain", "Resend", "build_chains", "cause_of", "is_doubling", "original_rows", "resent_rows"]

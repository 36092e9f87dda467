"""Clock offset and drift between two captures, from packets matched in both directions.

Theory of operation
-------------------
For a packet seen at A then at B, ``t_b - t_a = offset + delay_ab``; for one seen at B then at A,
``t_b - t_a = offset - delay_ba``. Delays are never negative, so the offset lies in the interval
``[max(reverse deltas), min(forward deltas)]``: any value inside it makes every matched packet
arrive downstream after it left upstream. We take the middle (equal minimal delays both ways, the
NTP assumption). Which direction of a connection is "forward" (A before B) needs no clock: the
direction whose median delta is larger is, since the two medians differ by the round-trip delay.

Long captures from machines with free-running clocks drift: the offset is modelled as
``offset + drift * (t_a - t0)``, the drift fitted through the middle of per-time-bin intervals, and
the interval recomputed on the detrended deltas. If it is still empty (timestamp jitter), the
middle is kept and the size of the violation is reported. With matched packets in one direction
only, the offset is a bound (zero minimal delay assumed) and said so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mailwire.compare.flows import group_ids

if TYPE_CHECKING:
    import numpy.typing as npt

    I64 = npt.NDArray[np.int64]


@dataclass
class Clock:
    """Downstream clock minus upstream clock: ``offset_ns + drift * (t_a - t0_ns)``."""

    offset_ns: float = 0.0
    drift: float = 0.0  # seconds per second (ppm = drift * 1e6)
    t0_ns: int = 0
    method: str = "none"  # "two-way", "one-way (bound)", "none"
    violation_ns: float = 0.0  # > 0 when no offset satisfies causality for every matched pair
    delays: dict[str, dict[str, float]] = field(default_factory=dict)  # per direction, seconds
    # per direction, seconds: the longest delay of the pairs, leaving out those far beyond the 90th
    # percentile (a packet paired with its own resend reads as one RTO of delay)
    in_flight: dict[str, float] = field(default_factory=dict)
    pairs: int = 0

    def at(self, t_a: np.ndarray) -> np.ndarray:
        """Offset (ns) at upstream times ``t_a``."""
        return self.offset_ns + self.drift * (t_a.astype(np.float64) - self.t0_ns)

    def b_to_a(self, t_b: np.ndarray) -> I64:
        """Downstream timestamps converted to the upstream clock (ns)."""
        # t_b = t_a + off + drift (t_a - t0)  =>  t_a = (t_b - off + drift t0) / (1 + drift)
        tb = t_b.astype(np.float64)
        return np.rint((tb - self.offset_ns + self.drift * self.t0_ns) / (1.0 + self.drift)).astype(np.int64)


def _group_median(g: I64, v: np.ndarray, ng: int) -> np.ndarray:
    o = np.lexsort((v, g))
    gs, vs = g[o], v[o]
    starts = np.searchsorted(gs, np.arange(ng), side="left")
    ends = np.searchsorted(gs, np.arange(ng), side="right")
    med = np.full(ng, np.nan)
    ok = ends > starts
    mid = (starts + ends - 1) // 2
    mid2 = (starts + ends) // 2
    med[ok] = (vs[mid[ok]] + vs[np.minimum(mid2[ok], len(vs) - 1)]) / 2.0
    return med


def estimate(t_a: I64, t_b: I64, half_a: I64, n_halves: int) -> tuple[Clock, npt.NDArray[np.int8]]:
    """Estimate the clock from unique matched pairs; also say, per A half, which way it flows.

    Returns the clock and ``forward`` per A half: 1 = seen at A first (A→B), 0 = B→A, -1 unknown.
    """
    clock = Clock(pairs=int(t_a.size))
    forward = np.full(n_halves, -1, dtype=np.int8)
    if t_a.size == 0:
        return clock, forward
    delta = (t_b - t_a).astype(np.float64)
    med = _group_median(half_a, delta, n_halves)
    has = ~np.isnan(med)
    conn_has_both = has[0::2] & has[1::2]
    both = np.flatnonzero(conn_has_both)
    f0 = med[2 * both] >= med[2 * both + 1]
    forward[2 * both] = f0
    forward[2 * both + 1] = ~f0
    fwd_pair = forward[half_a]
    t0 = int(t_a.min())
    clock.t0_ns = t0
    x = (t_a - t0).astype(np.float64)
    F = fwd_pair == 1
    R = fwd_pair == 0
    if F.any() and R.any():
        clock.drift = _fit_drift(x, delta, F, R)
        dd = delta - clock.drift * x
        lo, hi = float(dd[R].max()), float(dd[F].min())
        clock.offset_ns = (lo + hi) / 2.0
        clock.violation_ns = max(0.0, lo - hi)
        clock.method = "two-way"
    else:
        # one direction known at best: assume zero minimal delay in it
        if F.any() or R.any():
            clock.offset_ns = float(delta[F].min()) if F.any() else float(delta[R].max())
        else:
            # no connection matched both ways: take everything as flowing A -> B (path order)
            clock.offset_ns = float(delta.min())
        clock.method = "one-way (bound)"
    # halves matched one way only: forward if their median delta lies above the offset
    und = np.flatnonzero(has & (forward < 0))
    if und.size:
        off_h = clock.offset_ns
        forward[und] = (med[und] >= off_h).astype(np.int8)
    fwd_pair = forward[half_a]
    dd = delta - clock.drift * x - clock.offset_ns
    for name, sel, sign in (("a_to_b", fwd_pair == 1, 1.0), ("b_to_a", fwd_pair == 0, -1.0)):
        if sel.any():
            v = sign * dd[sel] / 1e9
            clock.delays[name] = {
                "min": float(v.min()),
                "median": float(np.median(v)),
                "max": float(v.max()),
                "packets": int(sel.sum()),
            }
            lo, q90 = float(v.min()), float(np.quantile(v, 0.9))
            cut = q90 + 4.0 * (q90 - lo) + 1e-3
            clock.in_flight[name] = float(v[v <= cut].max())
    return clock, forward


def _fit_drift(x: np.ndarray, delta: np.ndarray, F: np.ndarray, R: np.ndarray) -> float:
    """Slope through the middles of per-bin [max reverse, min forward] intervals (0 if too short)."""
    span = float(x.max() - x.min()) if x.size else 0.0
    if span < 60e9 or F.sum() < 20 or R.sum() < 20:
        return 0.0
    nb = 16
    b = np.minimum((x / span * nb).astype(np.int64), nb - 1)
    lo = np.full(nb, -np.inf)
    hi = np.full(nb, np.inf)
    np.maximum.at(lo, b[R], delta[R])
    np.minimum.at(hi, b[F], delta[F])
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.sum() < 3:
        return 0.0
    centers = (np.arange(nb) + 0.5) * span / nb
    slope = np.polyfit(centers[ok], (lo[ok] + hi[ok]) / 2.0, 1)[0]
    return float(slope)


__all__ = ["Clock", "estimate", "group_ids"]

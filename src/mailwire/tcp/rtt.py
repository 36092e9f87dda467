"""Each connection's RTT samples (tshark's ``ack_rtt``: how long after a segment the ACK that
covers it came) for the connection records' count, minimum, median and maximum.

The samples of the whole capture are about one per three frames; kept until the end they grew
with the capture (4.5 MB per million packets of the bench capture). A connection that is retired
(closed a chunk ago, see ``TcpAnalyzer._retire``) leaves only its figures in memory: count, min,
the two middle values, max. Its samples go to an unnamed temporary file, read back only if a
late frame of it brings more (then the figures are recomputed from all of them, exactly).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mailwire.spill import WordFile

# columns of a connection's figures
R_COUNT, R_MIN, R_MID_LO, R_MID_HI, R_MAX = range(5)
R_NFIELDS = 5


def _figures(conv: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(connection numbers, their figures) of samples sorted by (connection, value)."""
    u, start, cnt = np.unique(conv, return_index=True, return_counts=True)
    out = np.empty((u.shape[0], R_NFIELDS), dtype=np.int64)
    out[:, R_COUNT] = cnt
    out[:, R_MIN] = val[start]
    out[:, R_MID_LO] = val[start + (cnt - 1) // 2]
    out[:, R_MID_HI] = val[start + cnt // 2]
    out[:, R_MAX] = val[start + cnt - 1]
    return u, out


def _sorted(conv: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((val, conv))
    return conv[order], val[order]


class RttSamples:
    """Add each chunk's samples with :meth:`add`; :meth:`retire` closed connections';
    :meth:`figures` at the end."""

    def __init__(self) -> None:
        self._conv: list[np.ndarray] = []
        self._val: list[np.ndarray] = []
        # per connection number: its retired figures (count 0: none) and where its samples are
        self._stat = np.zeros((0, R_NFIELDS), dtype=np.int64)
        self._at = np.zeros(0, dtype=np.int64)
        self._file = WordFile("mailwire-rtt-")
        self.retired = 0

    def add(self, conv: npt.NDArray[np.int64], val: npt.NDArray[np.int64]) -> None:
        if conv.shape[0]:
            self._conv.append(conv.astype(np.int64, copy=False))
            self._val.append(val.astype(np.int64, copy=False))

    def _joined(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._conv) > 1:
            self._conv, self._val = [np.concatenate(self._conv)], [np.concatenate(self._val)]
        if not self._conv:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self._conv[0], self._val[0]

    def _grow(self, n: int) -> None:
        old = self._at.shape[0]
        if n <= old:
            return
        cap = max(n, 2 * old, 1024)
        stat = np.zeros((cap, R_NFIELDS), dtype=np.int64)
        stat[:old] = self._stat
        at = np.full(cap, -1, dtype=np.int64)
        at[:old] = self._at
        self._stat, self._at = stat, at

    def retire(self, convs: npt.NDArray[np.int64]) -> int:
        """Keep only the figures of connections ``convs`` (unique numbers) in memory, their
        samples on disk. A connection retired before keeps its later samples here (rare: a late
        frame after its close). Returns how many connections left; 0 when the file cannot be
        written (the samples stay, same results)."""
        conv, val = self._joined()
        if conv.shape[0] == 0 or convs.shape[0] == 0:
            return 0
        top = max(int(conv.max()), int(convs.max())) + 1
        self._grow(top)
        mask = np.zeros(top, dtype=np.bool_)
        mask[convs] = True
        mask &= self._at[:top] < 0
        go = mask[conv]
        if not go.any():
            return 0
        gc, gv = _sorted(conv[go], val[go])
        try:
            at = self._file.append(gv)
        except OSError:
            return 0
        u, fig = _figures(gc, gv)
        start = np.concatenate([[0], np.cumsum(fig[:-1, R_COUNT])])
        self._at[u] = at + 8 * start
        self._stat[u] = fig
        stay = ~go
        self._conv, self._val = [conv[stay]], [val[stay]]
        self.retired += int(u.shape[0])
        return int(u.shape[0])

    def _read(self, c: int) -> np.ndarray:
        return self._file.read(
            int(self._at[c]), int(self._stat[c, R_COUNT]), f"RTT samples of connection {c}"
        )

    def figures(self, nconv: int) -> npt.NDArray[np.int64]:
        """Per connection number below ``nconv``: its figures (row of ``R_*`` columns, count 0
        for a connection without samples)."""
        out = np.zeros((nconv, R_NFIELDS), dtype=np.int64)
        m = min(nconv, self._at.shape[0])
        out[:m] = self._stat[:m]
        conv, val = self._joined()
        if conv.shape[0] == 0:
            return out
        conv, val = _sorted(conv, val)
        u, fig = _figures(conv, val)
        keep = u < nconv
        u, fig = u[keep], fig[keep]
        both = u < m
        both[both] = self._at[u[both]] >= 0
        out[u[~both]] = fig[~both]
        if both.any():  # retired, then more samples: all of them, from the file and from here
            bounds = np.searchsorted(conv, u[both]), np.searchsorted(conv, u[both], side="right")
            for c, a, b in zip(u[both].tolist(), *(x.tolist() for x in bounds), strict=True):
                allv = np.sort(np.concatenate([self._read(c), val[a:b]]))
                out[c] = _figures(np.zeros(allv.shape[0], np.int64), allv)[1][0]
        return out

    def release(self) -> None:
        self._conv, self._val = [], []
        self._stat = np.zeros((0, R_NFIELDS), dtype=np.int64)
        self._at = np.zeros(0, dtype=np.int64)
        self._file.close()


__all__ = ["R_COUNT", "R_MAX", "R_MID_HI", "R_MID_LO", "R_MIN", "R_NFIELDS", "RttSamples"]

"""Which frames are TCP, and which connection key (address/port pair) each belongs to.

Theory of operation
-------------------
A connection key is the unordered pair of endpoints ((address, port), (address, port)), as
Wireshark's conversation table keys TCP. Each frame's key is found for a whole chunk at once: the
two endpoints are put in a canonical order (lower endpoint first; ``kdir`` says whether the frame
goes lower -> higher (0) or the other way (1)), the five 64-bit words of the canonical key are
hashed, ``np.unique`` groups the hashes, and a small dict (one entry per distinct key, never per
packet) maps them to key ids that stay valid across chunks. Hash collisions are checked for and
resolved exactly.

A key is not yet a connection: port reuse (a new SYN with a different ISN) opens a new
connection on the same key. That decision needs per-flow state in file order, so it is made in
the analysis kernel (``analysis.run_kernel``, step 0), which numbers connections in order of first
appearance, exactly as tshark's ``tcp.stream``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mailwire.capture.table import PacketTable, Warn

if TYPE_CHECKING:
    import numpy.typing as npt


_NOT_ANALYSABLE = int(Warn.IP_FRAGMENT | Warn.BAD_TCP_OFFSET | Warn.L4_TRUNCATED)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser, vectorised (wrap-around arithmetic is intended)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_rows(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per row of a (n, k) uint64 array."""
    h = np.full(words.shape[0], 0x9E3779B97F4A7C15, dtype=np.uint64)
    for j in range(words.shape[1]):
        h = _mix(h ^ words[:, j])
    return h


@dataclass
class TcpFrames:
    """The TCP frames of one chunk, as the kernel wants them (row ``rows[i]`` of the table)."""

    rows: npt.NDArray[np.int64]
    cols: dict[str, np.ndarray]


class KeyRegistry:
    """Connection keys seen so far: canonical endpoint words per key id, stable across chunks.

    Keys are looked up by a 64-bit hash of their words in sorted arrays (a main part and a newer
    part merged into it when it has grown), each hit checked against the words themselves: about
    60 bytes a key, where a dictionary of 40-byte strings took about 180. Keys whose hash another
    key has already (a collision: possible with crafted input, the hash is not keyed) are found
    by their exact bytes in a dictionary of their own."""

    def __init__(self) -> None:
        self._n = 0
        self._words = np.zeros((256, 5), dtype=np.uint64)
        self._h = np.zeros(0, dtype=np.uint64)  # sorted hashes, and the key id of each
        self._k = np.zeros(0, dtype=np.int64)
        self._h_new = np.zeros(0, dtype=np.uint64)
        self._k_new = np.zeros(0, dtype=np.int64)
        self._exact: dict[bytes, int] = {}

    def __len__(self) -> int:
        return self._n

    def words(self) -> npt.NDArray[np.uint64]:
        """(n_keys, 5): lower endpoint hi, lo; higher endpoint hi, lo; ports (lower << 16 | higher)."""
        return self._words[: self._n]

    def _find(self, h: np.ndarray) -> np.ndarray:
        """The key id filed under each hash (-1: none)."""
        out = np.full(h.shape[0], -1, dtype=np.int64)
        for hs, ks in ((self._h, self._k), (self._h_new, self._k_new)):
            if hs.shape[0]:
                j = np.minimum(np.searchsorted(hs, h), hs.shape[0] - 1)
                hit = hs[j] == h
                out[hit] = ks[j[hit]]
        return out

    def ids_for(self, words: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Key id of every row of ``words`` (registering new keys)."""
        n = words.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        h = hash_rows(words)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        rep = words[first]
        if not np.array_equal(rep[inverse], words):  # a hash collision: group exactly instead
            void = np.ascontiguousarray(words).view(np.dtype((np.void, 40))).ravel()
            _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
            rep = words[first]
        rh = h[first]
        local = self._find(rh)
        filed = local >= 0
        # a hash filed for other words: those keys are looked up by their bytes (one step each)
        other = np.flatnonzero(filed)[~np.all(self._words[local[filed]] == rep[filed], axis=1)]
        local[other] = -1
        if self._exact:
            for j in np.flatnonzero(local < 0).tolist():
                local[j] = self._exact.get(rep[j].tobytes(), -1)
        new = np.flatnonzero(local < 0)  # in the order of rep: ids as given before, one by one
        if new.shape[0]:
            ids = np.arange(self._n, self._n + new.shape[0], dtype=np.int64)
            local[new] = ids
            top = self._n + new.shape[0]
            if top > self._words.shape[0]:
                grown = np.zeros((max(2 * self._words.shape[0], top), 5), dtype=np.uint64)
                grown[: self._n] = self._words[: self._n]
                self._words = grown
            self._words[self._n : top] = rep[new]
            self._n = top
            # filed by hash: the first new key of each hash not filed yet; the others by bytes
            nh = rh[new]
            _, once = np.unique(nh, return_index=True)
            by_hash = np.zeros(new.shape[0], dtype=np.bool_)
            by_hash[once] = True
            by_hash &= self._find(nh) < 0
            for j in np.flatnonzero(~by_hash).tolist():
                self._exact[rep[new[j]].tobytes()] = int(ids[j])
            self._file(nh[by_hash], ids[by_hash])
        return local[inverse.ravel()]

    def _file(self, h: np.ndarray, k: np.ndarray) -> None:
        hs, ks = np.concatenate([self._h_new, h]), np.concatenate([self._k_new, k])
        if hs.shape[0] > max(4096, self._h.shape[0] // 8):  # merged once it has grown
            hs, ks = np.concatenate([self._h, hs]), np.concatenate([self._k, ks])
            order = np.argsort(hs, kind="stable")
            self._h, self._k = hs[order], ks[order]
            self._h_new, self._k_new = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
            return
        order = np.argsort(hs, kind="stable")
        self._h_new, self._k_new = hs[order], ks[order]


def select_tcp(table: PacketTable, keys: KeyRegistry) -> TcpFrames:
    """Pick the TCP frames of a chunk and compute the kernel's input columns for them."""
    c = table.columns
    # tshark reads ports, seq, ack, flags and window before it looks up the connection: a header
    # cut before the window (snaplen) gets no tcp.stream
    head = c["caplen"] - c["l4_off"].astype(np.int64)
    tcp = (c["proto"] == 6) & (c["sport"] >= 0) & (c["dport"] >= 0) & (c["l4_off"] >= 0) & (head >= 16)
    # ICMP errors quoting a TCP header: tshark dissects the quoted header and files it under its
    # connection (creating one if needed), so it gets a tcp.stream but no sequence analysis.
    # The quoted packet came from the ICMP message's destination.
    # tshark needs the quoted header up to the window (16 bytes), as for any TCP header
    inner_ip = np.where(c["ip_version"] == 6, 40, 20)
    quoted_tcp = c["caplen"] - c["l4_off"].astype(np.int64) - 8 - inner_ip
    quoted = ((c["proto"] == 1) | (c["proto"] == 58)) & (c["inner_proto"] == 6) & (c["inner_sport"] >= 0)
    quoted &= (c["l4_off"] >= 0) & (quoted_tcp >= 16)
    rows = np.flatnonzero(tcp | quoted).astype(np.int64)
    q = quoted[rows]
    if q.any():
        sh = np.where(q, c["dst_hi"][rows], c["src_hi"][rows])
        sl = np.where(q, c["dst_lo"][rows], c["src_lo"][rows])
        dh = np.where(q, c["inner_dst_hi"][rows], c["dst_hi"][rows])
        dl = np.where(q, c["inner_dst_lo"][rows], c["dst_lo"][rows])
        sp = np.where(q, c["inner_sport"][rows], c["sport"][rows]).astype(np.uint64)
        dp = np.where(q, c["inner_dport"][rows], c["dport"][rows]).astype(np.uint64)
    else:  # the usual chunk: no ICMP quoting TCP, so no per-row choice (measured: saves the copies)
        sh, sl, dh, dl = c["src_hi"][rows], c["src_lo"][rows], c["dst_hi"][rows], c["dst_lo"][rows]
        sp, dp = c["sport"][rows].astype(np.uint64), c["dport"][rows].astype(np.uint64)
    src_low = (sh < dh) | ((sh == dh) & ((sl < dl) | ((sl == dl) & (sp <= dp))))
    words = np.empty((rows.shape[0], 5), dtype=np.uint64)
    words[:, 0] = np.where(src_low, sh, dh)
    words[:, 1] = np.where(src_low, sl, dl)
    words[:, 2] = np.where(src_low, dh, sh)
    words[:, 3] = np.where(src_low, dl, sl)
    words[:, 4] = np.where(src_low, (sp << np.uint64(16)) | dp, (dp << np.uint64(16)) | sp)
    key = keys.ids_for(words)

    warn = c["warnings"][rows]
    seglen = c["payload_len"][rows].astype(np.int64)
    analysable = (c["tcp_hdr_len"][rows] >= 20) & (seglen >= 0) & ((warn & _NOT_ANALYSABLE) == 0) & ~q
    seglen = np.where(analysable, seglen, 0)

    seq = c["seq"][rows].astype(np.int64)
    ack = c["ack"][rows].astype(np.int64)
    tflags = np.where(q, 0, c["tcp_flags"][rows]).astype(np.int64)
    win = c["win"][rows].astype(np.int64)
    ip_id = c["ip_id"][rows].astype(np.int64)
    tsval = c["opt_ts_val"][rows].astype(np.int64)
    sack_n = c["sack_n"][rows].astype(np.int64)
    # bytes SACKed per frame: only the few frames with SACK blocks are looked at
    sack_sum = np.zeros(rows.shape[0], dtype=np.int64)
    has_sack = np.flatnonzero(sack_n > 0)
    if has_sack.size:
        sr = rows[has_sack]
        le = c["sack_le"][sr].astype(np.int64)
        re = c["sack_re"][sr].astype(np.int64)
        blocks = np.arange(4)[None, :] < sack_n[has_sack, None]
        sack_sum[has_sack] = np.where(blocks, (re - le) & 0xFFFFFFFF, 0).sum(axis=1)

    fpw = np.empty((rows.shape[0], 7), dtype=np.uint64)
    for j, col in enumerate((ip_id, seq, ack, seglen, tflags, win, tsval)):
        fpw[:, j] = col.astype(np.uint64)
    fp = hash_rows(fpw).view(np.int64)
    fp[fp == 0] = 1  # 0 marks an empty slot of the kernel's duplicate ring

    cols: dict[str, np.ndarray] = {
        "key": key,
        "kdir": np.where(src_low, 0, 1).astype(np.int64),
        "analysable": analysable,
        "seq": seq,
        "ack": ack,
        "tflags": tflags,
        "win": win,
        "seglen": seglen,
        "ts": c["ts_ns"][rows].astype(np.int64),
        "frame": c["frame"][rows].astype(np.int64),
        "wscale": c["opt_wscale"][rows].astype(np.int64),
        "sack_sum": sack_sum.astype(np.int64),
        "ip_id": ip_id,
        "fp": fp,
    }
    return TcpFrames(rows=rows, cols=cols)


__all__ = ["KeyRegistry", "TcpFrames", "hash_rows", "select_tcp"]

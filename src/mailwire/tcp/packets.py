"""The TCP columns of ``mailwire packets``: ``stream``, ``analysis`` and tshark's analysis values.

The packets command streams chunks; :class:`PacketColumns` keeps a :class:`TcpAnalyzer` across
them (sequence analysis needs every earlier frame) and returns, for the selected rows of each
chunk, JSON text per field, ready to be joined into the command's JSON lines:

* ``stream`` -- tshark's ``tcp.stream`` (null for non-TCP frames)
* ``analysis`` -- list of flag names, Wireshark-compatible (e.g. ``["retransmission"]``)
* ``analysis_mailwire`` -- the mailwire flags where they differ (e.g. ``["duplicate_frame"]``)
* ``ack_rtt``, ``initial_rtt``, ``rto`` (seconds), ``bytes_in_flight``, ``rto_frame``,
  ``dupack_num``, ``dupack_frame``, ``acks_frame`` -- as tshark's ``tcp.analysis.*`` (null if absent)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from mailwire.capture.table import PacketTable
from mailwire.tcp.analysis import FLAG_NAMES
from mailwire.tcp.engine import TcpAnalyzer

FIELDS = (
    "stream",
    "analysis",
    "analysis_mailwire",
    "ack_rtt",
    "initial_rtt",
    "bytes_in_flight",
    "rto",
    "rto_frame",
    "dupack_num",
    "dupack_frame",
    "acks_frame",
)
_SECONDS = {"ack_rtt": "ack_rtt_ns", "initial_rtt": "initial_rtt_ns", "rto": "rto_ns"}
_INTS = ("bytes_in_flight", "rto_frame", "dupack_num", "dupack_frame", "acks_frame")


def _names(mask: int, cache: dict[int, str]) -> str:
    text = cache.get(mask)
    if text is None:
        text = json.dumps([n for b, n in FLAG_NAMES.items() if mask & b])
        cache[mask] = text
    return text


class PacketColumns:
    """Feed every chunk of the capture in order (also those whose rows are all filtered out)."""

    def __init__(self) -> None:
        self.analyzer = TcpAnalyzer(reassemble=False, frame_fields="none")  # chunk by chunk only
        self._cache: dict[int, str] = {}

    def columns(self, table: PacketTable, rows: np.ndarray) -> dict[str, list[str]]:
        a = self.analyzer.feed(table)
        out: dict[str, list[str]] = {}
        stream = a.stream[rows]
        out["stream"] = [str(s) if s >= 0 else "null" for s in stream.tolist()]
        ws, mw = a.wireshark[rows].tolist(), a.mailwire[rows].tolist()
        out["analysis"] = [
            _names(m, self._cache) if s >= 0 else "null" for m, s in zip(ws, stream, strict=True)
        ]
        out["analysis_mailwire"] = [
            _names(m, self._cache) if (m != w and s >= 0) else "null"
            for m, w, s in zip(mw, ws, stream, strict=True)
        ]
        # as tshark prints them: a zero RTT / RTO is not shown (Wireshark's 0-as-unset; the TcpResult
        # frames keep the measured 0)
        for name, src in _SECONDS.items():
            v = a.values[src][rows]
            out[name] = [f"{x / 1e9:.9f}" if x > 0 else "null" for x in v.tolist()]
        rto = a.values["rto_ns"][rows]
        for name in _INTS:
            v = a.values[name][rows]
            if name == "rto_frame":
                v = np.where(rto > 0, v, -1)
            out[name] = [str(x) if x > 0 else "null" for x in v.tolist()]
        return out


def jsonl_with_tcp(base: Iterator[str], cols: dict[str, list[str]]) -> Iterator[str]:
    """The capture stage's JSON lines with the TCP fields appended to each object."""
    keys = [f',"{k}":' for k in FIELDS]
    lists = [cols[k] for k in FIELDS]
    for line, vals in zip(base, zip(*lists, strict=True), strict=True):
        yield line.rstrip("\n")[:-1] + "".join(k + v for k, v in zip(keys, vals, strict=True)) + "}\n"


def run_packets_tcp(
    capture: str | Path,
    filter_text: str | None = None,
    fmt: str = "jsonl",
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    chunk_bytes: int = 16 << 20,
) -> int:
    """``mailwire packets`` with the TCP fields: the capture stage's records (``capture.output``)
    plus :data:`FIELDS` per frame in JSON Lines (the table format is left as the capture stage
    prints it). Every chunk goes through the TCP analysis, filtered rows or not."""
    from mailwire.capture.output import jsonl_lines, run_packets, table_lines

    pc = PacketColumns()

    def lines(table: PacketTable, rows: np.ndarray) -> Iterator[str]:
        cols = pc.columns(table, rows)  # state must see every chunk, whatever is printed
        if fmt == "jsonl":
            return jsonl_with_tcp(jsonl_lines(table, rows), cols)
        return table_lines(table, rows)

    return run_packets(capture, filter_text, fmt, out, err, chunk_bytes=chunk_bytes, lines=lines)


__all__ = ["FIELDS", "PacketColumns", "jsonl_with_tcp", "run_packets_tcp"]

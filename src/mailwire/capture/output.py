"""``mailwire packets``: one record per frame, like ``tshark -T fields``, streamed chunk by chunk.

Theory of operation
-------------------
For each table that :func:`~mailwire.capture.read.iter_tables` yields, the optional filter gives a
row mask; the selected rows' columns are turned into Python lists once (``tolist``) and the lines
are assembled from them, so memory stays bounded by one chunk and no per-field NumPy access happens
per row. Every value printed is a number, an address (digits, hex, dots, colons) or one of our
fixed warning names, so JSON lines are assembled directly without an escaping step.

``ts`` is the timestamp in seconds as a decimal string with the interface's full precision (6
digits for µs files, 9 for ns; null for records without one); ``seq``/``ack``/``win`` are the raw
header fields. ``interface`` is the index into the file's interfaces counted across all pcapng
sections (tshark 4.0 prints the id local to the section; the two differ only in multi-section
files). Absent values are ``null``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from mailwire.capture.addr import format_addrs
from mailwire.capture.filter import Filter, FilterError, compile_filter
from mailwire.capture.read import CaptureError, iter_tables
from mailwire.capture.table import WARN_NAMES, PacketTable, Warn

JSON_FIELDS = (
    "frame",
    "ts",
    "interface",
    "caplen",
    "len",
    "link_type",
    "src",
    "dst",
    "ip_id",
    "ttl",
    "proto",
    "sport",
    "dport",
    "seq",
    "ack",
    "tcp_flags",
    "win",
    "tcp_len",
    "warnings",
)
_FLAG_LETTERS = "FSRPAUECN"  # fin syn rst psh ack urg ece cwr ae(ns)


def ts_strings(table: PacketTable, rows: np.ndarray | None = None) -> list[str]:
    """Timestamps as ``seconds.fraction`` with each frame's interface precision ('' = none)."""
    c = table.columns
    sel = slice(None) if rows is None else rows
    ts = c["ts_ns"][sel]
    iface = c["interface"][sel]
    no_ts = (c["warnings"][sel] & np.uint32(Warn.NO_TIMESTAMP)) != 0
    digits = np.full(ts.shape[0], 9, np.int64)
    for k, ifc in enumerate(table.interfaces):
        digits[iface == k] = ifc.ts_digits
    sec = ts // 1_000_000_000
    frac = ts % 1_000_000_000
    out: list[str] = []
    for s, f, d, nt in zip(sec.tolist(), frac.tolist(), digits.tolist(), no_ts.tolist(), strict=True):
        if nt:
            out.append("")
        elif d <= 0:
            out.append(str(s))
        else:
            out.append(f"{s}.{f // 10 ** (9 - d):0{d}d}")
    return out


def _warning_lists(w: np.ndarray) -> list[str]:
    """JSON array text per row, computed once per distinct mask."""
    cache: dict[int, str] = {}
    out: list[str] = []
    for m in w.tolist():
        s = cache.get(m)
        if s is None:
            s = "[" + ",".join(f'"{name}"' for bit, name in WARN_NAMES.items() if m & bit) + "]"
            cache[m] = s
        out.append(s)
    return out


def _opt(values: np.ndarray, present: np.ndarray) -> list[str]:
    return ["null" if not p else str(v) for v, p in zip(values.tolist(), present.tolist(), strict=True)]


def _columns(table: PacketTable, rows: np.ndarray) -> dict[str, list[str]]:
    """Printable text of every JSON field for ``rows`` (``null`` where absent)."""
    c = {k: v[rows] for k, v in table.columns.items()}
    has_ip = c["ip_version"] > 0
    tcp_full = (c["proto"] == 6) & (c["tcp_hdr_len"] >= 0)
    ports = c["sport"] >= 0
    src = format_addrs(c["src_hi"], c["src_lo"], has_ip)
    dst = format_addrs(c["dst_hi"], c["dst_lo"], has_ip)
    ts = ts_strings(table, rows)
    return {
        "frame": [str(x) for x in c["frame"].tolist()],
        "ts": ["null" if not t else f'"{t}"' for t in ts],
        "interface": _opt(c["interface"], c["interface"] >= 0),
        "caplen": [str(x) for x in c["caplen"].tolist()],
        "len": [str(x) for x in c["wirelen"].tolist()],
        "link_type": _opt(c["link_type"], c["link_type"] >= 0),
        "src": ["null" if not a else f'"{a}"' for a in src],
        "dst": ["null" if not a else f'"{a}"' for a in dst],
        "ip_id": _opt(c["ip_id"], c["ip_id"] >= 0),
        "ttl": _opt(c["ttl"], c["ttl"] >= 0),
        "proto": _opt(c["proto"], c["proto"] >= 0),
        "sport": _opt(c["sport"], ports),
        "dport": _opt(c["dport"], ports),
        "seq": _opt(c["seq"], tcp_full),
        "ack": _opt(c["ack"], tcp_full),
        "tcp_flags": _opt(c["tcp_flags"], tcp_full),
        "win": _opt(c["win"], tcp_full),
        "tcp_len": _opt(c["payload_len"], tcp_full & (c["payload_len"] >= 0)),
        "warnings": _warning_lists(c["warnings"]),
    }


def jsonl_lines(table: PacketTable, rows: np.ndarray) -> Iterator[str]:
    cols = _columns(table, rows)
    # "key":value text per column first (one comprehension per column), then one join per row
    pairs = [[f'"{k}":{v}' for v in cols[k]] for k in JSON_FIELDS]
    for vals in zip(*pairs, strict=True):
        yield "{" + ",".join(vals) + "}\n"


def _flags_text(flags: int) -> str:
    return "".join(ch for bit, ch in enumerate(_FLAG_LETTERS) if flags & (1 << bit)) or "-"


TABLE_HEADER = (
    f"{'frame':>7} {'ts':<21} {'source':<28} {'destination':<28} {'proto':>5} {'flags':<6} "
    f"{'seq':>10} {'ack':>10} {'win':>5} {'len':>6}  warnings\n"
)


def table_lines(table: PacketTable, rows: np.ndarray) -> Iterator[str]:
    cols = _columns(table, rows)
    for i in range(len(cols["frame"])):
        src = cols["src"][i].strip('"') if cols["src"][i] != "null" else "-"
        dst = cols["dst"][i].strip('"') if cols["dst"][i] != "null" else "-"
        if cols["sport"][i] != "null":
            src = f"{src}:{cols['sport'][i]}" if ":" not in src else f"[{src}]:{cols['sport'][i]}"
            dst = f"{dst}:{cols['dport'][i]}" if ":" not in dst else f"[{dst}]:{cols['dport'][i]}"
        flags = cols["tcp_flags"][i]
        fl = _flags_text(int(flags)) if flags != "null" else ""
        ts = cols["ts"][i].strip('"') if cols["ts"][i] != "null" else "-"
        warns = cols["warnings"][i].strip("[]").replace('"', "")

        def d(k: str, idx: int = i) -> str:
            v = cols[k][idx]
            return "" if v == "null" else v

        yield (
            f"{cols['frame'][i]:>7} {ts:<21} {src:<28} {dst:<28} {d('proto'):>5} {fl:<6} "
            f"{d('seq'):>10} {d('ack'):>10} {d('win'):>5} {d('tcp_len'):>6}  {warns}\n"
        )


def run_packets(
    capture: str | Path,
    filter_text: str | None = None,
    fmt: str = "jsonl",
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    chunk_bytes: int = 16 << 20,
    lines: Callable[[PacketTable, np.ndarray], Iterable[str]] | None = None,
) -> int:
    """The ``packets`` command: returns the process exit code.

    ``lines`` renders the selected rows of each chunk; by default the capture stage's own JSON
    Lines or table. Later stages (``tcp.packets``) pass their own to add fields per frame.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if fmt not in ("jsonl", "table"):
        err.write(f"mailwire packets: unknown --format {fmt!r} (use jsonl or table)\n")
        return 2
    flt: Filter | None = None
    if filter_text:
        try:
            flt = compile_filter(filter_text)
        except FilterError as exc:
            err.write(f"mailwire packets: bad --filter: {exc}\n")
            return 2
    if lines is None:
        lines = jsonl_lines if fmt == "jsonl" else table_lines
    if fmt == "table":
        out.write(TABLE_HEADER)
    try:
        for table in iter_tables(capture, chunk_bytes=chunk_bytes):
            for issue in table.issues:
                err.write(f"mailwire: warning: {issue}\n")
            if len(table) == 0:
                continue
            rows = np.nonzero(flt.mask(table))[0] if flt is not None else np.arange(len(table))
            out.writelines(lines(table, rows))
    except CaptureError as exc:
        err.write(f"mailwire packets: {exc}\n")
        return 2  # nothing could be read: the exit code every command uses for that
    return 0


__all__ = ["JSON_FIELDS", "jsonl_lines", "run_packets", "table_lines", "ts_strings"]

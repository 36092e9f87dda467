"""``mailwire info``: what capinfos tells about a capture, plus what our decoder met.

Theory of operation
-------------------
:func:`summarize` streams the capture through :func:`~mailwire.capture.read.iter_tables` and folds
each chunk into running totals (counts, byte sums, first/last/earliest/latest timestamps, per-link
and per-warning counts), so memory stays bounded by one chunk. The result is a plain dict (the
``--json`` output); :func:`render_text` prints it capinfos-style.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mailwire import jsonout
from mailwire.capture.decode import SUPPORTED_LINKS, link_name
from mailwire.capture.read import CaptureError, CaptureInfo, iter_tables
from mailwire.capture.table import WARN_NAMES, Warn

MAX_ISSUES_LISTED = 100


def _ts_text(ns: int | None, digits: int) -> str | None:
    if ns is None:
        return None
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac // 10 ** (9 - digits):0{digits}d}" if digits > 0 else str(sec)


def summarize(path: str | Path) -> dict[str, Any]:
    """Capinfos-like facts about ``path``; raises CaptureError if it cannot be read at all."""
    info = CaptureInfo(path=str(path))
    n = 0
    data_bytes = 0
    wire_bytes = 0
    first = last = earliest = latest = None
    links: Counter[int] = Counter()
    warns: Counter[str] = Counter()
    per_iface: Counter[int] = Counter()
    issues: list[str] = []
    n_issues = 0
    max_caplen = 0
    not_packets = 0
    tables = iter_tables(path, info=info)
    interfaces = []
    for t in tables:
        interfaces = t.interfaces
        n_issues += len(t.issues)
        for iss in t.issues:
            if len(issues) < MAX_ISSUES_LISTED:
                issues.append(str(iss))
        if len(t) == 0:
            continue
        c = t.columns
        w = c["warnings"]
        pkt = (w & np.uint32(Warn.NOT_A_PACKET)) == 0
        not_packets += int((~pkt).sum())
        n += len(t)
        data_bytes += int(c["caplen"][pkt].sum())
        wire_bytes += int(c["wirelen"][pkt].sum())
        max_caplen = max(max_caplen, int(c["caplen"][pkt].max(initial=0)))
        has_ts = pkt & ((w & np.uint32(Warn.NO_TIMESTAMP)) == 0)
        ts = c["ts_ns"][has_ts]
        if ts.size:
            if first is None:
                first = int(ts[0])
            last = int(ts[-1])
            lo, hi = int(ts.min()), int(ts.max())
            earliest = lo if earliest is None else min(earliest, lo)
            latest = hi if latest is None else max(latest, hi)
        lt, cnt = np.unique(c["link_type"][pkt], return_counts=True)
        links.update(dict(zip(lt.tolist(), cnt.tolist(), strict=True)))
        ifc, cnt = np.unique(c["interface"][pkt], return_counts=True)
        per_iface.update(dict(zip(ifc.tolist(), cnt.tolist(), strict=True)))
        for bit, name in WARN_NAMES.items():
            k = int(((w & np.uint32(bit)) != 0).sum())
            if k:
                warns[name] += k
    digits = max((i.ts_digits for i in interfaces), default=6)
    span_ns = (latest - earliest) if earliest is not None and latest is not None else None
    size = None
    if str(path) != "-":
        try:
            size = os.path.getsize(path)
        except OSError:
            size = None
    return {
        "file": info.path,
        "format": info.format,
        "compression": info.compression,
        "file_size": size,
        "data_size_decompressed": info.bytes_read,
        "details": info.details,
        "packets": n - not_packets,
        "frames": n,
        "non_packet_records": not_packets,
        "captured_bytes": data_bytes,
        "wire_bytes": wire_bytes,
        "largest_frame": max_caplen,
        "link_types": [
            {
                "link_type": lt,
                "name": link_name(lt),
                "frames": cnt,
                "supported": lt in SUPPORTED_LINKS,
            }
            for lt, cnt in sorted(links.items())
        ],
        "interfaces": [
            {
                "id": k,
                "name": i.name,
                "description": i.description,
                "os": i.os,
                "link_type": i.link_type,
                "link_name": link_name(i.link_type),
                "snaplen": i.snaplen,
                "ts_digits": i.ts_digits,
                "ts_offset_s": i.ts_offset_s,
                "section": i.section,
                "comments": i.comments,
                "frames": per_iface.get(k, 0),
            }
            for k, i in enumerate(interfaces)
        ],
        "first_ts": _ts_text(first, digits),
        "last_ts": _ts_text(last, digits),
        "earliest_ts": _ts_text(earliest, digits),
        "latest_ts": _ts_text(latest, digits),
        "span_s": _ts_text(span_ns, digits),
        "truncated_frames": warns.get("snaplen_truncated", 0),
        "tso_super_segments": warns.get("super_segment", 0),
        "unsupported_link_frames": warns.get("unsupported_link", 0),
        "warnings": dict(sorted(warns.items())),
        "decode_issues": n_issues,
        "issues": issues,
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _when(epoch: Any) -> str:
    """An epoch timestamp as UTC date and time, the epoch value kept (it is what filters take)."""
    if epoch in (None, ""):
        return "-"
    text = str(epoch)
    try:
        whole, _, frac = text.partition(".")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(whole)))
    except (ValueError, OverflowError, OSError):  # out of the platform's range: the number alone
        return text
    return f"{stamp}{'.' + frac if frac else ''} UTC ({text})"


def render_text(s: dict[str, Any]) -> str:
    """capinfos-style text."""
    lines = [f"File name:           {s['file']}"]
    comp = s["compression"]
    lines.append(f"File format:         {s['format']}" + (f" ({comp}-compressed)" if comp != "none" else ""))
    det = s.get("details") or {}
    if det.get("byte_order"):
        lines.append(f"Byte order:          {det['byte_order']}")
    if s["file_size"] is not None:
        lines.append(f"File size:           {s['file_size']} bytes")
    lines.append(f"Packets:             {s['packets']}")
    if s["non_packet_records"]:
        lines.append(f"Other records:       {s['non_packet_records']} (pcapng custom blocks, numbered)")
    lines.append(f"Data size:           {s['captured_bytes']} bytes captured, {s['wire_bytes']} on the wire")
    lines.append(f"Largest frame:       {s['largest_frame']} bytes")
    for lt in s["link_types"]:
        sup = "" if lt["supported"] else "  (not decoded)"
        lines.append(
            f"Link type:           {lt['name']} ({lt['link_type']}): {_count(lt['frames'], 'frame')}{sup}"
        )
    for i in s["interfaces"]:
        name = i["name"] or i["description"] or "-"
        lines.append(
            f"Interface {i['id']}:         {name}, {i['link_name']}, snaplen {i['snaplen']}, "
            f"{i['ts_digits']}-digit timestamps, {_count(i['frames'], 'frame')}"
            + (f", ts offset {i['ts_offset_s']} s" if i["ts_offset_s"] else "")
        )
        for com in i["comments"]:
            lines.append(f"  comment:           {com}")
    if det.get("sections"):
        for k, sec in enumerate(det["sections"]):
            extra = ", ".join(f"{key} {val}" for key, val in sec.items() if key != "comments")
            lines.append(f"Section {k}:           {extra}")
            for com in sec.get("comments", []):
                lines.append(f"  comment:           {com}")
    lines.append(f"First packet time:   {_when(s['first_ts'])}")
    lines.append(f"Last packet time:    {_when(s['last_ts'])}")
    if (s["earliest_ts"], s["latest_ts"]) != (s["first_ts"], s["last_ts"]):  # frames out of time order
        lines.append(f"Earliest packet:     {_when(s['earliest_ts'])}")
        lines.append(f"Latest packet:       {_when(s['latest_ts'])}")
    span = s["span_s"]
    lines.append(f"Capture duration:    {'-' if span in (None, '') else f'{span} seconds'}")
    lines.append(f"Truncated frames:    {s['truncated_frames']} (captured length < wire length)")
    lines.append(f"TSO super-segments:  {s['tso_super_segments']}")
    if s["unsupported_link_frames"]:
        lines.append(
            f"Unsupported link:    {_count(s['unsupported_link_frames'], 'frame')} counted, not decoded"
        )
    if s["warnings"]:
        lines.append("Decode warnings:     " + ", ".join(f"{k} {v}" for k, v in s["warnings"].items()))
    lines.append(f"Decode issues:       {s['decode_issues']}")
    for iss in s["issues"]:
        lines.append(f"  {iss}")
    return "\n".join(lines) + "\n"


def run_info(paths: list[str], as_json: bool, out: Any, err: Any) -> int:
    """The ``info`` command; exit code 2 when no file could be read (the project's policy), else 0."""

    results = []
    ok = 0
    for p in paths:
        try:
            s = summarize(p)
        except CaptureError as exc:
            err.write(f"mailwire info: {exc}\n")
            results.append({"file": p, "error": str(exc)})
            continue
        ok += 1
        results.append(s)
        if not as_json:
            out.write(render_text(s))
            if len(paths) > 1:
                out.write("\n")
    if as_json:
        jsonout.write(results if len(paths) > 1 else results[0], out)
    return 0 if ok else 2


__all__ = ["render_text", "run_info", "summarize"]

"""Time-sequence graphs (Stevens / tcptrace style) of one TCP connection, as inline SVG.

Theory of operation
-------------------
The graph plots, for one direction of a connection (the *sender*, normally the SMTP client that
pushes the message body), relative sequence number against time:

* each data segment is a vertical bar from ``seq`` to ``seq + len``;
* retransmissions (segments that end at or below the highest byte already sent) are red bars with
  a mark, so an RTO backoff shows as a ladder of red ticks with widening gaps;
* the ACK line (green) is the cumulative ACK from the other direction, as a step line;
* the receive-window line (yellow) is ``ack + window << wscale``: when segments touch it the
  sender is window-limited, when it is flat on the ACK line the receiver advertised a zero window;
* zero-window advertisements are marked with a small triangle on the ACK line;
* SACK blocks are short purple bars.

A connection can have a million packets; the SVG must not. Everything is reduced per *pixel
column* with NumPy: ordinary segments become one bar per column (min start to max end), the ACK
and window lines keep the min and max of each column, and the marks (retransmissions, zero
windows, SACK blocks) are deduplicated on their pixel position and capped. All bars of one kind
share one ``<path>`` element, so the DOM size depends on the plot width, never on the packets.

Inputs are plain NumPy columns (the packet table's names), so the module needs neither the TCP
analysis nor a file; it never reads files and knows nothing of SMTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from markupsafe import Markup, escape

if TYPE_CHECKING:
    import numpy.typing as npt


# Caps on marks that are kept individually (after pixel deduplication).
MAX_MARKS = 4000

TCP_SYN = 0x002
TCP_RST = 0x004
TCP_FIN = 0x001


@dataclass
class SeqSeries:
    """One direction of a connection plus the reverse direction's ACKs, as columns.

    ``d_*`` are the sender's segments, ``a_*`` the receiver's packets (ACK, window, SACK). Sequence
    numbers are raw 32-bit values; :func:`time_sequence_svg` unwraps them.
    """

    d_ts_ns: npt.NDArray[np.int64]
    d_seq: npt.NDArray[np.uint32]
    d_len: npt.NDArray[np.int64]
    d_flags: npt.NDArray[np.uint16]
    a_ts_ns: npt.NDArray[np.int64]
    a_ack: npt.NDArray[np.uint32]
    a_win: npt.NDArray[np.int64]
    a_flags: npt.NDArray[np.uint16]
    a_sack_n: npt.NDArray[np.int8] | None = None
    a_sack_le: npt.NDArray[np.uint32] | None = None
    a_sack_re: npt.NDArray[np.uint32] | None = None
    wscale: int = 0  # the receiver's window scale shift (0 when not negotiated / not seen)
    # Optional per-segment retransmission mask from the TCP analysis; computed here when absent.
    d_retrans: npt.NDArray[np.bool_] | None = None
    # Optional per-segment mask: sent here but never seen at the next capture point (compare).
    d_lost: npt.NDArray[np.bool_] | None = None
    title: str = ""
    notes: list[str] = field(default_factory=list)


def series_from_columns(
    cols: dict[str, np.ndarray],
    rows: npt.NDArray[np.intp] | None,
    sender: tuple[int, int, int],
    *,
    title: str = "",
) -> SeqSeries:
    """Split the rows of one connection into the sender's segments and the receiver's ACKs.

    ``sender`` is ``(addr_hi, addr_lo, port)`` of the data sender. ``rows`` selects the
    connection's rows (``None``: every row belongs to it). Window scale is taken from the
    receiver's SYN/SYN-ACK when both sides offered one (RFC 7323), else 0.
    """
    idx = np.arange(len(cols["frame"])) if rows is None else np.asarray(rows)
    tcp = cols["proto"][idx] == 6
    idx = idx[tcp]
    hi, lo, port = sender
    is_d = (cols["src_hi"][idx] == hi) & (cols["src_lo"][idx] == lo) & (cols["sport"][idx] == port)
    d = idx[is_d]
    a = idx[~is_d]
    flags = cols["tcp_flags"]
    syn_d = d[(flags[d] & TCP_SYN) != 0]
    syn_a = a[(flags[a] & TCP_SYN) != 0]
    wscale = 0
    if len(syn_d) and len(syn_a):
        ws_d = int(cols["opt_wscale"][syn_d[0]])
        ws_a = int(cols["opt_wscale"][syn_a[0]])
        if ws_d >= 0 and ws_a >= 0:
            wscale = min(ws_a, 14)
    sack_n = cols.get("sack_n")
    return SeqSeries(
        d_ts_ns=cols["ts_ns"][d].astype(np.int64),
        d_seq=cols["seq"][d].astype(np.uint32),
        d_len=np.maximum(cols["payload_len"][d].astype(np.int64), 0),
        d_flags=cols["tcp_flags"][d].astype(np.uint16),
        a_ts_ns=cols["ts_ns"][a].astype(np.int64),
        a_ack=cols["ack"][a].astype(np.uint32),
        a_win=cols["win"][a].astype(np.int64),
        a_flags=cols["tcp_flags"][a].astype(np.uint16),
        a_sack_n=None if sack_n is None else sack_n[a],
        a_sack_le=cols["sack_le"][a] if "sack_le" in cols else None,
        a_sack_re=cols["sack_re"][a] if "sack_re" in cols else None,
        wscale=wscale,
        title=title,
    )


def _unwrap(raw: npt.NDArray[np.uint32], base: int) -> npt.NDArray[np.int64]:
    """Sequence numbers relative to ``base``, unwrapped across 2**32 (differences taken mod 2**32
    as signed 32-bit, then accumulated, so a wrap mid-connection stays monotonic)."""
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    r = raw.astype(np.int64)
    first = (r[0] - base + (1 << 31)) % (1 << 32) - (1 << 31)
    steps = (np.diff(r) + (1 << 31)) % (1 << 32) - (1 << 31)
    out = np.empty_like(r)
    out[0] = first
    out[1:] = first + np.cumsum(steps)
    return out


@dataclass
class GraphStats:
    """What the graph shows, in numbers (for captions and tests)."""

    segments: int = 0
    retransmissions: int = 0
    zero_windows: int = 0
    sack_blocks: int = 0
    vanished: int = 0
    t_first_ns: int = 0
    t_last_ns: int = 0
    duration_s: float = 0.0
    max_seq: int = 0
    svg_elements: int = 0


def _retrans_mask(seq: npt.NDArray[np.int64], end: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """A data segment is a retransmission when it does not reach beyond the highest byte sent before.

    (Wireshark adds finer classes -- fast, spurious -- that need the ACK history; for the graph
    "resends old bytes" is the visible fact.)
    """
    if end.size == 0:
        return np.zeros(0, dtype=bool)
    prev_max = np.empty_like(end)
    prev_max[0] = np.iinfo(np.int64).min
    np.maximum.accumulate(end[:-1], out=prev_max[1:])
    return (end <= prev_max) & (end > seq)


def _nice_step(span: float, target: int) -> float:
    if span <= 0:
        return 1.0
    raw = span / max(target, 1)
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _fmt_bytes(v: float) -> str:
    if abs(v) >= 1_000_000:
        return f"{v / 1e6:g} MB"
    if abs(v) >= 1000:
        return f"{v / 1e3:g} kB"
    return f"{v:g}"


def _column_bars(
    x: npt.NDArray[np.int64], y0: npt.NDArray[np.int64], y1: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per distinct x (pixel column): min of y0 and max of y1 (pixel units, y grows downward:
    callers pass top/bottom already)."""
    if x.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ux, start = np.unique(xs, return_index=True)
    lo = np.minimum.reduceat(y0[order], start)
    hi = np.maximum.reduceat(y1[order], start)
    return ux, lo, hi


def _dedup_points(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64], cap: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """Unique pixel positions, at most ``cap`` (evenly thinned beyond); returns the dropped count."""
    if x.size == 0:
        return x, y, 0
    key = np.unique(x.astype(np.int64) * 100_000 + y.astype(np.int64))
    dropped = 0
    if key.size > cap:
        keep = np.linspace(0, key.size - 1, cap).astype(np.int64)
        dropped = int(key.size - cap)
        key = key[keep]
    return key // 100_000, key % 100_000, dropped


def time_sequence_svg(
    s: SeqSeries,
    *,
    width: int = 860,
    height: int = 360,
    highlight_ns: list[tuple[int, str]] | None = None,
    t_range: tuple[int, int] | None = None,
    y_top: int | None = None,
) -> tuple[Markup, GraphStats]:
    """The SVG (safe markup, every label escaped) and the numbers it shows.

    ``t_range`` (ns) and ``y_top`` (bytes) give several graphs the same axes, so the same
    connection at two capture points can be compared at a glance.
    """
    stats = GraphStats()
    ml, mr, mt, mb = 64, 12, 40, 38
    pw, ph = width - ml - mr, height - mt - mb

    data = s.d_len > 0
    syn = (s.d_flags & TCP_SYN) != 0
    # Sequence origin: the sender's ISN + 1 when the SYN was seen, else the lowest data seq.
    if syn.any():
        base = int(s.d_seq[np.argmax(syn)]) + 1
    elif s.d_seq.size:
        base = int(s.d_seq[0])
    else:
        base = 0
    seq_all = _unwrap(s.d_seq, base)
    t0_candidates = [int(a[0]) for a in (s.d_ts_ns, s.a_ts_ns) if a.size]
    t0 = min(t0_candidates) if t0_candidates else 0
    t1_candidates = [int(a[-1]) for a in (s.d_ts_ns, s.a_ts_ns) if a.size]
    t1 = max(t1_candidates) if t1_candidates else 1
    stats.t_first_ns, stats.t_last_ns = t0, t1
    if t_range is not None:
        t0, t1 = t_range

    d_t = s.d_ts_ns[data]
    d_seq = seq_all[data]
    d_end = d_seq + s.d_len[data]
    retr = s.d_retrans[data] if s.d_retrans is not None else _retrans_mask(d_seq, d_end)

    ack_ok = (s.a_flags & 0x010) != 0
    ack_ok &= (s.a_flags & TCP_RST) == 0
    a_t = s.a_ts_ns[ack_ok]
    a_ack = _unwrap(s.a_ack[ack_ok], base) if ack_ok.any() else np.zeros(0, dtype=np.int64)
    a_win = np.maximum(s.a_win[ack_ok], 0) << int(s.wscale)
    # A window in a SYN is never scaled (RFC 7323 §2.2).
    a_win = np.where((s.a_flags[ack_ok] & TCP_SYN) != 0, np.maximum(s.a_win[ack_ok], 0), a_win)
    a_rwin = a_ack + a_win
    zero = (s.a_win[ack_ok] == 0) & ((s.a_flags[ack_ok] & (TCP_SYN | TCP_FIN)) == 0)

    y_max = 1
    for arr in (d_end, a_ack):
        if arr.size:
            y_max = max(y_max, int(arr.max()))
    # The window line only matters near the data: when it runs far above, clip it at the top
    # rather than squash the segments into the bottom of the plot.
    if a_rwin.size:
        y_max = max(y_max, min(int(a_rwin.max()), int(y_max * 1.25)))
    if y_top is not None:
        y_max = max(y_max, int(y_top))
    y_min = 0
    for arr in (d_seq, a_ack):
        if arr.size:
            y_min = min(y_min, int(arr.min()))
    span_t = max(t1 - t0, 1)
    span_y = max(y_max - y_min, 1)

    def px(t: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.clip(ml + (t - t0) * (pw - 1) // span_t, ml, ml + pw - 1).astype(np.int64)

    def py(y: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return (mt + ph - 1 - (np.clip(y, y_min, y_max) - y_min) * (ph - 1) // span_y).astype(np.int64)

    parts: list[str] = []
    title = escape(s.title)
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tsg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="time-sequence graph {title}">'
    )
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="plot"/>')
    # Axes and ticks.
    t_span_s = span_t / 1e9
    step = _nice_step(t_span_s, 8)
    ticks: list[str] = []
    v = 0.0
    while v <= t_span_s + 1e-12 and len(ticks) < 40:
        xx = ml + int(v / t_span_s * (pw - 1)) if t_span_s > 0 else ml
        ticks.append(f'<line x1="{xx}" y1="{mt + ph}" x2="{xx}" y2="{mt + ph + 4}"/>')
        ticks.append(f'<text x="{xx}" y="{mt + ph + 16}" text-anchor="middle">{v:g}</text>')
        v += step
    ystep = _nice_step(span_y, 6)
    yv = np.ceil(y_min / ystep) * ystep
    while yv <= y_max and len(ticks) < 90:
        yy = int(py(np.array([int(yv)]))[0])
        ticks.append(f'<line x1="{ml - 4}" y1="{yy}" x2="{ml}" y2="{yy}"/>')
        ticks.append(f'<text x="{ml - 6}" y="{yy + 4}" text-anchor="end">{escape(_fmt_bytes(yv))}</text>')
        yv += ystep
    parts.append('<g class="axis">' + "".join(ticks) + "</g>")
    parts.append(
        f'<text class="axlabel" x="{ml + pw // 2}" y="{height - 4}" text-anchor="middle">time (s)</text>'
        f'<text class="axlabel" x="12" y="{mt + ph // 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {mt + ph // 2})">relative sequence</text>'
    )
    if title:
        parts.append(f'<text class="gtitle" x="{ml}" y="16">{title}</text>')

    # Window line, ACK line: step lines reduced to min/max per pixel column.
    for arr, cls in ((a_rwin, "win"), (a_ack, "ack")):
        if arr.size == 0:
            continue
        x = px(a_t)
        y = py(arr)
        ux, ylo, yhi = _column_bars(x, np.minimum(y, y), y)
        # First/last value in each column keeps the step shape; min/max keeps the extremes.
        order = np.argsort(x, kind="stable")
        xs, ys = x[order], y[order]
        _, first_i = np.unique(xs, return_index=True)
        last_i = np.r_[first_i[1:] - 1, xs.size - 1]
        pts: list[str] = []
        prev_y: int | None = None
        for i in range(ux.size):
            col = int(ux[i])
            yf, yl = int(ys[first_i[i]]), int(ys[last_i[i]])
            if prev_y is not None:
                pts.append(f"H{col}V{yf}")
            else:
                pts.append(f"M{col} {yf}")
            if int(ylo[i]) != int(yhi[i]):
                pts.append(f"V{int(ylo[i])}V{int(yhi[i])}V{yl}")
            prev_y = yl
        parts.append(f'<path class="{cls}" d="{"".join(pts)}"/>')

    # Ordinary data segments: one bar per pixel column.
    ok = ~retr
    stats.segments = int(d_t.size)
    stats.retransmissions = int(retr.sum())
    if ok.any():
        ux, top, bot = _column_bars(px(d_t[ok]), py(d_end[ok]), py(d_seq[ok]))
        bot = np.maximum(bot, top + 1)
        d = "".join(f"M{int(a)} {int(b)}V{int(c)}" for a, b, c in zip(ux, top, bot, strict=True))
        parts.append(f'<path class="seg" d="{d}"/>')
    # Retransmissions: each distinct pixel position kept, bar plus an "R" tick.
    if retr.any():
        rx, rtop, rbot = px(d_t[retr]), py(d_end[retr]), py(d_seq[retr])
        ux, uy, dropped = _dedup_points(rx, rtop, MAX_MARKS)
        # Bottom per kept mark: the matching min over retransmissions in that column.
        cx, _, cbot = _column_bars(rx, rtop, rbot)
        bot_of = dict(zip(cx.tolist(), cbot.tolist(), strict=True))
        d = "".join(
            f"M{int(a)} {int(b)}V{max(int(bot_of[int(a)]), int(b) + 1)}" for a, b in zip(ux, uy, strict=True)
        )
        marks = "".join(f"M{int(a) - 3} {int(b)}h6" for a, b in zip(ux, uy, strict=True))
        parts.append(f'<path class="rtx" d="{d}"/><path class="rtxmark" d="{marks}"/>')
        if dropped:
            s.notes.append(f"{dropped} retransmission marks thinned (same pixel region)")
    # Segments that vanished before the next capture point: hollow circles over their bars.
    if s.d_lost is not None and s.d_lost[data].any():
        lost = s.d_lost[data]
        stats.vanished = int(lost.sum())
        lx_, ly_, _ = _dedup_points(px(d_t[lost]), py(d_end[lost]), MAX_MARKS)
        d = "".join(
            f"M{int(a) - 4} {int(b)}a4 4 0 1 0 8 0a4 4 0 1 0 -8 0" for a, b in zip(lx_, ly_, strict=True)
        )
        parts.append(f'<path class="lost" d="{d}"/>')
    # Zero windows: triangles on the ACK line.
    stats.zero_windows = int(zero.sum())
    if zero.any():
        zx, zy, _ = _dedup_points(px(a_t[zero]), py(a_ack[zero]), MAX_MARKS)
        # Under the ACK line, pointing up at it (the line is often at the top of the plot).
        d = "".join(f"M{int(a)} {int(b) + 3}l-4 7h8z" for a, b in zip(zx, zy, strict=True))
        parts.append(f'<path class="zwin" d="{d}"/>')
    # SACK blocks.
    if s.a_sack_n is not None and s.a_sack_le is not None and s.a_sack_re is not None:
        n = s.a_sack_n[ack_ok].astype(np.int64)
        if n.size and int(n.max()) > 0:
            le = s.a_sack_le[ack_ok]
            re_ = s.a_sack_re[ack_ok]
            k = np.arange(4)[None, :] < n[:, None]
            rows, cols_ = np.nonzero(k)
            le_u = ((le[rows, cols_].astype(np.int64) - base + (1 << 31)) % (1 << 32)) - (1 << 31)
            re_u = ((re_[rows, cols_].astype(np.int64) - base + (1 << 31)) % (1 << 32)) - (1 << 31)
            # Bring into the unwrapped range of the ACK at the same packet.
            shift = a_ack[rows] - ((a_ack[rows] + (1 << 31)) % (1 << 32) - (1 << 31))
            le_u, re_u = le_u + shift, re_u + shift
            stats.sack_blocks = int(rows.size)
            sx = px(a_t[rows])
            cx, stop, sbot = _column_bars(sx, py(re_u), py(le_u))
            d = "".join(
                f"M{int(a) + 2} {int(b)}V{max(int(c), int(b) + 1)}"
                for a, b, c in zip(cx, stop, sbot, strict=True)
            )
            parts.append(f'<path class="sack" d="{d}"/>')
    # Highlights (e.g. the frame of the 421 reply) as labelled vertical lines.
    for ts, label in (highlight_ns or [])[:12]:
        hx = int(px(np.array([ts], dtype=np.int64))[0])
        parts.append(
            f'<line class="hl" x1="{hx}" y1="{mt}" x2="{hx}" y2="{mt + ph}"/>'
            f'<text class="hllabel" x="{hx + 3}" y="{mt + 10}">{escape(label)}</text>'
        )
    # Legend.
    legend = [
        ("seg", "data"),
        ("rtx", "retransmission"),
        ("ack", "ACK"),
        ("win", "receive window"),
        ("zwin", "zero window"),
        ("sack", "SACK"),
    ]
    if stats.vanished:
        legend.append(("lost", "vanished downstream"))
    widths = [26 + 7 * len(label) for _, label in legend]
    x0 = ml + pw - sum(widths)
    items = []
    for (cls, label), w in zip(legend, widths, strict=True):
        items.append(f'<path class="{cls}" d="M{x0} 28h14"/><text x="{x0 + 18}" y="32">{label}</text>')
        x0 += w
    parts.append('<g class="legend">' + "".join(items) + "</g>")
    parts.append("</svg>")
    svg = "".join(parts)
    stats.duration_s = span_t / 1e9
    stats.max_seq = int(y_max)
    stats.svg_elements = svg.count("<") - svg.count("</")
    return Markup(svg), stats


__all__ = ["GraphStats", "SeqSeries", "series_from_columns", "time_sequence_svg"]


def failures_timeline_svg(
    rows: list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    *,
    width: int = 860,
    buckets: int = 48,
    max_rows: int = 20,
) -> Markup:
    """Failures over time per destination: one strip per row, one cell per time bucket, green for
    buckets with only successes, red shaded by the failure share, grey when nothing was tried.

    ``rows`` is ``(label, success_ts_ns, failure_ts_ns)``; all rows share one time axis.
    """
    rows = rows[:max_rows]
    all_ts = [a for _, ok, bad in rows for a in (ok, bad) if a.size]
    if not all_ts:
        return Markup("")
    t0 = min(int(a.min()) for a in all_ts)
    t1 = max(int(a.max()) for a in all_ts)
    span = max(t1 - t0, 1)
    lab_w, rh, top = 220, 18, 8
    cw = (width - lab_w - 10) / buckets
    height = top + rh * len(rows) + 26
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="failures over time">'
    ]
    for r, (label, ok, bad) in enumerate(rows):
        y = top + r * rh
        short = label if len(label) <= 32 else label[:31] + "…"
        out.append(f'<text x="{lab_w - 6}" y="{y + 13}" text-anchor="end">{escape(short)}</text>')
        nok = np.bincount(np.minimum((ok - t0) * buckets // span, buckets - 1), minlength=buckets)
        nbad = np.bincount(np.minimum((bad - t0) * buckets // span, buckets - 1), minlength=buckets)
        for b in range(buckets):
            tot = int(nok[b] + nbad[b])
            if tot == 0:
                continue
            share = nbad[b] / tot
            cls = "ok" if share == 0 else "bad"
            op = 1.0 if share == 0 else 0.35 + 0.65 * share
            out.append(
                f'<rect class="{cls}" x="{lab_w + b * cw:.1f}" y="{y + 2}" width="{max(cw - 1, 1):.1f}" '
                f'height="{rh - 4}" fill-opacity="{op:.2f}">'
                f"<title>{int(nbad[b])} failed of {tot}</title></rect>"
            )
    span_s = span / 1e9
    unit, div = ("h", 3600.0) if span_s > 7200 else ("min", 60.0) if span_s > 120 else ("s", 1.0)
    for k in range(5):
        x = lab_w + k * (width - lab_w - 10) / 4
        out.append(
            f'<text class="tick" x="{x:.0f}" y="{height - 6}" text-anchor="middle">'
            f"+{span_s * k / 4 / div:.3g} {unit}</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))


__all__ += ["failures_timeline_svg"]

"""Assembling the HTML report's page from a diagnosis run: tables, ladders and graphs.

The packets of the cited connections are read back from their captures chunk by chunk
(``extract.collect_columns``), so the graphs cost memory in proportion to those connections, not
to the captures. Frames that compare found missing downstream are marked on the upstream graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mailwire.capture.addr import parse_addr
from mailwire.capture.read import CaptureError
from mailwire.diagnose.facts import SessionFact
from mailwire.report.extract import ConnSpec, collect_columns
from mailwire.report.graphs import failures_timeline_svg, series_from_columns, time_sequence_svg
from mailwire.report.html import CompareFigure, ComparePanel, LogView, ReportPage, SessionFigure
from mailwire.report.ladder import ladder_svg
from mailwire.report.wireshark import connection_filter

if TYPE_CHECKING:
    from mailwire.diagnose.engine import DiagnoseRun
    from mailwire.maillog.records import LogTriage

FAILED = frozenset(("rejected", "deferred", "network", "dns", "tls", "local"))
WINDOW_PAD_NS = 2_000_000_000


def _log_view(t: LogTriage) -> LogView:
    rows: list[dict[str, Any]] = []
    for d in t.destinations[:30]:
        rows.append(
            {
                "scope": d.scope,
                "destination": d.key,
                "attempts": d.attempts,
                "failed": d.failures,
                "failure rate": f"{d.failure_rate * 100:.0f}%",
                "intermittent": "yes" if d.intermittent else "no",
                "network failures at": ", ".join(f"{k} {v}" for k, v in d.stages.items()) or "—",
                "verdict": d.verdict,
            }
        )
    by_dom: dict[str, tuple[list[int], list[int]]] = {}
    for a in t.attempts:
        if a.outcome in ("suppressed", "expired"):
            continue
        ok, bad = by_dom.setdefault(a.domain or a.relay_host or "?", ([], []))
        ns = int(a.time.timestamp() * 1e9)
        if a.outcome == "delivered":
            ok.append(ns)
        elif a.outcome in FAILED:
            bad.append(ns)
    ranked = sorted(by_dom.items(), key=lambda kv: -len(kv[1][1]))
    timeline = failures_timeline_svg(
        [(k, np.array(v[0], dtype=np.int64), np.array(v[1], dtype=np.int64)) for k, v in ranked]
    )
    return LogView(
        rows=rows, timeline=timeline or None, verdicts=[f"{v.verdict}: {v.summary}" for v in t.verdicts]
    )


def _endpoint(text: str) -> tuple[str, int] | None:
    """``"192.0.2.10:40312"`` or ``"[2001:db8::1]:25"`` -> (address, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _conn_pairs(
    run: DiagnoseRun,
) -> dict[tuple[str, str], dict[tuple[str, int, str, int], tuple[str, int, str, int]]]:
    """(upstream capture, downstream capture) -> upstream connection -> the same connection as seen
    downstream (compare matched it, through NAT if any)."""
    out: dict[tuple[str, str], dict[tuple[str, int, str, int], tuple[str, int, str, int]]] = {}
    cmp = run.comparison
    if cmp is None:
        return out
    for h in cmp.hops:
        m = out.setdefault((str(h.get("upstream", "")), str(h.get("downstream", ""))), {})
        for c in h.get("connections", []):
            up = [_endpoint(x) for x in str(c.get("upstream", "")).split("->")]
            down = [_endpoint(x) for x in str(c.get("downstream", "")).split("->")]
            if len(up) == 2 and len(down) == 2 and None not in up and None not in down:
                (uc, ucp), (us, usp) = up  # type: ignore[misc]
                (dc, dcp), (ds, dsp) = down  # type: ignore[misc]
                m[(uc, ucp, us, usp)] = (dc, dcp, ds, dsp)
    return out


def spec_at(run: DiagnoseRun, s: SessionFact, capture: str) -> ConnSpec:
    """The cited session's connection as it appears in ``capture`` (same endpoints unless compare
    matched it to a translated one on the way there)."""
    key = (s.client, s.client_port, s.server, s.server_port)
    caps = run.diagnosis.captures
    if capture != s.capture and s.capture in caps and capture in caps:
        pairs = _conn_pairs(run)
        i, j = caps.index(s.capture), caps.index(capture)
        step = 1 if j > i else -1
        for k in range(i, j, step):
            a, b = (caps[k], caps[k + step])
            if step == 1:
                key = pairs.get((a, b), {}).get(key, key)
            else:
                back = {v: u for u, v in pairs.get((b, a), {}).items()}
                key = back.get(key, key)
    c, cp, sv, sp = key
    return ConnSpec(c, cp, sv, sp, s.start_ns - WINDOW_PAD_NS, s.end_ns + WINDOW_PAD_NS)


def _spec(s: SessionFact) -> ConnSpec:
    return ConnSpec(
        s.client, s.client_port, s.server, s.server_port, s.start_ns - WINDOW_PAD_NS, s.end_ns + WINDOW_PAD_NS
    )


def _lost_frames(run: DiagnoseRun, capture: str) -> set[int]:
    out: set[int] = set()
    cmp = run.comparison
    if cmp is None:
        return out
    for h in cmp.hops:
        for e in h.get("evidence", []):
            if e.get("kind") == "lost" and str(e.get("file", "")) == capture:
                out.update(int(f) for f in e.get("frames", []))
    return out


def _graph(
    cols: dict[str, np.ndarray],
    s: SessionFact,
    lost: set[int],
    title: str,
    *,
    t_range: tuple[int, int] | None = None,
    y_top: int | None = None,
) -> tuple[Any, list[str], Any]:
    hi, lo = parse_addr(s.client)
    series = series_from_columns(cols, None, (hi, lo, s.client_port), title=title)
    frames = cols["frame"]
    is_client = (
        (cols["src_hi"] == hi)
        & (cols["src_lo"] == lo)
        & (cols["sport"] == s.client_port)
        & (cols["proto"] == 6)
    )
    if lost:
        series.d_lost = np.isin(frames[is_client], np.fromiter(lost, dtype=np.int64))
    marks = []
    ev_frames = {e.frame: e.text for e in s.evidence}
    for fr, text in list(ev_frames.items())[:6]:
        hit = np.nonzero(frames == fr)[0]
        if hit.size and any(
            k in text.lower() for k in ("421", "reset", "rst", "fin", "zero window", "timeout")
        ):
            marks.append((int(cols["ts_ns"][hit[0]]), f"#{fr}"))
    svg, st = time_sequence_svg(series, highlight_ns=marks, t_range=t_range, y_top=y_top)
    notes = [
        f"{st.segments} data segments, {st.retransmissions} retransmissions, {st.zero_windows} zero-window "
        f"advertisements over {st.duration_s:.2f} s."
    ]
    if st.vanished:
        notes.append(f"{st.vanished} segments (circled) never reached the next capture point.")
    notes.extend(series.notes)
    return svg, notes, st


def _ladder(cols: dict[str, np.ndarray], s: SessionFact) -> Any:
    if not s.transcript:
        return None
    frames = cols.get("frame")
    ts = cols.get("ts_ns")
    rows = []
    for fr, _, d, line in s.transcript:
        if fr < 0 or d not in ("c2s", "s2c"):
            continue
        t = 0
        if frames is not None and ts is not None and frames.size:
            i = int(np.searchsorted(frames, fr))
            i = min(max(i, 0), frames.size - 1)
            t = int(ts[i])
        rows.append((fr, t, d, line))
    if not rows:
        return None
    marks = [e.frame for e in s.evidence]
    return ladder_svg(
        rows, client=f"{s.client}:{s.client_port}", server=f"{s.server}:{s.server_port}", mark_frames=marks
    )


def build_page(run: DiagnoseRun) -> ReportPage:
    d = run.diagnosis
    page = ReportPage(diagnosis=d)
    if run.triage is not None:
        page.log = _log_view(run.triage)
    page.hops = [
        {
            "from": h["upstream"],
            "to": h["downstream"],
            "verdict": h["verdict"],
            "lost packets": h["lost_packets"],
            "injected resets": h["injected_rst"],
            "what it means": h["summary"],
        }
        for h in d.hops
    ]
    caps = d.captures
    side = [x for x in run.cited if len(caps) >= 2 and x.capture == caps[0]][:3]
    # Every connection the page draws, per capture, so each capture is read once.
    wanted: dict[str, list[tuple[tuple[str, int, int], ConnSpec]]] = {}
    for s in run.cited:
        wanted.setdefault(s.capture, []).append(((s.capture, s.conn_id, 0), _spec(s)))
    for k, s in enumerate(side):
        for cap in caps:
            wanted.setdefault(cap, []).append(((s.capture, s.conn_id, 1 + k), spec_at(run, s, cap)))
    cols_of: dict[tuple[str, tuple[str, int, int]], dict[str, np.ndarray]] = {}
    for cap, items in wanted.items():
        if not run.rereadable(cap):  # stdin (consumed), or a file the analysis could not read
            continue
        try:
            got = collect_columns(cap, [sp for _, sp in items])
        except CaptureError as exc:  # changed since the analysis read it: draw without it
            d.warnings.append(f"graphs: {exc}")
            continue
        for (key, _), cols in zip(items, got, strict=True):
            cols_of[(cap, key)] = cols
    attempt_of = {(m.session.capture, m.session.conn_id): m.attempt for m in run.matches}
    for s in run.cited:
        cols = cols_of.get((s.capture, (s.capture, s.conn_id, 0)), {})
        title = f"{s.client}:{s.client_port} → {s.server}:{s.server_port}"
        graph: Any = None
        notes: list[str] = []
        if cols and cols["frame"].size:
            graph, notes, _ = _graph(
                cols, s, _lost_frames(run, s.capture), f"{Path(s.capture).name}: {title}"
            )
        evidence = [f"frame {e.frame}: {e.text}" for e in s.evidence[:8]]
        a = attempt_of.get((s.capture, s.conn_id))
        if a is not None:
            evidence.insert(
                0, f"the log's attempt ({a.file} line {a.line}): {a.raw or a.reason or a.outcome}"
            )
        page.sessions.append(
            SessionFigure(
                title=title,
                capture=s.capture,
                outcome=s.outcome,
                summary=s.summary,
                filter=connection_filter(s.client, s.client_port, s.server, s.server_port),
                ladder=_ladder(cols, s) if cols else None,
                graph=graph,
                graph_notes=notes,
                evidence=evidence,
            )
        )
    # The same connection at every capture point, side by side (translated through NAT where
    # compare matched it).
    for k, s in enumerate(side):
        views = []
        for cap in caps:
            cols = cols_of.get((cap, (s.capture, s.conn_id, 1 + k)), {})
            if not cols or not cols["frame"].size:
                continue
            sp = spec_at(run, s, cap)
            here = SessionFact(**{**s.__dict__, "client": sp.client, "client_port": sp.client_port,
                                  "server": sp.server, "server_port": sp.server_port})  # fmt: skip
            views.append((cap, cols, here, _graph(cols, here, _lost_frames(run, cap), Path(cap).name)[2]))
        # Same axes in every panel: the union of their time spans, the highest sequence.
        t_range = (min(v[3].t_first_ns for v in views), max(v[3].t_last_ns for v in views)) if views else None
        y_top = max((v[3].max_seq for v in views), default=0)
        panels = []
        for cap, cols, here, _ in views:
            graph, notes, _ = _graph(
                cols, here, _lost_frames(run, cap), Path(cap).name, t_range=t_range, y_top=y_top
            )
            panels.append(ComparePanel(capture=cap, graph=graph, caption=" ".join(notes)))
        if len(panels) >= 2:
            page.compares.append(
                CompareFigure(title=f"{s.client}:{s.client_port} → {s.server}:{s.server_port}", panels=panels)
            )
    return page


__all__ = ["build_page"]

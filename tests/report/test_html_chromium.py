"""The HTML report opened in headless Chromium: it renders, the graphs are there and non-empty,
nothing is fetched, the console is clean, and hostile strings from packets and logs stay text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import report_chromium
from report_synth import CLIENT, T0, stalled_connection

from mailwire.diagnose.model import Conclusion, Diagnosis, Evidence
from mailwire.report.graphs import failures_timeline_svg, series_from_columns, time_sequence_svg
from mailwire.report.html import LogView, ReportPage, SessionFigure, render_html
from mailwire.report.ladder import ladder_svg

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

SCRIPT = "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script>"
IMG = "\"><img src=x onerror=\"document.title='PWNED';document.body.setAttribute('data-pwned','2')\">"

pytestmark = pytest.mark.skipif(
    not report_chromium.available(), reason="chromium not installed at /usr/bin/chromium"
)


def hostile_page() -> ReportPage:
    cols = stalled_connection()
    graph, _ = time_sequence_svg(series_from_columns(cols, None, CLIENT, title=f"banner {SCRIPT}"))
    ms = 1_000_000
    transcript = [
        (3, T0 + 30 * ms, "s2c", f"220 mx.example.net ESMTP {SCRIPT}"),
        (4, T0 + 31 * ms, "c2s", "EHLO mail.example.org"),
        (5, T0 + 40 * ms, "s2c", "250-mx.example.net"),
        (6, T0 + 41 * ms, "c2s", f"MAIL FROM:<{IMG}@example.org>"),
        (7, T0 + 50 * ms, "s2c", "250 2.1.0 Ok"),
        (8, T0 + 51 * ms, "c2s", f"RCPT TO:<user{SCRIPT}@example.net>"),
        (9, T0 + 60 * ms, "s2c", "250 2.1.5 Ok"),
        (10, T0 + 61 * ms, "c2s", "DATA"),
        (11, T0 + 70 * ms, "s2c", "354 End data with <CR><LF>.<CR><LF>"),
        (95, T0 + 300_000 * ms, "s2c", "421 4.4.2 mx.example.net Error: timeout exceeded"),
    ]
    ladder = ladder_svg(transcript, client=f"client {IMG}", server="198.51.100.25", mark_frames=[95])
    diag = Diagnosis(
        logs=[f"maillog{SCRIPT}"],
        captures=["sender.pcap", f"edge{IMG}.pcap"],
        conclusions=[
            Conclusion(
                cause="path_loss_size_dependent",
                summary=f"Network path loss between the mail server and the edge router {SCRIPT}",
                confidence=0.9,
                between=["sender.pcap", f"edge{IMG}.pcap"],
                evidence=[
                    Evidence("log", f"status=deferred (conversation with {IMG} timed out)", "maillog", 12),
                    Evidence(
                        "frame",
                        "full-size segment never acknowledged",
                        "sender.pcap",
                        88,
                        "ip.addr==192.0.2.10 && tcp.port==40312",
                    ),
                ],
                next_step=f"Look at the device between the points {IMG}",
                alternative="path_loss_random",
                would_separate="a capture at the edge router",
            ),
            Conclusion(cause="reputation", summary="not reputation: 0 rejections", confidence=0.05),
        ],
        warnings=[f"capture dropped 3 packets {SCRIPT}"],
        stages={"logs": "ran", "analyze": "ran"},
    )
    ok = np.array([T0 + k * 60 * 10**9 for k in range(20)], dtype=np.int64)
    bad = np.array([T0 + k * 90 * 10**9 for k in range(5, 12)], dtype=np.int64)
    log = LogView(
        rows=[{"destination": f"gmail.com{IMG}", "attempts": 27, "failed": 7, "verdict": "network_path"}],
        timeline=failures_timeline_svg([(f"gmail.com{SCRIPT}", ok, bad), ("outlook.com", ok, bad[:2])]),
        verdicts=[f"network_path: timeouts while sending the body {SCRIPT}"],
    )
    sess = SessionFigure(
        title=f"192.0.2.10:40312 → 198.51.100.25:25 {SCRIPT}",
        capture="sender.pcap",
        outcome="path_loss_timeout",
        summary=f"DATA body unacknowledged {IMG}",
        filter="ip.addr==192.0.2.10 && tcp.port==40312 && ip.addr==198.51.100.25 && tcp.port==25",
        ladder=ladder,
        graph=graph,
        evidence=[f"frame 88: unacked {SCRIPT}"],
    )
    return ReportPage(diagnosis=diag, sessions=[sess], log=log)


EXPRESSIONS = {
    "title": "document.title",
    "pwned": "document.body.getAttribute('data-pwned')",
    "scripts": "document.querySelectorAll('script').length",
    "imgs": "document.querySelectorAll('img').length",
    "svgs": "document.querySelectorAll('svg').length",
    "graph_box": "(()=>{const r=document.querySelector('svg.tsg').getBoundingClientRect();"
    "return [r.width,r.height]})()",
    "graph_paths": "Array.from(document.querySelectorAll("
    "'svg.tsg > path.seg, svg.tsg > path.rtx, svg.tsg > path.ack'))"
    ".map(p=>{const b=p.getBBox();return [p.getAttribute('class'), b.width, b.height]})",
    "ladder_msgs": "document.querySelectorAll('svg.ladder g.msg').length",
    "timeline_cells": "document.querySelectorAll('svg.timeline rect').length",
    "text": "document.body.innerText",
    "dom_nodes": "document.getElementsByTagName('*').length",
}


def test_report_renders_offline_and_escapes_hostile_strings(tmp_path: Path) -> None:
    html = render_html(hostile_page())
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    v = report_chromium.visit(path, EXPRESSIONS, height=2600)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-hostile.png").write_bytes(v.screenshot)
    (ARTIFACTS / "report-hostile.html").write_text(html, encoding="utf-8")

    assert v.loaded
    # No request except the page itself.
    assert [u for u in v.requests if u != path.resolve().as_uri()] == []
    assert v.exceptions == []
    assert [c for c in v.console if c[0] in ("error", "warning", "assert")] == []
    assert [e for e in v.log_entries if e[0] in ("error", "warning")] == []
    # No script ran, no element was injected; the payloads are visible as text.
    assert v.values["title"] == "mailwire diagnosis"
    assert v.values["pwned"] is None
    assert v.values["scripts"] == 0 and v.values["imgs"] == 0
    assert "<script>document.title='PWNED'" in v.values["text"]
    assert "<img src=x onerror=" in v.values["text"]
    # Graphs present and non-empty: time-sequence graph laid out with drawn data, ACK line,
    # retransmissions; the ladder has one arrow per transcript line; the timeline has cells.
    assert v.values["svgs"] >= 3
    w, h = v.values["graph_box"]
    assert w > 300 and h > 100
    boxes = {cls: (bw, bh) for cls, bw, bh in v.values["graph_paths"]}
    assert set(boxes) == {"seg", "rtx", "ack"}
    assert boxes["seg"][0] > 20 and boxes["seg"][1] > 50  # 0.8 s of data in a 17 s graph
    assert boxes["ack"][0] > 20 and boxes["rtx"][0] > 300  # the RTO ladder spans the graph
    assert v.values["ladder_msgs"] == 10
    assert v.values["timeline_cells"] > 5
    assert len(v.screenshot) > 10_000


def test_a_fetch_would_be_seen(tmp_path: Path) -> None:
    """The harness itself can fail: a page that does load an external image is caught."""
    path = tmp_path / "leak.html"
    path.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    v = report_chromium.visit(path, {"t": "document.title"})
    assert [u for u in v.requests if u.startswith("http://127.0.0.1:9/")]

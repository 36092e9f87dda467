"""Time-sequence graph: what it shows, and that it stays small whatever the packet count."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
from report_synth import CLIENT, stalled_connection

from mailwire.report.graphs import failures_timeline_svg, series_from_columns, time_sequence_svg


def test_stall_shows_every_retransmission_and_the_ack_line(stalled: dict[str, np.ndarray]) -> None:
    s = series_from_columns(stalled, None, CLIENT, title="192.0.2.10:40312 → 198.51.100.25:25")
    assert s.wscale == 7
    svg, st = time_sequence_svg(s)
    root = ET.fromstring(str(svg))  # well-formed XML
    assert root.tag.endswith("svg")
    # 41 data segments carry new bytes, 6 are retransmissions of the stuck one (the fixture's backoff).
    assert st.segments == 47
    assert st.retransmissions == 6
    # Six retransmission ticks, one per RTO: the marks are distinct pixels (seconds apart).
    marks = re.search(r'class="rtxmark" d="([^"]+)"', str(svg))
    assert marks is not None and marks.group(1).count("M") == 6
    # Sequence numbers were unwrapped across 2**32: the top of the graph is ~41 segments, not 4 GB.
    assert 41 * 1448 <= st.max_seq < 41 * 1448 + 1000 * 128 + 1448
    assert 'class="ack"' in str(svg) and 'class="win"' in str(svg)
    assert st.duration_s > 15  # 0.24 + 0.49 + … + 7.8 s of backoff


def test_title_is_escaped() -> None:
    cols = stalled_connection(n_ok=3, backoff=())
    svg, _ = time_sequence_svg(series_from_columns(cols, None, CLIENT, title='<script>x</script>"&'))
    assert "<script>" not in str(svg)
    ET.fromstring(str(svg))


def test_million_packets_give_a_bounded_svg() -> None:
    n = 1_000_000
    cols = stalled_connection(n_ok=n // 2, backoff=tuple([0.2] * 50))
    s = series_from_columns(cols, None, CLIENT)
    svg, st = time_sequence_svg(s, width=900)
    assert st.segments == n // 2 + 51
    assert st.retransmissions == 50
    assert len(str(svg)) < 120_000  # bytes: depends on the plot width, not the packet count
    assert st.svg_elements < 200  # DOM nodes
    root = ET.fromstring(str(svg))
    assert sum(1 for _ in root.iter()) < 200


def test_zero_window_marks() -> None:
    cols = stalled_connection(n_ok=10, backoff=())
    # The server's last 3 ACKs advertise a zero window.
    srv = np.nonzero(cols["sport"] == 25)[0]
    cols["win"][srv[-3:]] = 0
    _, st = time_sequence_svg(series_from_columns(cols, None, CLIENT))
    assert st.zero_windows == 3


def test_timeline_cells() -> None:
    base = 1_700_000_000 * 10**9
    ok = np.array([base, base + 60 * 10**9], dtype=np.int64)
    bad = np.array([base + 3600 * 10**9], dtype=np.int64)
    svg = str(failures_timeline_svg([("gmail.com <b>", ok, bad)], buckets=10))
    ET.fromstring(svg)
    assert svg.count('class="ok"') == 1 and svg.count('class="bad"') == 1
    assert "&lt;b&gt;" in svg

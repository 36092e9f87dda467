#!/usr/bin/env python3
"""How long ``mailwire diagnose --html`` takes on a large capture, and how big the report gets.

    python bench/gen_smtp_capture.py --out bench/out/smtp-1m.pcap      # 1 M packets
    python bench/report_bench.py bench/out/smtp-1m.pcap [--single-connection 1000000]

Times each step separately (capture analysis, page building with the graphs, HTML rendering)
and reports the HTML's size, its element count and the largest time-sequence graph; with
``--single-connection N`` it also builds one graph from an N-packet connection made in memory
(the worst case for the graph: every packet in one connection). Numbers are printed, never
asserted: timing belongs here, not in the tests.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np


def _single_connection_graph(n: int) -> None:
    from mailwire.capture.table import empty_columns
    from mailwire.report.graphs import series_from_columns, time_sequence_svg

    cols = empty_columns(n)
    half = np.arange(n) // 2
    c = np.arange(n) % 2 == 0
    cols["proto"][:] = 6
    cols["frame"][:] = np.arange(1, n + 1)
    cols["ts_ns"][:] = 1_700_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 100_000
    cols["src_lo"][c], cols["sport"][c] = 0xFFFF_C000020A, 40000
    cols["src_lo"][~c], cols["sport"][~c] = 0xFFFF_CB007119, 25
    seq = (1 + half * 1448) % 2**32
    lost = (half % 997) == 0  # every 997th segment resent (and its ACK held back)
    cols["seq"][c] = seq[c] - np.where(lost[c], 1448 * 3, 0)
    cols["payload_len"][c] = 1448
    cols["tcp_flags"][c], cols["tcp_flags"][~c] = 0x18, 0x10
    cols["ack"][~c] = seq[~c] + 1448
    cols["win"][~c] = np.where(half[~c] % 5000 == 0, 0, 512)
    t = time.perf_counter()
    svg, st = time_sequence_svg(series_from_columns(cols, None, (0, 0xFFFF_C000020A, 40000)))
    dt = time.perf_counter() - t
    print(
        f"single connection, {n} packets: graph in {dt:.3f} s, {len(svg)} bytes, {st.svg_elements} elements, "
        f"{st.retransmissions} retransmissions, {st.zero_windows} zero windows marked"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path, nargs="?")
    ap.add_argument("--single-connection", type=int, default=0, metavar="N")
    ap.add_argument("--html", type=Path, default=Path("bench/out/report.html"))
    args = ap.parse_args()
    if args.single_connection:
        _single_connection_graph(args.single_connection)
    if args.capture is None:
        return 0
    from mailwire.diagnose.engine import run_diagnosis
    from mailwire.report.html import render_html
    from mailwire.report.page import build_page

    t0 = time.perf_counter()
    run = run_diagnosis([], [str(args.capture)])
    t1 = time.perf_counter()
    page = build_page(run)
    t2 = time.perf_counter()
    html = render_html(page)
    t3 = time.perf_counter()
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(html, encoding="utf-8")
    graphs = re.findall(r'<svg[^>]*class="tsg".*?</svg>', html, flags=re.S)
    print(f"{args.capture}: {run.diagnosis.stages}")
    print(f"analysis {t1 - t0:.1f} s, page (graphs, ladders) {t2 - t1:.1f} s, render {t3 - t2:.2f} s")
    print(
        f"HTML {len(html)} bytes, ~{html.count('<') - html.count('</')} elements, {len(graphs)} graphs, "
        f"largest graph {max((len(g) for g in graphs), default=0)} bytes; "
        f"top cause: {run.diagnosis.top.cause if run.diagnosis.top else None}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

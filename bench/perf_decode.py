"""Decode-only and TCP-analysis-only timings of one capture, in process (perf work, not a peer run).

``python bench/perf_decode.py CAPTURE [--tcp] [--reassemble] [--chunk-mb 16]``: prints wall and CPU
seconds of the loop (imports and the first compiled call, i.e. Numba's cache load, timed apart)
and the process's peak RSS, so one change can be measured before and after.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--tcp", action="store_true", help="also run mailwire.tcp analysis")
    ap.add_argument("--reassemble", action="store_true", help="with --tcp: reassemble (events dropped)")
    ap.add_argument("--chunk-mb", type=int, default=16)
    a = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    from mailwire.capture.read import iter_tables
    from mailwire.tcp.engine import TcpAnalyzer

    t1, c1 = time.perf_counter(), time.process_time()
    gc.disable()
    analyzer = TcpAnalyzer(reassemble=a.reassemble, on_stream=lambda ev: None) if a.tcp else None
    n = 0
    for table in iter_tables(a.capture, chunk_bytes=a.chunk_mb << 20):
        n += len(table)
        if analyzer is not None:
            analyzer.feed(table)
    if analyzer is not None:
        analyzer.finish()
    t2, c2 = time.perf_counter(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    print(
        f"{n} frames; imports {t1 - t0:.2f} s wall {c1 - c0:.2f} s CPU; "
        f"loop {t2 - t1:.2f} s wall {c2 - c1:.2f} s CPU ({n / max(c2 - c1, 1e-9) / 1e6:.2f} M pkt/CPU s); "
        f"peak RSS {peak} MB"
    )


if __name__ == "__main__":
    main()

"""Throughput and peak memory of ``mailwire logs`` on a generated million-line Postfix log.

    python bench/maillog_bench.py [--lines 1000000] [--seed 7] [--file PATH] [--gzip]

Generates the log with ``maillog_gen.py`` (seeded) unless ``--file`` is given, then times
``triage_logs`` (one pass: headers, Postfix records, classification, triage) and reports
lines/s, attempts, and peak RSS — measured for the whole run and, separately, the growth over the
memory in use before reading, so that memory bounded by attempts (not by lines) is visible.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from maillog_gen import generate
from mailwire.maillog import triage_logs


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--file")
    ap.add_argument("--gzip", action="store_true", help="also time the same log gzip-compressed")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per input (best is reported)")
    a = ap.parse_args()
    tmp = None
    if a.file:
        path = a.file
    else:
        tmp = tempfile.mkdtemp(prefix="maillog-bench-")
        path = os.path.join(tmp, "maillog")
        t0 = time.perf_counter()
        n = generate(path, a.lines, a.seed)
        print(
            f"generated {n} lines ({os.path.getsize(path) / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
        )
    try:
        runs = [path]
        if a.gzip:
            gz = path + ".gz"
            with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            runs.append(gz)
        print(
            f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine: "
            "CPU-time figures are the fairer measure)"
        )
        for p in runs:
            base = current_rss_mib()
            best_wall = best_cpu = float("inf")
            for _ in range(a.repeat):
                c0, t0 = time.process_time(), time.perf_counter()
                result = triage_logs([p], tz="UTC", year=2024)
                best_cpu = min(best_cpu, time.process_time() - c0)
                best_wall = min(best_wall, time.perf_counter() - t0)
                lines = sum(i.lines for i in result.inputs)
                n = len(result.attempts)
                per = (current_rss_mib() - base) * (1 << 20) / max(1, n)
                summary = (
                    f"{n} attempts, {len(result.destinations)} destinations, "
                    f"{len(result.verdicts)} verdicts, {result.skipped_total} skipped"
                )
                del result
            print(
                f"{os.path.basename(p)}: {lines} lines; best of {a.repeat}: {best_wall:.2f} s wall = "
                f"{lines / best_wall:,.0f} lines/s, {best_cpu:.2f} s CPU = {lines / best_cpu:,.0f} lines/s; "
                f"{summary}"
            )
            peak = rss_mib()
            print(
                f"  peak RSS {peak:.0f} MiB (before reading {base:.0f} MiB); {per:.0f} bytes per attempt kept"
            )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

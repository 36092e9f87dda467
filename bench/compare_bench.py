#!/usr/bin/env python3
"""Benchmark: comparing two large captures vs analysing one (issue 6 target: compare < 3x analyse).

Capture A is the seeded synthetic SMTP capture of ``gen_smtp_capture.py`` (default 1 M packets);
capture B is the same traffic "seen one hop further": every record's timestamp moved by one hour
plus 2 ms, and 1 % of the records (seeded) dropped. The script times, in one process after a
warm-up on a small file (Numba caches compiled):

* ``read``: decoding A into packet tables (``mailwire.capture.read.iter_tables``), for scale;
* ``tcp.analyze``: the TCP analysis of A alone (``mailwire.tcp.analyze``), the "analyse one";
* ``analyze``: ``mailwire analyze``'s stage on A (``mailwire.analyze.analyze_captures``) if present;
* ``compare``: ``mailwire.compare.compare_captures([A, B])``;

and prints the ratios, plus the comparison's own check (lost packets found vs dropped).

    python bench/compare_bench.py [--packets N] [--dir bench/out]
"""

from __future__ import annotations

import argparse
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def make_a(path: Path, packets: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gen_smtp_capture.py"), "--packets", str(packets),
         "--out", str(path), "--nano", "--seed", "1"],
        check=True,
    )  # fmt: skip


def make_b(a: Path, b: Path, drop: float, offset_ns: int, seed: int = 5) -> int:
    """Copy ``a`` to ``b`` with shifted timestamps and a seeded share of records dropped."""
    if b.exists():
        return -1
    data = a.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    assert magic == 0xA1B23C4D, "expects a little-endian nanosecond pcap"
    out = bytearray(data[:24])
    rng = random.Random(seed)
    p, dropped = 24, 0
    # setup only (not timed): one pass over the records
    while p + 16 <= len(data):
        sec, ns, incl, orig = struct.unpack_from("<IIII", data, p)
        rec = data[p + 16 : p + 16 + incl]
        p += 16 + incl
        if rng.random() < drop:
            dropped += 1
            continue
        t = sec * 1_000_000_000 + ns + offset_ns
        out += struct.pack("<IIII", t // 1_000_000_000, t % 1_000_000_000, incl, orig) + rec
    b.write_bytes(bytes(out))
    return dropped


def timed(label: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    print(f"{label:14s} {dt:8.2f} s", flush=True)
    return dt, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--drop", type=float, default=0.01)
    ap.add_argument("--no-analyze", action="store_true", help="skip timing 'mailwire analyze' (slow)")
    args = ap.parse_args()
    a = args.dir / f"cmp-a-{args.packets}.pcap"
    b = args.dir / f"cmp-b-{args.packets}.pcap"
    make_a(a, args.packets)
    dropped = make_b(a, b, args.drop, 3600 * 10**9 + 2_000_000)
    from mailwire.capture.read import iter_tables
    from mailwire.compare import compare_captures
    from mailwire.tcp import analyze as tcp_analyze

    # warm-up (Numba compile/cache load) on a small file
    small_a, small_b = args.dir / "cmp-a-20000.pcap", args.dir / "cmp-b-20000.pcap"
    make_a(small_a, 20_000)
    make_b(small_a, small_b, args.drop, 3600 * 10**9 + 2_000_000)
    compare_captures([small_a, small_b])
    try:
        tcp_analyze(iter_tables(small_a))
    except Exception as exc:  # another stage under construction must not stop the benchmark
        print(f"tcp.analyze failed on the warm-up file: {type(exc).__name__}: {exc}")

    print(f"A = {a.name} ({a.stat().st_size / 1e6:.0f} MB), B = {b.name}, dropped {dropped} records")
    t_read, _ = timed("read A", lambda: sum(len(t) for t in iter_tables(a)))
    t_tcp: float | None = None
    t_an: float | None = None
    try:
        t_tcp, _ = timed("tcp.analyze A", lambda: tcp_analyze(iter_tables(a)))
    except Exception as exc:
        print(f"tcp.analyze    failed: {type(exc).__name__}: {exc}")
    try:
        from mailwire.analyze import analyze_captures

        if not args.no_analyze:
            t_an, _ = timed("analyze A", lambda: analyze_captures([str(a)]))
    except Exception as exc:
        print(f"analyze        failed or missing: {type(exc).__name__}: {exc}")
    t_cmp, res = timed("compare A B", lambda: compare_captures([a, b]))
    doc = res.to_json()
    hop = doc["hops"][0]
    removed = doc["captures"][0]["packets"] - doc["captures"][1]["packets"]
    tally = {
        k: sum(hop["lost"][d][k] for d in ("a_to_b", "b_to_a"))
        for k in ("lost", "capture_loss", "missed_by_upstream_capture", "outside_window")
    }
    inj = sum(hop["injected"][d]["packets"] for d in ("a_to_b", "b_to_a"))
    print(f"records removed from B: {removed}; compare: {tally}, injected {inj}")
    print(
        f"verdict {hop['verdict']['kind']}, offset {hop['clock_offset_s']:.6f} s, "
        f"matched {hop['matched']['packets']}"
    )
    import resource

    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (whole run)")
    if t_tcp:
        print(f"ratio compare / tcp.analyze = {t_cmp / t_tcp:.2f}")
    if t_an:
        print(f"ratio compare / analyze     = {t_cmp / t_an:.2f}")
    print(f"ratio compare / read        = {t_cmp / t_read:.2f}")


if __name__ == "__main__":
    main()

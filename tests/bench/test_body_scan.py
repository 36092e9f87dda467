"""bench/body_scan.py runs, and its three scans (mailwire's and two plain Python ones) agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "body_scan.py"


def test_body_scan_agrees_with_bytes_find() -> None:
    cmd = [sys.executable, str(BENCH), "--mb", "2", "--repeat", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # both kinds, each with its hit count, mailwire's rate and the two peers' ratios
    assert [ln.split()[0] for ln in lines if not ln.startswith(" ")] == ["base64", "prose"]
    assert "0 hits" in lines[0] and not lines[4].split(",")[1].strip().startswith("0 ")
    assert sum("faster" in ln for ln in lines) == 4

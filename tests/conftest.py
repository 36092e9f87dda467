"""Shared test fixtures: where the real capture corpus lives, and tshark as the oracle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.lab.plugin"]  # the lab_run fixture (tests/lab), for every test dir

ROOT = Path(__file__).resolve().parents[1]
SHARED_CAPTURES = (ROOT.parent / "shared" / "captures").resolve()
NO_CORPUS = f"shared capture corpus not found at {SHARED_CAPTURES}"  # the skip reason, everywhere


def corpus_captures() -> list[Path]:
    """Every capture file of the shared corpus (not the expected outputs)."""
    if not SHARED_CAPTURES.is_dir():
        return []
    return sorted(
        p
        for p in SHARED_CAPTURES.iterdir()
        if p.suffix in (".pcap", ".pcapng") and ".expected." not in p.name
    )


def corpus_params(items: list[Path]) -> list[Any]:
    """``items`` for ``parametrize``, or, when the corpus is missing, one skipped case whose
    reason names where it was looked for (an empty parameter set skips in pytest's words)."""
    if items or SHARED_CAPTURES.is_dir():
        return list(items)
    return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=NO_CORPUS))]


def generated_capture(out: Path, seed: int = 5, packets: int = 3000) -> Path:
    """A seeded capture from ``bench/gen_smtp_capture.py`` with many sessions in trouble (RTO
    chains, fast retransmits, stalls), written to ``out``."""
    gen = str(ROOT / "bench" / "gen_smtp_capture.py")
    opts = ["--packets", str(packets), "--seed", str(seed), "--rate", "1.5", "--body-median", "3000"]
    argv = [sys.executable, gen, *opts, "--trouble", "3", "--out", str(out)]
    subprocess.run(argv, check=True, timeout=300, capture_output=True)
    return out


@pytest.fixture(scope="session")
def shared_captures() -> Path:
    if not SHARED_CAPTURES.is_dir():
        pytest.skip(NO_CORPUS)
    return SHARED_CAPTURES


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark not installed (scripts/install-system-deps.sh installs it)")
    return path

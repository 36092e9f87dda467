"""``mailwire X … | head``: every command that writes a report ends quietly with status 0 when its
reader leaves early, as ``logs`` and ``packets`` do (a user piping into ``head`` did nothing
wrong), and prints no traceback or "Exception ignored" line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "incident"
SENDER, EDGE, LOG = EXAMPLE / "sender.pcap", EXAMPLE / "edge.pcap", EXAMPLE / "maillog"

COMMANDS = {
    "analyze": ["analyze", str(SENDER)],
    "analyze-json": ["analyze", "--json", "-", str(SENDER)],
    "compare": ["compare", str(SENDER), str(EDGE)],
    "compare-json": ["compare", "--json", "-", str(SENDER), str(EDGE)],
    "diagnose": ["diagnose", "--log", str(LOG), str(SENDER), str(EDGE)],
    "diagnose-json": ["diagnose", "--json", "-", "--log", str(LOG), str(SENDER), str(EDGE)],
}


def _env() -> dict[str, str]:
    return dict(os.environ, COLUMNS="80")


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_reader_gone_before_output(args: list[str]) -> None:
    """Like ``| head -0``: every write to stdout fails with EPIPE from the start."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "mailwire.cli", *args],
            stdout=w, stderr=subprocess.PIPE, timeout=300, check=False, env=_env(),
        )  # fmt: skip
    finally:
        os.close(w)
    assert (p.returncode, p.stderr.decode(errors="replace")) == (0, "")


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_head_one(args: list[str]) -> None:
    """Like ``| head -1``: the first line arrives, then the reader leaves."""
    with subprocess.Popen(
        [sys.executable, "-m", "mailwire.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    ) as p:  # fmt: skip
        assert p.stdout is not None and p.stderr is not None
        first = p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        rc = p.wait(timeout=300)
    assert first.strip()  # the command did write before the reader left
    assert (rc, err.decode(errors="replace")) == (0, "")

"""``mailwire info``'s text, held to capinfos (Wireshark's own capture summary) where both print the
same thing: first/last packet times as UTC dates, and the duration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import craft

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "incident" / "sender.pcap"
SHARED = ROOT.parent / "shared" / "captures"


def _info(path: Path) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "info", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return p.stdout


def _field(text: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}:\s+(.*)$", text, re.M)
    assert m, f"{name!r} missing from:\n{text}"
    return m.group(1)


@pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos (Wireshark) is not installed")
@pytest.mark.parametrize("name", ["sender.pcap", "tcpdump__tcp-handshake-nano.pcap"])
def test_times_as_capinfos_prints_them(name: str) -> None:
    path = EXAMPLE if name == "sender.pcap" else SHARED / name
    if not path.exists():
        pytest.skip(f"{path} missing (the shared capture corpus is not next to the project)")
    ref = subprocess.run(
        ["capinfos", "-a", "-e", "-u", str(path)],
        capture_output=True, text=True, timeout=60, check=True, env=dict(os.environ, TZ="UTC"),
    ).stdout  # fmt: skip
    ours = _info(path)
    for name_ in ("First packet time", "Last packet time"):
        assert _field(ours, name_).startswith(_field(ref, name_) + " UTC (")
    assert _field(ours, "Capture duration") == _field(ref, "Capture duration")


def test_counts_read_as_english(tmp_path: Path) -> None:
    """One frame is "1 frame"; an empty capture has no duration rather than "- seconds"."""
    one = craft.write(
        tmp_path / "one.pcap",
        [(1_700_000_000 * 10**9, craft.tcp_frame("192.0.2.1", "198.51.100.2", 40000, 25, 1))],
    )
    text = _info(one)
    assert "Ethernet (1): 1 frame\n" in text and ", 1 frame\n" in text
    empty = SHARED / "tcpdump__empty.pcapng"
    if not empty.exists():
        pytest.skip(f"{empty} missing (the shared capture corpus is not next to the project)")
    e = _info(empty)
    assert _field(e, "Capture duration") == "-"
    assert "1 frames" not in text + e
    assert _field(text, "First packet time") == "2023-11-14 22:13:20.000000000 UTC (1700000000.000000000)"

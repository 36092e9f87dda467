"""Fixtures of the capture tests (helpers live in ``capture_craft``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def tmp_capture(tmp_path: Path) -> Callable[..., Path]:
    """Write bytes to a file in tmp_path and return its path."""

    def write(data: bytes, name: str = "crafted.pcap") -> Path:
        p = tmp_path / name
        p.write_bytes(data)
        return p

    return write

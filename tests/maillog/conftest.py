"""Helpers for the mail-log tests: where the fixtures are, writing crafted logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def write_log(tmp_path: Path) -> Callable[..., Path]:
    """Write lines to a file under tmp_path and return its path."""

    def _write(name: str, lines: list[str] | str, mode: str = "w") -> Path:
        p = tmp_path / name
        text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
        with open(p, mode, encoding="utf-8") as fh:
            fh.write(text)
        return p

    return _write

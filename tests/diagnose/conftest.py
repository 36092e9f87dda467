"""Fixtures for the diagnose tests: the bundled incident and its truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = ROOT / "examples" / "incident"


@pytest.fixture(scope="session")
def incident() -> Path:
    if not (INCIDENT / "sender.pcap").is_file():
        pytest.skip(f"bundled example incident missing at {INCIDENT}")
    return INCIDENT


@pytest.fixture(scope="session")
def incident_truth(incident: Path) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads((incident / "truth.json").read_text())
    return truth

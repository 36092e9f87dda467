"""Fixtures for the report tests."""

from __future__ import annotations

import numpy as np
import pytest
from report_synth import stalled_connection


@pytest.fixture
def stalled() -> dict[str, np.ndarray]:
    return stalled_connection()

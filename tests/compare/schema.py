"""The compare JSON Schema as shipped in the package."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load_schema() -> dict[str, Any]:
    text = resources.files("mailwire").joinpath("schemas/compare.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema

"""``mailwire diagnose`` (the command, as a user runs it) on the lab's source-NATing load balancer
(scenario ``size_drop_snat``): with the mail log and the sender and edge captures, the first
conclusion is the size-dependent path loss between sender and edge (truth.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from mailwire.report.outputs import diagnose_schema

pytestmark = pytest.mark.lab


def test_diagnose_ranks_size_dependent_loss_first_through_snat(lab_run: Callable[[str], Path]) -> None:
    d = lab_run("size_drop_snat")
    truth = json.loads((d / "truth.json").read_text())
    assert truth["fault"]["nat"]["kind"] == "snat" and truth["fault"]["kind"] == "size_drop"
    r = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "diagnose", "--log", str(d / "maillog"),
         str(d / "sender.pcap"), str(d / "edge.pcap"), "--json", "-"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, diagnose_schema())
    top = doc["conclusions"][0]
    assert top["cause"] == "path_loss_size_dependent", [c["cause"] for c in doc["conclusions"]]
    assert top["location"]["between"] == truth["fault"]["between"]  # ["sender", "edge"]
    assert top["evidence"]
    # The hop verdict carried into the diagnosis is the one on the translated path.
    hop = next(h for h in doc["hops"] if (h["upstream"], h["downstream"]) == ("sender", "edge"))
    assert hop["verdict"] == "size_dependent_loss"

"""``mailwire compare`` on the command line: JSON on stdout validates, the terminal names the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from mailwire.cli import app
from tests.compare.builder import Pkt, conversation, hop_delay, observe, write
from tests.compare.schema import load_schema


def _pair(tmp_path: Path) -> tuple[list[Pkt], Path, Path]:
    pk = conversation(n_data=12, drop=lambda p: len(p.payload) > 1000)
    a = write(tmp_path / "sender[red].pcap", observe(pk))
    b = write(tmp_path / "edge.pcap", observe(pk, keep=lambda p: not p.meta.get("drop"), delay_ns=hop_delay))
    return pk, a, b


def test_cli_json_stdout(tmp_path: Path) -> None:
    pk, a, b = _pair(tmp_path)
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--json", "-"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, load_schema())
    assert doc["hops"][0]["verdict"]["kind"] == "size_dependent_loss"
    assert doc["hops"][0]["lost"]["a_to_b"]["lost"] == sum(1 for p in pk if p.meta.get("drop"))


def test_cli_terminal_and_json_file(tmp_path: Path) -> None:
    _, a, b = _pair(tmp_path)
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "size_dependent_loss" in res.stdout
    assert "sender[red].pcap" in res.stdout  # markup in a file name is shown, not interpreted
    assert "1400-1499" in res.stdout
    assert json.loads(out.read_text())["schema"] == "mailwire.compare/1"


def test_cli_missing_file_is_a_message(tmp_path: Path) -> None:
    _, a, _ = _pair(tmp_path)
    res = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "nope.pcap")])
    assert res.exit_code == 2
    assert "nope.pcap" in res.output
    assert "Traceback" not in res.output


def test_cli_needs_two(tmp_path: Path) -> None:
    _, a, _ = _pair(tmp_path)
    res = CliRunner().invoke(app, ["compare", str(a)])
    assert res.exit_code != 0

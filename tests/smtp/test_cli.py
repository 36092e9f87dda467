"""``mailwire analyze`` from the command line: terminal summary, JSON file and stdout, escaping."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mailwire.analyze import render, validate
from mailwire.cli import app
from mailwire.smtp.pipeline import analyze_captures


def test_analyze_terminal_and_json(shared_captures: Path, tmp_path: Path) -> None:
    cap = shared_captures / "ark__smtp-rcpt-553.pcap"
    out = tmp_path / "a.json"
    wide = {"COLUMNS": "200"}  # content checks below; the 80-column layout is tests/robustness' job
    res = CliRunner().invoke(app, ["analyze", str(cap), "--json", str(out), "--frames"], env=wide)
    assert res.exit_code == 0, res.output
    assert "tcp.stream eq 0" in res.output  # the Wireshark display filter of the session
    assert "rejected (policy)" in res.output
    assert "frame 13" in res.output  # tshark: frame 13 carries the 553 reply
    doc = json.loads(out.read_text())
    validate(doc)
    res = CliRunner().invoke(app, ["analyze", str(cap), "--json", "-"])
    assert res.exit_code == 0
    assert json.loads(res.output)["smtp_sessions"][0]["verdict"]["outcome"] == "rejected"


def test_unreadable_capture_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "not.pcap"
    bad.write_bytes(b"this is not a capture")
    res = CliRunner().invoke(app, ["analyze", str(bad)], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert "not a pcap" in res.output


def test_network_strings_are_not_markup(shared_captures: Path) -> None:
    import io

    result = analyze_captures([shared_captures / "ark__smtp-rcpt-553.pcap"])
    s = result.judged[0].session
    assert s is not None
    s.transactions[0].mail_from = "[bold red]evil[/] <x@y>"
    buf = io.StringIO()
    render(result, buf, width=200)
    assert "[bold red]evil[/]" in buf.getvalue()

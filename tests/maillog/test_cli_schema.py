"""``mailwire logs``: the JSON validates against the shipped schema; the terminal summary fits 80
columns and puts the worst destination first; bad arguments give a message, not a traceback."""

# ruff: noqa: E501 - log lines are data and stay whole

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema

from mailwire.maillog import triage_logs

from .conftest import FIXTURES

SCHEMA = Path(__file__).resolve().parents[2] / "src" / "mailwire" / "schemas" / "logs.schema.json"

INCIDENT = [
    "Apr  2 10:00:01 mx1 postfix/qmgr[900]: 1F0001: from=<app@example.com>, size=1500, nrcpt=1 (queue active)",
    "Apr  2 10:00:02 mx1 postfix/smtp[3001]: 1F0001: to=<a@outlook.com>, relay=outlook-com.olc.protection.outlook.com[192.0.2.161]:25, delay=1.2, delays=0.1/0/0.3/0.8, dsn=2.0.0, status=sent (250 2.6.0 Queued mail for delivery)",
    "Apr  2 10:05:01 mx1 postfix/qmgr[900]: 1F0002: from=<app@example.com>, size=80000, nrcpt=1 (queue active)",
    "Apr  2 10:08:02 mx1 postfix/smtp[3002]: 1F0002: to=<b@outlook.com>, relay=outlook-com.olc.protection.outlook.com[192.0.2.161]:25, delay=181, delays=0.1/0/0.3/180, dsn=4.4.2, status=deferred (conversation with outlook-com.olc.protection.outlook.com[192.0.2.161] timed out while sending message body)",
    "Apr  2 11:00:02 mx1 postfix/smtp[3003]: 1F0003: to=<c@very-long-subdomain-name.of-an-example-domain.example>, relay=mx.very-long-subdomain-name.of-an-example-domain.example[198.51.100.9]:25, delay=1, delays=0.1/0/0.3/0.6, dsn=5.7.1, status=bounced (host mx.very-long-subdomain-name.of-an-example-domain.example[198.51.100.9] said: 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org (in reply to RCPT TO command))",
    "\x00garbage[bold red]not markup[/bold red]",
]


def _validate(doc: object) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())


def test_json_of_every_fixture_validates() -> None:
    for p in sorted(FIXTURES.iterdir()):
        if p.suffix in (".tsv", ".md"):
            continue
        doc = json.loads(triage_logs([p], tz="UTC", year=2020).to_json())
        _validate(doc)
        assert doc["schema"] == "mailwire.logs/1"


def test_json_shape(write_log: Callable[..., Path]) -> None:
    doc = json.loads(triage_logs([write_log("maillog", INCIDENT)], tz="UTC", year=2024).to_json())
    _validate(doc)
    assert set(doc) >= {"schema", "attempts", "destinations", "verdicts", "skipped"}
    assert doc["skipped"] == {
        "total": 1,
        "lines": [{"file": doc["inputs"][0]["file"], "line": 6, "reason": "binary data"}],
    }
    a = doc["attempts"][1]
    assert (
        a["time"],
        a["queue_id"],
        a["remote_ip"],
        a["remote_port"],
        a["outcome"],
        a["stage"],
        a["size"],
    ) == ("2024-04-02T10:08:02Z", "1F0002", "192.0.2.161", 25, "network", "body", 80000)
    assert doc["totals"]["outcomes"]["network"] == 1 and doc["totals"]["garbage"] == 1


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, COLUMNS="80", TERM="dumb", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "logs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=e,
        check=False,
    )


def test_terminal_summary_fits_80_columns(write_log: Callable[..., Path], tmp_path: Path) -> None:
    p = write_log("maillog", INCIDENT)
    out = tmp_path / "out.json"
    r = _cli(str(p), "--tz", "UTC", "--year", "2024", "--json", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and max(len(x) for x in lines) <= 80, max(lines, key=len)
    assert "network_path" in r.stdout and "blocklist" in r.stdout
    assert "[bold red]" not in r.stdout  # log text never reaches the terminal as markup
    # worst destination first: both failed once, the long one on every try (100 % vs 50 %)
    table = r.stdout[r.stdout.index("Destinations") :]
    assert table.index("very-long") < table.index("outlook.com")
    _validate(json.loads(out.read_text()))


def test_sparkline_and_order(write_log: Callable[..., Path]) -> None:
    t = triage_logs([write_log("maillog", INCIDENT)], tz="UTC", year=2024)
    doms = [d for d in t.destinations if d.scope == "domain"]
    assert [d.failure_rate for d in doms] == sorted((d.failure_rate for d in doms), reverse=True)
    from mailwire.maillog.render import sparkline

    # eight levels, rounded up: 1 of 3 → ceil(8/3) = 3rd glyph
    assert sparkline([0, 0, 3, 1, 0], 5) == "··█▃·"
    assert len(sparkline(list(range(100)), 11)) == 11


def test_bad_arguments_give_messages(tmp_path: Path) -> None:
    r = _cli(str(tmp_path / "missing.log"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing.log" in r.stdout + r.stderr
    r = _cli(str(tmp_path), "--since", "yesterday")
    assert r.returncode == 2 and "ISO 8601" in r.stderr and "Traceback" not in r.stderr

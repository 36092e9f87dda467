"""``mailwire diagnose`` on unusable inputs: clear messages, no traceback, an honest exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _diagnose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "diagnose", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_nothing_readable_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(bytes(range(256)) * 20)
    r = _diagnose("--log", str(tmp_path / "missing.log"), str(junk), str(tmp_path), "--json", "-")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["conclusions"][0]["cause"] == "undetermined"
    assert any("junk.pcap" in w and "not a pcap" in w for w in doc["warnings"])
    assert any("missing.log" in w for w in doc["warnings"])
    assert any("is a directory" in w for w in doc["warnings"])


def test_readable_inputs_without_mail_exit_0(tmp_path: Path, shared_captures: Path) -> None:
    """A log of junk lines and a capture without SMTP were read: nothing to conclude, not an error."""
    log = tmp_path / "junk.log"
    log.write_bytes(b"\x00\xff not a log line\n" * 50)
    r = _diagnose("--log", str(log), str(shared_captures / "zeek__empty.pcap"), "--json", "-")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["conclusions"][0]["cause"] == "undetermined"
    assert any("junk.log" in w and "skipped" in w for w in doc["warnings"])


def test_no_input_is_a_usage_error() -> None:
    r = _diagnose()
    assert r.returncode == 2 and "give at least one" in (r.stdout + r.stderr)


def test_unwritable_outputs_are_reported(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text(
        "Nov 25 02:34:06 mail postfix/smtp[31825]: AAE2520C254: to=<a@dest.test>, "
        "relay=203.0.113.25[203.0.113.25]:25, "
        "delay=0.08, delays=0.01/0.02/0/0.05, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)\n"
    )
    r = _diagnose("--log", str(log), "--html", str(tmp_path / "no" / "such" / "dir" / "r.html"))
    assert r.returncode == 1
    assert "--html" in r.stderr and "Traceback" not in r.stderr
    assert "healthy" in r.stdout  # the terminal report is still printed


def test_stdin_as_a_capture_point(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "incident"
    if not (example / "sender.pcap").is_file():
        import pytest

        pytest.skip("examples/incident missing")
    r = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "diagnose", "--json", "-", "-", str(example / "edge.pcap")],
        input=(example / "sender.pcap").read_bytes(), capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["hops"]) == 1
    assert doc["conclusions"][0]["location"]["between"] == ["stdin", "edge"]

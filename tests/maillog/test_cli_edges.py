"""``mailwire logs`` at the edges: nothing to judge, out-of-range ``--year``, a closed stdout.

Exit codes follow the README's logs section: 2 when no input could be read at all, 0 when files
were read (even without a single delivery record), 2 for a bad parameter (Click's usage error).
"""

# ruff: noqa: E501 - log lines are data and stay whole

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailwire.cli import app
from mailwire.maillog import triage_logs

HEALTHY = "every destination healthy"
DEFERRED = (
    "Nov 24 10:00:01 mx1 postfix/smtp[123]: 4F1A2B3C41: to=<u@example.org>, relay=none, delay=1.2, "
    "delays=0.1/0/1.1/0, dsn=4.4.1, status=deferred (connect to mx.example.org[192.0.2.2]:25: Connection refused)"
)


def _logs(*args: str | Path) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["logs", *map(str, args)], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def test_empty_file_is_not_healthy(write_log: Callable[..., Path]) -> None:
    rc, out, _ = _logs(write_log("empty.log", ""))
    assert rc == 0
    assert HEALTHY not in out
    assert "No delivery records found in 0 lines read" in out


def test_binary_junk_is_not_healthy(tmp_path: Path) -> None:
    p = tmp_path / "junk.log"
    # 3 lines of bytes no log format has (NULs, C1 controls): all garbage
    p.write_bytes(b"\x00\x01\x02\xff\xfe\n" * 3)
    rc, out, _ = _logs(p)
    assert rc == 0
    assert HEALTHY not in out
    assert "No delivery records found in 3 lines read (3 garbage" in " ".join(out.split())


def test_missing_file_exits_2_without_health(tmp_path: Path) -> None:
    rc, out, _ = _logs(tmp_path / "missing.log")
    assert rc == 2
    assert HEALTHY not in out
    assert "no input could be read" in out


def test_missing_and_empty_exit_0_and_say_nothing_found(
    tmp_path: Path, write_log: Callable[..., Path]
) -> None:
    rc, out, _ = _logs(tmp_path / "missing.log", write_log("empty.log", ""))
    assert rc == 0
    assert "missing.log" in out and "No delivery records found" in out


def test_filters_leave_nothing(write_log: Callable[..., Path]) -> None:
    rc, out, _ = _logs(
        write_log("m.log", [DEFERRED]), "--year", "2026", "--tz", "UTC", "--domain", "other.example"
    )
    assert rc == 0
    assert HEALTHY not in out
    assert "No delivery records match the filters (1 read, none kept)" in " ".join(out.split())


def test_json_stdout_stays_json_message_on_stderr(write_log: Callable[..., Path]) -> None:
    rc, out, err = _logs("--json", "-", write_log("empty.log", ""))
    assert rc == 0
    assert json.loads(out)["totals"]["attempts"] == 0
    assert "No delivery records found" in err


def test_records_still_get_verdicts(write_log: Callable[..., Path]) -> None:
    rc, out, _ = _logs(write_log("m.log", [DEFERRED]), "--year", "2026", "--tz", "UTC")
    assert rc == 0
    assert "No delivery records" not in out and "1 network" in out


@pytest.mark.parametrize("year", ["0", "99999", "-5", "1969", "10000"])
def test_year_out_of_range_is_a_parameter_error(write_log: Callable[..., Path], year: str) -> None:
    rc, out, err = _logs(write_log("m.log", [DEFERRED]), "--year", year)
    assert rc == 2  # Click's usage error, before any file is read
    assert "--year" in err and "read error" not in out + err
    assert "mailwire logs" not in out  # no summary was printed


@pytest.mark.parametrize("year", ["1970", "9999"])
def test_year_bounds_accepted(write_log: Callable[..., Path], year: str) -> None:
    rc, out, _ = _logs(write_log("m.log", [DEFERRED]), "--year", year, "--tz", "UTC", "--json", "-")
    assert rc == 0
    assert json.loads(out)["attempts"][0]["time"].startswith(f"{year}-11-24T10:00:01")


def test_year_out_of_range_from_python(write_log: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="year 0 is out of range"):
        triage_logs(write_log("m.log", [DEFERRED]), year=0)


def _many_deliveries(write_log: Callable[..., Path], n: int = 400) -> Path:
    # n failing destinations: the summary runs to many lines, the JSON to ~0.5 MB
    return write_log(
        "big.log",
        [
            DEFERRED.replace("4F1A2B3C41", f"4F1A{i:06X}").replace("example.org", f"d{i}.example")
            for i in range(n)
        ],
    )


@pytest.mark.parametrize("extra", [[], ["--json", "-"]], ids=["summary", "json"])
def test_reader_gone_before_output_exits_quietly(write_log: Callable[..., Path], extra: list[str]) -> None:
    """Like ``mailwire logs big.log | head -0``: stdout is a pipe whose reader has already gone."""
    log = _many_deliveries(write_log)
    r, w = os.pipe()
    os.close(r)  # every write to w now fails with EPIPE
    try:
        p = subprocess.run(
            [sys.executable, "-m", "mailwire.cli", "logs", str(log), "--year", "2026", "--tz", "UTC", *extra],
            stdout=w,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
            env=dict(os.environ, COLUMNS="80"),
        )
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (0, b"")


def test_head_one_exits_quietly(write_log: Callable[..., Path]) -> None:
    """``mailwire logs big.log | head -1``: the first line arrives, then the reader leaves."""
    log = _many_deliveries(write_log)
    with subprocess.Popen(
        [sys.executable, "-m", "mailwire.cli", "logs", str(log), "--year", "2026", "--tz", "UTC"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, COLUMNS="80"),
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        first = p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        rc = p.wait(timeout=120)
    assert first.startswith(b"mailwire logs")
    assert (rc, err) == (0, b"")

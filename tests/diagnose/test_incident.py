"""``mailwire diagnose`` on the bundled incident (the lab's size-drop scenario): log alone, one
capture, both captures; JSON against the schema; ``--extract`` read back by tshark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailwire.diagnose.engine import run_diagnosis
from mailwire.report.outputs import diagnose_schema

# The lab's fault kinds and the cause that names them.
CAUSE_OF_FAULT = {"size_drop": "path_loss_size_dependent"}


def _mailwire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwire.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_both_captures_and_log_name_the_fault_and_the_hop(
    incident: Path, incident_truth: dict[str, Any]
) -> None:
    run = run_diagnosis(
        [str(incident / "maillog")], [str(incident / "sender.pcap"), str(incident / "edge.pcap")]
    )
    top = run.diagnosis.top
    assert top is not None
    assert top.cause == CAUSE_OF_FAULT[incident_truth["fault"]["kind"]]
    assert top.between == incident_truth["fault"]["between"]
    assert top.confidence >= 0.9
    # Evidence names frames in the sender capture and the log lines of the failed messages.
    failed_lines = {
        entry["maillog_line"]
        for m in incident_truth["messages"]
        if m["expected_outcome"] != "delivered"
        for entry in m["log"]
    }
    assert any(e.kind == "frame" and e.source.endswith("sender.pcap") for e in top.evidence)
    assert failed_lines & {e.ref for e in top.evidence if e.kind == "log"}
    # Every failed message's log attempt was joined to its session in each capture.
    joined = {
        (c["attempt"]["recipient"], Path(c["session"]["capture"]).name) for c in run.diagnosis.correlations
    }
    for m in incident_truth["messages"]:
        for cap in ("sender.pcap", "edge.pcap"):
            assert (m["rcpt"], cap) in joined
    jsonschema.validate(run.diagnosis.to_json(), diagnose_schema())


def test_log_alone_gives_the_log_level_verdict(incident: Path) -> None:
    run = run_diagnosis([str(incident / "maillog")], [])
    assert [v["verdict"] for v in run.diagnosis.log_verdicts][:1] == ["network_path"]
    top = run.diagnosis.top
    assert top is not None and top.cause == "path_loss_size_dependent"
    assert "capture" in top.next_step.lower()
    assert top.confidence < 0.9  # the log alone cannot localise it
    assert not any(c.cause in ("reputation", "blocklist", "rate_limit") for c in run.diagnosis.conclusions)


def test_one_capture_gives_session_verdicts_and_asks_for_a_second_point(
    incident: Path, incident_truth: dict[str, Any]
) -> None:
    run = run_diagnosis([], [str(incident / "sender.pcap")])
    by_rcpt_outcome = {m["rcpt"]: m["expected_outcome"] for m in incident_truth["messages"]}
    stalled = [s for s in run.facts.sessions if s.outcome == "path_loss_timeout"]
    delivered = [s for s in run.facts.sessions if s.outcome == "delivered"]
    assert len(stalled) == sum(o == "deferred" for o in by_rcpt_outcome.values())
    assert len(delivered) == sum(o == "delivered" for o in by_rcpt_outcome.values())
    top = run.diagnosis.top
    assert top is not None and top.cause == "path_loss_size_dependent"
    assert top.between[0] == "sender"
    assert "second point" in top.next_step
    assert top.would_separate and top.alternative == "path_loss_random"
    assert run.diagnosis.stages["compare"].startswith("skipped")


def test_cli_json_to_stdout_validates(incident: Path) -> None:
    r = _mailwire("diagnose", "--log", str(incident / "maillog"), str(incident / "sender.pcap"),
                  str(incident / "edge.pcap"), "--json", "-")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, diagnose_schema())
    assert doc["conclusions"][0]["cause"] == "path_loss_size_dependent"
    assert doc["conclusions"][0]["location"]["between"] == ["sender", "edge"]


def test_cli_terminal_report_fits_80_columns(incident: Path) -> None:
    r = _mailwire("diagnose", "--log", str(incident / "maillog"), str(incident / "sender.pcap"),
                  str(incident / "edge.pcap"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # Display filters are printed whole on their own line (to copy them); everything else wraps.
    assert max(len(x) for x in lines if not x.strip().startswith("ip.addr==")) <= 80
    head = "\n".join(lines[:6])
    assert "path_loss_size_dependent" in head and "between sender and edge" in head  # conclusion first


def test_extract_holds_exactly_the_cited_connections(incident: Path, tshark: str, tmp_path: Path) -> None:
    out = tmp_path / "extract"
    caps = [str(incident / "sender.pcap"), str(incident / "edge.pcap")]
    r = _mailwire("diagnose", *caps, "--extract", str(out), "--json", str(tmp_path / "d.json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "d.json").read_text())
    cited = {(s["client"], s["client_port"], s["server"], s["server_port"]) for s in doc["sessions"]}
    assert cited
    for cap in ("sender", "edge"):
        f = out / f"{cap}.cited.pcap"
        rows = subprocess.run(
            [tshark, "-n", "-r", str(f), "-Y", "tcp && !icmp", "-T", "fields", "-E", "separator=,",
             "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.split()  # fmt: skip
        seen = set()
        for row in rows:
            s, sp, d, dp = row.split(",")
            seen.add((s, int(sp), d, int(dp)) if int(dp) == 25 else (d, int(dp), s, int(sp)))
        assert seen == cited, cap
        # Whole connections: as many frames as tshark finds for them in the original capture.
        flt = " || ".join(f"(tcp.port=={cp} && ip.addr=={c} && ip.addr=={s})" for c, cp, s, _ in cited)
        orig = subprocess.run(
            [tshark, "-n", "-r", str(incident / f"{cap}.pcap"), "-Y", f"({flt}) && !icmp", "-T", "fields",
             "-e", "frame.number"], capture_output=True, text=True, timeout=120, check=True,
        ).stdout.split()  # fmt: skip
        assert len(rows) == len(orig), cap


@pytest.mark.parametrize("bad", ["missing.pcap"])
def test_missing_inputs_are_reported_not_raised(incident: Path, tmp_path: Path, bad: str) -> None:
    r = _mailwire("diagnose", "--log", str(incident / "maillog"), str(tmp_path / bad))
    assert r.returncode == 0
    assert "Traceback" not in r.stderr + r.stdout
    assert "no such capture file" in r.stdout


def test_log_clock_offset_is_found_and_corrected(
    incident: Path, incident_truth: dict[str, Any], tmp_path: Path
) -> None:
    """The log host's clock 2 minutes behind the capture host: the sessions are still joined to
    their attempts (through the messages they share), and the offset is reported."""
    import datetime as dt
    import re

    def shift(m: re.Match[str]) -> str:
        t = dt.datetime.strptime(m.group(0), "%b %d %H:%M:%S") - dt.timedelta(seconds=120)
        return f"{t:%b} {t.day:2d} {t:%H:%M:%S}"

    text = (incident / "maillog").read_text()
    log = tmp_path / "maillog"
    log.write_text(re.sub(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d", shift, text, flags=re.M))
    run = run_diagnosis([str(log)], [str(incident / "sender.pcap"), str(incident / "edge.pcap")])
    joined = {
        (c["attempt"]["recipient"], Path(c["session"]["capture"]).name) for c in run.diagnosis.correlations
    }
    for m in incident_truth["messages"]:
        assert (m["rcpt"], "sender.pcap") in joined
    assert any("clock" in w and "+120" in w for w in run.diagnosis.warnings), run.diagnosis.warnings

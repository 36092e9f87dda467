"""End to end on the fault lab: for every scenario, ``diagnose`` with the log and the sender and
edge captures names the injected fault and the hop it sits in (``truth.json``); the log alone
gives the right log-level verdict; the sender capture alone gives the session verdicts the
truth implies and, for path faults, asks for a capture at a second point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailwire.diagnose.engine import run_diagnosis
from mailwire.report.outputs import diagnose_schema

pytestmark = [pytest.mark.lab, pytest.mark.slow]

# Lab fault kind -> the causes that name it (either is right when the lab injects both texts).
CAUSES: dict[str, set[str]] = {
    "none": {"healthy"},
    "size_drop": {"path_loss_size_dependent"},
    "pmtud_blackhole": {"path_loss_size_dependent"},
    "intermittent_size_drop": {"path_loss_size_dependent"},
    "random_loss": {"path_loss_random"},
    "reject_5xx": {"reputation", "blocklist"},
    "defer_4xx": {"greylist", "rate_limit"},
    "zero_window": {"receiver_stall"},
    "rst_injected": {"middlebox_reset"},
    "port_closed": {"remote_outage"},
    "syn_drop": {"remote_outage"},
    "host_unreachable": {"remote_outage"},
}
# Lab fault kind -> the mail log triage's verdicts that are right for it (set() = no failure verdict).
LOG_VERDICTS: dict[str, set[str]] = {
    "none": set(),
    "size_drop": {"network_path"},
    "pmtud_blackhole": {"network_path"},
    "intermittent_size_drop": {"network_path"},
    "random_loss": set(),  # every message is delivered: the log shows nothing wrong
    "reject_5xx": {"reputation", "blocklist"},
    "defer_4xx": {"greylist", "rate_limit"},
    "zero_window": {"network_path"},
    "rst_injected": {"network_path"},
    "port_closed": {"remote_outage"},
    "syn_drop": {"remote_outage"},
    "host_unreachable": {"remote_outage"},
}
# Lab expected outcome per message -> analyze verdicts that agree with it, per fault kind.
PATH_FAULTS = {"size_drop", "pmtud_blackhole", "intermittent_size_drop", "rst_injected"}
SCENARIOS = [
    "healthy", "size_drop", "pmtud_blackhole", "intermittent", "random_loss", "reject_5xx", "defer_4xx",
    "zero_window", "rst_injected", "remote_down_closed", "remote_down_syn_drop", "remote_down_unreachable",
]  # fmt: skip


def _truth(d: Path) -> dict[str, Any]:
    t: dict[str, Any] = json.loads((d / "truth.json").read_text())
    return t


def _between_ok(got: list[str], want: list[str] | None) -> bool:
    if want is None:  # the remote's own behaviour: the MX, no hop between our capture points
        return not got or all(not g.startswith(("sender", "edge")) or g.startswith("remote MX") for g in got)
    if len(got) != 2:
        return False
    # A point we did not capture at ("recv") is the remote MX as far as we can tell.
    return got[0] == want[0] and (got[1] == want[1] or (want[1] == "recv" and got[1].startswith("remote MX")))


@pytest.mark.parametrize("name", SCENARIOS)
def test_log_and_two_captures_name_fault_and_hop(name: str, lab_run: Callable[[str], Path]) -> None:
    d = lab_run(name)
    truth = _truth(d)
    kind = truth["fault"]["kind"]
    run = run_diagnosis([str(d / "maillog")], [str(d / "sender.pcap"), str(d / "edge.pcap")])
    top = run.diagnosis.top
    assert top is not None
    assert top.cause in CAUSES[kind], [(c.cause, c.confidence) for c in run.diagnosis.conclusions]
    if kind != "none":
        assert _between_ok(top.between, truth["fault"]["between"]), top.between
        assert top.evidence and top.next_step
    jsonschema.validate(run.diagnosis.to_json(), diagnose_schema())


@pytest.mark.parametrize("name", SCENARIOS)
def test_log_alone_gives_the_log_level_verdict(name: str, lab_run: Callable[[str], Path]) -> None:
    d = lab_run(name)
    kind = _truth(d)["fault"]["kind"]
    run = run_diagnosis([str(d / "maillog")], [])
    got = {v["verdict"] for v in run.diagnosis.log_verdicts} - {"healthy"}
    want = LOG_VERDICTS[kind]
    if want:
        assert got and got <= want, got
    else:
        assert not got and run.diagnosis.conclusions[0].cause == "healthy"


# Lab fault kind -> the session verdict a message that is not delivered must get.
FAILED_VERDICT = {
    "size_drop": "path_loss_timeout",
    "pmtud_blackhole": "path_loss_timeout",
    "intermittent_size_drop": "path_loss_timeout",
    "reject_5xx": "rejected",
    "defer_4xx": "deferred",
    "zero_window": "receiver_window_timeout",
    "rst_injected": "reset",
    "port_closed": "refused",
    "syn_drop": "connect_timeout",
    "host_unreachable": "unreachable",
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_sender_capture_alone(name: str, lab_run: Callable[[str], Path]) -> None:
    d = lab_run(name)
    truth = _truth(d)
    kind = truth["fault"]["kind"]
    run = run_diagnosis([], [str(d / "sender.pcap")])
    outcomes = sorted(s.outcome for s in run.facts.sessions)
    expected = [m["expected_outcome"] for m in truth["messages"]]
    assert outcomes.count("delivered") == expected.count("delivered"), outcomes
    # Each message's session (found by its recipient) has the verdict its truth implies; a
    # connection that never got to RCPT (refused, unanswered) is checked by its verdict alone.
    by_rcpt = {r.lower(): s.outcome for s in run.facts.sessions for r in s.recipients}
    for m in truth["messages"]:
        want = "delivered" if m["expected_outcome"] == "delivered" else FAILED_VERDICT[kind]
        got = by_rcpt.get(m["rcpt"].lower())
        if got is None:
            assert want in outcomes and want in ("refused", "connect_timeout", "unreachable"), (
                m["rcpt"],
                outcomes,
            )
        else:
            assert got == want, (m["rcpt"], got, want)
    top = run.diagnosis.top
    assert top is not None and top.cause in CAUSES[kind]
    if kind in PATH_FAULTS:
        # One capture cannot say where between us and the MX: it says which capture would.
        assert top.between[0] == "sender"
        assert "second point" in top.next_step or "edge" in top.would_separate

"""End to end on the fault lab: each message's session gets the verdict its truth implies.

The lab (tests/lab) runs a real Postfix through namespaces with an injected fault and writes
``truth.json``: the fault's kind, each message's recipient, expected fate and deciding reply.
:func:`expected_verdict` maps that truth to analyze's vocabulary; the mapping is written from
the scenario definitions (what was injected), not from mailwire's output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.smtp.pipeline import analyze_captures

pytestmark = pytest.mark.lab

# Reply categories the lab's receiver texts stand for (tests/lab/scenarios.py: a Spamhaus RBL
# reply, a "very low reputation" reply, a Greylisted reply, a "rate limit exceeded" reply).
CATEGORY_BY_LOCAL = {
    "listed1": "blocklist",
    "reputation2": "reputation",
    "greylist1": "greylist",
    "ratelimit2": "rate_limit",
}

NETWORK_FAULT = {
    "size_drop": "path_loss_timeout",
    "pmtud_blackhole": "path_loss_timeout",
    "intermittent_size_drop": "path_loss_timeout",
    "zero_window": "receiver_window_timeout",
    "rst_injected": "reset",
    "port_closed": "refused",
    "syn_drop": "connect_timeout",
    "host_unreachable": "unreachable",
}

SCENARIOS = [
    "healthy",
    "size_drop",
    "pmtud_blackhole",
    "intermittent",
    "random_loss",
    "reject_5xx",
    "defer_4xx",
    "zero_window",
    "rst_injected",
    "remote_down_closed",
    "remote_down_syn_drop",
    "remote_down_unreachable",
]


def expected_verdict(truth: dict, msg: dict) -> tuple[str, str | None]:
    if msg["expected_outcome"] == "delivered":
        return "delivered", None
    local = msg["rcpt"].split("@")[0]
    key = msg.get("key_reply")
    if key is not None and 500 <= key < 600:
        return "rejected", CATEGORY_BY_LOCAL[local]
    if key is not None and 400 <= key < 500 and key != 421:
        return "deferred", CATEGORY_BY_LOCAL[local]
    return NETWORK_FAULT[truth["fault"]["kind"]], None


@pytest.mark.parametrize("name", SCENARIOS)
def test_lab_sessions_get_the_verdict_truth_implies(lab_run: Callable[[str], Path], name: str) -> None:
    d = lab_run(name)
    truth = json.loads((d / "truth.json").read_text())
    result = analyze_captures([d / "sender.pcap"])
    assert result.judged, "the sender capture holds SMTP sessions"
    by_rcpt: dict[str, list] = {}
    unnamed = []
    for j in result.judged:
        rcpts = {r for tx in j.session.transactions for r in tx.rcpt_to} if j.session else set()
        if not rcpts:
            unnamed.append(j)
        for r in rcpts:
            by_rcpt.setdefault(r, []).append(j)
    for msg in truth["messages"]:
        want = expected_verdict(truth, msg)
        got = by_rcpt.get(msg["rcpt"], [])
        if not got and want[0] in ("refused", "connect_timeout", "unreachable"):
            got = unnamed  # no SMTP dialogue: the connection attempts are the sessions
        assert got, f"{name}: no session for {msg['rcpt']}"
        for j in got:
            v = j.verdict
            assert (v.outcome, v.category) == want, f"{name} {msg['rcpt']}: {v.summary}"
            assert v.evidence and all(e.frame > 0 for e in v.evidence)
            if want[0] == "path_loss_timeout":
                assert v.extra["retransmissions"] >= 3
                shows = " ".join(e.shows for e in v.evidence)
                assert "retransmission #2" in shows and "never acknowledged" in shows
            if want[0] == "reset":
                # the lb forged the RST toward the sender: not the MX's own TTL
                assert v.extra["reset_by"] == "server" and v.extra["middlebox_suspected"]
    doc = result.to_json()
    from mailwire.analyze import validate

    validate(doc)


def test_healthy_has_no_failure_finding(lab_run: Callable[[str], Path]) -> None:
    d = lab_run("healthy")
    result = analyze_captures([d / "sender.pcap"])
    assert [f for f in result.findings if f.severity != "info"] == []
    assert {j.verdict.outcome for j in result.judged} == {"delivered"}


def test_incident_points_at_the_network_and_the_edge(lab_run: Callable[[str], Path]) -> None:
    d = lab_run("size_drop")
    result = analyze_captures([d / "sender.pcap"])
    by_id = {f.id: f for f in result.findings}
    assert by_id["failure_class"].data["class"] == "network"
    size = by_id["size_signature"]
    assert size.severity == "failure" and size.data["only_full_size_lost"]
    assert size.data["icmp_frag_needed"] == 0  # the lb drops silently
    mix = [f for f in result.findings if f.id == "destination_mix" and f.severity == "failure"]
    assert mix and mix[0].data["intermittent"]
    step = by_id["next_step"].next_step or ""
    assert "edge" in step and "mailwire compare" in step


def test_pmtud_blackhole_size_signature(lab_run: Callable[[str], Path]) -> None:
    d = lab_run("pmtud_blackhole")
    result = analyze_captures([d / "sender.pcap"])
    size = next(f for f in result.findings if f.id == "size_signature")
    assert size.data["only_full_size_lost"]


def test_incident_seen_at_the_edge(lab_run: Callable[[str], Path]) -> None:
    # At the edge the large segments never arrive (the lb drops them before): the MX times out
    # waiting for data that this capture point never saw, so the edge alone cannot tell a
    # stalled client from loss upstream, and says so.
    d = lab_run("size_drop")
    truth = json.loads((d / "truth.json").read_text())
    result = analyze_captures([d / "edge.pcap"])
    stuck = {m["rcpt"] for m in truth["messages"] if m["expected_outcome"] != "delivered"}
    for j in result.judged:
        rcpts = {r for tx in j.session.transactions for r in tx.rcpt_to} if j.session else set()
        if rcpts & stuck:
            assert j.verdict.outcome == "remote_idle_timeout", j.verdict.summary
            assert "capture on the sending server" in j.verdict.summary
        else:
            assert j.verdict.outcome == "delivered"
    step = next(f for f in result.findings if f.id == "next_step")
    assert step.data["class"] == "client_stall" and "mailwire compare" in (step.next_step or "")


@pytest.mark.parametrize("name", ["healthy", "size_drop", "reject_5xx", "defer_4xx"])
def test_lab_captures_agree_with_tshark(lab_run: Callable[[str], Path], tshark: str, name: str) -> None:
    from mailwire.smtp.pipeline import analyze_capture
    from tests.smtp.test_corpus import our_fields, tshark_fields

    path = lab_run(name) / "sender.pcap"
    cap = analyze_capture(path)
    tc, tr = tshark_fields(tshark, path)
    mc, mr = our_fields(cap)
    # Postfix sends the final dot and QUIT in one segment; tshark shows that segment as body only
    # (the documented exception of the corpus test): those frames are checked against the body end.
    body_ends = {tx.body_last_frame for s in cap.sessions for tx in s.transactions if tx.body_end == "dot"}
    # After the server refused DATA, tshark stays in DATA mode and shows the client's next commands
    # as body (the corpus exception of sv__smtp-data-rejected): those frames are allowed too.
    after_refused_data = set()
    for s in cap.sessions:
        refused = [
            r.frame for tx in s.transactions for r in tx.replies if r.command == "DATA" and r.code != 354
        ]
        if refused:
            after_refused_data |= {f for f, d, _ in s.transcript() if d == "c2s" and f > min(refused)}
    bad = []
    for f in sorted(set(tc) | set(mc)):
        allowed = tc.get(f) is None and (
            (f in body_ends and mc.get(f) == ["QUIT"]) or f in after_refused_data
        )
        if tc.get(f) != mc.get(f) and not allowed:
            bad.append(f"frame {f}: tshark {tc.get(f)} mailwire {mc.get(f)}")
    for f in sorted(set(tr) | set(mr)):
        if tr.get(f) != mr.get(f):
            bad.append(f"frame {f} replies: tshark {tr.get(f)} mailwire {mr.get(f)}")
    assert not bad, "\n".join(bad)
    assert len(tc) >= 4 and len(tr) >= 5

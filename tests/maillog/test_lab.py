"""Triage of the real Postfix lab's maillogs against the lab's ground truth (tests/lab).

For every scenario: every message of ``truth.json`` (by queue id) has exactly one final attempt
whose MTA action matches the observed fate, no delivery line is left unparsed, and the
scenario-level verdict is the one the fault implies — network faults → ``network_path``,
5xx reputation/RBL texts → ``reputation``/``blocklist``, 4xx texts → ``rate_limit``, nothing
listening / SYNs dropped / unreachable → ``remote_outage``, healthy → no failure verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.maillog import triage_logs
from tests.lab import scenarios

pytestmark = pytest.mark.lab

# scenario → accepted domain verdicts (None: no failure verdict at all)
EXPECTED: dict[str, set[str] | None] = {
    "healthy": None,
    "random_loss": None,  # retransmissions, but every message delivered: nothing in the log
    "size_drop": {"network_path"},
    "size_drop_snat": {"network_path"},
    "pmtud_blackhole": {"network_path"},
    "intermittent": {"network_path"},
    "zero_window": {"network_path"},
    "rst_injected": {"network_path"},
    "reject_5xx": {"reputation", "blocklist"},
    "defer_4xx": {"rate_limit"},
    "remote_down_closed": {"remote_outage"},
    "remote_down_syn_drop": {"remote_outage"},
    "remote_down_unreachable": {"remote_outage"},
}
_STATUS = re.compile(r"postfix/(?:smtp|error)\[.*\bstatus=(?:sent|deferred|bounced)\b")
_FATE = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}


def test_every_lab_scenario_has_an_expectation() -> None:
    missing = set(scenarios.SCENARIOS) - set(EXPECTED)
    if missing:  # the lab grew: say so rather than fail the lab's own commit
        pytest.skip(f"lab scenarios without a maillog expectation yet: {sorted(missing)}")
    assert set(EXPECTED) <= set(scenarios.SCENARIOS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lab_maillog(lab_run: Callable[[str], Path], name: str) -> None:
    d = lab_run(name)
    truth = json.loads((d / "truth.json").read_text())
    t = triage_logs([d / "maillog"], tz="UTC")
    assert t.inputs[0].unparsed_delivery == 0
    assert t.inputs[0].garbage == 0
    # independent of the parser's counters: every outbound status line became an attempt
    # (postfix/discard lines for the bounce notices are local deliveries)
    used = {a.line for a in t.attempts}
    lines = (d / "maillog").read_text(encoding="utf-8").splitlines()
    status_lines = [i for i, x in enumerate(lines, start=1) if _STATUS.search(x)]
    assert status_lines and set(status_lines) <= used
    final = {}
    for a in t.attempts:
        if a.final and a.outcome not in ("suppressed", "expired"):
            assert a.queue_id not in final, f"two final attempts for {a.queue_id}"
            final[a.queue_id] = a
    for m in truth["messages"]:
        a = final.get(m["queue_id"])
        assert a is not None, f"{name}: no attempt for {m['queue_id']} ({m['rcpt']})"
        assert _FATE[a.mta_action or ""] == m["observed_outcome"], (name, m["queue_id"], a.reason)
        assert a.recipient == m["rcpt"] and a.message_id == m["message_id"] and a.size == m["size"]
        # the line the lab recorded is the line the attempt came from; its relay is our remote
        rec = m["log"][-1]
        assert a.line == rec["maillog_line"]
        relay = re.fullmatch(r"[^\[]*\[([^\]]+)\]:(\d+)", rec["relay"])
        if relay:
            assert (a.remote_ip, a.remote_port) == (relay.group(1), int(relay.group(2)))
        else:  # relay=none: the address is in the reason ("connect to …[ip]:25: …")
            assert a.remote_ip and f"[{a.remote_ip}]" in rec["reason"]
    verdicts = {v.verdict for v in t.verdicts if v.scope in ("domain", "sender")}
    want = EXPECTED[name]
    if want is None:
        assert verdicts == set(), [v.summary for v in t.verdicts]
    else:
        assert verdicts and verdicts <= want, (name, [v.summary for v in t.verdicts])
        v = next(v for v in t.verdicts if v.verdict in want)
        assert v.evidence and all(e.file.endswith("maillog") and e.line >= 1 for e in v.evidence)


def test_size_drop_signature(lab_run: Callable[[str], Path]) -> None:
    """The incident: small messages delivered, large ones fail in the body / at end of data."""
    d = lab_run("size_drop")
    t = triage_logs([d / "maillog"], tz="UTC")
    dom = next(x for x in t.destinations if x.scope == "domain" and x.key == "dest.test")
    assert dom.intermittent and dom.size_dependent
    assert set(dom.stages) <= {"body", "dot"} and dom.stages
    # where the MX itself gave up ("421 4.4.2 … timeout exceeded"), the try is a network failure
    # with the reply kept, and no duplicate risk (the MX answered, it did not take the message)
    seen = 0
    truth = json.loads((d / "truth.json").read_text())
    by_qid = {a.queue_id: a for a in t.attempts}
    for m in truth["messages"]:
        if " said: 421 4.4.2" in m["log"][-1]["reason"]:  # as Postfix logged it
            a = by_qid[m["queue_id"]]
            assert (a.outcome, a.kind, a.reply_code, a.possible_duplicate) == (
                "network",
                "remote_timeout",
                421,
                False,
            )
            seen += 1
    assert seen >= 1  # the scenario has such a message (medium2 in the lab's runs)

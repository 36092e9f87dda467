"""The reference's §9 worked examples, each with the classification the reference gives.

The reference quotes payload fragments (``…``); the lines below complete them with a queue id,
recipient and syslog header, keeping every reason text exactly as quoted.
"""

# ruff: noqa: E501 - log lines are data and stay whole

from __future__ import annotations

from pathlib import Path

import pytest

from mailwire.maillog import triage_logs

H = "Mar 31 19:41:02 mx1"
# (line, outcome, kind, stage, extra expectations)
EXAMPLES: list[tuple[str, str, str | None, str | None, dict[str, object]]] = [
    (
        f"{H} postfix/smtp[101]: 3F1A2B3C4D: to=<u@gmail.com>, relay=none, delay=150, delays=0.02/0/150/0, "
        "dsn=4.4.1, status=deferred (connect to aspmx3.googlemail.com[74.125.127.27]:25: Connection timed out)",
        "network",
        "connect_timeout",
        "connect",
        {"remote_ip": "74.125.127.27", "delays": (0.02, 0.0, 150.0, 0.0)},
    ),
    (
        f"{H} postfix/error[102]: 3F1A2B3C4E: to=<u@yahoo.com>, relay=none, delay=0.13, delays=0.11/0/0/0.02, "
        "dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to "
        "mta5.am0.yahoodns.net[67.195.168.230]:25: Connection timed out)",
        "suppressed",
        "connect_timeout",
        "connect",
        {},
    ),
    (
        f"{H} postfix/smtp[103]: 3F1A2B3C4F: to=<u@example.com>, relay=sample.net[10.0.0.1]:25, delay=322, "
        "delays=0.04/0/322/0, dsn=4.4.2, status=deferred (conversation with example.com[10.0.0.1] timed out while "
        "receiving the initial server greeting)",
        "network",
        "timeout",
        "greeting",
        {"remote_ip": "10.0.0.1"},
    ),
    (
        f"{H} postfix/smtp[104]: 745137AA: lost connection with hotmail-com.olc.protection.outlook.com"
        "[104.47.55.161] while sending RCPT TO",
        "network",
        "lost_connection",
        "rcpt",
        {"final": False},
    ),
    (
        f"{H} postfix/smtp[105]: 3F1A2B3C50: to=<u@afirme.com.mx>, relay=smtp3.afirme.com.mx[200.23.76.25]:25, "
        "delay=1, delays=0.1/0/0.9/0, dsn=4.0.0, status=deferred (host smtp3.afirme.com.mx[200.23.76.25] refused "
        "to talk to me: 554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.10)",
        "rejected",
        None,
        "greeting",
        {"mta_action": "deferred", "category": "reputation", "provider": "proofpoint"},
    ),
    (
        f"{H} postfix/smtp[106]: 3F1A2B3C51: to=<u@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.26]:25, "
        "delay=2, delays=0.1/0/1/0.9, dsn=5.7.1, status=bounced (host gmail-smtp-in.l.google.com[142.250.1.26] "
        "said: 550-5.7.1 [192.0.2.10] Our system has detected that this message is 550-5.7.1 likely unsolicited "
        "mail. 550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp "
        "(in reply to end of DATA command))",
        "rejected",
        None,
        "dot",
        {"category": "content", "reply_code": 550},
    ),
    (
        f"{H} postfix/smtp[107]: 3F1A2B3C52: to=<u@gmail.com>, relay=ALT1.ASPMX.L.GOOGLE.COM[142.250.2.27]:25, "
        "delay=1, delays=0.1/0/0.5/0.4, dsn=4.2.1, status=deferred (host ALT1.ASPMX.L.GOOGLE.COM[142.250.2.27] "
        "said: 450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 prevents "
        "additional messages from being delivered. 450 4.2.1 Please try again later. - gsmtp "
        "(in reply to RCPT TO command))",
        "deferred",
        None,
        "rcpt",
        {"category": "rate_limit", "enhanced_code": "4.2.1"},
    ),
    (
        f"{H} postfix/smtp[108]: 3F1A2B3C53: to=<u@contoso.com>, relay=contoso-com.mail.protection.outlook.com"
        "[52.101.1.1]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=4.7.500, status=deferred (host "
        "contoso-com.mail.protection.outlook.com[52.101.1.1] said: 451 4.7.500 Server busy. Please try again later "
        "from [192.0.2.10]. (S77) (in reply to RCPT TO command))",
        "deferred",
        None,
        "rcpt",
        {"category": "rate_limit", "provider": "microsoft"},
    ),
    (
        "2011-05-04 10:11:12 1QHa1b-0001x2-Ab == u@dom R=dnslookup T=remote_smtp defer (-18): Remote host h "
        "[1.2.3.4] closed connection in response to end of data",
        "network",
        "lost_connection",
        "dot",
        {"possible_duplicate": True, "remote_ip": "1.2.3.4", "mta": "exim"},
    ),
    (
        f"{H} sm-mta[109]: p879AR6l014283: to=<u@example.com>, delay=00:00:42, mailer=esmtp, pri=120571, "
        "relay=example.com. [192.0.2.99], dsn=4.0.0, stat=Deferred: Connection timed out with example.com.",
        "network",
        "timeout",
        None,
        {"mta": "sendmail"},
    ),
]


@pytest.mark.parametrize(
    ("line", "outcome", "kind", "stage", "extra"), EXAMPLES, ids=[f"ex{i + 1}" for i in range(len(EXAMPLES))]
)
def test_worked_example(
    tmp_path: Path, line: str, outcome: str, kind: str | None, stage: str | None, extra: dict[str, object]
) -> None:
    log = tmp_path / "maillog"
    log.write_text(line + "\n", encoding="utf-8")
    t = triage_logs([log], tz="UTC", year=2024)
    assert t.inputs[0].unparsed_delivery == 0 and t.inputs[0].garbage == 0
    assert len(t.attempts) == 1
    a = t.attempts[0]
    assert (a.outcome, a.kind, a.stage) == (outcome, kind, stage)
    for k, v in extra.items():
        assert getattr(a, k) == v, k


def test_suppressed_is_not_a_try(tmp_path: Path) -> None:
    """Example 2 alone: shown, but never counted as a try nor as network evidence."""
    log = tmp_path / "maillog"
    log.write_text(EXAMPLES[1][0] + "\n", encoding="utf-8")
    t = triage_logs([log], tz="UTC", year=2024)
    dom = next(d for d in t.destinations if d.key == "yahoo.com")
    assert (dom.attempts, dom.failures, dom.outcomes, dom.verdict) == (0, 0, {"suppressed": 1}, "healthy")
    assert t.verdicts == []


def test_qmgr_own_deferral_is_local(tmp_path: Path) -> None:
    """qmgr writes status lines itself when a delivery agent is missing (reference §2.3)."""
    log = tmp_path / "maillog"
    log.write_text(
        "Mar 31 19:41:02 mx1 postfix/qmgr[900]: 4D5E6F7A8B: to=<u@example.org>, relay=none, delay=0.1, "
        "delays=0.1/0/0/0, dsn=4.3.0, status=deferred (mail transport unavailable)\n",
        encoding="utf-8",
    )
    t = triage_logs([log], tz="UTC", year=2024)
    assert [(a.outcome, a.kind, a.queue_id) for a in t.attempts] == [("local", "local_config", "4D5E6F7A8B")]
    assert {(v.scope, v.verdict) for v in t.verdicts} == {
        ("domain", "local_config"),
        ("sender", "local_config"),
    }

"""Recipient and sender addresses holding ">" or ",": a quoted local part (RFC 5321 allows
``"a,b"@example.org``) or hostile input must not turn a delivery record into a skipped line.

Expected recipients, domains, kinds and IPs are read off the crafted lines by hand.
"""

# ruff: noqa: E501 - log lines are data and stay whole

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.maillog import triage_logs

PF = "Nov 24 10:00:0{n} mx1 postfix/smtp[12{n}]: 4F1A2B3C4{n}: "
REFUSED = (
    "relay=none, delay=1.2, delays=0.1/0/1.1/0, dsn=4.4.1, "
    "status=deferred (connect to mx.example.org[192.0.2.2]:25: Connection refused)"
)
BOUNCED = (
    "relay=mx.example.org[192.0.2.2]:25, delay=1.2, delays=0.1/0/1.1/0, dsn=5.7.1, "
    "status=bounced (host mx.example.org[192.0.2.2] said: 550 5.7.1 blocked (in reply to RCPT TO command))"
)


@pytest.mark.parametrize(
    ("payload", "rcpt", "orig", "outcome"),
    [
        ("to=<<script>..>@example.org>, " + REFUSED, "<script>..>@example.org", None, "network"),
        ('to=<"a,b"@example.org>, ' + BOUNCED, '"a,b"@example.org', None, "rejected"),
        (
            'to=<"a,b"@example.org>, orig_to=<x>,y@example.org>, ' + BOUNCED,
            '"a,b"@example.org',
            "x>,y@example.org",
            "rejected",
        ),
        ("to=<x>, y@example.org>, " + REFUSED, "x>, y@example.org", None, "network"),
        # tolerant path: an unknown field, no delays=
        (
            'to=<"a,b"@example.org>, relay=none, novel=1, delay=1, status=deferred (connect to mx.example.org[192.0.2.2]:25: Connection refused)',
            '"a,b"@example.org',
            None,
            "network",
        ),
    ],
)
def test_postfix_addresses_with_gt_and_comma(
    write_log: Callable[..., Path], payload: str, rcpt: str, orig: str | None, outcome: str
) -> None:
    p = write_log("m.log", [PF.format(n=1) + payload])
    t = triage_logs(p, year=2026, tz="UTC")
    assert t.skipped_total == 0, [s.reason for s in t.skipped]
    assert len(t.attempts) == 1
    a = t.attempts[0]
    assert (a.recipient, a.domain, a.orig_recipient, a.outcome) == (rcpt, "example.org", orig, outcome)
    assert a.remote_ip == "192.0.2.2"


def test_postfix_failures_with_odd_addresses_are_counted(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "m.log",
        [
            PF.format(n=1) + "to=<<script>..>@example.org>, " + REFUSED,
            PF.format(n=2) + 'to=<"a,b"@example.org>, ' + BOUNCED,
            PF.format(n=3) + "to=<plain@example.org>, " + REFUSED,
        ],
    )
    d = triage_logs(p, year=2026, tz="UTC").to_dict()["totals"]
    assert (d["attempts"], d["unparsed_delivery"]) == (3, 0)
    assert (d["outcomes"]["network"], d["outcomes"]["rejected"]) == (2, 1)


def test_qmgr_sender_with_gt_kept(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "m.log",
        [
            'Nov 24 10:00:00 mx1 postfix/qmgr[9]: 4F1A2B3C41: from=<"s>,t"@example.com>, size=1234, nrcpt=1 (queue active)',
            PF.format(n=1) + "to=<plain@example.org>, " + REFUSED,
        ],
    )
    a = triage_logs(p, year=2026, tz="UTC").attempts[0]
    assert (a.sender, a.size) == ('"s>,t"@example.com', 1234)


def test_sendmail_sender_with_comma_kept(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "m.log",
        [
            'Nov 24 10:00:00 mx1 sm-mta[5]: 2AOA0011234567: from=<"s,t"@example.com>, size=2048, class=0, nrcpts=1, msgid=<m1@example.com>, proto=ESMTP, daemon=MTA, relay=localhost [127.0.0.1]',
            'Nov 24 10:00:05 mx1 sm-mta[6]: 2AOA0011234567: to=<"a,b"@example.org>, delay=00:00:05, xdelay=00:00:05, mailer=esmtp, pri=120, relay=mx.example.org. [192.0.2.2], dsn=5.7.1, stat=Service unavailable',
        ],
    )
    t = triage_logs(p, year=2026, tz="UTC")
    assert t.skipped_total == 0
    a = t.attempts[0]
    assert (a.sender, a.size, a.domain, a.remote_ip) == (
        '"s,t"@example.com',
        2048,
        "example.org",
        "192.0.2.2",
    )


def test_exim_orig_recipient_with_gt(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "m.log",
        [
            "2026-11-24 10:00:00 1rTqBn-00000000Ku8-1hQm ** u@example.org <o>p@example.org> R=dnslookup T=remote_smtp "
            "H=mx.example.org [192.0.2.2]: SMTP error from remote mail server after RCPT TO:<u@example.org>: 550 5.7.1 blocked"
        ],
    )
    t = triage_logs(p, tz="UTC")
    assert t.skipped_total == 0
    a = t.attempts[0]
    assert (a.recipient, a.orig_recipient, a.outcome) == ("u@example.org", "o>p@example.org", "rejected")

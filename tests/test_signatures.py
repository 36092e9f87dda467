"""The one reply-signature table (``mailwire.signatures``), seen from both stages.

Expected categories come from the reference (``mail-log-failure-signatures.md``: the §7.1 row
a text belongs to, the §7.2/§7.3 examples, the §9 worked examples), not from the code. Each
example is checked as a mail-log reply (``maillog.classify.reply_cause``, the parser the log
stage uses) and as the same reply read off the wire (``smtp.replies.ReplyAssembler`` +
``signatures.classify``, what the capture verdicts use): both must give the reference's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.maillog import triage_logs
from mailwire.maillog.classify import reply_cause
from mailwire.signatures import classify, match, strip_continuations
from mailwire.smtp.pipeline import analyze_captures
from mailwire.smtp.replies import Reply, ReplyAssembler

# (reference place, MX host or None, reply lines as the server sent them, expected category)
EXAMPLES: list[tuple[str, str | None, list[str], str]] = [
    # §9 worked examples
    (
        "§9 Proofpoint at greeting",
        "smtp3.afirme.com.mx",
        ["554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.10"],
        "reputation",
    ),
    (
        "§9 G4",
        "gmail-smtp-in.l.google.com",
        [
            "550-5.7.1 [192.0.2.10] Our system has detected that this message is",
            "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,",
            "550 5.7.1 this message has been blocked.",
        ],
        "content",
    ),
    (
        "§9 G6",
        "alt1.aspmx.l.google.com",
        [
            "450-4.2.1 The user you are trying to contact is receiving mail at a rate that",
            "450-4.2.1 prevents additional messages from being delivered. Please resend your",
            "450 4.2.1 message at a later date.",
        ],
        "rate_limit",
    ),
    (
        "§9 M2",
        "example-com.mail.protection.outlook.com",
        ["451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77714)"],
        "rate_limit",
    ),
    # §7.1 rows whose reference entry quotes a reply
    ("§7.1 Y6", None, ["421 Message from 192.0.2.10 temporarily deferred - 4.16.50"], "reputation"),
    (
        "§7.1 M12 (legacy Hotmail, not a DNSBL)",
        None,
        [
            "550 SC-001 (BAY0-MC1-F12) Unfortunately, messages from 192.0.2.10 weren't sent. Please contact"
            " your Internet service provider since part of their network is on our block list."
        ],
        "reputation",
    ),
    (
        "§7.1 M13",
        "smtp.office365.com",
        ["421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client."],
        "tls_policy",
    ),
    (
        "§7.1 G1 vs G2: 4xx is rate limiting",
        "aspmx.l.google.com",
        [
            "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating",
            "421 4.7.28 from your IP address.",
        ],
        "rate_limit",
    ),
    (
        "§7.1 G1 vs G2: 5xx is a reputation block",
        "aspmx.l.google.com",
        [
            "550-5.7.1 Our system has detected an unusual rate of unsolicited mail",
            "550 5.7.1 originating from your IP address.",
        ],
        "reputation",
    ),
    (
        "§7.1 G3",
        "aspmx.l.google.com",
        ["421 4.7.0 This message was blocked because of the very low reputation of the sending IP address"],
        "reputation",
    ),
    (
        "§7.1 M1",
        "hotmail-com.olc.protection.outlook.com",
        [
            "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet"
            " service provider since part of their network is on our block list (S3150)."
        ],
        "reputation",
    ),
    (
        "§7.1 M5",
        "example-com.mail.protection.outlook.com",
        ["550 5.7.606 Access denied, banned sending IP [192.0.2.10]. AS(1430)"],
        "reputation",
    ),
    (
        "§7.1 Y5",
        "mta5.am0.yahoodns.net",
        [
            "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.10, because the ip is in"
            " Spamhaus's list"
        ],
        "blocklist",
    ),
    (
        "§7.1 Y11 (Psiphon real line)",
        None,
        ["420 Resources unavailable temporarily. Please try later (mta1060.mail.sp2.yahoo.com)"],
        "server_busy",
    ),
    # §7.2 examples
    (
        "§7.2 Spamhaus, listed by",
        "mx.example.net",
        ["550 5.7.1 Email rejected because 192.0.2.10 is listed by zen.spamhaus.org"],
        "blocklist",
    ),
    (
        "§7.2 Postfix default RBL reply",
        "mx.example.net",
        [
            "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org;"
            " https://www.spamhaus.org/query/ip/192.0.2.10"
        ],
        "blocklist",
    ),
    (
        "§7.2 Barracuda",
        None,
        [
            "554 Service unavailable; Client host [192.0.2.10] blocked using Barracuda Reputation;"
            " http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.10"
        ],
        "blocklist",
    ),
    # §7.3 example
    (
        "§7.3 postgrey",
        "mx.example.net",
        [
            "450 4.2.0 <u@example.net>: Recipient address rejected: Greylisted, see"
            " http://postgrey.schweikert.ch/help/example.net.html"
        ],
        "greylist",
    ),
]
# the capture report's vocabulary has no tls_policy (analyze.schema.json): it reports policy
_ANALYZE = {"tls_policy": "policy"}


def _log_category(host: str | None, lines: list[str]) -> str | None:
    """How Postfix logs the reply (continuation prefixes kept, lines joined) and the log stage reads it."""
    cause = reply_cause(" ".join(lines), "RCPT TO", host, "192.0.2.25")
    return cause.category


def _wire_reply(lines: list[str]) -> Reply:
    asm = ReplyAssembler()
    got: Reply | bool | None = None
    for i, line in enumerate(lines, start=1):
        got = asm.push(line, i, i)
    assert isinstance(got, Reply), lines
    return got


@pytest.mark.parametrize(("where", "host", "lines", "want"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_reference_examples(where: str, host: str | None, lines: list[str], want: str) -> None:
    assert _log_category(host, lines) == want, where
    r = _wire_reply(lines)
    assert classify(r.code, r.text, r.enhanced).category == _ANALYZE.get(want, want), where
    # a capture does not know the MX host name; with it the answer is the same
    assert classify(r.code, r.text, r.enhanced, host).category == _ANALYZE.get(want, want), where


@pytest.mark.parametrize(("where", "host", "lines", "want"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_log_and_capture_agree_on_the_rule(where: str, host: str | None, lines: list[str], want: str) -> None:
    # same row of the table, not only the same category
    r = _wire_reply(lines)
    code, _, rest = " ".join(lines).partition(" ")
    esc = r.enhanced
    text = rest[len(esc) + 1 :] if esc and rest.startswith(esc) else rest
    from_log = match(int(code[:3]), esc, text, host)
    assert from_log.category == want, where
    assert classify(r.code, r.text, r.enhanced, host).rule.removesuffix("_tls") == from_log.rule, where


def test_continuation_prefixes_only_where_they_stand_alone() -> None:
    assert strip_continuations("550-5.7.1 one 550-5.7.1 two 550 5.7.1 three") == "one two three"
    assert strip_continuations("SC-001 (BAY0) text") == "SC-001 (BAY0) text"


@pytest.mark.parametrize("name", ["reject_5xx", "defer_4xx"])
def test_lab_log_and_capture_categories_agree(lab_run: Callable[[str], Path], name: str) -> None:
    """A lab run's maillog and its sender capture hold the same replies: same category per recipient."""
    d = lab_run(name)
    t = triage_logs([d / "maillog"], tz="UTC")
    from_log: dict[str, set[str | None]] = {}
    for a in t.attempts:
        if a.outcome in ("rejected", "deferred") and a.reply_code is not None and a.recipient:
            from_log.setdefault(a.recipient, set()).add(a.category)
    from_wire: dict[str, set[str | None]] = {}
    for j in analyze_captures([d / "sender.pcap"]).judged:
        if j.session is None or j.verdict.outcome not in ("rejected", "deferred"):
            continue
        for tx in j.session.transactions:
            for rcpt in tx.rcpt_to:
                from_wire.setdefault(rcpt, set()).add(j.verdict.category)
    common = sorted(set(from_log) & set(from_wire))
    assert common, f"{name}: no recipient refused in both the log and the capture"
    for rcpt in common:
        log_cats = {_ANALYZE.get(c or "", c) for c in from_log[rcpt]}
        assert log_cats == from_wire[rcpt], (name, rcpt)

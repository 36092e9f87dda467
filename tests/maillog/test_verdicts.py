"""Scenario-level verdicts, one per category, from realistic Postfix lines (reference §2 formats).

Each scenario is a small log written the way Postfix writes it (qmgr size lines, per-recipient
status lines, info lines of non-final MX hosts); the expected verdict follows from the issue's
definitions (5xx reputation/RBL texts, 4xx throttling, greylisting, timeouts without SMTP errors,
an MX that never answers, our own configuration).
"""

# ruff: noqa: E501 - log lines are data and stay whole

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mailwire.maillog import LogTriage, triage_logs

Q = 0x10000


def _lines(specs: list[tuple[str, str, str, int]]) -> list[str]:
    """(minute:second, domain, reason-or-'sent', size) → qmgr + smtp status lines."""
    out = []
    for i, (ms, dom, what, size) in enumerate(specs):
        qid = f"{Q + i:X}A"
        pid = 3000 + i
        t = f"Apr  2 10:{ms}"
        out.append(
            f"{t} mx1 postfix/qmgr[900]: {qid}: from=<app@example.com>, size={size}, nrcpt=1 (queue active)"
        )
        mx, ip = MX[dom]
        if what == "sent":
            out.append(
                f"{t} mx1 postfix/smtp[{pid}]: {qid}: to=<user{i}@{dom}>, relay={mx}[{ip}]:25, delay=1.2, delays=0.1/0/0.3/0.8, dsn=2.0.0, status=sent (250 2.0.0 OK 1712052000 x{i} - gsmtp)"
            )
        elif what.startswith("connect"):
            out.append(
                f"{t} mx1 postfix/smtp[{pid}]: {qid}: to=<user{i}@{dom}>, relay=none, delay=30, delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to {mx}[{ip}]:25: {what[8:]})"
            )
        elif what.startswith("timeout "):
            stage = what[8:]
            out.append(
                f"{t} mx1 postfix/smtp[{pid}]: {qid}: to=<user{i}@{dom}>, relay={mx}[{ip}]:25, delay=181, delays=0.1/0/0.3/180, dsn=4.4.2, status=deferred (conversation with {mx}[{ip}] timed out while {stage})"
            )
        else:
            status = "bounced" if what.startswith("5") else "deferred"
            dsn = what.split(" ")[1] if what[3] == " " and what[4].isdigit() else what[:1] + ".0.0"
            out.append(
                f"{t} mx1 postfix/smtp[{pid}]: {qid}: to=<user{i}@{dom}>, relay={mx}[{ip}]:25, delay=1, delays=0.1/0/0.3/0.6, dsn={dsn}, status={status} (host {mx}[{ip}] said: {what} (in reply to RCPT TO command))"
            )
        out.append(f"{t} mx1 postfix/qmgr[900]: {qid}: removed")
    return out


MX = {
    "gmail.com": ("gmail-smtp-in.l.google.com", "198.51.100.26"),
    "yahoo.com": ("mta5.am0.yahoodns.net", "203.0.113.230"),
    "outlook.com": ("outlook-com.olc.protection.outlook.com", "192.0.2.161"),
    "example.org": ("mx.example.org", "198.51.100.80"),
    "example.net": ("mx.example.net", "203.0.113.81"),
}


def _run(write_log: Callable[..., Path], lines: list[str]) -> LogTriage:
    return triage_logs([write_log("maillog", lines)], tz="UTC", year=2024)


def _domain(t: LogTriage, key: str) -> str:
    return next(d.verdict for d in t.destinations if d.scope == "domain" and d.key == key)


def _verdicts(t: LogTriage) -> set[tuple[str, str, str]]:
    return {(v.scope, v.key, v.verdict) for v in t.verdicts}


def test_reputation(write_log: Callable[..., Path]) -> None:
    rep = (
        "550-5.7.1 [192.0.2.10] Our system has detected that this message is 550-5.7.1 "
        "very low reputation of the sending IP address. - gsmtp"
    )
    t = _run(
        write_log,
        _lines(
            [
                ("00:01", "gmail.com", rep, 4000),
                ("00:05", "gmail.com", rep, 3000),
                ("00:09", "gmail.com", "sent", 2000),
                ("00:12", "example.org", "sent", 2000),
            ]
        ),
    )
    assert _verdicts(t) == {("domain", "gmail.com", "reputation")}
    v = t.verdicts[0]
    assert [e.line for e in v.evidence] == [2, 5] and "reputation" in v.next_step


def test_blocklist(write_log: Callable[..., Path]) -> None:
    rbl = "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10"
    t = _run(write_log, _lines([("00:01", "example.org", rbl, 4000), ("00:03", "example.org", rbl, 900)]))
    assert _verdicts(t) == {("domain", "example.org", "blocklist")}
    assert {a.blocklist for a in t.attempts} == {"zen.spamhaus.org"}


def test_rate_limit(write_log: Callable[..., Path]) -> None:
    rate = (
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 "
        "prevents additional messages from being delivered. 450 4.2.1 Please try again later. - gsmtp"
    )
    t = _run(
        write_log,
        _lines(
            [
                ("00:01", "gmail.com", "sent", 4000),
                ("00:02", "gmail.com", rate, 4000),
                ("00:03", "gmail.com", rate, 4000),
                ("00:09", "gmail.com", "sent", 4000),
            ]
        ),
    )
    assert _verdicts(t) == {("domain", "gmail.com", "rate_limit")}


def test_refused_connections_between_successes_are_rate_limiting(write_log: Callable[..., Path]) -> None:
    t = _run(
        write_log,
        _lines(
            [
                ("00:01", "example.net", "sent", 900),
                ("00:02", "example.net", "connect Connection refused", 900),
                ("00:03", "example.net", "sent", 900),
            ]
        ),
    )
    assert _domain(t, "example.net") == "rate_limit"


def test_greylist(write_log: Callable[..., Path]) -> None:
    grey = "450 4.2.0 <user0@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"
    t = _run(
        write_log, _lines([("00:01", "example.org", grey, 1000), ("05:01", "example.org", "sent", 1000)])
    )
    assert _verdicts(t) == {("domain", "example.org", "greylist")}
    assert not next(
        d for d in t.destinations if d.key == "example.org"
    ).intermittent  # greylisting is not flapping


def test_network_path_size_dependent(write_log: Callable[..., Path]) -> None:
    """The incident: small messages get through, large ones time out in the body; same MX and IP."""
    specs = [
        ("00:01", "outlook.com", "sent", 1500),
        ("00:02", "outlook.com", "timeout sending message body", 48000),
        ("00:04", "outlook.com", "sent", 2100),
        ("00:06", "outlook.com", "timeout sending message body", 120000),
        ("00:08", "outlook.com", "sent", 900),
        ("00:10", "outlook.com", "timeout sending end of data -- message may be sent more than once", 64000),
    ]
    t = _run(write_log, _lines(specs))
    d = next(x for x in t.destinations if x.scope == "domain" and x.key == "outlook.com")
    assert (d.verdict, d.intermittent, d.size_dependent) == ("network_path", True, True)
    assert d.stages == {"body": 2, "dot": 1}
    ip = next(x for x in t.destinations if x.scope == "ip" and x.key == "192.0.2.161")
    assert ip.verdict == "network_path"
    v = next(v for v in t.verdicts if v.key == "outlook.com")
    assert "size-dependent" in v.summary and "192.0.2.161" in v.next_step
    assert any(a.possible_duplicate for a in t.attempts)


def test_timeouts_across_unrelated_providers_point_at_our_side(write_log: Callable[..., Path]) -> None:
    specs = [
        ("00:01", "gmail.com", "connect Connection timed out", 5000),
        ("00:02", "yahoo.com", "timeout receiving the initial server greeting", 5000),
        ("00:03", "outlook.com", "connect Connection timed out", 5000),
        ("00:04", "example.org", "sent", 5000),
    ]
    t = _run(write_log, _lines(specs))
    assert ("sender", "(this server)", "network_path") in _verdicts(t)
    # without the cross-provider view each would look like an outage of its own
    assert {_domain(t, d) for d in ("gmail.com", "yahoo.com", "outlook.com")} == {"network_path"}
    assert t.verdicts[0].scope == "sender"


def test_remote_outage_of_one_provider(write_log: Callable[..., Path]) -> None:
    specs = [
        ("00:01", "example.net", "connect Connection timed out", 900),
        ("00:11", "example.net", "connect Connection timed out", 900),
        ("00:21", "gmail.com", "sent", 900),
        ("00:22", "example.org", "sent", 900),
    ]
    t = _run(write_log, _lines(specs))
    assert _verdicts(t) == {("domain", "example.net", "remote_outage")}


def test_local_config(write_log: Callable[..., Path]) -> None:
    lines = [
        "Apr  2 10:00:01 mx1 postfix/smtp[4001]: 1A2B3C4D5E: to=<a@example.org>, relay=mx.example.org[198.51.100.80]:25, delay=1, delays=0.1/0/0.9/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx.example.org[198.51.100.80])",
        "Apr  2 10:00:02 mx1 postfix/smtp[4002]: 1A2B3C4D5F: to=<b@example.org>, relay=none, delay=0.1, delays=0.1/0/0/0, dsn=4.7.5, status=deferred (client TLS configuration problem)",
        "Apr  2 10:00:03 mx1 postfix/smtp[4003]: connect to mx.example.net[2001:db8::25]:25: Network is unreachable",
        "Apr  2 10:00:03 mx1 postfix/smtp[4003]: 1A2B3C4D60: to=<c@example.net>, relay=mx.example.net[203.0.113.81]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, status=sent (250 ok)",
    ]
    t = _run(write_log, lines)
    assert _domain(t, "example.org") == "local_config"
    assert ("sender", "(this server)", "local_config") in _verdicts(t)
    v6 = next(a for a in t.attempts if a.remote_ip == "2001:db8::25")
    assert (v6.outcome, v6.kind, v6.final) == ("local", "ipv6_unreachable", False)


def test_healthy(write_log: Callable[..., Path]) -> None:
    t = _run(write_log, _lines([(f"00:{i:02d}", d, "sent", 1000 * (i + 1)) for i, d in enumerate(MX)]))
    assert t.verdicts == []
    assert {d.verdict for d in t.destinations} == {"healthy"}


def test_suppressed_deferrals_do_not_inflate_failures(write_log: Callable[..., Path]) -> None:
    lines = _lines(
        [("00:01", "yahoo.com", "connect Connection timed out", 900), ("00:30", "yahoo.com", "sent", 900)]
    )
    for i in range(20):  # the dead-destination cache repeats the old reason, no connection made
        lines.append(
            f"Apr  2 10:00:{2 + i:02d} mx1 postfix/error[5{i:03d}]: 2{i:04X}ABCD: to=<z{i}@yahoo.com>, relay=none, delay=0.1, delays=0.1/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to mta5.am0.yahoodns.net[203.0.113.230]:25: Connection timed out)"
        )
    t = _run(write_log, lines)
    d = next(x for x in t.destinations if x.scope == "domain" and x.key == "yahoo.com")
    assert (d.attempts, d.failures, d.outcomes["suppressed"]) == (2, 1, 20)
    ip = next(x for x in t.destinations if x.scope == "ip" and x.key == "203.0.113.230")
    assert ip.attempts == 2 and "suppressed" not in ip.outcomes


def test_greeting_5xx_logged_as_deferral_is_a_rejection(write_log: Callable[..., Path]) -> None:
    lines = [
        f"Apr  2 10:00:0{i} mx1 postfix/smtp[600{i}]: 3C3C3C3C{i}0: to=<u{i}@example.org>, relay=mx.example.org[198.51.100.80]:25, delay=1, delays=0.1/0/0.9/0, dsn=4.0.0, status=deferred (host mx.example.org[198.51.100.80] refused to talk to me: 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using b.barracudacentral.org)"
        for i in range(3)
    ]
    t = _run(write_log, lines)
    assert {(a.outcome, a.mta_action, a.stage, a.category) for a in t.attempts} == {
        ("rejected", "deferred", "greeting", "blocklist")
    }
    assert _domain(t, "example.org") == "blocklist"

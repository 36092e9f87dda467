"""Real public sample lines (tests/maillog/fixtures/README.md): every delivery line parsed.

Expected fields: relay host/ip/port as the grok-pattern project's YAML states them; outcome,
kind and stage from the reference's §8 phrase table and §9 worked examples, checked by hand.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from mailwire.maillog import triage_logs

from .conftest import FIXTURES

# source → (attempts expected, outcome, kind, stage, relay host, ip, port, extra checks)
PAYLOAD_EXPECT: dict[
    str, tuple[int, str | None, str | None, str | None, str | None, str | None, int | None]
] = {
    "whyscream/postfix-grok-patterns:test/smtp_0005.yaml": (
        1,
        "network",
        "connect_timeout",
        "connect",
        "intern.nl",
        "194.109.6.98",
        25,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0006.yaml": (
        1,
        "network",
        "lost_connection",
        "greeting",
        "mx3.hotmail.com",
        "65.55.37.72",
        None,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0007.yaml": (
        1,
        "network",
        "host_unreachable",
        "connect",
        "mail2.crabruzzo.it",
        "2.115.207.21",
        25,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0018.yaml": (
        1,
        "rejected",
        None,
        "dot",
        "gmail-smtp-in.l.google.com",
        "2607:f8b0:400e:c04::1b",
        25,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0022.yaml": (
        1,
        "network",
        "timeout",
        "greeting",
        "mx00.gmx.com",
        "74.208.5.4",
        None,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0026.yaml": (
        1,
        "deferred",
        None,
        "rcpt",
        "open.example.nl",
        "10.49.140.10",
        25,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0029.yaml": (
        1,
        "tls",
        "handshake",
        "starttls",
        "mail.example.org",
        "112.63.65.2",
        25,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0030.yaml": (
        1,
        "tls",
        "handshake",
        "starttls",
        "mail.example.org",
        "112.63.65.2",
        25,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0033.yaml": (
        1,
        "network",
        "lost_connection",
        "rcpt",
        "hotmail-com.olc.protection.outlook.com",
        "104.47.55.161",
        None,
    ),
    "whyscream/postfix-grok-patterns:test/smtp_0034.yaml": (
        1,
        "deferred",
        None,
        "greeting",
        "mg2.egov.bg",
        "213.91.191.86",
        None,
    ),
    "whyscream/postfix-grok-patterns:test/error_0001.yaml": (
        1,
        "suppressed",
        "lost_connection",
        "rcpt",
        "mta7.am0.yahoodns.net",
        "98.136.216.22",
        None,
    ),
    "whyscream/postfix-grok-patterns:test/POSTFIX_SMTP.log#1": (
        1,
        "delivered",
        None,
        None,
        "127.0.0.1",
        "127.0.0.1",
        2525,
    ),
    "whyscream/postfix-grok-patterns:test/POSTFIX_SMTP.log#2": (
        1,
        "delivered",
        None,
        None,
        "mail1.example.net",
        "10.74.103.11",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#sent-conn_use": (
        1,
        "delivered",
        None,
        None,
        "mpafm.example.org",
        "24.100.200.21",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#bounced": (
        1,
        "rejected",
        None,
        "rcpt",
        "mail2.sender.com",
        "66.100.32.07",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#deferred": (
        1,
        "network",
        "connect_timeout",
        "connect",
        "dc-452452f6.bar.com",
        "63.200.300.49",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#error": (
        1,
        "suppressed",
        "connect_timeout",
        "connect",
        "24.200.177.247",
        "24.200.177.247",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#error-noqid": (
        1,
        "suppressed",
        "connect_timeout",
        "connect",
        "24.200.177.247",
        "24.200.177.247",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#error-orig_to": (
        1,
        "suppressed",
        "connect_refused",
        "connect",
        "127.0.0.2",
        "127.0.0.2",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#local": (0, None, None, None, None, None, None),
    "msimerson/postfix-parser:test/index.js#connect-info": (
        1,
        "network",
        "connect_timeout",
        "connect",
        "mail.mountaineer.k12.mm.us",
        "70.200.138.252",
        25,
    ),
    "msimerson/postfix-parser:test/index.js#pix": (0, None, None, None, None, None, None),
    # soft_bounce=yes: the remote's 501 stays a rejection (reference §6.1 rule 3)
    'forum:"Postfix issue with compromised account" (2014-10-14, pages corpus)': (
        1,
        "rejected",
        None,
        "rcpt",
        "mail.techs.com.br",
        "186.232.248.4",
        25,
    ),
    # old Postfix without dsn=/delays= (logwatch test data)
    "jsoref/logwatch-mirror:scripts/services/postfix#TD-76EB0D13": (
        1,
        "local",
        "local_config",
        None,
        None,
        None,
        None,
    ),
    "jsoref/logwatch-mirror:scripts/services/postfix#TD-C8103B94": (
        1,
        "dns",
        "dns_perm",
        None,
        None,
        None,
        None,
    ),
    "jsoref/logwatch-mirror:scripts/services/postfix#TD-C76431E2": (
        1,
        "deferred",
        None,
        "rcpt",
        "sample.net",
        "192.168.0.1",
        None,
    ),
}


def _payloads() -> list[tuple[str, str, str]]:
    rows = []
    for line in (FIXTURES / "postfix_payloads.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        source, prog, payload = line.split("\t")
        rows.append((source, prog, payload))
    return rows


def test_every_payload_has_an_expectation() -> None:
    assert {s for s, _, _ in _payloads()} == set(PAYLOAD_EXPECT)


@pytest.mark.parametrize(("source", "prog", "payload"), _payloads(), ids=[s for s, _, _ in _payloads()])
def test_postfix_payload(tmp_path: Path, source: str, prog: str, payload: str) -> None:
    log = tmp_path / "maillog"
    log.write_text(f"Mar 31 19:41:02 mx1 {prog}[4242]: {payload}\n", encoding="utf-8")
    t = triage_logs([log], tz="UTC", year=2024)
    n, outcome, kind, stage, host, ip, port = PAYLOAD_EXPECT[source]
    assert t.inputs[0].unparsed_delivery == 0 and t.inputs[0].garbage == 0
    assert len(t.attempts) == n
    if not n:
        return
    a = t.attempts[0]
    assert (a.outcome, a.kind, a.stage) == (outcome, kind, stage)
    assert (a.relay_host, a.remote_ip, a.remote_port) == (host, ip, port)
    assert a.time.isoformat() == "2024-03-31T19:41:02+00:00"


def test_payload_details_from_the_peers() -> None:
    """Fields the sample projects state: reply codes, orig_to, conn_use, queue ids."""
    rows = {s: p for s, _, p in _payloads()}
    from mailwire.maillog.classify import postfix_reason

    c = postfix_reason(
        rows["whyscream/postfix-grok-patterns:test/smtp_0026.yaml"].split("status=deferred (")[1][:-1],
        "deferred",
    )
    assert (c.reply_code, c.enhanced_code, c.category, c.reply_command) == (
        450,
        "4.2.0",
        "greylist",
        "RCPT TO command",
    )
    c = postfix_reason(
        rows["whyscream/postfix-grok-patterns:test/smtp_0018.yaml"].split("status=bounced (")[1][:-1],
        "bounced",
    )
    # G4 "likely unsolicited mail" from Gmail: content/spam (reference §9)
    assert (c.reply_code, c.enhanced_code, c.category, c.provider) == (550, "5.7.1", "content", "google")


def test_postfix_payload_fields(tmp_path: Path) -> None:
    rows = {s: (p, pl) for s, p, pl in _payloads()}
    lines = []
    for key in (
        "whyscream/postfix-grok-patterns:test/POSTFIX_SMTP.log#2",
        "msimerson/postfix-parser:test/index.js#sent-conn_use",
        "msimerson/postfix-parser:test/index.js#error-orig_to",
    ):
        prog, payload = rows[key]
        lines.append(f"Mar 31 19:41:02 mx1 {prog}[{len(lines) + 1}]: {payload}")
    log = tmp_path / "maillog"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    a1, a2, a3 = triage_logs([log], tz="UTC", year=2024).attempts
    assert (a1.queue_id, a1.recipient, a1.orig_recipient, a1.dsn, a1.delay) == (
        "0D9633D",
        "jos@example.com",
        "bestuur@example.com",
        "2.0.0",
        11.0,
    )
    assert a1.delays == (5.4, 0.06, 5.1, 0.03)
    assert (a2.queue_id, a2.conn_use, a2.reply_code, a2.enhanced_code) == ("3mPVKl0Mhjz7sXv", 2, 250, "2.0.0")
    assert (a3.queue_id, a3.orig_recipient, a3.mta_action) == (
        "3lz2cf24l8z2yfC",
        "root@localhost",
        "deferred",
    )


def test_lightmeter_retry_log() -> None:
    t = triage_logs([FIXTURES / "lightmeter_6_deferred_message_retry.log"], tz="UTC", year=2020)
    stats = t.inputs[0]
    assert stats.lines == 28
    # line 17 is damaged in the original ("ec  7 …"): garbage, reported with its number
    assert stats.garbage == 1 and [(s.line, s.reason) for s in t.skipped] == [(17, "no known log header")]
    assert stats.unparsed_delivery == 0
    got = [(a.queue_id, a.outcome, a.remote_ip, a.final) for a in t.attempts]
    assert got == [
        ("78E8330001C7", "delivered", "127.0.0.1", True),
        ("939E030001C8", "delivered", "127.0.0.1", True),
        ("A17F830001CA", "deferred", "11.22.33.44", False),  # non-final MX, linked via pid 18832
        ("A17F830001CA", "deferred", "141.30.67.69", True),
        ("0025630001C7", "delivered", "127.0.0.1", True),  # the LMTP line to a UNIX socket is local
        ("A17F830001CA", "delivered", "11.22.33.44", True),
    ]
    grey = [a for a in t.attempts if a.outcome == "deferred"]
    assert all(a.category == "greylist" and a.reply_code == 451 and a.domain == "recipient.com" for a in grey)
    assert all(a.size == 2259 and a.message_id == "000msgid0000@example.com" for a in grey)
    dom = {d.key: d for d in t.destinations if d.scope == "domain"}
    assert dom["recipient.com"].verdict == "greylist"
    assert [v.verdict for v in t.verdicts] == ["greylist"]


def test_lightmeter_expired_log() -> None:
    t = triage_logs([FIXTURES / "lightmeter_18_expired.log"], tz="UTC", year=2020)
    assert t.inputs[0].garbage == 0 and t.inputs[0].unparsed_delivery == 0
    c = Counter(a.outcome for a in t.attempts)
    assert c == Counter({"deferred": 5, "delivered": 2, "expired": 1})
    deferred = [a for a in t.attempts if a.outcome == "deferred"]
    assert {a.category for a in deferred} == {"mailbox"}  # 452 4.1.1 "user is over quota" (G15)
    assert all(
        a.queue_id == "23EBE3D5C0" and a.size == 312343 and a.program == "postfix-239.58.50.50/smtp"
        for a in deferred
    )
    exp = next(a for a in t.attempts if a.outcome == "expired")
    assert (exp.queue_id, exp.domain, exp.time.isoformat()) == (
        "23EBE3D5C0",
        "h-695da2287.com",
        "2020-09-30T20:46:08+00:00",
    )
    # a full mailbox is not a path problem: no failure verdict
    assert t.verdicts == []


def test_exim_0106_timeouts_with_host_lines() -> None:
    t = triage_logs([FIXTURES / "exim_test_log_0106"], tz="UTC")
    got = [(a.queue_id, a.outcome, a.kind, a.stage, a.remote_ip, a.domain) for a in t.attempts]
    # the host line and the == line describe the same try
    assert got == [
        ("10HmaX-000000005vi-0000", "network", "timeout", "helo", "127.0.0.1", "domain1.com"),
        ("10HmaY-000000005vi-0000", "network", "timeout", "mail", "127.0.0.1", "domain2.com"),
    ]
    assert t.attempts[0].time.isoformat() == "1999-03-02T09:44:33+00:00"


def test_exim_0099_refused_retry_dns() -> None:
    t = triage_logs([FIXTURES / "exim_test_log_0099"], tz="UTC")
    assert t.inputs[0].unparsed_delivery == 0 and t.inputs[0].garbage == 0
    c = Counter((a.outcome, a.kind) for a in t.attempts)
    assert c == Counter(
        {
            ("network", "connect_refused"): 7,
            ("suppressed", "retry_time_not_reached"): 2,
            ("dns", "dns_temp"): 3,
        }
    )
    hmay = [a for a in t.attempts if a.queue_id == "10HmaY-0005vi-00"]
    assert [(a.remote_ip, a.final) for a in hmay] == [("ip4.ip4.ip4.ip4", False), ("127.0.0.1", True)]
    assert all(a.domain == "complex" for a in hmay)


def test_exim_0217_replies_old_grammar() -> None:
    t = triage_logs([FIXTURES / "exim_test_log_0217"], tz="UTC")
    got = [(a.queue_id[:6], a.recipient, a.outcome, a.stage, a.reply_code) for a in t.attempts]
    assert got == [
        ("10HmaX", "a@test.ex", "delivered", None, 250),
        ("10HmaX", "b@test.ex", "deferred", "rcpt", 451),
        ("10HmaX", "c@test.ex", "rejected", "rcpt", 550),
        ("10HmaX", "d@test.ex", "delivered", None, 250),
        ("10HmaZ", "a@test.ex", "network", "rcpt", None),
        ("10HmaZ", "b@test.ex", "network", "rcpt", None),
        ("10HmaZ", "c@test.ex", "network", "rcpt", None),
        ("10HmbA", "a@test.ex", "deferred", "mail", 451),
        ("10HmbA", "b@test.ex", "deferred", "mail", 451),
        ("10HmbB", "a@test.ex", "rejected", "mail", 550),
        ("10HmbB", "b@test.ex", "rejected", "mail", 550),
        ("10HmbI", "a@test.ex", "rejected", "data", 503),
        ("10HmbK", "a@test.ex", "deferred", "data", 403),
    ]
    assert {a.remote_ip for a in t.attempts} == {"127.0.0.1"}


def test_sendmail_reference_lines() -> None:
    t = triage_logs([FIXTURES / "sendmail_reference_examples.log"], tz="UTC", year=2011)
    a, b = t.attempts
    assert (a.outcome, a.kind, a.stage, a.relay_host, a.remote_ip, a.queue_id, a.domain) == (
        "network",
        "timeout",
        None,
        "rediff.com",
        "64.27.53.172",
        "p879AR6l014283",
        "rediff.com",
    )
    assert a.delay == 1 * 86400 + 17 * 3600 + 52 * 60 + 54
    assert (b.outcome, b.kind, b.remote_ip, b.program) == (
        "network",
        "connect_refused",
        "127.0.0.1",
        "sm-msp-queue",
    )


def test_unparsed_delivery_lines_are_only_the_documented_ones() -> None:
    paths = [p for p in FIXTURES.iterdir() if p.suffix != ".tsv" and p.name != "README.md"]
    t = triage_logs(paths, tz="UTC", year=2020)
    got = sorted((Path(s.file).name, s.line, s.reason) for s in t.skipped)
    assert got == [
        ("lightmeter_6_deferred_message_retry.log", 17, "no known log header"),  # damaged in the original
        ("psiphon_log_processor_comments.log", 16, "delivery line not understood"),  # "host host …" slip
    ]


# Lines that look like delivery records but deliberately yield no attempt (fixtures/README.md).
DOCUMENTED = {
    ("lightmeter_6_deferred_message_retry.log", 17): "damaged header in the original (garbage)",
    ("psiphon_log_processor_comments.log", 16): "'host host example.com[…] said:' slip in the original",
    ("psiphon_log_processor_comments.log", 4): "postfix/local: local delivery",
    ("psiphon_log_processor_comments.log", 9): "postfix/local: local delivery",
    ("lightmeter_6_deferred_message_retry.log", 23): "LMTP to a UNIX socket: local delivery",
    ("exim_test_log_0217", 7): "bounce discarded by a router, no transport",
}
_LOOKS_LIKE_DELIVERY = re.compile(r"\bstatus=(?:sent|deferred|bounced|expired)\b|\bstat=| (?:=>|->|\*\*|==) ")


def test_every_delivery_looking_line_became_an_attempt() -> None:
    """Independent of the parser's own counters: a plain regex finds the delivery-looking lines."""
    paths = [p for p in sorted(FIXTURES.iterdir()) if p.suffix not in (".tsv", ".md")]
    t = triage_logs(paths, tz="UTC", year=2020)
    used = {(Path(a.file).name, a.line) for a in t.attempts}
    missing = []
    for p in paths:
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if (
                _LOOKS_LIKE_DELIVERY.search(line)
                and (p.name, i) not in used
                and (p.name, i) not in DOCUMENTED
            ):
                missing.append(f"{p.name}:{i}: {line[:100]}")
    assert missing == []
    assert all((n, i) not in used for n, i in DOCUMENTED)


def test_psiphon_comment_lines_bsd_and_rfc3339() -> None:
    t = triage_logs([FIXTURES / "psiphon_log_processor_comments.log"], tz="UTC", year=2012)
    s = t.inputs[0]
    assert (s.lines, s.garbage, s.unparsed_delivery, s.attempts) == (22, 0, 1, 13)
    assert [(x.line, x.reason) for x in t.skipped] == [(16, "delivery line not understood")]  # "host host …"
    by_line = {a.line: a for a in t.attempts}
    expect = {
        5: ("network", "connect_timeout", "connect", False),  # non-final MX; its process never logs a status
        6: ("network", "connect_timeout", "connect", True),
        7: ("suppressed", "connect_timeout", "connect", True),
        8: ("delivered", None, None, True),
        10: ("expired", None, None, True),
        13: ("local", "ipv6_unreachable", "connect", False),  # IPv6 without a route on our side
        14: ("deferred", None, "greeting", False),
        15: ("deferred", None, "greeting", False),
        17: ("network", "connect_refused", "connect", False),
        18: ("network", "lost_connection", "data", False),
        19: ("network", "timeout", "body", False),
        20: ("deferred", None, "rcpt", False),
        21: ("deferred", None, "dot", False),
    }
    assert {n: (a.outcome, a.kind, a.stage, a.final) for n, a in by_line.items()} == expect
    assert by_line[14].category == "server_busy" and by_line[14].provider == "yahoo"  # Y11, 420 at greeting
    assert by_line[6].message_id == "20120627192404.DF85B221EB@psiphon3.com"
    assert by_line[7].time.isoformat() == "2012-07-03T21:28:09.632739+00:00"
    assert by_line[8].delays == (534.0, 0.18, 31.0, 0.69)


def test_softbounce_keeps_the_remote_verdict(tmp_path: Path) -> None:
    rows = {s: (p, pl) for s, p, pl in _payloads()}
    prog, payload = rows['forum:"Postfix issue with compromised account" (2014-10-14, pages corpus)']
    log = tmp_path / "maillog"
    log.write_text(f"Oct 14 07:34:03 custhost1 {prog}[10837]: {payload}\n", encoding="utf-8")
    (a,) = triage_logs([log], tz="UTC", year=2014).attempts
    assert (a.outcome, a.mta_action, a.reply_code, a.enhanced_code, a.category, a.blocklist) == (
        "rejected",
        "softbounce",
        501,
        "5.7.1",
        "blocklist",
        "b.barracudacentral.org",
    )


def test_exim_0904_end_of_data() -> None:
    t = triage_logs([FIXTURES / "exim_test_log_0904"], tz="UTC")
    got = [(a.queue_id[:6], a.outcome, a.stage, a.reply_code, a.final) for a in t.attempts]
    assert got == [
        ("10HmaX", "delivered", None, 250, True),
        ("10HmaY", "network", "dot", None, True),  # host line and == line: one try
        ("10HmaZ", "delivered", None, 250, True),
        ("10HmbA", "rejected", "dot", 500, True),
        ("10HmbB", "deferred", "dot", 400, True),
        ("10HmbC", "rejected", "rcpt", 550, True),
        ("10HmbD", "delivered", None, 250, True),
        ("10HmbE", "delivered", None, 250, True),
        ("10HmbF", "rejected", "dot", 550, True),
        ("10HmbG", "deferred", "dot", 450, True),
        ("10HmbH", "rejected", "rcpt", 550, True),
        ("10HmbI", "rejected", "dot", 500, True),
        ("10HmbJ", "deferred", "dot", 400, True),
    ]
    by = {a.queue_id[:6]: a for a in t.attempts}
    assert by["10HmaY"].possible_duplicate and by["10HmaY"].kind == "timeout"
    assert by["10HmbG"].category == "greylist" and by["10HmbH"].category == "mailbox"
    assert by["10HmaX"].time.isoformat() == "2017-07-30T18:51:05.712000+00:00"


def test_exim_2190_tls_and_closed_after_ehlo() -> None:
    t = triage_logs([FIXTURES / "exim_test_log_2190_client"], tz="UTC")
    got = [(a.queue_id[:6], a.outcome, a.kind, a.stage) for a in t.attempts]
    assert got == [
        ("10HmaX", "delivered", None, None),
        ("10HmaZ", "tls", "handshake", "starttls"),
        ("10HmbA", "delivered", None, None),
        ("10HmbC", "network", "lost_connection", "helo"),
    ]

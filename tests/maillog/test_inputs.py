"""Crafted inputs: header formats mixed in one file, year rollover, garbage and binary lines,
compressed and rotated files, stdin, journald json/export, Exim's syslog splits, filters.

Expected times are written out by hand (UTC) from the stamps in the lines.
"""

# ruff: noqa: E501 - log lines are data and stay whole

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mailwire.maillog import triage_logs

SENT = (
    "to=<{r}>, relay=mx.example.net[192.0.2.25]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as 4Xyz)"
)


def sent(qid: str, rcpt: str = "u@example.net") -> str:
    return f"{qid}: " + SENT.format(r=rcpt)


def _journal_json(ts: datetime, pid: int, msg: str) -> str:
    return json.dumps(
        {
            "__REALTIME_TIMESTAMP": str(int(ts.timestamp()) * 1_000_000),
            "_HOSTNAME": "mx1",
            "SYSLOG_IDENTIFIER": "postfix/smtp",
            "SYSLOG_PID": str(pid),
            "PRIORITY": "6",
            "MESSAGE": msg,
        }
    )


MIXED = [
    "Mar 31 19:41:02 mx1 postfix/smtp[1]: " + sent("A00001"),
    "2024-03-31T19:41:03.468267+00:00 mx1 postfix/smtp[2]: " + sent("A00002"),
    "2024-03-31T21:41:04+0200 mx1 postfix/smtp[3]: " + sent("A00003"),  # journald short-iso, no colon
    "<22>1 2024-03-31T19:41:05.123Z mx1 postfix/smtp 4 - - \ufeff" + sent("A00004"),
    "Mar 31 19:41:06 mx1 postfix/smtp[5]: [ID 197553 mail.info] " + sent("A00005"),  # Solaris
    "2024 Mar 31 19:41:07.123 mx1 postfix-out/smtp[6]: " + sent("A00006"),  # rsyslog template, instance
    _journal_json(datetime(2024, 3, 31, 19, 41, 8, tzinfo=UTC), 7, sent("A00007")),
    "2024-03-31 19:41:09 1rTqBn-00000000Ku8-1hQm => u@example.net R=dnslookup T=remote_smtp "
    'H=mx.example.net [192.0.2.25] C="250 OK id=1"',  # Exim's own main log
    "Mar 31 19:41:10 mx1 exim[77]: 2024-03-31 19:41:10 1rTqBo-00000000Ku8-1hQm == v@example.org "
    "R=dnslookup T=remote_smtp defer (110): Connection timed out H=mx.example.org [192.0.2.26]: "
    "SMTP timeout after initial connection",
    "Mar 31 19:41:11 mx1 postfix/relay/smtp[8]: " + sent("A00008"),  # Postfix ≥ 3.3 relay transport
    "Mar 31 19:41:12 mx1 sm-mta[9]: p879AR6l014283: to=<w@example.com>, delay=00:00:01, xdelay=00:00:01, "
    "mailer=esmtp, pri=120, relay=mx.example.com. [192.0.2.27], dsn=2.0.0, stat=Sent (ok 123)",
]


def test_mixed_header_formats_in_one_file(write_log: Callable[..., Path]) -> None:
    p = write_log("mixed.log", MIXED)
    t = triage_logs([p], tz="UTC", year=2024)
    assert t.inputs[0].garbage == 0 and t.inputs[0].unparsed_delivery == 0
    got = [(a.time, a.outcome, a.mta) for a in t.attempts]
    exp_times = [datetime(2024, 3, 31, 19, 41, s, tzinfo=UTC) for s in range(2, 13)]
    exp_times[1] = exp_times[1].replace(microsecond=468267)
    exp_times[3] = exp_times[3].replace(microsecond=123000)
    exp_times[5] = exp_times[5].replace(microsecond=123000)
    assert [g[0] for g in got] == exp_times
    assert [g[1] for g in got] == ["delivered"] * 8 + ["network", "delivered", "delivered"]
    assert [g[2] for g in got] == ["postfix"] * 7 + ["exim", "exim", "postfix", "sendmail"]
    ex = t.attempts[8]
    assert (ex.kind, ex.stage, ex.remote_ip, ex.domain) == (
        "timeout",
        "greeting",
        "192.0.2.26",
        "example.org",
    )
    assert t.attempts[5].program == "postfix-out/smtp" and t.attempts[9].program == "postfix/relay/smtp"
    assert all(a.time.tzinfo is not None and a.time.utcoffset().total_seconds() == 0 for a in t.attempts)


def test_naive_stamps_follow_tz(write_log: Callable[..., Path]) -> None:
    p = write_log("tz.log", ["Mar 31 19:41:02 mx1 postfix/smtp[1]: " + sent("A00001")])
    t = triage_logs([p], tz="+02:00", year=2024)
    assert t.attempts[0].time == datetime(2024, 3, 31, 17, 41, 2, tzinfo=UTC)
    t = triage_logs([p], tz="America/New_York", year=2024)  # EDT, UTC-4, on 31 March 2024
    assert t.attempts[0].time == datetime(2024, 3, 31, 23, 41, 2, tzinfo=UTC)


def test_year_rollover(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "roll.log",
        [
            "Dec 31 23:59:58 mx1 postfix/smtp[1]: " + sent("B00001"),
            "Jan  1 00:00:03 mx1 postfix/smtp[1]: " + sent("B00002"),
            "Dec 31 23:59:59 mx1 postfix/smtp[2]: " + sent("B00003"),  # a straggler written late
            "Jan  1 00:00:04 mx1 postfix/smtp[1]: " + sent("B00004"),
            "Feb 14 10:00:00 mx1 postfix/smtp[1]: " + sent("B00005"),
        ],
    )
    t = triage_logs([p], tz="UTC", year=2024)
    assert [a.time for a in t.attempts] == [
        datetime(2024, 12, 31, 23, 59, 58, tzinfo=UTC),
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 3, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 4, tzinfo=UTC),
        datetime(2025, 2, 14, 10, 0, 0, tzinfo=UTC),
    ]
    assert [a.queue_id for a in t.attempts] == ["B00001", "B00003", "B00002", "B00004", "B00005"]


def test_year_from_file_mtime(write_log: Callable[..., Path]) -> None:
    """No --year: the file was last written on 2 Jan 2025, so December stamps are 2024's."""
    p = write_log(
        "mtime.log",
        [
            "Dec 30 08:00:00 mx1 postfix/smtp[1]: " + sent("C00001"),
            "Jan  2 09:00:00 mx1 postfix/smtp[1]: " + sent("C00002"),
        ],
    )
    stamp = datetime(2025, 1, 2, 9, 0, 5, tzinfo=UTC).timestamp()
    os.utime(p, (stamp, stamp))
    t = triage_logs([p], tz="UTC")
    assert [a.time.year for a in t.attempts] == [2024, 2025]


def test_garbage_and_binary_lines_counted_with_numbers(write_log: Callable[..., Path]) -> None:
    good = "Mar 31 19:41:02 mx1 postfix/smtp[1]: " + sent("D00001")
    lines = [
        good,
        "\x00\x01\x02\x03binary\xff junk",
        "this is not a log line",
        "",
        "Mar 31 19:41:03 mx1 postfix/smtp[2]: " + sent("D00002"),
        "Mar 31 19:41:04 mx1 postfix/smtp[3]: D00003: to=<x@example.net>, relay=mx.example.net[192.0.2.25]:25, "
        "delay=1, status=",  # truncated mid-line: a delivery line we cannot read
        "x" * 70_000,  # over-long
        "Mar 31 19:41:05 mx1 postfix/smtp[4]: " + sent("D00004"),
    ]
    p = write_log("garbage.log", lines)
    with open(p, "ab") as fh:  # raw invalid UTF-8 and a NUL inside an otherwise valid header line
        fh.write(b"\xc3\x28\xa0\xa1 broken utf-8\n")
        fh.write(b"Mar 31 19:41:06 mx1 postfix/smtp[5]: D00005: to=<\x00@x>\n")
        fh.write(("Mar 31 19:41:07 mx1 postfix/smtp[6]: " + sent("D00006") + "\n").encode())
    t = triage_logs([p], tz="UTC", year=2024)
    s = t.inputs[0]
    assert s.lines == 11
    assert [a.queue_id for a in t.attempts] == ["D00001", "D00002", "D00004", "D00006"]
    skipped = {(x.line, x.reason) for x in t.skipped}
    assert skipped == {
        (2, "binary data"),
        (3, "no known log header"),
        (6, "delivery line not understood"),
        (7, "over-long line (> 65536 bytes), cut"),
        (9, "binary data"),
        (10, "binary data in message"),
    }
    assert (s.garbage, s.unparsed_delivery) == (5, 1)
    assert t.skipped_total == 6


def test_compressed_inputs_equal_plain(write_log: Callable[..., Path], tmp_path: Path) -> None:
    p = write_log("plain.log", MIXED)
    raw = p.read_bytes()
    variants = {"m.gz": gzip.compress(raw), "m.bz2": bz2.compress(raw), "m.xz": lzma.compress(raw)}
    try:
        import zstandard

        variants["m.zst"] = zstandard.ZstdCompressor().compress(raw)
    except ImportError:  # pragma: no cover - zstandard is a declared dependency
        pass
    base = [(a.time, a.outcome, a.queue_id) for a in triage_logs([p], tz="UTC", year=2024).attempts]
    assert len(base) == 11
    for name, data in variants.items():
        q = tmp_path / name
        q.write_bytes(data)
        got = [(a.time, a.outcome, a.queue_id) for a in triage_logs([q], tz="UTC", year=2024).attempts]
        assert got == base, name


def test_truncated_gzip_reports_and_keeps_what_was_read(tmp_path: Path) -> None:
    data = gzip.compress(
        (
            "\n".join("Mar 31 19:41:02 mx1 postfix/smtp[1]: " + sent(f"E{i:05d}") for i in range(2000)) + "\n"
        ).encode()
    )
    q = tmp_path / "cut.gz"
    q.write_bytes(data[: len(data) // 2])
    t = triage_logs([q], tz="UTC", year=2024)
    assert t.inputs[0].error is not None and "cut.gz" in t.inputs[0].error
    assert 0 < len(t.attempts) < 2000


def test_rotated_files_are_read_oldest_first(write_log: Callable[..., Path], tmp_path: Path) -> None:
    """A connect failure at the end of maillog.1 belongs to the status line at the top of maillog."""
    old = tmp_path / "maillog.2.gz"
    old.write_bytes(gzip.compress(("Mar 31 19:00:00 mx1 postfix/smtp[9]: " + sent("F00001") + "\n").encode()))
    write_log(
        "maillog.1",
        [
            "Mar 31 19:59:59 mx1 postfix/smtp[7]: connect to mx1.example.org[192.0.2.40]:25: "
            "Connection timed out"
        ],
    )
    write_log(
        "maillog",
        [
            "Mar 31 20:00:30 mx1 postfix/smtp[7]: F00002: to=<a@example.org>, "
            "relay=mx2.example.org[192.0.2.41]:25, delay=31, delays=0/0/30/0.5, dsn=2.0.0, "
            "status=sent (250 ok)"
        ],
    )
    paths = [tmp_path / "maillog", tmp_path / "maillog.1", old]
    t = triage_logs(paths, tz="UTC", year=2024)
    assert [i.file for i in t.inputs] == [str(old), str(tmp_path / "maillog.1"), str(tmp_path / "maillog")]
    info = next(a for a in t.attempts if a.outcome == "network")
    assert (info.queue_id, info.domain, info.final, info.remote_ip) == (
        "F00002",
        "example.org",
        False,
        "192.0.2.40",
    )


def test_stdin_via_cli(tmp_path: Path) -> None:
    text = "\n".join(MIXED) + "\n"
    r = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "logs", "-", "--json", "-", "--tz", "UTC", "--year", "2024"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["schema"] == "mailwire.logs/1"
    assert out["inputs"][0]["file"] == "<stdin>" and len(out["attempts"]) == 11
    r = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", "logs", "-", "--json", "-", "--tz", "UTC"],
        input=gzip.compress(text.encode()),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert len(json.loads(r.stdout)["attempts"]) == 11  # gzip on stdin is recognised too


def test_journald_export_with_binary_field(tmp_path: Path) -> None:
    ts = datetime(2024, 3, 31, 19, 41, 2, tzinfo=UTC)
    us = int(ts.timestamp()) * 1_000_000
    msg1 = (
        b"9A0001: to=<a@example.net>, relay=mx.example.net[192.0.2.25]:25, delay=1, delays=0/0/0.5/0.5, "
        b"dsn=4.4.2, status=deferred (conversation with mx.example.net[192.0.2.25] timed out while sending "
        b"message body)"
    )
    entry1 = (
        (
            f"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP={us}\n_HOSTNAME=mx1\nSYSLOG_IDENTIFIER=postfix/smtp\n"
            "SYSLOG_PID=11\nMESSAGE="
        ).encode()
        + msg1
        + b"\n\n"
    )
    msg2 = (
        b"9A0002: to=<b@example.net>, relay=mx.example.net[192.0.2.25]:25, delay=1, delays=0/0/0.5/0.5, "
        b"dsn=2.0.0, status=sent (250 ok \xff binary)"
    )
    entry2 = (
        (
            f"__CURSOR=s=1;i=2\n__REALTIME_TIMESTAMP={us + 1_000_000}\n_HOSTNAME=mx1\n"
            "SYSLOG_IDENTIFIER=postfix/smtp\nSYSLOG_PID=12\nMESSAGE\n"
        ).encode()
        + len(msg2).to_bytes(8, "little")
        + msg2
        + b"\n\n"
    )
    entry3 = b"__CURSOR=s=1;i=3\nMESSAGE\n" + (10**12).to_bytes(8, "little") + b"hostile length\n"
    p = tmp_path / "journal.export"
    p.write_bytes(entry1 + entry2 + entry3)
    t = triage_logs([p], tz="UTC")
    assert [(a.queue_id, a.outcome, a.stage, a.time) for a in t.attempts] == [
        ("9A0001", "network", "body", ts),
        ("9A0002", "delivered", None, ts.replace(second=3)),
    ]
    assert [(s.line, s.reason) for s in t.skipped] == [(16, "broken journald export entry")]


def test_exim_syslog_split_lines(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "exim.log",
        [
            "Mar 31 19:41:02 mx1 exim[80]: [1/2] 2024-03-31 19:41:02 1rTqBp-00000000Ku8-1hQm == z@example.org "
            "R=dnslookup T=remote_smtp defer (-46) H=mx.example.org [192.0.2.30]: SMTP error from remote ",
            "Mar 31 19:41:02 mx1 exim[80]: [2/2] mail server after end of data: 451 4.3.0 Temporary local problem",
        ],
    )
    t = triage_logs([p], tz="UTC", year=2024)
    (a,) = t.attempts
    assert (a.outcome, a.reply_code, a.enhanced_code, a.stage, a.category, a.remote_ip) == (
        "deferred",
        451,
        "4.3.0",
        "dot",
        "server_busy",
        "192.0.2.30",
    )


def test_since_until_domain_filters(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "f.log",
        [
            "Mar 31 10:00:00 mx1 postfix/smtp[1]: " + sent("AA0001", "a@one.example"),
            "Mar 31 11:00:00 mx1 postfix/smtp[1]: " + sent("AA0002", "b@sub.two.example"),
            "Mar 31 12:00:00 mx1 postfix/smtp[1]: " + sent("AA0003", "c@two.example"),
        ],
    )
    t = triage_logs(
        [p], since=datetime(2024, 3, 31, 10, 30), until=datetime(2024, 3, 31, 12, 0), tz="UTC", year=2024
    )
    assert [a.queue_id for a in t.attempts] == ["AA0002"]
    t = triage_logs([p], domain="two.example", tz="UTC", year=2024)
    assert [a.queue_id for a in t.attempts] == ["AA0002", "AA0003"]


def test_missing_file_is_reported_not_fatal(write_log: Callable[..., Path], tmp_path: Path) -> None:
    p = write_log("ok.log", ["Mar 31 10:00:00 mx1 postfix/smtp[1]: " + sent("BB0001")])
    t = triage_logs([tmp_path / "nope.log", p], tz="UTC", year=2024)
    assert len(t.attempts) == 1
    assert [i.error is not None for i in t.inputs] == [True, False]


def test_exim_own_format_with_zone_and_pid(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "mainlog",
        [
            "2024-03-31 21:41:13 +0200 [4242] 1rTqBq-00000000Ku8-1hQm <= a@example.com H=(web) [192.0.2.5] S=52344 id=abc@example.com",
            "2024-03-31 21:41:14 +0200 [4243] 1rTqBq-00000000Ku8-1hQm H=mx1.example.org [192.0.2.31]:25: SMTP timeout after sending data block (65536 bytes written): Connection timed out",
            '2024-03-31 21:41:20 +0200 [4243] 1rTqBq-00000000Ku8-1hQm => b@example.org R=dnslookup T=remote_smtp H=mx2.example.org [192.0.2.32]:25 X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C="250 2.0.0 Ok: queued as 4Xyz"',
        ],
    )
    t = triage_logs([p], tz="UTC")
    a, b = t.attempts
    assert (a.time, a.outcome, a.kind, a.stage, a.remote_ip, a.remote_port, a.final) == (
        datetime(2024, 3, 31, 19, 41, 14, tzinfo=UTC),
        "network",
        "timeout",
        "body",
        "192.0.2.31",
        25,
        False,
    )
    assert (b.time, b.outcome, b.remote_ip, b.reply_code, b.pid) == (
        datetime(2024, 3, 31, 19, 41, 20, tzinfo=UTC),
        "delivered",
        "192.0.2.32",
        250,
        4243,
    )
    # both tries belong to the message that arrived with S= and id=
    assert {(x.size, x.message_id, x.domain) for x in t.attempts} == {
        (52344, "abc@example.com", "example.org")
    }


def test_sendmail_stage_from_timeout_line_and_reply_field(write_log: Callable[..., Path]) -> None:
    p = write_log(
        "maillog",
        [
            "Sep  9 08:20:00 host sm-mta[11]: p879AR6l014283: from=<app@example.com>, size=73421, class=0, nrcpts=1, msgid=<m1@example.com>, proto=ESMTP, daemon=MTA, relay=localhost [127.0.0.1]",
            "Sep  9 08:30:00 host sm-mta[12]: p879AR6l014283: timeout waiting for input from mx.example.com. during client DATA status",
            "Sep  9 08:30:01 host sm-mta[12]: p879AR6l014283: to=<u@example.com>, delay=00:10:01, xdelay=00:10:00, mailer=esmtp, pri=120, relay=mx.example.com. [192.0.2.5], dsn=4.0.0, stat=Deferred: Connection timed out with mx.example.com.",
            "Sep  9 08:31:00 host sm-mta[13]: p879AR6l014299: to=<v@yahoo.com>, delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=120, relay=mta6.am0.yahoodns.net. [203.0.113.7], dsn=4.7.0, reply=421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to user complaints, stat=Deferred: 421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred",
        ],
    )
    t = triage_logs([p], tz="UTC", year=2011)
    a, b = t.attempts
    assert (a.outcome, a.kind, a.stage, a.size, a.message_id, a.remote_ip) == (
        "network",
        "timeout",
        "dot",
        73421,
        "m1@example.com",
        "192.0.2.5",
    )
    assert (b.outcome, b.reply_code, b.category, b.provider) == ("deferred", 421, "reputation", "yahoo")


def test_default_zone_is_local_with_dst(write_log: Callable[..., Path]) -> None:
    """Without --tz, naive stamps follow this machine's zone rules stamp by stamp (DST included)."""
    p = write_log(
        "dst.log",
        [
            "Jan 15 12:00:00 mx1 postfix/smtp[1]: " + sent("DD0001"),
            "Jul  1 12:00:00 mx1 postfix/smtp[1]: " + sent("DD0002"),
        ],
    )
    code = (
        f"from mailwire.maillog import triage_logs; t = triage_logs([{str(p)!r}], year=2024); "
        "print(' '.join(a.time.isoformat() for a in t.attempts))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, TZ="Europe/Berlin"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2024-01-15T11:00:00+00:00", "2024-07-01T10:00:00+00:00"]


def test_line_longer_than_a_read_block_is_cut_not_buffered(tmp_path: Path) -> None:
    p = tmp_path / "huge.log"
    good = "Mar 31 19:41:02 mx1 postfix/smtp[1]: " + sent("EE0001")
    with open(p, "wb") as fh:
        fh.write(b"Mar 31 19:41:01 mx1 postfix/smtp[1]: " + b"A" * (3 << 20) + b"\n")  # 3 MiB, three blocks
        fh.write(good.encode() + b"\n")
    t = triage_logs([p], tz="UTC", year=2024)
    s = t.inputs[0]
    assert (s.lines, s.garbage, len(t.attempts)) == (2, 1, 1)
    assert [(x.line, x.reason) for x in t.skipped] == [(1, "over-long line (> 65536 bytes), cut")]
    assert t.attempts[0].queue_id == "EE0001"

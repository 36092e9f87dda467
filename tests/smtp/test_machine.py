"""The SMTP dissector fed bytes directly: protocol details, redaction, gaps, and hostile input.

Expected values here come from RFC 5321 / 3030 / 2920 / 3207 dialogues written out in the test
(the byte streams are the evidence), not from the code under test.
"""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.smtp.machine import MAX_LINE, MAX_PENDING, SmtpMachine
from mailwire.smtp.session import SessionBuilder, SmtpSession, mail_path


def run(steps: list[tuple[str, bytes | int]]) -> SmtpSession:
    """Feed ("c2s"|"s2c", bytes) or ("gap-c2s"|"gap-s2c", length) steps, one frame each."""
    b = SessionBuilder(SmtpSession(conn_id=0, capture="test"))
    for frame, (d, payload) in enumerate(steps, 1):
        if isinstance(payload, int):
            b.gap(d.removeprefix("gap-"), payload, frame, frame * 1_000_000)
        else:
            b.feed(d, payload, frame, frame * 1_000_000)
    return b.finish()


GREETING = ("s2c", b"220 mx.example.test ESMTP\r\n")
EHLO = ("c2s", b"EHLO client.example.test\r\n")
EHLO_REPLY = ("s2c", b"250-mx.example.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n")


def test_plain_delivery_fields_and_transcript() -> None:
    s = run(
        [
            GREETING,
            EHLO,
            EHLO_REPLY,
            ("c2s", b"MAIL FROM:<a@example.test> SIZE=100\r\n"),
            ("s2c", b"250 2.1.0 Ok\r\n"),
            ("c2s", b"RCPT TO:<b@example.test>\r\n"),
            ("s2c", b"250 2.1.5 Ok\r\n"),
            ("c2s", b"DATA\r\n"),
            ("s2c", b"354 go ahead\r\n"),
            (
                "c2s",
                b"Message-ID: <id1@example.test>\r\nSubject: hello\r\n there\r\n\r\nbody\r\n..stuffed\r\n",
            ),
            ("c2s", b".\r\n"),
            ("s2c", b"250 2.0.0 Ok: queued as X\r\n"),
            ("c2s", b"QUIT\r\n"),
            ("s2c", b"221 2.0.0 Bye\r\n"),
        ]
    )
    assert s.helo == "client.example.test"
    assert s.extensions == ["PIPELINING", "CHUNKING", "STARTTLS"]
    [tx] = [t for t in s.transactions if t.has_client_activity]
    assert (tx.mail_from, tx.rcpt_to) == ("a@example.test", ["b@example.test"])
    assert tx.last_reply == "250 2.0.0 Ok: queued as X"
    assert tx.final_reply is not None and tx.final_reply.enhanced == "2.0.0"
    assert tx.message_id == "<id1@example.test>" and tx.subject == "hello there"
    # body on the wire: 78 bytes + ".\r\n"; one stuffed dot removed; terminator not counted
    body = b"Message-ID: <id1@example.test>\r\nSubject: hello\r\n there\r\n\r\nbody\r\n..stuffed\r\n"
    assert tx.message_size == len(body) - 1
    assert s.messages_accepted == 1 and s.state == "closed"
    lines = [line for _, _, line in s.transcript()]
    assert any(line.startswith("<message body:") for line in lines)
    assert not any("stuffed" in line for line in lines), "bodies are elided from the transcript"


def test_pipelining_replies_matched_in_order() -> None:
    s = run(
        [
            GREETING,
            EHLO,
            EHLO_REPLY,
            ("c2s", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n"),
            (
                "s2c",
                b"250 Ok\r\n550 5.1.1 <b@x.test>: Recipient address rejected: User unknown\r\n"
                b"250 Ok\r\n354 go\r\n",
            ),
            ("c2s", b"Subject: s\r\n\r\nx\r\n.\r\n"),
            ("s2c", b"250 Ok: queued\r\n"),
        ]
    )
    tx = s.transactions[0]
    assert [(r.command, r.code) for r in tx.replies][-5:] == [
        ("MAIL", 250),
        ("RCPT", 550),
        ("RCPT", 250),
        ("DATA", 354),
        ("<end-of-data>", 250),
    ]
    assert (tx.rcpt_accepted, tx.rcpt_refused) == (1, 1)
    assert s.messages_accepted == 1


def test_body_pipelined_before_354_and_refused_data_goes_back_to_commands() -> None:
    # A client that sends the body right after DATA (no wait for 354) …
    s = run(
        [
            GREETING,
            (
                "c2s",
                b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
                b"DATA\r\nSubject: t\r\n\r\nhi\r\n.\r\n",
            ),
            ("s2c", b"250 c\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 queued\r\n"),
        ]
    )
    assert s.messages_accepted == 1
    # … and a DATA refused by the server: what follows are commands again (RSET).
    s = run(
        [
            GREETING,
            ("c2s", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"),
            ("s2c", b"553 5.1.8 bad sender\r\n503 5.0.0 Need MAIL\r\n503 5.0.0 Need RCPT\r\n"),
            ("c2s", b"RSET\r\n"),
            ("s2c", b"250 2.0.0 Reset state\r\n"),
        ]
    )
    replies = [(r.command, r.code) for t in s.transactions for r in t.replies]
    assert replies[-1] == ("RSET", 250)
    assert s.anomalies.get("reply_without_command", 0) == 0


def test_bdat_chunks_and_last() -> None:
    chunk1 = b"Subject: chunky\r\n\r\n" + b"A" * 81
    chunk2 = b"B" * 50
    s = run(
        [
            GREETING,
            EHLO,
            EHLO_REPLY,
            ("c2s", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"),
            ("s2c", b"250 Ok\r\n250 Ok\r\n"),
            ("c2s", b"BDAT 100\r\n" + chunk1 + b"BDAT 50 LAST\r\n" + chunk2),
            ("s2c", b"250 2.0.0 100 octets received\r\n250 2.0.0 Ok: queued\r\n"),
            ("c2s", b"QUIT\r\n"),
        ]
    )
    tx = s.transactions[0]
    assert tx.message_size == 150 and tx.subject == "chunky"
    assert tx.final_reply is not None and tx.final_reply.text == "2.0.0 Ok: queued"
    assert s.messages_accepted == 1
    assert s.last_command == "QUIT", "BDAT payload must not be parsed as commands"


def test_auth_credentials_never_kept() -> None:
    secret = b"AGpvZQBzM2NyM3Q="  # \0joe\0s3cr3t
    s = run(
        [
            GREETING,
            EHLO,
            EHLO_REPLY,
            ("c2s", b"AUTH PLAIN " + secret + b"\r\n"),
            ("s2c", b"235 2.7.0 Authentication successful\r\n"),
            ("c2s", b"AUTH LOGIN\r\n"),
            ("s2c", b"334 VXNlcm5hbWU6\r\n"),
            ("c2s", b"am9l\r\n"),
            ("s2c", b"334 UGFzc3dvcmQ6\r\n"),
            ("c2s", b"czNjcjN0\r\n"),
            ("s2c", b"235 ok\r\n"),
            ("c2s", b"MAIL FROM:<joe@x.test>\r\n"),
        ]
    )
    dump = repr(s.to_dict())
    for leaked in (secret.decode(), "am9l", "czNjcjN0"):
        assert leaked not in dump
    assert s.stats["credential_lines"] == 2
    assert s.auth_mechanism == "LOGIN" and s.auth_result == 235
    assert s.transactions[-1].mail_from == "joe@x.test", "commands after AUTH are parsed again"


def test_starttls_counts_records() -> None:
    hello = bytes([22, 3, 1, 0, 5]) + b"\x01\x00\x00\x01\x00"
    appdata = bytes([23, 3, 3, 0x01, 0x00]) + b"\x00" * 256
    s = run(
        [
            GREETING,
            EHLO,
            EHLO_REPLY,
            ("c2s", b"STARTTLS\r\n"),
            ("s2c", b"220 2.0.0 Ready to start TLS\r\n"),
            ("c2s", hello),
            ("c2s", appdata[:100]),
            ("c2s", appdata[100:]),
        ]
    )
    assert s.tls and s.transactions[0].tls
    assert s.tls_records["c2s"]["records"] == 2
    assert s.tls_records["c2s"]["sizes"] == [5, 256]
    assert s.tls_records["c2s"]["application_data"] == 1


def test_gap_in_body_resyncs_on_final_reply() -> None:
    s = run(
        [
            GREETING,
            EHLO,
            EHLO_REPLY,
            ("c2s", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"),
            ("s2c", b"250 Ok\r\n250 Ok\r\n354 go\r\n"),
            ("c2s", b"Subject: g\r\n\r\nfirst part\r\n"),
            ("gap-c2s", 1400),  # the rest of the body and the final dot were not captured
            ("s2c", b"250 2.0.0 Ok: queued\r\n"),
            ("c2s", b"QUIT\r\n"),
            ("s2c", b"221 Bye\r\n"),
        ]
    )
    tx = s.transactions[0]
    assert tx.body_end == "gap_resync" and tx.body_missing == 1400
    assert s.messages_accepted == 1
    assert s.last_command == "QUIT" and s.state == "closed"


def test_gap_in_commands_drops_partial_line_only() -> None:
    s = run(
        [
            GREETING,
            ("c2s", b"EHLO c\r\nMAIL FROM:<a@x"),
            ("gap-c2s", 7),
            ("c2s", b"ter-rest>\r\nRCPT TO:<b@x.test>\r\n"),
        ]
    )
    assert s.anomalies["partial_line_after_gap"] == 1
    assert s.transactions[-1].rcpt_to == ["b@x.test"]


def test_mail_path_forms() -> None:
    assert mail_path("FROM:<a@b.test> SIZE=10", "FROM:") == "a@b.test"
    assert mail_path("From: <a@b.test>", "FROM:") == "a@b.test"
    assert mail_path("FROM:<>", "FROM:") == ""
    assert mail_path("TO:<@relay.test:u@d.test>", "TO:") == "u@d.test"
    assert mail_path("XYZ", "FROM:") is None


# --- hostile input -----------------------------------------------------------------------------


def test_endless_line_is_capped() -> None:
    m = SmtpMachine()
    m.feed("s2c", b"220 hi\r\n", 1, 0)
    for i in range(2000):  # 2000 × 64 KiB = 128 MiB without a newline
        m.feed("c2s", b"A" * 65536, 2 + i, 0)
    assert len(m._cbuf) <= MAX_LINE
    m.feed("c2s", b"\r\nQUIT\r\n", 3000, 0)
    assert m.stats["lines_truncated"] == 1
    assert m.stats["bytes_discarded"] == 2000 * 65536 - MAX_LINE
    assert m.stats["commands"] == 2


def test_million_pipelined_commands_bounded() -> None:
    block = b"NOOP\r\n" * 10000
    b = SessionBuilder(SmtpSession(conn_id=0))
    b.feed("s2c", b"220 hi\r\n", 1, 0)
    for i in range(100):  # 1 000 000 commands, no replies
        b.feed("c2s", block, 2 + i, 0)
    s = b.finish()
    assert s.stats["commands"] == 1_000_000
    assert s.stats["commands_unqueued"] == 1_000_000 - MAX_PENDING  # the greeting was answered
    assert len(b.machine._pending) == MAX_PENDING
    assert s.transcript_total > 1_000_000 and len(s.transcript()) < 1000
    # memory: the peak while feeding 100 000 more does not grow with the count
    tracemalloc.start()
    for i in range(10):
        b.feed("c2s", block, 200 + i, 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes"


def test_replies_without_commands_and_binary_junk() -> None:
    b = SessionBuilder(SmtpSession(conn_id=0))
    b.feed("s2c", b"220 hi\r\n", 1, 0)
    for i in range(10000):
        b.feed("s2c", b"250 unsolicited\r\n\x00\xff\xfe binary\r\n", 2 + i, 0)
        b.feed("c2s", bytes(range(11, 256)) * 4, 2 + i, 0)  # no LF: one endless junk line
    s = b.finish()
    assert s.stats["unsolicited_replies"] == 10000
    assert s.stats["invalid_reply_lines"] == 10000
    assert len(s.anomaly_samples) <= 20
    assert s.stats["lines_truncated"] == 0 and len(b.machine._cbuf) <= MAX_LINE


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["c2s", "s2c", "gap-c2s", "gap-s2c"]),
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(
                    [
                        b"DATA\r\n",
                        b"BDAT 99999999999\r\n",
                        b"BDAT 5 LAST\r\n",
                        b"354 go\r\n",
                        b"220 ready\r\n",
                        b".\r\n",
                        b"250-x\r\n",
                        b"STARTTLS\r\n",
                        b"AUTH LOGIN\r\n",
                        b"334 x\r\n",
                        b"\x16\x03\x01\xff\xff",
                    ]
                ),
            ),
            st.integers(0, 1 << 40),
        ),
        max_size=40,
    )
)
def test_fuzz_never_crashes(steps: list[tuple[str, bytes, int]]) -> None:
    b = SessionBuilder(SmtpSession(conn_id=0))
    for frame, (d, data, n) in enumerate(steps, 1):
        if d.startswith("gap-"):
            b.gap(d[4:], n, frame, frame)
        else:
            b.feed(d, data, frame, frame)
    s = b.finish()
    d = s.to_dict()
    assert d["state"] in {
        "connected",
        "greeted",
        "ready",
        "mail",
        "rcpt",
        "data",
        "end_of_data",
        "tls",
        "quit",
        "closed",
    }
    assert len(d["transcript"]) <= 601


_NAMES = ["Message-ID", "message-id", "Subject", "SUBJECT", "From", "from", "To", "X-Mailer", "Subjects"]
_VALUE = st.text(alphabet="abc xyz<>@.-=?", min_size=0, max_size=20)


@given(
    st.lists(st.tuples(st.sampled_from(_NAMES), _VALUE, st.lists(_VALUE, max_size=2)), max_size=8),
    st.sampled_from([b"\r\n", b"\n"]),
)
@settings(max_examples=200, deadline=None)
def test_header_fields_first_occurrence_folded(fields: list[tuple[str, str, list[str]]], eol: bytes) -> None:
    """Message-ID, Subject and From as RFC 5322 reads them: field names without case, folded
    continuation lines joined, the first occurrence of each; nothing after the empty line."""
    lines: list[str] = []
    want: dict[str, str] = {}
    for name, value, folds in fields:
        lines.append(f"{name}:{value}")
        lines += [f" {f}" for f in folds]
        key = name.lower()
        if key in ("message-id", "subject", "from") and key not in want:
            want[key] = " ".join(p.strip() for p in [value, *folds]).strip()
    header = eol.join(x.encode() for x in lines) + eol + eol
    body = eol.join([b"Subject: not a header", b"From: nobody@body.test", b"."]) + eol
    s = run([GREETING, EHLO, EHLO_REPLY, ("c2s", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"),
             ("s2c", b"250 Ok\r\n250 Ok\r\n354 go\r\n"), ("c2s", header + body)])  # fmt: skip
    [tx] = [t for t in s.transactions if t.has_client_activity]
    sender = want.get("from")
    if sender is not None and "<" in sender:
        sender = sender[sender.rfind("<") + 1 :].split(">", 1)[0]
    assert (tx.message_id, tx.subject, tx.header_from) == (
        want.get("message-id"),
        want.get("subject"),
        sender,
    )

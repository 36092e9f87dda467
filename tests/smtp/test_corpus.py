"""SMTP sessions on the real capture corpus, checked against the peers' outputs.

* Zeek's smtp.log baselines: helo, mailfrom, rcptto, last_reply, tls, trans_depth per row, for
  every Zeek SMTP trace that has one.
* tshark 4.0 as oracle: ``smtp.req.command`` / ``smtp.response.code`` frame by frame, with the
  documented exceptions in :data:`TSHARK_EXCEPTIONS` (each one a tshark limitation checked by
  hand on the capture); decode-as is used where tshark's port table is the only problem.
* Arkime session JSON (HELO, envelope sender and recipients, Message-ID, Subject) and
  suricata-verify checks that state SMTP facts.
* Hand-checked verdicts on real captures (the expected outcome is written next to the reason).
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from mailwire.smtp.machine import KNOWN_VERBS
from mailwire.smtp.pipeline import CaptureAnalysis, analyze_capture, analyze_captures
from tests.conftest import corpus_params

_CACHE: dict[Path, CaptureAnalysis] = {}


def analysed(path: Path) -> CaptureAnalysis:
    if path not in _CACHE:
        _CACHE[path] = analyze_capture(path)
    return _CACHE[path]


# --- Zeek smtp.log ------------------------------------------------------------------------------


def zeek_rows(log: Path) -> list[tuple[object, ...]]:
    fields: list[str] = []
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
            continue
        if line.startswith("#") or not line.strip():
            continue
        rec = dict(zip(fields, line.split("\t"), strict=True))

        def val(k: str, rec: dict[str, str] = rec) -> str | None:
            v = rec[k]
            return None if v in ("-", "(empty)") else v

        rcpt = val("rcptto")
        rows.append(
            (
                int(rec["trans_depth"]),
                val("helo"),
                val("mailfrom"),
                tuple(sorted(rcpt.split(","))) if rcpt else None,
                val("last_reply"),
                rec["tls"] == "T",
            )
        )
    return sorted(rows, key=repr)


def our_rows(cap: CaptureAnalysis) -> list[tuple[object, ...]]:
    rows = []
    for s in cap.sessions:
        for r in s.zeek_rows():
            rows.append(
                (
                    r["trans_depth"],
                    r["helo"],
                    r["mailfrom"],
                    tuple(r["rcptto"]) if r["rcptto"] else None,
                    r["last_reply"],
                    r["tls"],
                )
            )
    return sorted(rows, key=repr)


def zeek_logs() -> list[Path]:
    from tests.conftest import SHARED_CAPTURES

    if not SHARED_CAPTURES.is_dir():
        return []
    return sorted(SHARED_CAPTURES.glob("zeek__*.expected.*smtp.log"))


@pytest.mark.parametrize("log", corpus_params(zeek_logs()), ids=lambda p: p.name.split(".expected.")[0])
def test_fields_equal_zeek_smtp_log(log: Path, shared_captures: Path) -> None:
    capture = shared_captures / log.name.split(".expected.")[0]
    ours = our_rows(analysed(capture))
    assert ours == zeek_rows(log)


def test_every_zeek_smtp_trace_has_a_baseline_checked(shared_captures: Path) -> None:
    logs = zeek_logs()
    assert len(logs) >= 10, "the corpus MANIFEST lists 10 Zeek smtp.log baselines"


# --- tshark, frame by frame -------------------------------------------------------------------

SMTP_CAPTURES = [
    "ark__smtp-data-250.pcap",
    "ark__smtp-data-521.pcap",
    "ark__smtp-decrypted.pcap",
    "ark__smtp-rcpt-553.pcap",
    "ark__wireshark-bdat.pcap",
    "ppa3__mail_receiver_server_3.pcapng",
    "ppa3__mail_sender_client_1.pcapng",
    "ppa3__mail_sender_server_2.pcapng",
    "sv__smtp-data-rejected.pcap",
    "sv__smtp-errors.pcap",
    "sv__smtp-pipelining.pcap",
    "sv__smtp-rset-starttls.pcap",
    "zeek__http_connect-with-smtp.pcap",
    "zeek__smtp-attachment-msg.pcap",
    "zeek__smtp-mail-transactions-invalid.pcap",
    "zeek__smtp-multi-addr.pcap",
    "zeek__smtp-one-side-only.pcap",
    "zeek__smtp.pcap",
    "zeek__smtp_rfc3030-bdat-multipart-chunked.pcap",
    "zeek__smtp_smtp-bdat-cmd-invalid.pcapng",
    "zeek__smtp_smtp-bdat-gap.pcap",
    "zeek__smtp_smtp-bdat-pipeline-8bitmime.pcap",
    "zeek__tls_smtp-starttls.pcap",
]

# Ports where the corpus speaks plain SMTP but tshark's port table says otherwise (1224: a test
# port; 2525: alternate submission; 465: this server greets in plain text on the TLS port).
DECODE_AS = ["-d", "tcp.port==1224,smtp", "-d", "tcp.port==2525,smtp", "-d", "tcp.port==465,smtp"]

# (capture -> frames, why): frames where tshark's SMTP fields differ and tshark is the one wrong,
# each checked by hand in the capture. "*" = every SMTP frame.
TSHARK_EXCEPTIONS: dict[str, tuple[set[int] | str, str]] = {
    "ark__smtp-decrypted.pcap": (
        {51, 57, 78, 84, 104},
        "Arkime stored these sessions decrypted: plain SMTP after STARTTLS; tshark stops dissecting at "
        "STARTTLS on port 25, and on 2525 loses the commands after a BDAT chunk",
    ),
    "ppa3__mail_receiver_server_3.pcapng": (
        {11},
        "QUIT in the segment that ends the body: tshark shows only the body",
    ),
    "ppa3__mail_sender_server_2.pcapng": (
        {34},
        "QUIT in the segment that ends the body: tshark shows only the body",
    ),
    "sv__smtp-data-rejected.pcap": (
        {11, 14},
        "the server refused DATA (503); tshark stays in DATA mode and shows RSET / MAIL,RCPT,DATA as body",
    ),
    "sv__smtp-pipelining.pcap": (
        {11},
        "MAIL/RCPT/DATA pipelined with the body in one segment: tshark shows it as body",
    ),
    "zeek__http_connect-with-smtp.pcap": (
        "*",
        "SMTP inside an HTTP CONNECT tunnel (port 8240): tshark does not follow it",
    ),
    "zeek__smtp_smtp-bdat-cmd-invalid.pcapng": (
        {20, 42},
        "tshark BDAT: after an invalid BDAT it takes QUIT as chunk data",
    ),
    "zeek__smtp_smtp-bdat-gap.pcap": (
        {26, 34},
        "tshark BDAT: after the chunk with a capture gap it misses DATA and QUIT",
    ),
    "zeek__smtp_smtp-bdat-pipeline-8bitmime.pcap": (
        {9, 17},
        "tshark mis-dissects pipelined BDAT as DATA fragments",
    ),
}


def tshark_fields(tshark: str, path: Path) -> tuple[dict[int, list[str]], dict[int, list[int]]]:
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), *DECODE_AS, "-Y", "smtp", "-T", "fields", "-E", "occurrence=a",
         "-E", "aggregator=|", "-e", "frame.number", "-e", "smtp.req.command", "-e", "smtp.response.code"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    cmds: dict[int, list[str]] = {}
    codes: dict[int, list[int]] = {}
    for line in out.splitlines():
        f, c, r = [*line.split("\t"), "", ""][:3]
        if c:
            # tshark 4.0 reports STARTTLS by its first four letters
            cmds[int(f)] = ["STARTTLS" if x.upper() == "STAR" else x.upper() for x in c.split("|")]
        if r:
            codes[int(f)] = [int(x) for x in r.split("|")]
    return cmds, codes


def our_fields(cap: CaptureAnalysis) -> tuple[dict[int, list[str]], dict[int, list[int]]]:
    cmds: dict[int, list[str]] = defaultdict(list)
    codes: dict[int, list[int]] = defaultdict(list)
    for s in cap.sessions:
        assert s.transcript_total == len(s.transcript()), "corpus sessions fit in the transcript"
        for f, d, line in s.transcript():
            if f < 0 or line.startswith("<") or line == ".":
                continue
            if d == "c2s":
                verb = line.split(" ", 1)[0].upper()
                if verb in KNOWN_VERBS:  # tshark does not report junk lines as commands
                    cmds[f].append(verb)
            elif d == "s2c":
                codes[f].append(int(line[:3]))
    return dict(cmds), dict(codes)


def test_agrees_with_tshark_frame_by_frame(shared_captures: Path, tshark: str) -> None:
    compared = agreed = 0
    unexplained: list[str] = []
    for name in SMTP_CAPTURES:
        path = shared_captures / name
        tc, tr = tshark_fields(tshark, path)
        mc, mr = our_fields(analysed(path))
        allowed, _why = TSHARK_EXCEPTIONS.get(name, (set(), ""))
        for theirs, ours, what in ((tc, mc, "command"), (tr, mr, "reply code")):
            for f in sorted(set(theirs) | set(ours)):
                compared += 1
                if theirs.get(f) == ours.get(f):
                    agreed += 1
                elif allowed != "*" and f not in allowed:
                    unexplained.append(
                        f"{name} frame {f} {what}: tshark {theirs.get(f)} mailwire {ours.get(f)}"
                    )
    print(f"SMTP frames compared with tshark: {compared}, equal: {agreed} ({100 * agreed / compared:.1f} %)")
    assert not unexplained, "\n".join(unexplained)
    assert compared > 350 and agreed / compared > 0.9


# --- Arkime and suricata-verify --------------------------------------------------------------


def _norm(v: str) -> str:
    return v.strip().strip("<>").lower()


@pytest.mark.parametrize(
    "name",
    [
        "ark__smtp-data-250.pcap",
        "ark__smtp-data-521.pcap",
        "ark__smtp-decrypted.pcap",
        "ark__smtp-rcpt-553.pcap",
        "ark__wireshark-bdat.pcap",
    ],
)
def test_email_fields_match_arkime(shared_captures: Path, name: str) -> None:
    doc = json.loads((shared_captures / f"{name}.expected.arkime.test.json").read_text())
    cap = analysed(shared_captures / name)
    by_port = {s.client_port: s for s in cap.sessions}
    for sess in doc["sessions3"]:
        body = sess["body"]
        email = body.get("email", {})
        s = by_port[body["source"]["port"]]
        assert _norm(s.helo or "") in {_norm(h) for h in email.get("smtpHello", [])}
        # Arkime's src holds the envelope sender and the From: header address
        senders = {_norm(t.mail_from) for t in s.transactions if t.mail_from is not None}
        senders |= {_norm(t.header_from) for t in s.transactions if t.header_from}
        assert {_norm(x) for x in email.get("src", [])} <= senders
        rcpts = {_norm(r) for t in s.transactions for r in t.rcpt_to}
        assert {_norm(x) for x in email.get("dst", [])} == rcpts
        ids = {_norm(t.message_id) for t in s.transactions if t.message_id}
        assert {_norm(x) for x in email.get("id", [])} == ids
        subjects = {t.subject for t in s.transactions if t.subject}
        assert set(email.get("subject", [])) == subjects


def test_suricata_pipelining_envelope(shared_captures: Path) -> None:
    # suricata-verify smtp-pipelining: smtp.mail_from <username@domain.com>, rcpt_to[0] <john.doe@example.com>
    cap = analysed(shared_captures / "sv__smtp-pipelining.pcap")
    [s] = cap.sessions
    [tx] = [t for t in s.transactions if t.has_client_activity]
    assert (tx.mail_from, tx.rcpt_to) == ("username@domain.com", ["john.doe@example.com"])
    assert tx.final_reply is not None and tx.final_reply.code == 250  # Postfix "queued as"


def test_suricata_rset_starttls_is_one_session(shared_captures: Path) -> None:
    # suricata-verify smtp-rset-starttls: one smtp event for the fuzz reproducer
    cap = analysed(shared_captures / "sv__smtp-rset-starttls.pcap")
    assert len(cap.sessions) == 1
    assert cap.sessions[0].tls


# --- hand-checked verdicts -----------------------------------------------------------------------

# (capture, client port or None for the only session) -> (outcome, category); why in the comment.
HAND_CHECKED = {
    # AOL: message accepted (250 ... queued), client then idle; server 421 4.4.2 timeout: delivered.
    ("ark__smtp-data-250.pcap", None): ("delivered", None),
    # AOL: RCPT refused with 553 5.7.1 "Sender address rejected: not logged in".
    ("ark__smtp-rcpt-553.pcap", None): ("rejected", "policy"),
    # AOL: end of data answered 521 5.2.1 "... spam.html" (image puzzle anti-spam): rejected.
    ("ark__smtp-data-521.pcap", None): ("rejected", "content"),
    # spam bot: body answered 554 5.7.1 "Message contains virus".
    ("sv__smtp-data-rejected.pcap", None): ("rejected", "content"),
    # Exchange: 250 queued, then 451 4.7.0 "Timeout waiting for client input": delivered.
    ("zeek__smtp-multi-addr.pcap", None): ("delivered", None),
    # CommuniGate: MAIL answered 472 (DNS A-record empty) then 501s: deferred (4xx).
    ("sv__smtp-errors.pcap", 49740): ("deferred", "other"),
    # Postfix relay hop, pipelined MAIL/RCPT/DATA, 250 queued as 994C8617DF.
    ("ppa3__mail_receiver_server_3.pcapng", None): ("delivered", None),
    # BDAT with an invalid count: 521 5.5.4 Syntax, then QUIT.
    ("zeek__smtp_smtp-bdat-cmd-invalid.pcapng", 33472): ("rejected", "other"),
}


@pytest.mark.parametrize("key", list(HAND_CHECKED), ids=lambda k: f"{k[0]}:{k[1]}")
def test_hand_checked_verdicts(shared_captures: Path, key: tuple[str, int | None]) -> None:
    name, port = key
    result = analyze_captures([shared_captures / name])
    js = [
        j for j in result.judged if port is None or (j.session is not None and j.session.client_port == port)
    ]
    assert len(js) == 1
    v = js[0].verdict
    assert (v.outcome, v.category) == HAND_CHECKED[key], v.summary
    assert v.summary and v.evidence and all(e.frame > 0 for e in v.evidence)


def test_aol_idle_timeout_after_delivery_is_named(shared_captures: Path) -> None:
    result = analyze_captures([shared_captures / "ark__smtp-data-250.pcap"])
    [j] = result.judged
    v = j.verdict.to_dict()
    assert v["then"] == "remote_idle_timeout"
    shown = {e["frame"]: e["shows"] for e in v["evidence"]}
    assert shown[25].startswith("250 2.0.0 Ok: queued")  # tshark: frame 25 250, frame 27 421
    assert shown[27].startswith("421 4.4.2")
    assert not [f for f in result.findings if f.severity == "failure"]


def test_json_validates_against_shipped_schema(shared_captures: Path) -> None:
    from mailwire.analyze import validate

    paths = [shared_captures / n for n in SMTP_CAPTURES]
    doc = analyze_captures(paths).to_json()
    validate(doc)
    assert doc["schema"] == "mailwire.analyze/1"
    assert len(doc["smtp_sessions"]) >= 25
    # credentials never appear: AUTH PLAIN initial response of ark__smtp-data-250 (tshark shows it)
    assert "ADEyMzQ1Njc4QGFvbC5jb20AcGFzc3dk" not in json.dumps(doc)


# (capture, client port or None) -> the rule that must decide it; why in the comment.
HAND_CHECKED_RULES = {
    # client FIN (frame 35) then the server's RSTs (36, 37): a close, not a reset; the rest is TLS
    ("zeek__tls_smtp-starttls.pcap", None): ("incomplete", "encrypted"),
    # junk before the greeting, answered 500 five times: no message was attempted
    ("sv__smtp-errors.pcap", 49274): ("incomplete", "no_message"),
    # a TLS ClientHello sent to a plain-SMTP greeting on port 465, answered 402/400
    ("sv__smtp-errors.pcap", 50649): ("incomplete", "no_message"),
    # every frame cut after the TCP header (snaplen): no SMTP byte was captured
    ("zeek__tcp_truncated-header.pcap", None): ("incomplete", "payload_not_captured"),
}


@pytest.mark.parametrize("key", list(HAND_CHECKED_RULES), ids=lambda k: f"{k[0]}:{k[1]}")
def test_hand_checked_rules(shared_captures: Path, key: tuple[str, int | None]) -> None:
    name, port = key
    result = analyze_captures([shared_captures / name])
    js = [
        j for j in result.judged if port is None or (j.session is not None and j.session.client_port == port)
    ]
    assert len(js) == 1
    v = js[0].verdict
    assert (v.outcome, v.rule) == HAND_CHECKED_RULES[key], v.summary


@pytest.mark.parametrize(
    "name",
    [
        "ark__wireshark-retrans.pcap",
        "zeek__tcp_ssh-dups.pcap",
        "sv__tcp-empty-sack.pcap",
        "zeek__nflog-http.pcap",
    ],
)
def test_other_protocols_are_not_smtp(shared_captures: Path, name: str) -> None:
    # HTTP, SSH and TLS on their own ports: no 220 greeting, no EHLO, not port 25/587/2525
    result = analyze_captures([shared_captures / name])
    assert result.judged == [] and result.findings == []
    assert result.captures[0].frames > 0


def test_each_message_has_its_own_fate(shared_captures: Path) -> None:
    # Zeek's baseline: two messages accepted ("250 OK id=…"); between them a transaction whose DATA
    # is refused (tshark: frame 40 is "503 valid RCPT command must precede DATA").
    result = analyze_captures([shared_captures / "zeek__smtp-mail-transactions-invalid.pcap"])
    [j] = result.judged
    fates = [(m["fate"], m["frame"]) for m in j.verdict.extra["messages"]]
    assert fates == [("delivered", 22), ("rejected", 40), ("delivered", 71)]
    assert j.verdict.outcome == "delivered"

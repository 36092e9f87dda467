"""Verdict rules on arbitrary (hostile or inconsistent) inputs: always one valid verdict, no crash."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire.analyze import schema
from mailwire.smtp.session import SessionBuilder, SmtpSession
from mailwire.smtp.verdict import (
    OUTCOMES,
    ChainFact,
    IcmpFact,
    Resend,
    RstFact,
    TcpFacts,
    ZeroWindowFact,
    decide,
)

frames = st.integers(1, 10_000)
smtp_lines = st.sampled_from(
    [b"220 hi\r\n", b"250 ok\r\n", b"354 go\r\n", b"421 4.4.2 timeout exceeded\r\n",
     b"550 5.7.1 spamhaus\r\n", b"451 4.7.1 try again later\r\n", b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n",
     b"RCPT TO:<c@d>\r\n", b"DATA\r\n", b"x\r\n.\r\n", b"QUIT\r\n", b"STARTTLS\r\n",
     b"\x16\x03\x01\x00\x01\x00"]
)  # fmt: skip


@st.composite
def facts(draw: st.DrawFn) -> TcpFacts:
    t = TcpFacts(conn_id=0, capture="x.pcap")
    t.syn_frames = draw(st.lists(frames, max_size=4))
    t.syn_ack_frame = draw(st.sampled_from([-1, 2]))
    t.established = draw(st.booleans())
    who = st.sampled_from(["client", "server"])
    t.rsts = [RstFact(f, f, draw(who), 60, 1, 64, draw(st.booleans()), draw(st.booleans()))
              for f in draw(st.lists(frames, max_size=2))]  # fmt: skip
    t.fins = [(f, draw(st.sampled_from(["client", "server"]))) for f in draw(st.lists(frames, max_size=2))]
    t.icmp = [IcmpFact(f, f, 3, draw(st.sampled_from([1, 4])), 1280, draw(st.booleans()), draw(st.booleans()))
              for f in draw(st.lists(frames, max_size=2))]  # fmt: skip
    t.chains = [
        ChainFact("c2s", f, f, draw(st.integers(1, 65535)), 0,
                  [Resend(f + i, f + i, 0.2 * 2**i) for i in range(n)], draw(st.booleans()))
        for f, n in draw(st.lists(st.tuples(frames, st.integers(0, 8)), max_size=3))
    ]  # fmt: skip
    t.zero_windows = [ZeroWindowFact("server", f, f, -1, 5.0, 3) for f in draw(st.lists(frames, max_size=1))]
    t.first_ts_ns = 0
    t.capture_end_ts_ns = draw(st.integers(0, 60 * 10**9))
    t.mss = draw(st.sampled_from([-1, 536, 1460]))
    return t


@settings(max_examples=300, deadline=None)
@given(facts(), st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), smtp_lines), max_size=25), st.booleans())
def test_decide_always_gives_one_valid_verdict(
    t: TcpFacts, lines: list[tuple[str, bytes]], with_session: bool
) -> None:
    s = None
    if with_session:
        b = SessionBuilder(SmtpSession(conn_id=0, capture="x.pcap", server="192.0.2.1", server_port=25))
        for i, (d, data) in enumerate(lines, 1):
            b.feed(d, data, i, i * 10**9)
        s = b.finish()
    v = decide(s, t, "x.pcap")
    assert v.outcome in OUTCOMES and v.summary and v.confidence in ("high", "medium", "low")
    d = json.loads(json.dumps(v.to_dict()))
    import jsonschema

    jsonschema.validate(d, {**schema()["$defs"]["verdict"], "$defs": schema()["$defs"]})

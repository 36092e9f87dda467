"""A reply's texts in the session record, through the reply caches and past their bound: written
out by hand here, the same whether a reply is seen once, again, or is too long to be cached."""

from __future__ import annotations

from mailwire.smtp.session import SmtpSession, build_session


def _session(ehlo_reply: bytes) -> SmtpSession:
    events = [
        ("data", "s2c", b"220 mx.example.net ESMTP\r\n", 1, 1),
        ("data", "c2s", b"EHLO relay.example.org\r\n", 2, 2),
        ("data", "s2c", ehlo_reply, 3, 3),
        ("data", "c2s", b"QUIT\r\n", 4, 4),
        ("data", "s2c", b"221 2.0.0 Bye\r\n", 5, 5),
    ]
    return build_session(SmtpSession(conn_id=0, capture="t", detected_by="greeting"), events)


def _lines(s: SmtpSession) -> list[str]:
    return [line for _, d, line in s.transcript() if d == "s2c"]


def test_short_reply_same_texts_when_cached() -> None:
    reply = b"250-mx.example.net\r\n250-pipelining\r\n250 SIZE 1000\r\n"
    for _ in range(2):  # the second session is served from the caches
        s = _session(reply)
        assert s.extensions == ["PIPELINING", "SIZE"]
        assert _lines(s)[1] == "250 mx.example.net (+2 lines)"
        assert s.last_reply_line == "221 2.0.0 Bye"
        assert s.greeting is not None and s.greeting.text == "mx.example.net ESMTP"


def test_long_reply_bypasses_the_cache_with_the_same_texts() -> None:
    # 40 extension lines of 60 characters: 2 400 characters, past the caches' bound
    names = [f"X-EXT{i:02d}" + "A" * 53 for i in range(40)]
    reply = b"250-mx.example.net\r\n" + b"".join(f"250-{n}\r\n".encode() for n in names[:-1])
    reply += f"250 {names[-1]}\r\n".encode()
    s = _session(reply)
    assert s.extensions == [n.upper()[:40] for n in names]  # keywords are kept to 40 characters
    assert _lines(s)[1] == "250 mx.example.net (+40 lines)"
    ehlo = s.transactions[0].replies[1]
    assert ehlo.text == ("mx.example.net " + " ".join(names))[:1000]  # a reply's text is kept to 1 000

"""The rules on facts built by hand: each rule fires on its own evidence, ranks by evidence level,
and says which capture would separate what one capture cannot."""

from __future__ import annotations

from datetime import UTC, datetime

from mailwire.diagnose.correlate import correlate
from mailwire.diagnose.facts import CaptureFact, Facts, FrameRef, HopFact, SessionFact
from mailwire.diagnose.rules import run_rules
from mailwire.maillog.records import Attempt, LogTriage

T = 1_764_038_052 * 10**9  # 2025-11-25 02:34:12 UTC


def sess(outcome: str, *, point: str = "sender", port: int = 40000, **kw: object) -> SessionFact:
    s = SessionFact(
        capture=f"{point}.pcap", point=point, conn_id=port - 40000, client="192.0.2.10", client_port=port,
        server="203.0.113.25", server_port=25, start_ns=T - 6 * 10**9, end_ns=T, outcome=outcome,
        summary=f"{outcome} session", first_frame=1, last_frame=50,
        evidence=[FrameRef(f"{point}.pcap", 20, "unacknowledged segment")],
    )  # fmt: skip
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def caps(*points: str) -> list[CaptureFact]:
    return [CaptureFact(f"{p}.pcap", p, 1, {}) for p in points]


def attempt(outcome: str, **kw: object) -> Attempt:
    a = Attempt(
        time=datetime.fromtimestamp(T / 1e9, UTC), file="maillog", line=7, mta="postfix", outcome=outcome
    )
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def triage(*attempts: Attempt) -> LogTriage:
    return LogTriage(attempts=list(attempts), destinations=[], verdicts=[], skipped=[], inputs=[])


def test_hop_verdict_localises_size_dependent_loss() -> None:
    f = Facts(
        sessions=[sess("path_loss_timeout", large_lost=True), sess("delivered", port=40001)],
        captures=caps("sender", "edge"),
        hops=[
            HopFact("sender", "edge", "size_dependent_loss", "every packet ≥ 1378 bytes lost", lost_large=20)
        ],
    )
    top = run_rules(f)[0]
    assert (top.cause, top.between) == ("path_loss_size_dependent", ["sender", "edge"])
    assert top.confidence > 0.9 and not top.alternative
    assert "1 SMTP session(s) stalled" in top.summary


def test_one_capture_asks_for_a_second_point() -> None:
    f = Facts(sessions=[sess("path_loss_timeout", large_lost=True)], captures=caps("sender"))
    top = run_rules(f)[0]
    assert top.cause == "path_loss_size_dependent" and top.between == ["sender", "the remote MX"]
    assert top.alternative == "path_loss_random" and "second point" in top.next_step
    assert top.confidence < 0.9


def test_clean_hop_moves_the_loss_beyond_the_last_point() -> None:
    f = Facts(
        sessions=[
            sess("path_loss_timeout", large_lost=True),
            sess("path_loss_timeout", point="edge", large_lost=True),
        ],
        captures=caps("sender", "edge"),
        hops=[HopFact("sender", "edge", "no_loss")],
    )
    top = run_rules(f)[0]
    assert top.between == ["edge", "the remote MX"]


def test_forged_reset_needs_the_second_capture_to_be_sure() -> None:
    one = Facts(
        sessions=[sess("reset", middlebox_suspected=True, rst_from="server")], captures=caps("sender")
    )
    c1 = run_rules(one)[0]
    two = Facts(
        sessions=one.sessions, captures=caps("sender", "edge"),
        hops=[HopFact("sender", "edge", "injected_packets", "RST seen at sender, not at edge", injected=1)],
    )  # fmt: skip
    c2 = run_rules(two)[0]
    assert c1.cause == c2.cause == "middlebox_reset"
    assert c1.confidence < c2.confidence and c2.between == ["sender", "edge"]
    assert "edge" in c1.would_separate


def test_reply_categories_from_log_and_capture() -> None:
    f = Facts(
        logs=triage(
            attempt(
                "rejected",
                category="blocklist",
                reply_text="554 5.7.1 blocked using zen.spamhaus.org",
                remote_ip="203.0.113.25",
            ),
            attempt("delivered"),
        ),
        sessions=[
            sess("rejected", category="blocklist", reply_texts=["554 5.7.1 blocked using zen.spamhaus.org"])
        ],
    )
    out = run_rules(f)
    assert out[0].cause == "blocklist"
    assert "zen.spamhaus.org" in out[0].summary
    assert not any(c.cause.startswith("path_loss") for c in out)


def test_nothing_failed_is_healthy_and_never_silent() -> None:
    out = run_rules(
        Facts(logs=triage(attempt("delivered"), attempt("delivered")), sessions=[sess("delivered")])
    )
    assert [c.cause for c in out] == ["healthy"]
    assert "2 of 2 logged attempts delivered" in out[0].summary


def test_receiver_stall_is_not_the_network() -> None:
    out = run_rules(Facts(sessions=[sess("receiver_window_timeout")], captures=caps("sender")))
    assert out[0].cause == "receiver_stall" and "Not a network problem" in out[0].next_step


def test_correlation_prefers_message_id_then_recipient() -> None:
    a = attempt("network", remote_ip="203.0.113.25", remote_port=25, recipient="large4@dest.test",
                message_id="<m4@sender.test>", delays=(0.0, 0.0, 0.0, 6.0))  # fmt: skip
    b = attempt("network", remote_ip="203.0.113.25", remote_port=25, recipient="large5@dest.test",
                delays=(0.0, 0.0, 0.0, 6.0))  # fmt: skip
    s4 = sess(
        "path_loss_timeout", port=40004, message_ids=["m4@sender.test"], recipients=["large4@dest.test"]
    )
    s5 = sess("path_loss_timeout", port=40005, recipients=["large5@dest.test"])
    other = sess("delivered", port=40009, recipients=["x@dest.test"])
    other.server = "198.51.100.7"  # another MX: never a candidate
    got = {(m.attempt.recipient, m.session.client_port, m.method) for m in correlate([a, b], [s5, s4, other])}
    assert got == {("large4@dest.test", 40004, "message_id"), ("large5@dest.test", 40005, "recipient")}


def test_correlation_respects_the_time_window() -> None:
    a = attempt("network", remote_ip="203.0.113.25", remote_port=25, delays=(0.0, 0.0, 0.0, 6.0))
    late = sess("path_loss_timeout")
    late.start_ns, late.end_ns = T + 3600 * 10**9, T + 3606 * 10**9  # an hour later: another try
    assert correlate([a], [late]) == []


def test_capture_points_with_the_same_file_name_get_distinct_names() -> None:
    from mailwire.diagnose.adapt import point_names

    assert point_names(["a/cap.pcap", "b/cap.pcap.gz", "edge.pcapng"]) == {
        "a/cap.pcap": "a/cap",
        "b/cap.pcap.gz": "b/cap",
        "edge.pcapng": "edge",
    }

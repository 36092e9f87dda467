"""The diagnosis rules: each a small function named after the cause it detects.

Theory of operation
-------------------
A rule looks at :class:`~mailwire.diagnose.facts.Facts` and returns a
:class:`~mailwire.diagnose.model.Conclusion` or ``None``. Its confidence grows with the strength
of the evidence level it found:

* two capture points agree on *where* packets vanished (compare's hop verdict): ~0.95;
* one capture shows *how* the session died (analyze's verdicts): ~0.7, and the conclusion says
  which second capture would localise it;
* the log alone shows the symptom (timeouts vs 4xx/5xx): ~0.5, and says which capture would
  confirm it.

``RULES`` is the ordered list; :func:`run_rules` runs them all, ranks the conclusions by
confidence (ties keep the list order) and adds ``healthy`` only when no rule found a fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from mailwire.diagnose.facts import Facts, FrameRef, HopFact, SessionFact
from mailwire.diagnose.model import Conclusion, Evidence
from mailwire.maillog.records import Attempt
from mailwire.report.wireshark import connection_filter

BODY_STAGES = frozenset(("data", "body", "dot"))
REMOTE_DOWN_OUTCOMES = frozenset(("refused", "connect_timeout", "unreachable"))
# maillog's connect-stage network kinds (schemas/logs.schema.json): the remote could not be reached.
REMOTE_DOWN_KINDS = frozenset(
    ("connect_timeout", "connect_refused", "host_unreachable", "net_unreachable", "no_server")
)
MAX_EVIDENCE = 12


# --- helpers --------------------------------------------------------------------------------------


def _tried(f: Facts) -> list[Attempt]:
    if f.logs is None:
        return []
    return [a for a in f.logs.attempts if a.outcome not in ("suppressed", "expired")]


def _log_ev(attempts: list[Attempt], limit: int = 4) -> list[Evidence]:
    out = []
    for a in attempts[:limit]:
        text = a.raw or a.reason or f"{a.outcome} {a.recipient or ''}"
        out.append(Evidence("log", text.strip()[:300], a.file, a.line))
    return out


def _frame_ev(refs: list[FrameRef], limit: int = 6) -> list[Evidence]:
    return [Evidence("frame", r.text, r.capture, r.frame) for r in refs[:limit]]


def _session_ev(sessions: list[SessionFact], limit: int = 4) -> list[Evidence]:
    out: list[Evidence] = []
    for s in sessions[:limit]:
        # The session's own filter on its frames: concurrent sessions overlap in frame numbers,
        # so a filter can never be guessed from a frame number alone.
        flt = connection_filter(s.client, s.client_port, s.server, s.server_port)
        out.append(
            Evidence(
                "session",
                f"{s.client}:{s.client_port} → {s.server}:{s.server_port}: {s.outcome} — {s.summary}",
                s.capture,
                s.first_frame,
                flt,
            )
        )
        out.extend(Evidence("frame", r.text, r.capture, r.frame, flt) for r in s.evidence[:3])
    return out


def _log_counts(f: Facts) -> str:
    """'not reputation: 0 rejections, 14 of 31 deliveries to 3 domains timed out …' from the log."""
    tried = _tried(f)
    if not tried:
        return ""
    rejected = sum(a.outcome == "rejected" for a in tried)
    net = [a for a in tried if a.outcome == "network"]
    # A network failure the remote still spoke about (its own "421 4.4.2 timeout exceeded") is
    # not one "without an SMTP error": counted apart, as the log triage does.
    silent = [a for a in net if a.reply_code is None]
    spoke = [a for a in net if a.reply_code is not None]
    domains = {a.domain for a in net if a.domain}
    body = sum(a.stage in BODY_STAGES for a in silent)
    txt = f"not reputation: {rejected} rejection{'s' if rejected != 1 else ''}"
    if net:
        txt += (
            f", {len(silent)} of {len(tried)} deliveries to {len(domains)} "
            f"domain{'s' if len(domains) != 1 else ''}"
            f" failed without an SMTP error"
        )
        if body:
            txt += f" ({body} while sending the message body)"
        if spoke:
            codes = ", ".join(sorted({str(a.reply_code) for a in spoke}))
            txt += f" and {len(spoke)} when the remote gave up waiting for our data ({codes})"
    return txt


def _sessions(f: Facts, *outcomes: str) -> list[SessionFact]:
    return [s for s in f.sessions if s.outcome in outcomes]


# Session verdicts that show a failure of the network or of the remote's TCP stack.
CAPTURED_FAILURES = frozenset(
    ("path_loss_timeout", "receiver_window_timeout", "reset", "refused", "connect_timeout", "unreachable")
)


def _captured_failures(f: Facts) -> list[SessionFact]:
    """Sessions whose capture shows how they failed; without them the log's word stands."""
    return [s for s in f.sessions if s.outcome in CAPTURED_FAILURES]


def _waited_downstream(f: Facts) -> list[SessionFact]:
    """Sessions the log says failed without an SMTP error, captured at a point where the remote MX
    was left waiting for data (it timed out idle): what the sender sent was lost before that point."""
    return [s for a, s in f.matches if a.outcome == "network" and s.outcome == "remote_idle_timeout"]


def _second_capture_advice(point: str) -> str:
    if point:
        return (
            f"Capture at a second point at the same time (e.g. the edge router, beyond the devices "
            f"after {point}) and run `mailwire diagnose` on both captures: the point where the "
            f"segments stop appearing localises the fault."
        )
    return "Capture at a second point (e.g. the edge router) at the same time and compare."


def _ensure(c: Conclusion, f: Facts, sessions: list[SessionFact], attempts: list[Attempt]) -> Conclusion:
    ev = c.evidence
    ev.extend(_session_ev(sessions))
    ev.extend(_log_ev(attempts))
    c.evidence = ev[:MAX_EVIDENCE]
    return c


# --- network path ----------------------------------------------------------------------------------


def _size_dependent_on_some_connections(h: HopFact, stuck: list[SessionFact]) -> bool:
    """Compare calls the hop's loss random because large packets of healthy connections pass,
    yet nothing small was lost and the stalled sessions lost only full-size segments."""
    return (
        h.verdict in ("random_loss", "directional_loss")
        and h.lost_small == 0
        and h.lost_large >= 3
        and bool(stuck)
    )


def path_loss_size_dependent(f: Facts) -> Conclusion | None:
    """Large segments vanish, small ones pass: an MTU / PMTUD black hole or a size-filtering box."""
    log_ctx = _log_counts(f)
    net_attempts = [a for a in _tried(f) if a.outcome == "network"]
    stuck = [s for s in _sessions(f, "path_loss_timeout") if s.large_lost]
    for h in f.hops:
        partial = _size_dependent_on_some_connections(h, stuck)
        if h.verdict != "size_dependent_loss" and not partial:
            continue
        icmp = (
            "ICMP 'fragmentation needed' was seen"
            if h.icmp_frag_needed
            else "no ICMP 'fragmentation needed' was seen"
        )
        summary = (
            f"Network path loss between {h.upstream} and {h.downstream}, "
            f"size-dependent (MTU or middle-box drop)"
        )
        if partial:
            summary += (
                f", on some connections only: {h.lost_large} of {h.sent_large} large packets lost, "
                f"no small one, while other connections' large packets passed (intermittent: e.g. a load "
                f"balancer sending some flows through a bad path)"
            )
        if stuck:
            summary += (
                f"; {len(stuck)} SMTP session(s) stalled mid-DATA retransmitting full-size segments"
                f" that never reached {h.downstream}"
            )
        if log_ctx:
            summary += f"; {log_ctx}"
        c = Conclusion(
            cause="path_loss_size_dependent",
            summary=summary + ".",
            confidence=0.95,
            between=[h.upstream, h.downstream],
            evidence=[
                Evidence("hop", h.summary or f"{h.upstream} → {h.downstream}: {h.verdict}"),
                *_frame_ev(h.evidence, 4),
            ],
            next_step=(
                f"Look at the device between {h.upstream} and {h.downstream} (load balancer, firewall, "
                f"VPN, tunnel) for an MTU or size-based drop; {icmp}. Routing one server's mail around "
                f"it should make delivery succeed."
            ),
            rule="path_loss_size_dependent",
        )
        return _ensure(c, f, stuck or _sessions(f, "path_loss_timeout"), net_attempts)
    size_caps = [c for c in f.captures if c.size_signature]
    if stuck or size_caps:
        point = stuck[0].point if stuck else size_caps[0].point
        # With two clean captures (no loss between them), the loss lies beyond the last one.
        clean = [h for h in f.hops if h.verdict == "no_loss"]
        between = [clean[-1].downstream if clean else point, "the remote MX"]
        summary = (
            f"Network path loss beyond {between[0]}, size-dependent: full-size segments went unacknowledged "
            f"and were retransmitted with backoff until the session timed out, while small ones passed"
        )
        if log_ctx:
            summary += f"; {log_ctx}"
        c = Conclusion(
            cause="path_loss_size_dependent",
            summary=summary + ".",
            confidence=0.75,
            between=between,
            next_step=_second_capture_advice(between[0])
            if not clean
            else (
                f"The loss is past {between[0]}: capture further along the path or ask the remote's provider."
            ),
            rule="path_loss_size_dependent",
            alternative="path_loss_random" if not clean else "",
            would_separate=(
                "a capture at a second point taken at the same time: if the large segments are missing there "
                "while small ones arrive, the drop lies between the two points"
            )
            if not clean
            else "",
        )
        return _ensure(c, f, stuck or _sessions(f, "path_loss_timeout"), net_attempts)
    if f.logs is not None and not _captured_failures(f):
        sized = [d for d in f.logs.destinations if d.size_dependent]
        # Timeouts, not resets: a lost connection is the reset rule's evidence.
        body = [a for a in net_attempts if a.stage in BODY_STAGES and a.kind != "lost_connection"]
        delivered = [a for a in _tried(f) if a.outcome == "delivered"]
        if body and (sized or (delivered and len(body) >= max(1, len(net_attempts) // 2))):
            waited = _waited_downstream(f)
            where = ["this mail server", waited[0].point if waited else "the remote MX"]
            seen = (
                f"; at {where[1]} the remote MX waited in vain for the message body in "
                f"{len({(s.client, s.client_port) for s in waited})} of these sessions and timed out: "
                f"the data was lost before {where[1]}"
                if waited
                else ""
            )
            c = Conclusion(
                cause="path_loss_size_dependent",
                summary=(
                    f"Network problem on the path, likely size-dependent (MTU or middle-box drop): "
                    f"{log_ctx}; "
                    f"smaller messages to the same destinations were delivered{seen}."
                ),
                confidence=0.7 if waited else 0.55,
                between=where,
                next_step=(
                    "Capture on the mail server while sending a large message to an affected destination "
                    "and run `mailwire diagnose --log … capture.pcap`."
                ),
                rule="path_loss_size_dependent",
                alternative="path_loss_random",
                would_separate=(
                    "a capture on the mail server: only full-size segments unacknowledged = size-dependent"
                ),
            )
            return _ensure(c, f, _waited_downstream(f), body or net_attempts)
    return None


def path_loss_random(f: Facts) -> Conclusion | None:
    """Packets of every size lost now and then: congestion, a bad link, a policer."""
    log_ctx = _log_counts(f)
    net_attempts = [a for a in _tried(f) if a.outcome == "network"]
    stuck_large = [s for s in _sessions(f, "path_loss_timeout") if s.large_lost]
    for h in f.hops:
        if h.verdict not in ("random_loss", "directional_loss"):
            continue
        if _size_dependent_on_some_connections(h, stuck_large):
            return None
        c = Conclusion(
            cause="path_loss_random",
            summary=(
                f"Packet loss between {h.upstream} and {h.downstream}: {h.loss_rate * 100:.1f}% of packets "
                f"({h.lost_packets} of {h.matched_packets + h.lost_packets}), of every size"
                + (f"; {log_ctx}" if log_ctx else "")
                + "."
            ),
            confidence=0.9,
            between=[h.upstream, h.downstream],
            evidence=[Evidence("hop", h.summary or h.verdict), *_frame_ev(h.evidence, 4)],
            next_step=(
                f"Check the links and devices between {h.upstream} and {h.downstream} for errors, "
                f"congestion or policing (interface counters, drops)."
            ),
            rule="path_loss_random",
        )
        return _ensure(c, f, _sessions(f, "path_loss_timeout"), net_attempts)
    if f.hops and all(h.verdict == "no_loss" for h in f.hops):
        return None
    stuck = [s for s in _sessions(f, "path_loss_timeout") if not s.large_lost]
    lossy = [s for s in f.sessions if s.retransmissions > 0 and s.outcome == "delivered"]
    # Retransmissions in sessions that still delivered: loss the mail survived. One or two are
    # weak evidence (the ACKs a capture cannot see lost may be most of it), several, or in several
    # sessions, stronger.
    lossy_enough = sum(s.retransmissions for s in lossy) >= 3 or len(lossy) >= 2
    if stuck or (lossy and not f.failing_sessions()):
        point = (stuck or lossy)[0].point
        total = sum(s.retransmissions for s in stuck or lossy)
        c = Conclusion(
            cause="path_loss_random",
            summary=(
                f"Packet loss on the path beyond {point}: {total} retransmissions in "
                f"{len(stuck or lossy)} session(s), segments of every size affected"
                + ("; sessions died by timeout" if stuck else "; the mail still got through")
                + (f"; {log_ctx}" if log_ctx else "")
                + "."
            ),
            confidence=0.6 if stuck else 0.45 if lossy_enough else 0.3,
            between=[point, "the remote MX"],
            next_step=_second_capture_advice(point),
            rule="path_loss_random",
            alternative="path_loss_size_dependent" if stuck else "",
            would_separate=(
                "a capture at a second point: the loss rate per hop and by segment size" if stuck else ""
            ),
        )
        return _ensure(c, f, stuck or lossy, net_attempts)
    if f.logs is not None and not _captured_failures(f):
        net = [a for a in net_attempts if a.kind not in REMOTE_DOWN_KINDS]
        if net and any(v.verdict == "network_path" for v in f.logs.verdicts):
            c = Conclusion(
                cause="path_loss_random",
                summary=f"Network problem on the path (timeouts, no SMTP error): {log_ctx}.",
                confidence=0.4,
                between=["this mail server", "the remote MX"],
                next_step="Capture on the mail server while sending to an affected destination.",
                rule="path_loss_random",
                alternative="path_loss_size_dependent",
                would_separate=(
                    "a capture on the mail server: whether only full-size segments go unacknowledged"
                ),
            )
            return _ensure(c, f, [], net)
    return None


def middlebox_reset(f: Facts) -> Conclusion | None:
    """A reset the peer never sent: forged by a firewall, IPS or load balancer on the path."""
    for h in f.hops:
        if h.verdict != "injected_packets":
            continue
        c = Conclusion(
            cause="middlebox_reset",
            summary=(
                f"A middle box between {h.upstream} and {h.downstream} forged TCP resets: "
                f"{h.injected} reset(s) seen at {h.upstream} never passed {h.downstream}."
            ),
            confidence=0.95,
            between=[h.upstream, h.downstream],
            evidence=[Evidence("hop", h.summary or h.verdict), *_frame_ev(h.evidence, 4)],
            next_step=(
                f"Look at the firewall / IPS / load balancer between {h.upstream} and {h.downstream} "
                f"for a rule or session limit that resets SMTP connections."
            ),
            rule="middlebox_reset",
        )
        return _ensure(c, f, _sessions(f, "reset"), [a for a in _tried(f) if a.outcome == "network"])
    resets = _sessions(f, "reset")
    from_server = [s for s in resets if s.rst_from in (None, "server")]
    if from_server and not any(h.verdict == "no_loss" for h in f.hops):
        suspected = [s for s in from_server if s.middlebox_suspected]
        point = from_server[0].point
        c = Conclusion(
            cause="middlebox_reset",
            summary=(
                f"{len(from_server)} session(s) were reset by the remote side's address"
                + (
                    f"; {len(suspected)} reset(s) look forged (TTL / IP id unlike the server's own packets)"
                    if suspected
                    else ""
                )
                + "."
            ),
            confidence=0.7 if suspected else 0.45,
            between=[point, "the remote MX"],
            next_step=_second_capture_advice(point),
            rule="middlebox_reset",
            alternative="remote_outage",
            would_separate=(
                "a capture further along the path (edge router): a reset seen at the server but not "
                "there was forged in between"
            ),
        )
        return _ensure(c, f, suspected or from_server, [])
    lost = [a for a in _tried(f) if a.outcome == "network" and a.kind == "lost_connection"]
    if f.logs is not None and not _captured_failures(f) and lost:
        c = Conclusion(
            cause="middlebox_reset",
            summary=(
                f"Connections were cut mid-session: {len(lost)} attempt(s) ended in 'lost connection' "
                f"(a reset or close without an SMTP reply); {_log_counts(f)}."
            ),
            confidence=0.45,
            between=["this mail server", "the remote MX"],
            next_step=(
                "Capture on the mail server and at the edge router while sending to an affected destination: "
                "a reset seen at the server but not at the edge was forged in between."
            ),
            rule="middlebox_reset",
            alternative="remote_outage",
            would_separate="captures at the server and the edge router: who sent the reset",
        )
        return _ensure(c, f, [], lost)
    return None


def receiver_stall(f: Facts) -> Conclusion | None:
    """The remote stopped reading: zero window that never reopened in time."""
    stalled = _sessions(f, "receiver_window_timeout")
    if not stalled:
        return None
    s0 = stalled[0]
    c = Conclusion(
        cause="receiver_stall",
        summary=(
            f"The remote MX {s0.server} stopped reading: it advertised a zero window that did not reopen "
            f"in time ({len(stalled)} session(s)); the network delivered everything."
        ),
        confidence=0.85,
        between=[f"remote MX {s0.server}"],
        next_step=(
            f"Not a network problem: the receiving server {s0.server} is overloaded or stuck. Contact its "
            f"operator with the frames below; retrying later usually works."
        ),
        rule="receiver_stall",
    )
    return _ensure(c, f, stalled, [a for a in _tried(f) if a.outcome == "network"])


# --- SMTP replies --------------------------------------------------------------------------------


def _reply_rule(
    cause: str, categories: tuple[str, ...], outcome: str, sentence: str, next_step: str
) -> Callable[[Facts], Conclusion | None]:
    def rule(f: Facts) -> Conclusion | None:
        sess = [s for s in f.sessions if s.category in categories and s.outcome in ("rejected", "deferred")]
        att = [a for a in _tried(f) if a.category in categories and a.outcome in ("rejected", "deferred")]
        if not sess and not att:
            return None
        tried = _tried(f)
        n = len(att) if att else len(sess)
        total = len(tried) if tried else len(f.sessions)
        remotes = sorted({s.server for s in sess} | {a.remote_ip or a.relay_host or "" for a in att} - {""})
        texts = [t for s in sess for t in s.reply_texts] + [a.reply_text or "" for a in att]
        quote = next((t for t in texts if t[:1] in ("4", "5")), "")
        c = Conclusion(
            cause=cause,
            summary=(
                f"{sentence}: {n} of {total} attempts {outcome}"
                + (f' (e.g. "{quote[:160]}")' if quote else "")
                + "."
            ),
            confidence=0.9 if att and sess else 0.8,
            between=[f"remote MX {', '.join(remotes[:3])}"] if remotes else [],
            next_step=next_step,
            rule=cause,
        )
        return _ensure(c, f, sess, att)

    rule.__name__ = cause
    rule.__doc__ = sentence
    return rule


reputation = _reply_rule(
    "reputation",
    ("reputation",),
    "rejected or deferred",
    "The remote rejects mail because of the sending IP's reputation",
    "Check the sending IP at the provider's postmaster tools, fix the cause (compromised account, "
    "bulk mail), then request delisting.",
)
blocklist = _reply_rule(
    "blocklist",
    ("blocklist",),
    "rejected or deferred",
    "The sending IP is on a DNS blocklist the remote uses",
    "Look the IP up on the named blocklist, fix the cause and request removal.",
)
rate_limit = _reply_rule(
    "rate_limit",
    ("rate_limit", "server_busy"),
    "deferred",
    "The remote is rate-limiting this sender",
    "Lower the concurrency / rate toward that destination (Postfix: destination_concurrency_limit, "
    "destination_rate_delay); the mail will go out on retry.",
)
greylist = _reply_rule(
    "greylist",
    ("greylist",),
    "deferred",
    "The remote greylists new senders",
    "Nothing to fix: the retry after the greylisting delay is normally accepted.",
)
remote_policy = _reply_rule(
    "remote_policy",
    ("policy", "content", "mailbox", "auth", "tls_policy", "other"),
    "refused by the remote",
    "The remote refused the mail for a reason of its own (policy, mailbox, content or authentication), "
    "not the network",
    "Read the quoted reply: fix the recipient address, the content or the sending policy it names; "
    "the network is not involved.",
)


# --- remote / local ---------------------------------------------------------------------------------


def remote_outage(f: Facts) -> Conclusion | None:
    """The remote does not accept connections at all (refused, unanswered, unreachable)."""
    sess = [s for s in f.sessions if s.outcome in REMOTE_DOWN_OUTCOMES]
    att = [a for a in _tried(f) if a.outcome == "network" and a.kind in REMOTE_DOWN_KINDS]
    log_v = [v for v in (f.logs.verdicts if f.logs else []) if v.verdict == "remote_outage"]
    if not sess and not att and not log_v:
        return None
    kinds = Counter([s.outcome for s in sess] + [a.kind or "" for a in att])
    remotes = sorted({s.server for s in sess} | {a.remote_ip or a.relay_host or "" for a in att} - {""})
    desc = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.most_common() if k)
    mx = f"remote MX {', '.join(remotes[:3])}" if remotes else "the remote MX"
    between = [mx] if remotes else []
    where = ""
    # Unanswered or unreachable: how far did the SYNs get? The last capture point that saw them
    # and the next one (or the MX) bound the place they died.
    points = [c.point for c in f.captures]
    lost = [s for s in sess if s.outcome in ("connect_timeout", "unreachable")]
    if lost and points:
        s0 = lost[0]
        seen = [
            points.index(s.point)
            for s in f.sessions
            if (s.client, s.client_port, s.server) == (s0.client, s0.client_port, s0.server)
            and s.point in points
        ]
        far = max(seen) if seen else 0
        nxt = points[far + 1] if far + 1 < len(points) else mx
        between = [points[far], nxt]
        where = f"; the connection attempts were last seen at {points[far]} and not beyond"
    c = Conclusion(
        cause="remote_outage",
        summary=(
            f"The remote MX {', '.join(remotes[:3]) or ''} does not accept connections "
            f"({desc or 'log verdict'}){where}."
        ),
        confidence=0.85 if sess else 0.7,
        between=between,
        evidence=[Evidence("log", v.summary, "", None) for v in log_v[:2]],
        next_step=(
            "Check whether the remote MX is down (other networks, the provider's status page); if only "
            "from here, check the route and firewalls toward it. Postfix retries by itself."
        ),
        rule="remote_outage",
    )
    return _ensure(c, f, sess, att)


def local_config(f: Facts) -> Conclusion | None:
    """Our own side: DNS, TLS policy, transport or queue problems."""
    att = [a for a in _tried(f) if a.outcome in ("dns", "local", "tls")]
    log_v = [v for v in (f.logs.verdicts if f.logs else []) if v.verdict == "local_config"]
    if not att and not log_v:
        return None
    kinds = Counter(a.outcome + (f" ({a.kind})" if a.kind else "") for a in att)
    desc = ", ".join(f"{n} × {k}" for k, n in kinds.most_common(4))
    c = Conclusion(
        cause="local_config",
        summary=f"Failures on our own side, before any remote answered: {desc or log_v[0].summary}.",
        confidence=0.8 if log_v else 0.6,
        between=["this mail server"],
        evidence=[Evidence("log", v.summary, "", None) for v in log_v[:2]],
        next_step=log_v[0].next_step
        if log_v and log_v[0].next_step
        else "Check the MTA's DNS, TLS and transport settings.",
        rule="local_config",
    )
    return _ensure(c, f, [], att)


RULES: list[Callable[[Facts], Conclusion | None]] = [
    path_loss_size_dependent,
    middlebox_reset,
    path_loss_random,
    receiver_stall,
    reputation,
    blocklist,
    rate_limit,
    greylist,
    remote_policy,
    remote_outage,
    local_config,
]


def healthy(f: Facts) -> Conclusion:
    """Nothing failed: every attempt and session we saw went through."""
    tried = _tried(f)
    delivered = sum(a.outcome == "delivered" for a in tried)
    ok_sessions = sum(s.outcome == "delivered" for s in f.sessions)
    parts = []
    if tried:
        parts.append(f"{delivered} of {len(tried)} logged attempts delivered")
    if f.sessions:
        parts.append(f"{ok_sessions} of {len(f.sessions)} SMTP sessions delivered")
        unfinished = [s for s in f.sessions if s.outcome == "incomplete"]
        if unfinished:
            # analyze's own sentence says why (capture window, encrypted after STARTTLS, one side only)
            why = unfinished[0].summary.rstrip(".") or "the capture ended, or began, mid-session"
            parts.append(f"{len(unfinished)} incomplete, no failure seen ({why[:1].lower()}{why[1:]})")
    clean = [h for h in f.hops if h.verdict == "no_loss"]
    failed = f.failing_sessions()
    failed_att = [a for a in tried if a.outcome != "delivered"]
    if failed or failed_att:
        kinds = Counter([s.outcome for s in failed] + [a.outcome for a in failed_att])
        return Conclusion(
            cause="undetermined",
            summary=(
                "Some deliveries failed, but no rule recognises the pattern: "
                + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
                + "."
            ),
            confidence=0.2,
            evidence=_session_ev(failed) + _log_ev(failed_att),
            next_step=(
                "Look at the sessions and log lines below; a capture on the mail server while it fails helps."
            ),
            rule="healthy",
        )
    if not tried and not f.sessions and not clean:
        return Conclusion(
            cause="undetermined",
            summary="Nothing to go on: no delivery attempt in the logs and no SMTP session in the captures.",
            confidence=0.0,
            next_step=(
                "Check the data-quality notes (unreadable files, unknown log format); give the MTA's log of "
                "the failing period and/or a capture taken on the mail server while it sends."
            ),
            rule="healthy",
        )
    if clean:
        parts.append("no loss between " + ", ".join(f"{h.upstream} and {h.downstream}" for h in clean))
    return Conclusion(
        cause="healthy",
        summary="No delivery problem found: " + ("; ".join(parts) or "nothing failed") + ".",
        # nothing seen going through (only unfinished sessions): too little to call it healthy with conviction
        confidence=0.8 if (delivered or ok_sessions or clean) else 0.3,
        next_step=(
            "If users still report failures, capture while it happens (the failures may be intermittent) "
            "and run `mailwire diagnose` again with the log of that period."
        ),
        rule="healthy",
    )


# What each cause explains: the session outcomes and log attempts it accounts for.
_EXPLAINS: dict[str, tuple[frozenset[str], Callable[[Attempt], bool]]] = {
    "path_loss_size_dependent": (
        frozenset(("path_loss_timeout",)),
        lambda a: a.outcome == "network" and a.kind not in REMOTE_DOWN_KINDS and a.kind != "lost_connection",
    ),
    "path_loss_random": (
        frozenset(("path_loss_timeout",)),
        lambda a: a.outcome == "network" and a.kind not in REMOTE_DOWN_KINDS and a.kind != "lost_connection",
    ),
    "middlebox_reset": (frozenset(("reset",)), lambda a: a.kind == "lost_connection"),
    "receiver_stall": (frozenset(("receiver_window_timeout",)), lambda a: False),
    "remote_outage": (REMOTE_DOWN_OUTCOMES, lambda a: a.outcome == "network" and a.kind in REMOTE_DOWN_KINDS),
    "local_config": (frozenset(), lambda a: a.outcome in ("dns", "local", "tls")),
}
_CATEGORY_OF = {
    "reputation": ("reputation",),
    "blocklist": ("blocklist",),
    "rate_limit": ("rate_limit", "server_busy"),
    "greylist": ("greylist",),
    "remote_policy": ("policy", "content", "mailbox", "auth", "tls_policy", "other"),
}


def _explained(c: Conclusion, f: Facts) -> int:
    """How many failed sessions (one per connection, whatever the capture point) or log attempts
    the conclusion accounts for."""
    if c.cause in _CATEGORY_OF:
        cats = _CATEGORY_OF[c.cause]
        sess = {(s.client, s.client_port, s.server) for s in f.sessions if s.category in cats}
        att = [a for a in _tried(f) if a.category in cats and a.outcome in ("rejected", "deferred")]
    elif c.cause in _EXPLAINS:
        outcomes, pred = _EXPLAINS[c.cause]
        sess = {(s.client, s.client_port, s.server) for s in f.sessions if s.outcome in outcomes}
        if c.cause == "path_loss_random":
            sess |= {(s.client, s.client_port, s.server) for s in f.sessions if s.retransmissions and
                     s.outcome == "delivered"}  # fmt: skip
        att = [a for a in _tried(f) if pred(a)]
    else:
        return 0
    return max(len(sess), len(att), 1)


def run_rules(f: Facts) -> list[Conclusion]:
    """Every rule's conclusion, ranked: highest confidence first; ``healthy`` when none fired.

    A conclusion's confidence is its evidence level scaled by the share of the failures it
    explains (0.6 + 0.4 × share): in a mixed capture, the cause behind most failures leads.
    """
    found = [c for c in (rule(f) for rule in RULES) if c is not None]
    if len(found) > 1:
        # Against all the failures seen (not the sum of the weights: two causes competing for the
        # same failures each explain all of them).
        failed_sessions = {(s.client, s.client_port, s.server) for s in f.failing_sessions()}
        failed_attempts = [a for a in _tried(f) if a.outcome != "delivered"]
        total = max(len(failed_sessions), len(failed_attempts), 1)
        for c in found:
            share = min(1.0, _explained(c, f) / total)
            c.confidence = round(c.confidence * (0.6 + 0.4 * share), 3)
    order = {id(c): i for i, c in enumerate(found)}
    found.sort(key=lambda c: (-c.confidence, order[id(c)]))
    if not found:
        found.append(healthy(f))
    return found


__all__ = [
    "RULES",
    "blocklist",
    "greylist",
    "healthy",
    "local_config",
    "middlebox_reset",
    "path_loss_random",
    "path_loss_size_dependent",
    "rate_limit",
    "receiver_stall",
    "remote_outage",
    "remote_policy",
    "reputation",
    "run_rules",
]

"""Capture-level findings: across all sessions, is it reputation, rate limiting or the network?

Theory of operation
-------------------
Input: every session's verdict with its :class:`~mailwire.smtp.verdict.TcpFacts` (and SMTP
session when there was one). Output: a list of :class:`Finding` records, each produced by one
small named function in :data:`FINDERS`:

* ``destination_mix`` — per destination (server address) the mix of outcomes and whether the
  failures are *intermittent* (the same destination sometimes fine);
* ``failure_class`` — whether the failures point to reputation (5xx reputation/blocklist
  replies), rate limiting (4xx rate-limit/greylist replies, refused connections) or the network
  (timeouts with retransmissions, resets, no SMTP error at all);
* ``size_signature`` — in sessions that died of path loss, were only full-size segments lost
  while small ones passed (an MTU / PMTUD black hole or a middle box), and was an ICMP
  "fragmentation needed" seen;
* ``next_step`` — what to do next ("capture at the edge router at the same time and run
  ``mailwire compare``").

Severity ``failure`` marks findings about failed deliveries; ``info`` findings (the per
destination mix of a healthy capture) never claim a failure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailwire.smtp.session import SmtpSession
from mailwire.smtp.verdict import FAILURES, NETWORK_OUTCOMES, Evidence, TcpFacts, Verdict


@dataclass(slots=True)
class Judged:
    """One session as the finders see it."""

    capture: str
    destination: str  # server address (IP), or "" when unknown
    session: SmtpSession | None
    tcp: TcpFacts
    verdict: Verdict


@dataclass(slots=True)
class Finding:
    id: str
    severity: str  # "failure" | "warning" | "info"
    title: str
    summary: str
    destination: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    next_step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "summary": self.summary,
            "destination": self.destination,
            "evidence": [e.to_dict() for e in self.evidence],
            "next_step": self.next_step,
            "data": self.data,
        }


def _by_dest(items: list[Judged]) -> dict[str, list[Judged]]:
    out: dict[str, list[Judged]] = defaultdict(list)
    for j in items:
        out[j.destination].append(j)
    return out


def find_destination_mix(items: list[Judged]) -> list[Finding]:
    out = []
    for dest, js in sorted(_by_dest(items).items()):
        mix = Counter(j.verdict.outcome for j in js)
        failed = sum(n for o, n in mix.items() if o in FAILURES)
        ok = mix.get("delivered", 0)
        intermittent = failed > 0 and ok > 0
        text = ", ".join(f"{n} {o}" for o, n in mix.most_common())
        if failed == 0:
            out.append(
                Finding(
                    "destination_mix",
                    "info",
                    f"{dest}: no failed delivery",
                    f"{dest}: {text}.",
                    dest,
                    data={"outcomes": dict(mix), "intermittent": False},
                )
            )
            continue
        first_bad = next(j for j in js if j.verdict.outcome in FAILURES)
        ev = first_bad.verdict.evidence[:1]
        if intermittent:
            good = next(j for j in js if j.verdict.outcome == "delivered")
            ev = ev + good.verdict.evidence[-1:]
        out.append(
            Finding(
                "destination_mix",
                "failure",
                f"{dest}: {'intermittent' if intermittent else 'consistent'} failures ({failed} of "
                f"{len(js)} sessions)",
                f"{dest}: {text}."
                + (
                    " The same destination sometimes accepts mail: not a blanket block of the sender."
                    if intermittent
                    else ""
                ),
                dest,
                ev,
                data={
                    "outcomes": dict(mix),
                    "intermittent": intermittent,
                    "failed": failed,
                    "sessions": len(js),
                },
            )
        )
    return out


def find_failure_class(items: list[Judged]) -> list[Finding]:
    failed = [j for j in items if j.verdict.outcome in FAILURES]
    if not failed:
        return []
    net = [j for j in failed if j.verdict.outcome in NETWORK_OUTCOMES]
    rep = [
        j
        for j in failed
        if j.verdict.outcome == "rejected" and j.verdict.category in ("reputation", "blocklist")
    ]
    rate = [
        j
        for j in failed
        if (
            j.verdict.outcome == "deferred"
            and j.verdict.category in ("rate_limit", "greylist", "server_busy", "reputation")
        )
        or j.verdict.outcome == "refused"
    ]
    smtp_err = [j for j in failed if j.verdict.outcome in ("rejected", "deferred")]
    idle = [j for j in failed if j.verdict.outcome == "remote_idle_timeout"]
    counts = {
        "network": len(net),
        "reputation": len(rep),
        "rate_limit": len(rate),
        "smtp_error": len(smtp_err),
    }
    if net and len(net) >= max(len(rep), len(rate)) and not smtp_err:
        cls, why = (
            "network",
            (
                f"{len(net)} failed session(s) died of network causes (timeouts with "
                "retransmissions, resets, no answer) "
                "and no server answered with an SMTP error: this is the network, not reputation or "
                "rate limiting."
            ),
        )
    elif rep and len(rep) >= len(rate):
        cls, why = (
            "reputation",
            f"{len(rep)} session(s) were rejected with 5xx replies naming reputation or a blocklist.",
        )
    elif rate:
        cls, why = (
            "rate_limit",
            f"{len(rate)} session(s) were deferred with 4xx replies or had their connection refused: "
            "rate limiting, a busy server, or a server that does not accept us (nothing listening).",
        )
    elif smtp_err:
        cats = Counter(j.verdict.category for j in smtp_err)
        cls, why = (
            "smtp_policy",
            f"{len(smtp_err)} session(s) ended with SMTP errors ({_counts(cats)}).",
        )
    elif idle:
        cls, why = (
            "client_stall",
            f"{len(idle)} session(s) ended with the server timing out while no client data reached this "
            "capture point: the client stalled, or its packets were lost before this point.",
        )
    else:
        cls, why = "network", f"{len(net)} session(s) died of network causes."
    ev = [e for j in (net or rep or rate or smtp_err or idle)[:3] for e in j.verdict.evidence[:1]]
    return [
        Finding(
            "failure_class",
            "failure",
            f"Failures point to: {cls.replace('_', ' ')}",
            why,
            None,
            ev,
            data={"class": cls, "counts": counts},
        )
    ]


def _counts(c: Counter[str | None]) -> str:
    return ", ".join(f"{n} {k}" for k, n in c.most_common())


def _size_range(sizes: list[int]) -> str:
    lo, hi = min(sizes), max(sizes)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def find_size_signature(items: list[Judged]) -> list[Finding]:
    lossy = [
        j
        for j in items
        if j.verdict.outcome == "path_loss_timeout" or j.verdict.rule == "stalled_at_capture_end"
    ]
    if not lossy:
        return []
    lost_sizes: list[int] = []
    # sizes as sent on the wire (a TSO super-segment leaves as MSS-sized packets) and as captured
    captured_sizes: list[int] = []
    full = 0
    passed = 0  # largest client segment that got through before the loss began
    small_passed = 0
    mss_seen: set[int] = set()
    ev: list[Evidence] = []
    for j in lossy:
        t = j.tcp
        mss = t.mss if t.mss > 0 else t.max_c2s_segment
        if mss > 0:
            mss_seen.add(mss)
        for ch in t.chains:
            if ch.direction != "c2s" or ch.acked or not ch.resends:
                continue
            wire = ch.wire_size if ch.wire_size > 0 else (min(ch.size, mss) if mss > 0 else ch.size)
            lost_sizes.append(wire)
            captured_sizes.append(ch.size)
            if mss and wire >= 0.9 * mss:
                full += 1
            if len(ev) < 4:
                tso = f" (a {ch.size}-byte TSO super-segment)" if ch.size > wire else ""
                ev.append(Evidence(ch.orig_frame, f"{wire}-byte segments never acknowledged{tso}", j.capture))
        passed = max(passed, min(t.max_c2s_passed_segment, mss) if mss else t.max_c2s_passed_segment)
        if j.session is not None and j.session.stats.get("replies", 0) >= 3:
            small_passed += 1
    frag = [(j, i) for j in items for i in j.tcp.icmp if i.frag_needed]
    # only full-size segments lost, and none of that size got through before the loss began
    full_passed = any(m and passed >= 0.9 * m for m in mss_seen)
    only_full = bool(lost_sizes) and full == len(lost_sizes) and small_passed > 0 and not full_passed
    sizes = sorted(set(lost_sizes))[:20]
    data = {
        "lost_segment_sizes": sizes,
        "lost_full_size": full,
        "lost_total": len(lost_sizes),
        "mss": sorted(mss_seen),
        "largest_segment_passed": passed,
        "sessions_small_packets_passed": small_passed,
        "icmp_frag_needed": len(frag),
        "only_full_size_lost": only_full,
    }
    if only_full:
        icmp_txt = (
            f"ICMP 'fragmentation needed' was seen {len(frag)} time(s) (next-hop MTU {frag[0][1].mtu})"
            if frag
            else "no ICMP 'fragmentation needed' came back"
        )
        summary = (
            f"Only full-size segments were lost ({full} of {len(lost_sizes)} unacknowledged segments "
            f"of {_size_range(captured_sizes)} bytes as captured, MSS {'/'.join(map(str, sorted(mss_seen)))})"
            " "
            f"while small packets (up to {passed} bytes) passed "
            "in the same "
            f"sessions; {icmp_txt}. This is the signature of an MTU / path-MTU-discovery black "
            "hole or a middle "
            "box dropping large packets."
        )
        ev += [Evidence(i.frame, f"ICMP frag-needed, MTU {i.mtu}", j.capture) for j, i in frag[:2]]
        return [
            Finding(
                "size_signature", "failure", "Only full-size segments are lost", summary, None, ev, data=data
            )
        ]
    summary = (
        f"Lost segments have mixed sizes ({', '.join(map(str, sizes))} bytes): no size signature; "
        "the loss is not specific to large packets."
    )
    return [
        Finding("size_signature", "warning", "No size signature in the loss", summary, None, ev, data=data)
    ]


def find_next_step(items: list[Judged], found: list[Finding]) -> list[Finding]:
    cls = next((f.data.get("class") for f in found if f.id == "failure_class"), None)
    if cls is None:
        return []
    size = next((f for f in found if f.id == "size_signature"), None)
    if cls == "network":
        step = (
            "Capture at the edge router at the same time as on the mail server and run "
            "`mailwire compare SERVER.pcap EDGE.pcap` to see on which hop the segments vanish."
        )
        if size is not None and size.data.get("only_full_size_lost"):
            step += (
                " Meanwhile test the path with large packets (e.g. `ping -M do -s 1472 <mx>`) and "
                "check every box "
                "between the server and the edge (load balancer, firewall) for MTU/MSS settings."
            )
        summary = "The evidence points at the network path; localise the hop."
    elif cls == "client_stall":
        step = (
            "Capture on the sending server at the same time as here and run "
            "`mailwire compare SERVER.pcap THIS.pcap`: if the server sent the data, it was lost in between."
        )
        summary = "The servers waited for data that never arrived here; find out whether it was sent."
    elif cls == "reputation":
        step = (
            "Check the sending IP on the blocklists named in the replies and with the provider's "
            "postmaster / delisting pages."
        )
        summary = "The remote servers reject us by reputation; the network is not the problem."
    elif cls == "rate_limit":
        step = (
            "Lower the concurrency and message rate towards the affected destinations and retry later; "
            "check for greylisting."
        )
        summary = "The remote servers throttle us; slow down."
    else:
        step = (
            "Read the rejecting replies (policy, authentication, mailbox) and fix the sender configuration "
            "they name."
        )
        summary = "The remote servers refuse the mail for policy reasons."
    return [
        Finding("next_step", "failure", "Next step", summary, None, [], next_step=step, data={"class": cls})
    ]


Finder = Callable[[list[Judged]], list[Finding]]
FINDERS: tuple[Finder, ...] = (find_destination_mix, find_failure_class, find_size_signature)


def once_per_session(items: list[Judged]) -> list[Judged]:
    """Drop the copies of a session seen again in a later capture (same endpoints and ports)."""
    seen: set[tuple[str, int, str, int]] = set()
    out = []
    for j in items:
        s = j.session
        if s is not None and s.client and s.client_port >= 0:
            key = (s.client, s.client_port, s.server, s.server_port)
            if key in seen:
                continue
            seen.add(key)
        out.append(j)
    return out


def findings(items: list[Judged]) -> list[Finding]:
    """All findings for one analysis, failures first.

    A session captured at several points (the server and the edge) is counted once: the first
    capture given (by convention the sending server's) speaks for it."""
    items = once_per_session(items)
    out: list[Finding] = []
    for f in FINDERS:
        out.extend(f(items))
    out.extend(find_next_step(items, out))
    order = {"failure": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: order.get(f.severity, 3))


__all__ = ["FINDERS", "Finding", "Judged", "findings", "once_per_session"]

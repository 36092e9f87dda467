"""Capture-level findings: across all sessions, is it reputation, rate limiting or the network?

Theory of operation
-------------------
Input: every session's verdict with its :class:`~mailwire.smtp.verdict.TcpFacts` (and SMTP
session when there was one). Output: a list of :class:`Finding` records, each produced by one
small finder class of :class:`Finders`, fed every session once (one pass, so that the
sessions can be read from disk):

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mailwire.smtp.session import SmtpSession
from mailwire.smtp.verdict import FAILURES, NETWORK_OUTCOMES, Evidence, TcpFacts, Verdict
from mailwire.spill import positional


@positional
@dataclass(slots=True)
class Judged:
    """One session as the finders see it."""

    capture: str
    destination: str  # server address (IP), or "" when unknown
    session: SmtpSession | None
    tcp: TcpFacts
    verdict: Verdict


@positional
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


class _Tally:
    """Counts by value, in the order the values first appeared (ties in ``most_common`` come out
    in that order, however the parts were merged)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[Any, list[int]] = {}  # value: [first position, count]

    def add(self, value: Any, pos: int) -> None:
        got = self.seen.get(value)
        if got is None:
            self.seen[value] = [pos, 1]
        else:
            got[1] += 1

    def merge(self, other: _Tally) -> None:
        for value, (pos, n) in other.seen.items():
            got = self.seen.get(value)
            if got is None:
                self.seen[value] = [pos, n]
            else:
                got[0], got[1] = min(got[0], pos), got[1] + n

    def counter(self) -> Counter[Any]:
        return Counter({v: n for v, (_, n) in sorted(self.seen.items(), key=lambda x: x[1][0])})


class DestinationMix:
    """``destination_mix``: per destination, the mix of outcomes and whether failures are
    intermittent (counts and the evidence of its first failure and first delivery, kept as the
    sessions pass)."""

    def __init__(self) -> None:
        self.mix: dict[str, _Tally] = defaultdict(_Tally)
        self.first_bad: dict[str, tuple[int, list[Evidence]]] = {}  # (position, evidence)
        self.good: dict[str, tuple[int, list[Evidence]]] = {}

    def add(self, j: Judged, pos: int) -> None:
        dest, v = j.destination, j.verdict
        self.mix[dest].add(v.outcome, pos)
        if v.outcome in FAILURES and dest not in self.first_bad:
            self.first_bad[dest] = (pos, v.evidence[:1])
        if v.outcome == "delivered" and dest not in self.good:
            self.good[dest] = (pos, v.evidence[-1:])

    def merge(self, other: DestinationMix) -> None:
        for dest, mix in other.mix.items():
            self.mix[dest].merge(mix)
        for mine, theirs in ((self.first_bad, other.first_bad), (self.good, other.good)):
            for dest, got in theirs.items():
                if dest not in mine or got[0] < mine[dest][0]:
                    mine[dest] = got

    def done(self) -> list[Finding]:
        out = []
        for dest, tally in sorted(self.mix.items()):
            mix = tally.counter()
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
            ev = list(self.first_bad[dest][1])
            if intermittent:
                ev = ev + self.good[dest][1]
            total = sum(mix.values())
            out.append(
                Finding(
                    "destination_mix",
                    "failure",
                    f"{dest}: {'intermittent' if intermittent else 'consistent'} failures ({failed} of "
                    f"{total} sessions)",
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
                        "sessions": total,
                    },
                )
            )
        return out


class _Group:
    """How many sessions fell in a group, and the first evidence of its first three."""

    __slots__ = ("first", "n")

    def __init__(self) -> None:
        self.n = 0
        self.first: list[tuple[int, list[Evidence]]] = []  # (position, evidence) of the first three

    def add(self, j: Judged, pos: int) -> None:
        if self.n < 3:
            self.first.append((pos, j.verdict.evidence[:1]))
        self.n += 1

    def merge(self, other: _Group) -> None:
        self.n += other.n
        self.first = sorted(self.first + other.first, key=lambda x: x[0])[:3]

    @property
    def evidence(self) -> list[Evidence]:
        return [e for _, ev in self.first for e in ev]


class FailureClass:
    """``failure_class``: do the failures point to reputation, rate limiting or the network?"""

    def __init__(self) -> None:
        self.failed = 0
        self.net, self.rep, self.rate, self.smtp_err, self.idle = (_Group() for _ in range(5))
        self.cats = _Tally()

    def add(self, j: Judged, pos: int) -> None:
        v = j.verdict
        if v.outcome not in FAILURES:
            return
        self.failed += 1
        if v.outcome in NETWORK_OUTCOMES:
            self.net.add(j, pos)
        if v.outcome == "rejected" and v.category in ("reputation", "blocklist"):
            self.rep.add(j, pos)
        if (
            v.outcome == "deferred" and v.category in ("rate_limit", "greylist", "server_busy", "reputation")
        ) or v.outcome == "refused":
            self.rate.add(j, pos)
        if v.outcome in ("rejected", "deferred"):
            self.smtp_err.add(j, pos)
            self.cats.add(v.category, pos)
        if v.outcome == "remote_idle_timeout":
            self.idle.add(j, pos)

    def merge(self, other: FailureClass) -> None:
        self.failed += other.failed
        for a, b in zip(self._groups(), other._groups(), strict=True):
            a.merge(b)
        self.cats.merge(other.cats)

    def _groups(self) -> tuple[_Group, ...]:
        return (self.net, self.rep, self.rate, self.smtp_err, self.idle)

    def done(self) -> list[Finding]:
        if not self.failed:
            return []
        groups = self._groups()
        net, rep, rate, smtp_err, idle = (g.n for g in groups)
        counts = {"network": net, "reputation": rep, "rate_limit": rate, "smtp_error": smtp_err}
        if net and net >= max(rep, rate) and not smtp_err:
            cls, why = (
                "network",
                (
                    f"{net} failed session(s) died of network causes (timeouts with "
                    "retransmissions, resets, no answer) "
                    "and no server answered with an SMTP error: this is the network, not reputation or "
                    "rate limiting."
                ),
            )
        elif rep and rep >= rate:
            cls, why = (
                "reputation",
                f"{rep} session(s) were rejected with 5xx replies naming reputation or a blocklist.",
            )
        elif rate:
            cls, why = (
                "rate_limit",
                f"{rate} session(s) were deferred with 4xx replies or had their connection refused: "
                "rate limiting, a busy server, or a server that does not accept us (nothing listening).",
            )
        elif smtp_err:
            cls, why = (
                "smtp_policy",
                f"{smtp_err} session(s) ended with SMTP errors ({_counts(self.cats.counter())}).",
            )
        elif idle:
            cls, why = (
                "client_stall",
                f"{idle} session(s) ended with the server timing out while no client data reached this "
                "capture point: the client stalled, or its packets were lost before this point.",
            )
        else:
            cls, why = "network", f"{net} session(s) died of network causes."
        first = next((g for g in groups if g.n), self.idle)
        return [
            Finding(
                "failure_class",
                "failure",
                f"Failures point to: {cls.replace('_', ' ')}",
                why,
                None,
                list(first.evidence),
                data={"class": cls, "counts": counts},
            )
        ]


def _counts(c: Counter[str | None]) -> str:
    return ", ".join(f"{n} {k}" for k, n in c.most_common())


def _size_range(sizes: list[int]) -> str:
    lo, hi = min(sizes), max(sizes)
    return str(lo) if lo == hi else f"{lo}–{hi}"


class SizeSignature:
    """``size_signature``: in the sessions that died of path loss, were only full-size segments
    lost while small ones passed, and did an ICMP "fragmentation needed" come back?"""

    def __init__(self) -> None:
        self.lossy = 0
        # sizes as sent on the wire (a TSO super-segment leaves as MSS-sized packets) and as captured
        self.lost_sizes: list[int] = []
        self.captured_sizes: list[int] = []
        self.full = 0
        self.passed = 0  # largest client segment that got through before the loss began
        self.small_passed = 0
        self.mss_seen: set[int] = set()
        self.first_ev: list[tuple[int, int, Evidence]] = []  # (position, index): the first four
        self.frag = 0
        # (position, index, frame, MTU, capture) of the first two ICMP "fragmentation needed"
        self.first_frag: list[tuple[int, int, int, int, str]] = []

    def add(self, j: Judged, pos: int) -> None:
        t = j.tcp
        for k, i in enumerate(t.icmp):
            if i.frag_needed:
                self.frag += 1
                if len(self.first_frag) < 2:
                    self.first_frag.append((pos, k, i.frame, i.mtu, j.capture))
        if not (j.verdict.outcome == "path_loss_timeout" or j.verdict.rule == "stalled_at_capture_end"):
            return
        self.lossy += 1
        mss = t.mss if t.mss > 0 else t.max_c2s_segment
        if mss > 0:
            self.mss_seen.add(mss)
        for ch in t.chains:
            if ch.direction != "c2s" or ch.acked or not ch.resends:
                continue
            wire = ch.wire_size if ch.wire_size > 0 else (min(ch.size, mss) if mss > 0 else ch.size)
            self.lost_sizes.append(wire)
            self.captured_sizes.append(ch.size)
            if mss and wire >= 0.9 * mss:
                self.full += 1
            if len(self.first_ev) < 4:
                tso = f" (a {ch.size}-byte TSO super-segment)" if ch.size > wire else ""
                shows = f"{wire}-byte segments never acknowledged{tso}"
                self.first_ev.append((pos, len(self.first_ev), Evidence(ch.orig_frame, shows, j.capture)))
        passed = min(t.max_c2s_passed_segment, mss) if mss else t.max_c2s_passed_segment
        self.passed = max(self.passed, passed)
        if j.session is not None and j.session.stats.get("replies", 0) >= 3:
            self.small_passed += 1

    def merge(self, other: SizeSignature) -> None:
        self.lossy += other.lossy
        self.lost_sizes += other.lost_sizes
        self.captured_sizes += other.captured_sizes
        self.full += other.full
        self.passed = max(self.passed, other.passed)
        self.small_passed += other.small_passed
        self.mss_seen |= other.mss_seen
        self.first_ev = sorted(self.first_ev + other.first_ev, key=lambda x: x[:2])[:4]
        self.frag += other.frag
        self.first_frag = sorted(self.first_frag + other.first_frag, key=lambda x: x[:2])[:2]

    def done(self) -> list[Finding]:
        if not self.lossy:
            return []
        lost_sizes, captured_sizes = self.lost_sizes, self.captured_sizes
        full, passed, mss_seen = self.full, self.passed, self.mss_seen
        ev = [e for _, _, e in self.first_ev]
        # only full-size segments lost, and none of that size got through before the loss began
        full_passed = any(m and passed >= 0.9 * m for m in mss_seen)
        only_full = bool(lost_sizes) and full == len(lost_sizes) and self.small_passed > 0 and not full_passed
        sizes = sorted(set(lost_sizes))[:20]
        data = {
            "lost_segment_sizes": sizes,
            "lost_full_size": full,
            "lost_total": len(lost_sizes),
            "mss": sorted(mss_seen),
            "largest_segment_passed": passed,
            "sessions_small_packets_passed": self.small_passed,
            "icmp_frag_needed": self.frag,
            "only_full_size_lost": only_full,
        }
        if only_full:
            icmp_txt = (
                f"ICMP 'fragmentation needed' was seen {self.frag} time(s) "
                f"(next-hop MTU {self.first_frag[0][3]})"
                if self.frag
                else "no ICMP 'fragmentation needed' came back"
            )
            summary = (
                f"Only full-size segments were lost ({full} of {len(lost_sizes)} unacknowledged segments "
                f"of {_size_range(captured_sizes)} bytes as captured, "
                f"MSS {'/'.join(map(str, sorted(mss_seen)))})"
                " "
                f"while small packets (up to {passed} bytes) passed "
                "in the same "
                f"sessions; {icmp_txt}. This is the signature of an MTU / path-MTU-discovery black "
                "hole or a middle "
                "box dropping large packets."
            )
            ev += [
                Evidence(fr, f"ICMP frag-needed, MTU {mtu}", cap) for _, _, fr, mtu, cap in self.first_frag
            ]
            return [
                Finding(
                    "size_signature",
                    "failure",
                    "Only full-size segments are lost",
                    summary,
                    None,
                    ev,
                    data=data,
                )
            ]
        summary = (
            f"Lost segments have mixed sizes ({', '.join(map(str, sizes))} bytes): no size signature; "
            "the loss is not specific to large packets."
        )
        return [
            Finding(
                "size_signature", "warning", "No size signature in the loss", summary, None, ev, data=data
            )
        ]


def find_next_step(found: list[Finding]) -> list[Finding]:
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


class Finders:
    """The finders, fed sessions one at a time with their position (any
    increasing number: "first" means lowest). Those fed disjoint parts of one capture (its
    shards, numbered as in the whole capture) merge into what one pass over all would give."""

    def __init__(self) -> None:
        self.parts = (DestinationMix(), FailureClass(), SizeSignature())

    def add(self, j: Judged, pos: int) -> None:
        for f in self.parts:
            f.add(j, pos)

    def merge(self, other: Finders) -> None:
        mix, cls, size = self.parts
        mix.merge(other.parts[0])
        cls.merge(other.parts[1])
        size.merge(other.parts[2])

    def done(self) -> list[Finding]:
        out: list[Finding] = []
        for f in self.parts:
            out.extend(f.done())
        out.extend(find_next_step(out))
        order = {"failure": 0, "warning": 1, "info": 2}
        return sorted(out, key=lambda f: order.get(f.severity, 3))


def once_per_session(items: Iterable[Judged]) -> Iterator[Judged]:
    """Drop the copies of a session seen again in a later capture (same endpoints and ports).
    Within one capture the same endpoints and ports are another session (the port reused)."""
    earlier: set[tuple[str, int, str, int]] = set()  # of the captures before this one
    this: set[tuple[str, int, str, int]] = set()
    capture: str | None = None
    for j in items:
        if j.capture != capture:
            earlier |= this
            this, capture = set(), j.capture
        s = j.session
        if s is not None and s.client and s.client_port >= 0:
            key = (s.client, s.client_port, s.server, s.server_port)
            if key in earlier:
                continue
            this.add(key)
        yield j


def findings(items: Iterable[Judged]) -> list[Finding]:
    """All findings for one analysis, failures first, in one pass over the sessions (each finder
    keeps counts and a few pieces of evidence, not the sessions).

    A session captured at several points (the server and the edge) is counted once: the first
    capture given (by convention the sending server's) speaks for it."""
    found = Finders()
    for pos, j in enumerate(once_per_session(items)):
        found.add(j, pos)
    return found.done()


__all__ = [
    "DestinationMix",
    "FailureClass",
    "Finders",
    "Finding",
    "Judged",
    "SizeSignature",
    "findings",
    "once_per_session",
]

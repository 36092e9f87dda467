"""The verdict per hop, and the sentence a person would put in a ticket.

Theory of operation
-------------------
Rules, in order; every rule that holds becomes a finding, the first one is the verdict:

1. ``no_common_traffic``: no connection seen at both points (nothing to compare; not "no loss").
2. ``injected_packets`` with RSTs: resets seen downstream that never passed upstream, i.e. forged
   by something between the points. Listed first because such a box usually also drops the packet
   it answers, which is then not the network's loss.
3. ``size_dependent_loss``: in a direction, a size threshold separates lost from delivered
   packets: at least 90 % (and at least 3) of the packets at or above it lost, at most 10 % below
   it, at least 3 below it delivered. Whether ICMP fragmentation-needed / packet-too-big was seen
   is part of it (PMTUD working vs. a black hole).
4. ``directional_loss``: one direction loses at least half of what was sent, the other nothing.
5. ``random_loss``: otherwise any network loss, with its rate per direction.
6. ``injected_packets`` without RSTs.
7. ``capture_loss``: segments missing from the downstream capture that the downstream capture
   itself shows were acknowledged (or seen downstream amid packets the upstream capture has):
   a capture dropped them, not the network. Put first when such proven capture loss is at least
   five times the "lost" packets and those are only pure ACKs, which nothing can vouch for.
8. ``no_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SIZE_MIN_LOST = 3
SIZE_MIN_PASSED = 3
SIZE_LOST_SHARE = 0.9
SIZE_PASS_SHARE = 0.1
DIRECTIONAL_SHARE = 0.5
CAPTURE_DOMINANT = 5  # proven capture loss this many times the unprovable losses: capture first


@dataclass
class Finding:
    kind: str
    direction: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def size_threshold(sizes: np.ndarray, lost: np.ndarray) -> dict[str, Any] | None:
    """The size threshold separating lost from delivered packets, if there is a clean one."""
    if sizes.size == 0 or int(lost.sum()) < SIZE_MIN_LOST:
        return None
    o = np.argsort(sizes, kind="stable")
    s, lo = sizes[o], lost[o].astype(np.int64)
    # candidate cut before each position where the size changes: below = s[:i], above = s[i:]
    cut = np.flatnonzero(np.concatenate([[False], s[1:] != s[:-1]]))
    if cut.size == 0:
        return None
    cum_lost = np.concatenate([[0], np.cumsum(lo)])
    n = s.size
    lost_below = cum_lost[cut]
    lost_above = cum_lost[n] - lost_below
    n_below = cut
    n_above = n - cut
    share_above = lost_above / n_above
    share_below = lost_below / np.maximum(n_below, 1)
    passed_below = n_below - lost_below
    ok = (
        (lost_above >= SIZE_MIN_LOST)
        & (share_above >= SIZE_LOST_SHARE)
        & (share_below <= SIZE_PASS_SHARE)
        & (passed_below >= SIZE_MIN_PASSED)
    )
    if not ok.any():
        return None
    score = np.where(ok, share_above - share_below, -1.0)
    best = int(np.argmax(score))
    i = int(cut[best])
    above_lost = s[i:][lo[i:] == 1]
    below_passed = s[:i][lo[:i] == 0]
    above_passed = s[i:][lo[i:] == 0]
    return {
        "threshold_bytes": int(s[i]),
        "smallest_lost_bytes": int(above_lost.min()) if above_lost.size else int(s[i]),
        "largest_delivered_bytes": int(below_passed.max()) if below_passed.size else None,
        "lost_at_or_above": int(lost_above[best]),
        "sent_at_or_above": int(n_above[best]),
        "lost_below": int(lost_below[best]),
        "sent_below": int(n_below[best]),
        "delivered_at_or_above": int(above_passed.size),
    }


def decide(
    directions: dict[str, dict[str, Any]],
    matched_connections: int,
    icmp_seen: list[dict[str, Any]],
    names: tuple[str, str],
) -> list[Finding]:
    """All findings for one hop, the verdict first. ``names`` = (upstream file, downstream file)."""
    out: list[Finding] = []
    if matched_connections == 0 and not any(s["sent"] for s in directions.values()):
        return [Finding("no_common_traffic")]
    rst = [(d, s) for d, s in directions.items() if s["injected_rst"] > 0]
    for d, s in rst:
        out.append(Finding("injected_packets", d, {"count": s["injected"], "rst": s["injected_rst"]}))
    lossy = {d: s for d, s in directions.items() if s["lost"] > 0}
    for d, s in lossy.items():
        sizes, lost = s["_sizes"]
        th = size_threshold(sizes, lost)
        if th is None:
            # intermittent: only some connections take the faulty path; look at those alone
            conns = s["_conns"]
            hit = np.unique(conns[lost])
            sel = np.isin(conns, hit)
            th = size_threshold(sizes[sel], lost[sel])
            if th is not None:
                n_conns = int(np.unique(conns).size)
                th["connections_affected"] = int(hit.size)
                th["connections"] = n_conns
                big = sizes >= th["threshold_bytes"]
                th["delivered_at_or_above_elsewhere"] = int((big & ~sel & ~lost).sum())
        if th is not None:
            th["icmp_frag_needed_seen"] = bool(icmp_seen)
            th["icmp"] = icmp_seen[:10]
            out.append(Finding("size_dependent_loss", d, th))
    if lossy and not any(f.kind == "size_dependent_loss" for f in out):
        if len(lossy) == 1:
            d, s = next(iter(lossy.items()))
            other = [x for x in directions if x != d]
            if s["rate"] >= DIRECTIONAL_SHARE and all(directions[o]["lost"] == 0 for o in other):
                syn_only = s["lost_syn"] == s["lost"]
                out.append(
                    Finding(
                        "directional_loss", d, {"rate": s["rate"], "lost": s["lost"], "syn_only": syn_only}
                    )
                )
        if not any(f.kind == "directional_loss" for f in out):
            total_sent = sum(s["sent"] for s in lossy.values())
            total_lost = sum(s["lost"] for s in lossy.values())
            out.append(
                Finding(
                    "random_loss",
                    next(iter(lossy)) if len(lossy) == 1 else "both",
                    {
                        "rate": total_lost / max(total_sent, 1),
                        "rates": {d: s["rate"] for d, s in lossy.items()},
                        "lost": total_lost,
                        "sent": total_sent,
                    },
                )
            )
    for d, s in directions.items():
        if s["injected"] > 0 and s["injected_rst"] == 0:
            out.append(Finding("injected_packets", d, {"count": s["injected"], "rst": 0}))
    for d, s in directions.items():
        if s["capture_loss"] > 0 or s["missed_by_upstream_capture"] > 0:
            out.append(
                Finding(
                    "capture_loss",
                    d,
                    {"count": s["capture_loss"], "missed_upstream": s["missed_by_upstream_capture"]},
                )
            )
    # Mostly proven capture loss, and the "network" losses are only packets nothing can vouch for
    # (pure ACKs): the capture is the likelier culprit for those too; say capture loss first.
    cap = sum(s["capture_loss"] + s["missed_by_upstream_capture"] for s in directions.values())
    net = sum(s["lost"] for s in directions.values())
    data_lost = sum(s["data_segments_lost"] + s["lost_syn"] for s in directions.values())
    first = out[0].kind if out else ""
    if (
        cap >= CAPTURE_DOMINANT * max(net, 1)
        and data_lost == 0
        and first in ("random_loss", "directional_loss")
    ):
        out.sort(key=lambda f: f.kind != "capture_loss")
    if not out:
        out.append(Finding("no_loss"))
    return out


def _dir_words(d: str | None, names: tuple[str, str]) -> str:
    up, down = names
    if d == "a_to_b":
        return f"from {up} towards {down}"
    if d == "b_to_a":
        return f"from {down} towards {up}"
    return "in both directions"


def sentence(
    f: Finding,
    names: tuple[str, str],
    directions: dict[str, dict[str, Any]],
    proxied: list[dict[str, Any]] | None = None,
) -> str:
    """The ticket-ready sentence for a finding."""
    up, down = names
    between = f"Between {up} and {down}"
    x = f.details
    if f.kind == "no_common_traffic":
        text = (
            f"{up} and {down} share no connection: they did not capture the same traffic "
            "(wrong time window, capture filter or capture point), so nothing can be localised."
        )
        if x.get("downstream_packets") == 0:
            text = f"{down} holds no IP packets at all, so nothing can be compared with {up}."
            if x.get("unanswered"):
                text += (
                    f" {up} shows {x['unanswered']} connection attempts that got no answer: if {down} was "
                    "capturing at the time, they were dropped between these points."
                )
        return text
    if f.kind == "no_loss":
        sent = sum(s["sent"] for s in directions.values())
        text = f"{between}, all {sent} packets sent were seen on the other side: no loss on this hop."
        if proxied:
            same = sum(
                1
                for p in proxied
                if all(
                    p[d]["upstream_bytes"] == p[d]["downstream_bytes"]
                    for d in ("client_to_server", "server_to_client")
                )
            )
            text += (
                f" {len(proxied)} connection(s) pass a full proxy that terminates TCP between the points; "
                f"matched by their byte stream (same SMTP dialogue), {same} with equal byte counts each way."
            )
        return text
    if f.kind == "size_dependent_loss":
        icmp = (
            "ICMP 'fragmentation needed' was seen, so PMTUD got a signal"
            if x.get("icmp_frag_needed_seen")
            else (
                "no ICMP 'fragmentation needed' was seen: either a size-filtering box drops them "
                "silently or a smaller MTU's ICMP is lost (a PMTUD black hole)"
            )
        )
        passed = x.get("largest_delivered_bytes")
        some = ""
        if "connections_affected" in x:
            some = (
                f" This held in {x['connections_affected']} of {x['connections']} connections; the others "
                f"passed {x['delivered_at_or_above_elsewhere']} packets that large, so the device sends only "
                "some connections through the faulty path (e.g. one load-balancer member or route)."
            )
        smaller = (
            f"smaller ones passed (largest delivered: {passed} bytes)" if passed else "smaller ones passed"
        )
        return (
            f"{between}, {_dir_words(f.direction, names)}, every packet of {x['smallest_lost_bytes']} "
            f"bytes or more was lost ({x['lost_at_or_above']} of {x['sent_at_or_above']}); {smaller}, "
            f"{x['lost_below']} of {x['sent_below']} smaller ones lost; {icmp}. Look at the device "
            "between these points (e.g. a load balancer or firewall) for an MTU or size-based drop." + some
        )
    if f.kind == "directional_loss" and x.get("syn_only"):
        return (
            f"{between}, {x['lost']} SYN packets (connection attempts) {_dir_words(f.direction, names)} "
            "never arrived: the device between these points drops new connections (firewall, load balancer)."
        )
    if f.kind == "directional_loss":
        return (
            f"{between}, {_dir_words(f.direction, names)}, {x['lost']} packets "
            f"({x['rate']:.0%}) were lost while the other direction lost none: a one-way block or "
            "asymmetric route at the device between these points."
        )
    if f.kind == "random_loss":
        rates = ", ".join(f"{_dir_words(d, names)} {r:.1%}" for d, r in x["rates"].items())
        return (
            f"{between}, {x['lost']} of {x['sent']} packets were lost ({rates}), across sizes: "
            "random loss on the link or device between these points (congestion, errors, policing)."
        )
    if f.kind == "injected_packets":
        what = f"{x['rst']} TCP resets" if x.get("rst") else f"{x['count']} packets"
        seen_at = down if f.direction == "a_to_b" else up
        not_at = up if f.direction == "a_to_b" else down
        return (
            f"{what} seen in {seen_at} never passed {not_at}: something between these points "
            "generated them (a middle box forging resets or answering on behalf of the peer)."
        )
    if f.kind == "capture_loss":
        cap = down if f.direction == "a_to_b" else up
        other = up if f.direction == "a_to_b" else down
        parts = []
        if x["count"]:
            parts.append(
                f"{x['count']} packets missing from {cap} were acknowledged by the receiver: {cap} "
                "dropped them while capturing, the network delivered them."
            )
        if x.get("missed_upstream"):
            parts.append(
                f"{x['missed_upstream']} packets seen in {cap} are missing from {other} although it captured "
                f"the packets around them: {other} dropped them while capturing."
            )
        return " ".join(parts) + " This is capture loss, not network loss."
    return f"{between}: {f.kind}."


__all__ = ["Finding", "decide", "sentence", "size_threshold"]

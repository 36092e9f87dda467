"""Triage: attempts → per destination (domain, MX host, IP) facts, verdicts, evidence, next steps.

Owns the questions of issue 7 §4: outcome mix, failures over time (buckets), intermittency
(deliveries and failures to the same destination in the same hour), the stage of network
failures (connect / greeting / body / end of data; body-stage losses while small messages get
through = size-dependent loss), and the verdict. Suppressed and expired records are shown but
never counted as tries: no connection was made.

The verdict rules, in order (each a few lines below):

1. ``failure_class``: every failed try votes for one class — 5xx/4xx by the reply's sub-category
   (blocklist, reputation, rate_limit, greylist; auth/TLS policy → local_config; a 5xx without a
   clearer category → reputation, a 4xx → rate_limit), network failures by kind and stage
   (body/end-of-data → network_path; connect/greeting failures → network_path when the same
   destination also succeeds, remote_outage when it never does; refused while also succeeding →
   rate_limit), DNS → remote_outage, local → local_config.
2. ``scope verdict``: the class with most votes (ties: the order of ``_PRIORITY``); no votes → healthy.
3. ``our side``: timeouts/lost connections towards two or more unrelated providers → a sender-scope
   ``network_path`` verdict, and those providers' ``remote_outage`` verdicts become ``network_path``.
   DNS failures on several domains, local errors → a sender-scope ``local_config`` verdict.

Counting is columnar: one Python pass turns the attempts into NumPy columns (outcome, time bucket,
hour, provider, domain, size, flags); each destination is an index array into them, so outcome
mixes, buckets and intermittency are ``bincount``/``intersect1d`` calls. Only failed tries are
looked at one by one (they carry the reply texts the votes need).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np

from mailwire.maillog.records import OUTCOMES, TRIED, Attempt, Destination, Evidence, Verdict
from mailwire.signatures import provider_of

_PRIORITY = (
    "blocklist",
    "reputation",
    "network_path",
    "rate_limit",
    "greylist",
    "remote_outage",
    "local_config",
)
_BUCKET_CHOICES = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 24
MAX_EVIDENCE = 5
_TIMEOUTISH = frozenset(
    ("connect_timeout", "timeout", "lost_connection", "host_unreachable", "write_failed", "reset")
)


def choose_buckets(times: Iterable[datetime]) -> tuple[datetime | None, int, int]:
    """(start, seconds, count): the smallest width that shows the whole span in ≤ MAX_BUCKETS."""
    lo = hi = None
    for t in times:
        if lo is None or t < lo:
            lo = t
        if hi is None or t > hi:
            hi = t
    if lo is None or hi is None:
        return None, 3600, 0
    span = (hi - lo).total_seconds()
    width = -(-int(span) // (MAX_BUCKETS * 86400)) * 86400  # whole days when nothing smaller fits
    for w in _BUCKET_CHOICES:
        if span / w < MAX_BUCKETS:
            width = w
            break
    epoch = int(lo.timestamp()) // width * width
    start = datetime.fromtimestamp(epoch, tz=lo.tzinfo)
    count = min(int((hi.timestamp() - epoch) // width) + 1, 10_000)
    return start, width, count


def failure_class(a: Attempt, intermittent: bool) -> str | None:
    """Rule 1: which verdict one failed try supports (None: says nothing about the path)."""
    o = a.outcome
    if o in ("rejected", "deferred"):
        cat = a.category
        if cat in ("blocklist", "reputation", "rate_limit", "greylist"):
            return cat
        if cat in ("auth", "tls_policy"):
            return "local_config"
        if cat == "mailbox":
            return None
        if cat == "content":
            text = (a.reply_text or "").lower()
            return None if any(w in text for w in ("size", "too big", "malformed", "rfc")) else "reputation"
        return "reputation" if o == "rejected" else "rate_limit"
    if o == "network":
        k = a.kind
        if k == "net_unreachable":
            return "local_config"
        if k == "connect_refused":
            return "rate_limit" if intermittent else "remote_outage"
        if a.stage in ("body", "dot", "data"):
            return "network_path"
        return "network_path" if intermittent else "remote_outage"
    if o == "tls":
        if a.kind in ("verify", "not_offered", "requiretls"):
            return "local_config"
        return "network_path" if intermittent else "remote_outage"
    if o == "dns":
        return "remote_outage"
    if o == "local":
        return "local_config"
    return None


def _registrable(host: str) -> str:
    parts = host.lower().rstrip(".").split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else host.lower()


def provider_key(a: Attempt) -> str:
    """Who runs the server: a known provider, else the MX host's registrable domain, else the domain."""
    if a.provider:
        return a.provider
    p = provider_of(a.relay_host)
    if p:
        return p
    if a.relay_host and not a.relay_host.replace(".", "").isdigit() and ":" not in a.relay_host:
        return _registrable(a.relay_host)
    return a.domain or a.remote_ip or "?"


def _evidence(attempts: Sequence[Attempt]) -> list[Evidence]:
    pick = (
        list(attempts[:3]) + list(attempts[3:][-(MAX_EVIDENCE - 3) :])
        if len(attempts) > MAX_EVIDENCE
        else list(attempts)
    )
    return [Evidence(a.file, a.line, a.raw or a.reason or "") for a in pick]


def _stage_phrase(stages: Counter[str]) -> str:
    if not stages:
        return ""
    parts = [f"{n} at {s}" for s, n in stages.most_common(3)]
    return " (" + ", ".join(parts) + ")"


def _summary(scope: str, key: str, d: Destination, verdict: str, votes: int) -> str:
    tried, failed = d.attempts, d.failures
    head = f"{key}: {failed} of {tried} tries failed ({d.failure_rate:.0%})"
    net = sum(n for o, n in d.outcomes.items() if o == "network")
    if verdict == "network_path":
        stg = Counter({k: v for k, v in d.stages.items()})
        gave_up = d.kinds.get("remote_timeout", 0)  # "421 4.4.2 … timeout": the MX waited in vain
        s = f"{head}; {net - gave_up} without any SMTP error"
        if gave_up:
            s += f", {gave_up} where the MX timed out waiting for our data"
        s += _stage_phrase(stg)
        if d.intermittent:
            s += f"; deliveries succeed in the same hours ({d.mixed_windows} mixed)"
        if d.size_dependent:
            s += "; small messages get through, large ones stall in the body: size-dependent loss"
        return s + " — this is the network, not reputation"
    if verdict in ("reputation", "blocklist"):
        cats = ", ".join(f"{c} {n}" for c, n in Counter(d.categories).most_common(3))
        return f"{head}; the remote refuses us ({cats}) — reputation, not the network"
    if verdict == "rate_limit":
        return f"{head}; temporary 4xx replies / refused connections between successes — rate limiting"
    if verdict == "greylist":
        return f"{head}; greylisting — retries from the same IP are expected to succeed"
    if verdict == "remote_outage":
        return (
            f"{head}; the server never answered usefully{_stage_phrase(Counter(d.stages))} and never accepted"
        )
    if verdict == "local_config":
        kinds = ", ".join(f"{k} {n}" for k, n in Counter(d.kinds).most_common(3))
        return f"{head}; our own configuration or resources ({kinds or 'auth/TLS policy'})"
    return f"{head}"


def next_step(verdict: str, scope: str, key: str, d: Destination | None, ip: str | None) -> str:
    target = f"host {ip} and port 25" if ip else "port 25"
    if verdict == "network_path":
        if scope == "sender":
            return (
                "Capture on this server while sending (tcpdump -i any -s 0 -w sender.pcap port 25) and at "
                "the "
                "network edge at the same time, then run `mailwire compare` to see where segments vanish."
            )
        return (
            f"Capture on the server while sending to {key} (tcpdump -i any -s 0 -w sender.pcap '{target}'), "
            "then `mailwire analyze sender.pcap`; a second capture at the edge localises the loss."
        )
    if verdict == "reputation":
        return (
            f"Check the sending IP's reputation with {key}'s operator (postmaster tools, SNDS, delisting "
            "form); the network is fine — do not chase packets."
        )
    if verdict == "blocklist":
        return f"Look the sending IP up on the named blocklist, remove the cause, request delisting ({key})."
    if verdict == "rate_limit":
        return (
            f"Slow down towards {key}: lower the destination concurrency / add a rate delay "
            "(Postfix: smtp_destination_concurrency_limit, smtp_destination_rate_delay)."
        )
    if verdict == "greylist":
        return (
            "Nothing to fix: let the MTA retry from the same IP; make sure retries keep the source address."
        )
    if verdict == "remote_outage":
        return (
            f"The remote ({key}) did not answer; check its status from another network. If other "
            "providers fail the same way, capture locally — the problem is on our side."
        )
    if verdict == "local_config":
        return (
            "Fix the local configuration named in the evidence (resolver, TLS policy, SPF/DKIM/PTR, routes)."
        )
    return "No action needed."


class _Columns:
    """Per-attempt facts as NumPy columns, built in one pass; destinations index into them."""

    def __init__(self, attempts: Sequence[Attempt], start: datetime | None, width: int, count: int) -> None:
        n = len(attempts)
        out_code = {o: i for i, o in enumerate(OUTCOMES)}
        prov_code: dict[str, int] = {"": 0}
        dom_code: dict[str, int] = {"": 0}
        prov_cache: dict[tuple[str | None, str | None, str | None], int] = {}
        oc = [0] * n
        ts = [0.0] * n
        pc = [0] * n
        dc = [0] * n
        size = [-1] * n
        flags = [0] * n  # 1 greylist, 2 network failure in body/end of data
        for i, a in enumerate(attempts):  # the one Python pass over all attempts
            oc[i] = out_code[a.outcome]
            ts[i] = a.time.timestamp()
            pk = (a.provider, a.relay_host, a.domain)
            p = prov_cache.get(pk)
            if p is None:
                # "" when neither provider nor MX host is known (DNS failures, expiries)
                name = provider_key(a) if (a.relay_host or a.provider) else ""
                p = prov_cache[pk] = prov_code.setdefault(name, len(prov_code))
            pc[i] = p
            if a.domain:
                dc[i] = dom_code.setdefault(a.domain, len(dom_code))
            if a.size:
                size[i] = a.size
            if a.category == "greylist":
                flags[i] = 1
            elif a.stage in ("body", "dot") and a.outcome == "network":
                flags[i] = 2
        self.attempts = attempts
        self.outcome = np.array(oc, dtype=np.int8)
        self.ts = np.array(ts, dtype=np.float64)
        t0 = start.timestamp() if start is not None else 0.0
        self.bucket = np.clip((self.ts - t0) // width, 0, max(count - 1, 0)).astype(np.int64)
        self.hour = (self.ts // 3600).astype(np.int64)
        self.provider = np.array(pc, dtype=np.int32)
        self.domain = np.array(dc, dtype=np.int32)
        self.size = np.array(size, dtype=np.int64)
        self.flags = np.array(flags, dtype=np.int8)
        self.provider_names = list(prov_code)
        self.domain_names = list(dom_code)
        self.count = count


_N_TRIED = len(TRIED)  # TRIED outcomes come first in OUTCOMES
assert set(OUTCOMES[:_N_TRIED]) == TRIED


def _size_dependent_cols(cols: _Columns, tried: np.ndarray) -> bool:
    """Body/end-of-data network failures of messages larger than (≥80 % of) those delivered."""
    failed = cols.size[tried[(cols.flags[tried] == 2) & (cols.size[tried] > 0)]]
    ok = cols.size[tried[(cols.outcome[tried] == 0) & (cols.size[tried] > 0)]]
    if not len(failed) or not len(ok):
        return False
    return bool(np.count_nonzero(ok < failed.min()) >= 0.8 * len(ok))


def _destination(
    scope: str, key: str, idx: np.ndarray, cols: _Columns
) -> tuple[Destination, Counter[str], dict[str, list[Attempt]]]:
    attempts = cols.attempts
    oc = cols.outcome[idx]
    counts = np.bincount(oc, minlength=len(OUTCOMES))
    outcomes = {OUTCOMES[i]: int(c) for i, c in enumerate(counts) if c}
    tried = idx[oc < _N_TRIED]
    ok = tried[cols.outcome[tried] == 0]
    bad = tried[cols.outcome[tried] != 0]
    count = cols.count
    total = np.bincount(cols.bucket[tried], minlength=count).tolist() if count else []
    failed = np.bincount(cols.bucket[bad], minlength=count).tolist() if count else []
    # hours with a delivery and a failure (greylisting is expected to fail first, then succeed)
    mixed = len(np.intersect1d(cols.hour[ok], cols.hour[bad[cols.flags[bad] != 1]]))
    intermittent = mixed > 0
    fails = [attempts[i] for i in bad.tolist()]
    kinds: Counter[str] = Counter(a.kind for a in fails if a.kind)
    stages: Counter[str] = Counter(a.stage for a in fails if a.outcome == "network" and a.stage)
    cats: Counter[str] = Counter(a.category for a in fails if a.category)
    votes: Counter[str] = Counter()
    by_class: dict[str, list[Attempt]] = defaultdict(list)
    for a in fails:
        c = failure_class(a, intermittent)
        if c is not None:
            votes[c] += 1
            by_class[c].append(a)
    dom_ids, dom_n = np.unique(cols.domain[idx], return_counts=True)
    order = np.lexsort((dom_ids, -dom_n))
    domains = [cols.domain_names[dom_ids[j]] for j in order if dom_ids[j]][:10]
    providers = sorted(cols.provider_names[p] for p in np.unique(cols.provider[tried]).tolist() if p)
    first = last = None
    if len(tried):
        t = cols.ts[tried]
        first = attempts[int(tried[int(np.argmin(t))])].time
        last = attempts[int(tried[int(np.argmax(t))])].time
    d = Destination(
        scope=scope,
        key=key,
        attempts=len(tried),
        outcomes=outcomes,
        failures=len(fails),
        failure_rate=len(fails) / len(tried) if len(tried) else 0.0,
        kinds=dict(kinds),
        stages=dict(stages),
        categories=dict(cats),
        buckets_total=total,
        buckets_failed=failed,
        intermittent=intermittent,
        mixed_windows=mixed,
        size_dependent=bool(stages.get("body") or stages.get("dot")) and _size_dependent_cols(cols, tried),
        first=first,
        last=last,
        verdict="healthy",
        domains=domains,
        providers=providers[:10],
    )
    if votes:
        d.verdict = max(votes, key=lambda c: (votes[c], -_PRIORITY.index(c)))
    return d, votes, by_class


def triage(attempts: Sequence[Attempt]) -> tuple[list[Destination], list[Verdict], datetime | None, int]:
    start, width, count = choose_buckets(a.time for a in attempts if a.outcome in TRIED)
    cols = _Columns(attempts, start, width, count)
    keyed: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        keyed["domain", a.domain or "(unknown)"].append(i)
        if a.outcome != "suppressed":
            if a.relay_host:
                keyed["mx", a.relay_host.lower()].append(i)
            if a.remote_ip:
                keyed["ip", a.remote_ip].append(i)
    dests: list[Destination] = []
    verdicts: list[Verdict] = []
    domain_verdict: dict[str, str] = {}
    results = []
    for (scope, key), members in keyed.items():
        d, votes, by_class = _destination(scope, key, np.array(members, dtype=np.int64), cols)
        dests.append(d)
        results.append((d, votes, by_class))
        if scope == "domain":
            domain_verdict[key] = d.verdict

    # rule 3: timeouts towards several unrelated providers point at our side of the path
    net_providers: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        if a.outcome == "network" and a.kind in _TIMEOUTISH:
            net_providers[provider_key(a)].append(a)
    our_side = len(net_providers) >= 2
    if our_side:
        for d, votes, by_class in results:
            if d.verdict == "remote_outage" and any(a.kind in _TIMEOUTISH for a in by_class["remote_outage"]):
                by_class["network_path"].extend(by_class.pop("remote_outage"))
                votes["network_path"] += votes.pop("remote_outage")
                d.verdict = "network_path"
                if d.scope == "domain":
                    domain_verdict[d.key] = d.verdict

    for d, votes, by_class in results:
        if d.verdict == "healthy":
            continue
        if d.scope == "mx":
            continue  # the MX view is in ``destinations``; verdicts name domains and odd IPs
        if d.scope == "ip" and all(domain_verdict.get(dom) == d.verdict for dom in d.domains):
            continue  # same story as its domain(s)
        support = by_class[d.verdict]
        ips = Counter(a.remote_ip for a in support if a.remote_ip)
        ip = ips.most_common(1)[0][0] if ips else None  # the address that failed most: capture there
        others = [f"{n} {c}" for c, n in votes.most_common() if c != d.verdict and n * 10 >= d.failures]
        summary = _summary(d.scope, d.key, d, d.verdict, votes[d.verdict])
        if others:
            summary += f" (other failures: {', '.join(others)})"
        verdicts.append(
            Verdict(
                scope=d.scope,
                key=d.key,
                verdict=d.verdict,
                summary=summary,
                next_step=next_step(d.verdict, d.scope, d.key, d, ip),
                confidence=votes[d.verdict] / max(1, sum(votes.values())),
                evidence=_evidence(support),
            )
        )
    if our_side:
        ev: list[Attempt] = []
        for prov in sorted(net_providers):
            ev.extend(net_providers[prov][:2])
        tried_all = sum(1 for a in attempts if a.outcome in TRIED)
        n_net = sum(len(v) for v in net_providers.values())
        verdicts.insert(
            0,
            Verdict(
                scope="sender",
                key="(this server)",
                verdict="network_path",
                summary=(
                    f"timeouts / lost connections without SMTP errors towards {len(net_providers)} unrelated "
                    f"providers ({', '.join(sorted(net_providers)[:6])}): {n_net} of {tried_all} tries — the "
                    "common factor is our side of the path"
                ),
                next_step=next_step("network_path", "sender", "", None, None),
                confidence=1.0,
                evidence=_evidence(ev[:MAX_EVIDENCE]),
            ),
        )
    dns_domains = {a.domain for a in attempts if a.outcome == "dns" and a.kind == "dns_temp" and a.domain}
    local = [a for a in attempts if a.outcome == "local"]
    if len(dns_domains) >= 3 or local:
        ev_a = local[:3] + [a for a in attempts if a.outcome == "dns" and a.domain in dns_domains][:2]
        what = []
        if local:
            what.append(
                f"{len(local)} local errors ({', '.join(sorted({a.kind or 'local' for a in local}))})"
            )
        if len(dns_domains) >= 3:
            what.append(f"temporary DNS failures for {len(dns_domains)} domains (our resolver?)")
        verdicts.append(
            Verdict(
                scope="sender",
                key="(this server)",
                verdict="local_config",
                summary="; ".join(what),
                next_step=next_step("local_config", "sender", "", None, None),
                confidence=1.0,
                evidence=_evidence(ev_a),
            )
        )
    order = {"domain": 0, "mx": 1, "ip": 2}
    dests.sort(key=lambda d: (order[d.scope], -d.failures, -d.failure_rate, d.key))
    verdicts.sort(key=lambda v: (v.scope != "sender", -_fails(dests, v), v.key))
    return dests, verdicts, start, width


def _fails(dests: Sequence[Destination], v: Verdict) -> int:
    for d in dests:
        if d.scope == v.scope and d.key == v.key:
            return d.failures
    return 0


def select(
    attempts: Iterable[Attempt], since: datetime | None, until: datetime | None, domain: str | None
) -> list[Attempt]:
    dom = domain.lower().rstrip(".") if domain else None
    out = []
    for a in attempts:
        if since is not None and a.time < since:
            continue
        if until is not None and a.time >= until:
            continue
        if dom is not None and not (a.domain == dom or (a.domain or "").endswith("." + dom)):
            continue
        out.append(a)
    return out


def as_utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    from datetime import UTC

    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


__all__ = ["as_utc", "choose_buckets", "failure_class", "select", "triage"]

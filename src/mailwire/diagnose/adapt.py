"""From the capture stages' results to diagnosis facts.

``analyze_captures`` gives per-session verdicts (``Judged``: SMTP session, TCP facts, verdict) and
capture-wide findings; ``compare_captures`` gives one record per hop between consecutive capture
points. This module reads the few facts the rules need from them, and knows their field names so
the rules do not have to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailwire.diagnose.facts import CaptureFact, FrameRef, HopFact, SessionFact

if TYPE_CHECKING:
    from mailwire.diagnose.engine import DiagnoseRun

CONFIDENCE = {"high": 0.9, "medium": 0.6, "low": 0.3}
LOSS_VERDICTS = frozenset(("size_dependent_loss", "random_loss", "directional_loss"))


def point_names(paths: list[str]) -> dict[str, str]:
    """Short names of the capture points: the file name without extensions ("sender", "edge"),
    with the parent directory added where two would be the same."""
    stems = {p: (Path(p).name.split(".", 1)[0] or Path(p).name) for p in paths}
    out = {}
    for p, st in stems.items():
        twins = [q for q, t in stems.items() if t == st]
        out[p] = st if len(twins) == 1 else f"{Path(p).parent.name or '.'}/{st}"
    return out


def point_name(path: str, names: dict[str, str] | None = None) -> str:
    """A capture point's short name (``names`` from :func:`point_names`, else the file's stem)."""
    if names and path in names:
        return names[path]
    name = Path(path).name
    return name.split(".", 1)[0] or name


def session_facts(result: Any, names: dict[str, str] | None = None) -> list[SessionFact]:
    """One :class:`SessionFact` per judged session of an ``AnalyzeResult``."""
    size_sig = any(f.id == "size_signature" and f.severity == "failure" for f in result.findings)
    out: list[SessionFact] = []
    for j in result.judged:
        s, t, v = j.session, j.tcp, j.verdict
        if s is None:
            continue
        rsts = list(getattr(t, "rsts", []))
        chains = list(getattr(t, "chains", []))
        tx = list(s.transactions)
        replies = [f"{r.code} {r.text}" for tr in tx for r in tr.replies[-2:]]
        if s.last_reply_line:
            replies.append(s.last_reply_line)
        if v.reply:  # the reply that decided the verdict goes first
            replies.insert(0, str(v.reply))
        out.append(
            SessionFact(
                capture=j.capture,
                point=point_name(j.capture, names),
                conn_id=int(t.conn_id),
                client=s.client,
                client_port=int(s.client_port),
                server=s.server,
                server_port=int(s.server_port),
                start_ns=int(s.start_ts_ns or t.first_ts_ns),
                end_ns=int(max(s.end_ts_ns, t.last_ts_ns)),
                outcome=v.outcome,
                category=v.category,
                summary=v.summary,
                confidence=CONFIDENCE.get(str(v.confidence), 0.5),
                evidence=[
                    FrameRef(e.capture or j.capture, int(e.frame), e.shows) for e in v.evidence if e.frame > 0
                ],
                middlebox_suspected=any(r.middlebox_suspected for r in rsts),
                rst_from=rsts[0].sender if rsts else None,
                large_lost=size_sig and v.outcome == "path_loss_timeout",
                retransmissions=sum(len(c.resends) for c in chains),
                first_frame=int(s.first_frame) if s.first_frame >= 0 else None,
                last_frame=int(max(s.last_frame, t.last_frame)) if s.last_frame >= 0 else None,
                message_ids=[tr.message_id for tr in tx if tr.message_id],
                recipients=[r for tr in tx for r in tr.rcpt_to],
                reply_texts=replies,
                transcript=[(f, 0, d, line) for f, d, line in s.transcript()],
                raw=j,
            )
        )
    return out


def capture_facts(result: Any, names: dict[str, str] | None = None) -> list[CaptureFact]:
    size_sig = [f for f in result.findings if f.id == "size_signature" and f.severity == "failure"]
    frag = any("frag" in e.shows.lower() for f in size_sig for e in f.evidence)
    out = []
    for cap in result.captures:
        outcomes: dict[str, int] = {}
        for j in result.judged:
            if j.capture == cap.path:
                outcomes[j.verdict.outcome] = outcomes.get(j.verdict.outcome, 0) + 1
        quality = [i if str(i).startswith(cap.path) else f"{cap.path}: {i}" for i in cap.issues[:10]]
        q = cap.quality or {}
        quality += [f"{cap.path}: {n}" for n in list(q.get("notes", []))[:5]]
        if float(q.get("capture_loss_pct", 0) or 0) > 0:
            quality.append(
                f"{cap.path}: the capture itself missed {q['capture_loss_pct']:.2f}% of the data "
                f"({q.get('acked_unseen', 0)} segments acknowledged but never captured) — capture loss, "
                f"not network loss"
            )
        mine = [f for f in result.findings if f.severity in ("failure", "warning")]
        out.append(
            CaptureFact(
                capture=cap.path,
                point=point_name(cap.path, names),
                sessions=len(cap.sessions),
                outcomes=outcomes,
                size_signature=bool(size_sig) and outcomes.get("path_loss_timeout", 0) > 0,
                icmp_frag_needed=frag,
                findings=[f.summary for f in mine],
                next_steps=[f.next_step for f in result.findings if f.next_step],
                quality=quality,
            )
        )
    return out


def hop_facts(result: Any, names: dict[str, str] | None = None) -> list[HopFact]:
    out = []
    for h in result.hops:
        v = h.get("verdict") or {}
        kind = str(v.get("kind", ""))
        # A loss verdict names the direction the lost packets travelled; name the hop's points in
        # that direction (captures given in reverse path order would otherwise read backwards).
        reverse = kind in LOSS_VERDICTS and v.get("direction") == "b_to_a"
        up_key, down_key = ("downstream", "upstream") if reverse else ("upstream", "downstream")
        lost = h.get("lost", {})
        sent = sum(int(d.get("sent", 0)) for d in lost.values())
        nlost = sum(int(d.get("lost", 0)) for d in lost.values())
        inj = sum(int(d.get("rst", 0)) for d in h.get("injected", {}).values())
        details = v.get("details") or {}
        small = large = sent_large = 0
        for dstats in lost.values():
            for cls in dstats.get("by_size_class", []):
                big = str(cls.get("class", "")).startswith(("1000", "1400", ">="))
                if big:
                    large += int(cls.get("lost", 0))
                    sent_large += int(cls.get("sent", 0))
                else:
                    small += int(cls.get("lost", 0))
        ev = []
        for e in h.get("evidence", []):
            what = str(e.get("what", ""))
            frames = [int(x) for x in e.get("frames", [])]
            if not frames or (kind != "no_loss" and what.startswith(("duplicates", "matched"))):
                continue
            shown = ", ".join(map(str, frames[:8])) + (" …" if len(frames) > 8 else "")
            count = int(e.get("count", len(frames)))
            ev.append(FrameRef(str(e.get("file", "")), frames[0], f"{what}: {count} frame(s) ({shown})"))
        out.append(
            HopFact(
                upstream=point_name(str(h.get(up_key, "")), names),
                downstream=point_name(str(h.get(down_key, "")), names),
                verdict=kind,
                summary=str(v.get("sentence", "")),
                loss_rate=(nlost / sent) if sent else 0.0,
                lost_packets=nlost,
                matched_packets=sent - nlost,
                injected=inj,
                lost_small=small,
                lost_large=large,
                sent_large=sent_large,
                icmp_frag_needed=bool(details.get("icmp_frag_needed_seen", False))
                if isinstance(details, dict)
                else False,
                evidence=ev,
                raw=h,
            )
        )
    return out


def run_captures(
    paths: list[str], run: DiagnoseRun, say: Callable[[str], None] = lambda _m: None, jobs: int | None = None
) -> None:
    """Analyse each capture, compare consecutive ones, and add the facts to ``run``."""
    from mailwire.capture.read import CaptureError
    from mailwire.compare import compare_captures
    from mailwire.smtp.pipeline import analyze_captures

    d, facts = run.diagnosis, run.facts
    readable = []
    for p in paths:
        if p != "-" and not Path(p).is_file():
            why = "is a directory, not a capture file" if Path(p).is_dir() else "no such capture file"
            d.warnings.append(f"{p}: {why}")
            continue
        readable.append(p)
    if not readable:
        d.stages["analyze"] = "skipped: no readable capture"
        return
    names = point_names(readable)
    seen = [0]

    def counted(n: int) -> None:
        seen[0] += n
        say(f"analysing {len(readable)} capture(s): {seen[0]:,} packets")

    try:
        result = analyze_captures(readable, progress=counted, jobs=jobs)
    except CaptureError as exc:
        d.stages["analyze"] = f"failed: {exc}"
        d.warnings.append(f"capture analysis failed: {exc}")
        return
    except Exception as exc:  # a stage's failure must not hide what the other inputs show
        d.stages["analyze"] = f"failed: {type(exc).__name__}: {exc}"
        d.warnings.append(f"capture analysis failed: {exc}")
        return
    # Read at all: frames decoded, or a valid capture that simply holds none.
    run.readable_inputs += sum(1 for c in result.captures if c.frames > 0 or not c.issues)
    run.analyses = {c.path: c for c in result.captures}
    run.analyses["__result__"] = result
    facts.sessions = session_facts(result, names)
    facts.captures = capture_facts(result, names)
    for c in facts.captures:
        d.warnings.extend(c.quality)
    n = len(facts.sessions)
    d.stages["analyze"] = f"ran: {len(readable)} capture(s), {n} SMTP session(s)"
    if len(readable) >= 2:
        say(f"comparing {len(readable)} capture points")
        try:
            cmp = compare_captures(readable)
        except Exception as exc:  # a stage's failure must not hide what the other inputs show
            d.stages["compare"] = f"failed: {type(exc).__name__}: {exc}"
            d.warnings.append(f"capture comparison failed: {exc}")
            return
        run.comparison = cmp
        facts.hops = hop_facts(cmp, names)
        d.hops = [
            {
                "upstream": h.upstream,
                "downstream": h.downstream,
                "verdict": h.verdict,
                "summary": h.summary,
                "lost_packets": h.lost_packets,
                "injected_rst": h.injected,
            }
            for h in facts.hops
        ]
        for h in cmp.hops:
            d.warnings.extend(
                f"{point_name(h['upstream'], names)} → {point_name(h['downstream'], names)}: {n}"
                for n in h.get("notes", [])
            )
        d.warnings.extend(str(n) for n in (getattr(cmp, "path_order", None) or {}).get("notes", []))
        d.stages["compare"] = f"ran: {len(facts.hops)} hop(s)"
    else:
        d.stages["compare"] = "skipped: one capture (give a second capture point to localise a loss)"


__all__ = ["capture_facts", "hop_facts", "point_name", "point_names", "run_captures", "session_facts"]

"""Compare captures hop by hop and assemble the result (JSON-ready, schema ``mailwire.compare/1``).

Theory of operation
-------------------
Captures are given in path order (first = closest to the sender). Each is digested on its own;
each consecutive pair is a hop, compared by ``match`` (connections), ``segments`` (clock, packets),
``hops`` (counts, changes) and ``verdict``. By default the order is checked, not changed: when the
direction of the client's traffic says a hop's captures are the other way round, a note says so.
With ``order="infer"`` the captures are first sorted by the TTLs of client-to-server packets they
share (highest TTL = nearest the client), and ``path_order`` says it was inferred and how.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailwire import jsonout
from mailwire.capture.table import PacketTable
from mailwire.compare.flows import TCP, Digest, digest
from mailwire.compare.hops import (
    DIRECTIONS,
    changes,
    connection_detail,
    direction_stats,
    endpoint_str,
    frames_of,
    icmp_too_big,
    next_downstream,
    proxy_detail,
    rows_by_conn,
)
from mailwire.compare.match import match_connections, packet_keys, unique_pairs
from mailwire.compare.segments import MATCHED, match_segments
from mailwire.compare.verdict import decide, sentence

SCHEMA_ID = "mailwire.compare/1"


@dataclass
class CompareResult:
    """The comparison of several captures of the same traffic, one entry per hop."""

    captures: list[dict[str, Any]]
    hops: list[dict[str, Any]]
    path_order: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (a dict of plain types; see ``schemas/compare.schema.json``)."""
        return {
            "schema": SCHEMA_ID,
            "captures": self.captures,
            "path_order": self.path_order,
            "hops": self.hops,
        }

    def dumps(self) -> str:
        return jsonout.dumps(self.to_json())


def _capture_info(d: Digest) -> dict[str, Any]:
    c = d.c
    return {
        "path": d.path,
        "packets": len(d),
        "tcp_packets": int(np.count_nonzero(c["proto"] == TCP)),
        "connections": int(d.n_conns),
        "first_ts": d.first_ts / 1e9 if len(d) else None,
        "last_ts": d.last_ts / 1e9 if len(d) else None,
        "truncated_payloads": int(d.truncated_payloads),
        "issues": d.issues[:20],
        "issue_count": len(d.issues),
    }


def _name(path: str) -> str:
    return Path(path).name if path != "-" else "stdin"


# Per-direction evidence: index key (also the evidence ``kind``), the sentence, and which capture's
# frames are cited ("up": where the packets were sent from, "down": where they were seen).
_EVIDENCE: tuple[tuple[str, str, str], ...] = (
    ("lost", "lost: sent at {up}, never seen at {down}", "up"),
    ("injected", "injected: seen at {down}, never sent at {up}", "down"),
    ("capture_loss", "capture loss: missing at {down} although acknowledged there", "up"),
    ("missed", "missed by the capture at {up}: only at {down}, amid packets seen at {up}", "down"),
    ("dup", "duplicates: more copies at {down} than sent at {up}", "down"),
)


def compare_hop(a: Digest, b: Digest) -> dict[str, Any]:
    """One hop: ``a`` upstream, ``b`` downstream."""
    use_payload = a.truncated_payloads == 0 and b.truncated_payloads == 0
    m = match_connections(a, b, use_payload=use_payload)
    inst, clock = match_segments(a, b, m, use_payload=use_payload)
    names = (_name(a.path), _name(b.path))
    dirs = {d: direction_stats(inst, a, b, d == "a_to_b") for d in DIRECTIONS}
    n_matched = int((m.a2b >= 0).sum())
    icmp = icmp_too_big(a) + icmp_too_big(b)
    findings = decide(dirs, n_matched, icmp, names)
    proxied = proxy_detail(a, b, m)
    unanswered = _unanswered(a, m)
    if findings[0].kind == "no_common_traffic":
        findings[0].details = {"downstream_packets": len(b), "unanswered": len(unanswered)}
    verdict = findings[0]
    evidence: list[dict[str, Any]] = []
    files = (a.path, b.path)
    for d, s in dirs.items():
        us, ds = s["_sides"]
        idx = s["_idx"]
        up, down = Path(files[us]).name, Path(files[ds]).name
        for key, template, held_by in _EVIDENCE:
            if not idx[key].size:
                continue
            evidence.append(
                {
                    "what": template.format(up=up, down=down),
                    "kind": key,
                    "direction": d,
                    "file": files[us] if held_by == "up" else files[ds],
                    "frames": frames_of(inst, a, b, idx[key]),
                    "count": int(idx[key].size),
                }
            )
            if key == "lost":
                nxt = next_downstream(inst, idx["lost"])
                nxt = np.unique(nxt[nxt >= 0])
                if nxt.size:
                    evidence.append(
                        {
                            "what": f"first packet that did arrive at {down} after each gap",
                            "kind": "after_gap",
                            "direction": d,
                            "file": files[ds],
                            "frames": sorted(frames_of(inst, a, b, nxt)),
                            "count": int(nxt.size),
                        }
                    )
    for item in icmp[:10]:
        evidence.append(
            {"what": f"ICMP too big (MTU {item['mtu']}) from {item['from']}", "file": item["file"],
             "frames": [item["frame"]], "count": 1}
        )  # fmt: skip
    if verdict.kind == "no_loss":
        ex = np.flatnonzero(inst.up & (inst.status == MATCHED))[:5]
        if ex.size:
            evidence.append(
                {
                    "what": "matched examples (upstream frames; their downstream partners follow)",
                    "file": a.path,
                    "frames": frames_of(inst, a, b, ex[inst.side[ex] == 0]),
                    "count": int(ex.size),
                }
            )
    for e in evidence:  # Wireshark display filter for the frames listed (open the file, paste it)
        e["filter"] = "frame.number in {" + ",".join(str(f) for f in e["frames"]) + "}"
    methods: dict[str, int] = {}
    for meth in m.method:
        if meth:
            methods[meth] = methods.get(meth, 0) + 1
    matched_pkts = int((inst.up & (inst.status == MATCHED)).sum())
    lost = {
        d: {k: v for k, v in s.items() if not k.startswith("_") and k not in ("injected", "injected_rst")}
        for d, s in dirs.items()
    }
    injected = {
        d: {
            "packets": s["injected"],
            "rst": s["injected_rst"],
            "duplicates_downstream": s["duplicates_downstream"],
        }
        for d, s in dirs.items()
    }
    notes: list[str] = []
    if not use_payload:
        notes.append("payloads truncated by the snaplen in one capture: packets matched on headers only")
    if clock.method == "one-way (bound)":
        notes.append("packets matched in one direction only: the clock offset assumes zero minimal delay")
    if clock.violation_ns > 0:
        notes.append(
            f"timestamps inconsistent by up to {clock.violation_ns / 1e6:.3f} ms "
            "(no offset makes every packet arrive after it left)"
        )
    if inst.late_pairs:
        notes.append(f"{inst.late_pairs} packets paired although seen downstream before upstream (clock)")
    unmatched_a = int((m.a2b < 0).sum())
    unmatched_b = int((m.b2a < 0).sum())
    hop: dict[str, Any] = {
        "upstream": a.path,
        "downstream": b.path,
        "clock_offset_s": clock.offset_ns / 1e9,
        "clock": {
            "method": clock.method,
            "drift_ppm": clock.drift * 1e6,
            "pairs": clock.pairs,
            "violation_s": clock.violation_ns / 1e9,
            "one_way_delay_s": clock.delays,
        },
        "matched": {
            "connections": n_matched,
            "packets": matched_pkts,
            "by_method": methods,
            "a_to_b": int(dirs["a_to_b"]["matched"]),
            "b_to_a": int(dirs["b_to_a"]["matched"]),
            "unmatched_connections_upstream": unmatched_a,
            "unmatched_connections_downstream": unmatched_b,
        },
        "lost": lost,
        "injected": injected,
        "changed": changes(inst, a, b),
        "icmp_too_big": icmp,
        "verdict": {
            "kind": verdict.kind,
            "direction": verdict.direction,
            "details": _plain(verdict.details),
            "sentence": sentence(verdict, names, dirs, proxied),
        },
        "findings": [
            {
                "kind": f.kind,
                "direction": f.direction,
                "details": _plain(f.details),
                "sentence": sentence(f, names, dirs, proxied),
            }
            for f in findings
        ],
        "evidence": evidence,
        "connections": connection_detail(inst, a, b, m),
        "proxied_connections": proxied,
        "unanswered_connections": unanswered,
        "notes": notes,
    }
    return hop


def _unanswered(a: Digest, m: Any) -> list[dict[str, Any]]:
    """Upstream connection attempts expected downstream (see ``match.unanswered_attempts``)."""
    if m.unanswered is None:
        return []
    out: list[dict[str, Any]] = []
    conns = np.flatnonzero(m.unanswered)[:100].tolist()
    if not conns:
        return out
    rows_of = rows_by_conn(a)
    for x in conns:
        rows = rows_of(x)
        out.append(
            {
                "upstream": endpoint_str(a, int(a.conn_row[x]), int(a.conn_client[x])),
                "packets": int(rows.size),
                "frames": [int(f) for f in a.c["frame"][rows[:20]]],
            }
        )
    return out


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _order_check(hops: list[dict[str, Any]]) -> list[str]:
    """Warn when a hop's captures look reversed (client traffic flowing downstream -> upstream)."""
    notes = []
    for h in hops:
        conns = h["connections"]
        if not conns:
            continue
        rev = sum(1 for c in conns if c["client_to_server"] == "b_to_a")
        if rev > len(conns) / 2:
            notes.append(
                f"{_name(h['upstream'])} sees most client traffic after {_name(h['downstream'])}: "
                "the captures may be in the reverse path order (kept as given)"
            )
    return notes


def infer_order(digests: Sequence[Digest]) -> tuple[list[int], str]:
    """Path order from TTLs: a packet client -> server (SYN, or from the SYN's sender) seen in
    several captures has its highest TTL nearest the client. Captures are sorted by their mean
    TTL rank over the packets they share with the others; ties keep the given order."""
    n = len(digests)
    keys = []
    for d in digests:
        c = d.c
        k = packet_keys(d, use_payload=False)
        to_server = c["fdir"] == d.conn_client[c["conn"]].astype(np.int64)
        keys.append((k[to_server], c["ttl"][to_server].astype(np.float64)))
    score = np.zeros(n)
    count = np.zeros(n)
    for i in range(n):
        for j in range(i + 1, n):
            ia, ib = unique_pairs(keys[i][0], keys[j][0])
            if ia.size == 0:
                continue
            diff = keys[i][1][ia] - keys[j][1][ib]  # > 0: i nearer the client
            score[i] += float(np.sign(diff).sum())
            score[j] -= float(np.sign(diff).sum())
            count[i] += ia.size
            count[j] += ia.size
    if not (score != 0).any():
        return list(range(n)), "TTLs do not tell the order (no router between the points): kept as given"
    order = sorted(range(n), key=lambda i: (-float(score[i]) / max(float(count[i]), 1.0), i))
    names = ", ".join(_name(digests[i].path) for i in order)
    return order, f"inferred from TTLs of client-to-server packets seen at several points: {names}"


def compare_digests(digests: Sequence[Digest], order: str = "given") -> CompareResult:
    """Compare digested captures hop by hop; ``order`` = "given" or "infer" (by TTL)."""
    source = "given"
    notes: list[str] = []
    if order == "infer" and len(digests) > 1:
        idx, why = infer_order(digests)
        notes.append(why)
        if idx != list(range(len(digests))):
            digests = [digests[i] for i in idx]
            source = "inferred"
    hops = [compare_hop(digests[i], digests[i + 1]) for i in range(len(digests) - 1)]
    notes += _order_check(hops)
    return CompareResult(
        captures=[_capture_info(d) for d in digests],
        hops=hops,
        path_order={"order": [d.path for d in digests], "source": source, "notes": notes},
    )


def compare_tables(captures: Sequence[tuple[str, Iterable[PacketTable]]]) -> CompareResult:
    """Compare captures given as (name, chunks) in path order (chunks of one capture each)."""
    return compare_digests([digest(tables, name) for name, tables in captures])


def compare_captures(paths: Sequence[str | Path], order: str = "given") -> CompareResult:
    """Read and compare capture files (at least two) in path order, sender's side first;
    ``order="infer"`` sorts them by TTL first (and says so in ``path_order``)."""
    from mailwire.capture.read import iter_tables

    if len(paths) < 2:
        raise ValueError("compare needs at least two captures")
    return compare_digests([digest(iter_tables(p), str(p)) for p in paths], order=order)


__all__ = [
    "SCHEMA_ID",
    "CompareResult",
    "compare_captures",
    "compare_digests",
    "compare_hop",
    "compare_tables",
]

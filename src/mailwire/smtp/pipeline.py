"""The analyze pipeline: capture → packet tables → TCP → SMTP sessions → verdicts → findings.

Theory of operation
-------------------
For each capture, :func:`analyze_capture` streams the packet tables (``mailwire.capture.read``)
through ``mailwire.tcp``'s analyzer, which calls back with reassembly events
(``StreamChunk`` / ``StreamGap``) as it goes. Each connection's first bytes decide whether it
is SMTP (:func:`mailwire.smtp.machine.looks_like_smtp`: a 220 greeting on any port, a client
opening with EHLO/HELO, SMTP inside an HTTP CONNECT tunnel) — connections to ports 25/587/2525
are kept even without payload so that refused or unanswered connection attempts get a verdict.
Events of SMTP connections go straight into a :class:`~mailwire.smtp.session.SessionBuilder`;
the first few events of an undecided connection are held (bounded) until its first bytes are
known. Alongside, a few per-frame facts the verdicts need and the TCP summary may not carry
(SYN/RST/FIN frames with TTL and IP id, ICMP errors quoting a connection) are collected with
column operations per chunk.

After the last chunk, each session's :class:`~mailwire.smtp.verdict.TcpFacts` is assembled from
the TCP result (connections, retransmission chains) and those facts, verdicts are decided, and
the capture-level findings computed over all captures together.

This module does I/O only through ``mailwire.capture.read``; it renders nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailwire.capture.addr import format_addr
from mailwire.capture.read import CaptureError, CaptureInfo, iter_tables
from mailwire.capture.table import PacketTable
from mailwire.smtp.findings import Finding, Judged, findings
from mailwire.smtp.machine import looks_like_smtp
from mailwire.smtp.session import SessionBuilder, SmtpSession
from mailwire.smtp.verdict import (
    SEVERITY,
    ChainFact,
    IcmpFact,
    Resend,
    RstFact,
    TcpFacts,
    ZeroWindowFact,
    decide,
)

SCHEMA_VERSION = "mailwire.analyze/1"
SMTP_PORTS = frozenset({25, 587, 2525})
_HOLD_EVENTS = 32  # events held per undecided connection
_HOLD_BYTES = 64 * 1024

TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10


@dataclass
class _Conn:
    """Per-connection SMTP detection state."""

    decided: bool = False
    smtp: bool = False
    held: list[Any] = field(default_factory=list)
    held_bytes: int = 0
    first: dict[str, bytes] = field(default_factory=lambda: {"c2s": b"", "s2c": b""})
    swap: bool = False
    builder: SessionBuilder | None = None
    detected_by: str = ""


@dataclass
class _Raw:
    """Compact per-TCP-frame columns kept for the verdicts (18 bytes a frame), plus ICMP errors."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    icmp: list[tuple[int, int, int, int, int, int, int, str]] = field(default_factory=list)
    # (frame, ts_ns, type, code, mtu, inner_sport, inner_dport, inner_dst)
    last_ts_ns: int = 0
    cols: dict[str, np.ndarray] = field(default_factory=dict)  # concatenated, with "dir"
    ttl_mode: dict[tuple[int, int], tuple[int, int]] = field(
        default_factory=dict
    )  # (conn, dir) -> (ttl, count)
    max_seg: dict[tuple[int, int], int] = field(default_factory=dict)

    def finish(self, frames: dict[str, np.ndarray]) -> None:
        names = ("frame", "ts_ns", "stream", "tcp_flags", "ttl", "ip_id", "payload_len")
        if self.parts:
            c = {k: np.concatenate([p[k] for p in self.parts]) for k in names}
        else:
            c = {k: np.zeros(0, dtype=np.int64) for k in names}
        self.parts = []
        # direction (0 client->server, 1 server->client) from the TCP stage, matched by frame number
        tf = frames.get("frame", np.zeros(0, dtype=np.int64))
        td = frames.get("direction", np.zeros(0, dtype=np.int8))
        idx = np.clip(np.searchsorted(tf, c["frame"]), 0, max(tf.shape[0] - 1, 0))
        ok = (
            (tf.shape[0] > 0) & (tf[idx] == c["frame"])
            if tf.shape[0]
            else np.zeros(c["frame"].shape[0], dtype=bool)
        )
        c["dir"] = np.where(ok, td[idx] if tf.shape[0] else 0, 0).astype(np.int64)
        self.cols = c
        if c["frame"].shape[0]:
            key = c["stream"].astype(np.int64) * 2 + c["dir"]
            pairs, counts = np.unique(np.stack([key, c["ttl"].astype(np.int64)]), axis=1, return_counts=True)
            for (k, t), n in zip(pairs.T.tolist(), counts.tolist(), strict=True):
                kk = (k // 2, k % 2)
                if kk not in self.ttl_mode or n > self.ttl_mode[kk][1]:
                    self.ttl_mode[kk] = (t, n)
            mx = np.zeros(int(key.max()) + 1, dtype=np.int64)
            np.maximum.at(mx, key, c["payload_len"].astype(np.int64))
            for k in np.nonzero(mx)[0].tolist():
                self.max_seg[(k // 2, k % 2)] = int(mx[k])


@dataclass
class CaptureAnalysis:
    path: str
    info: dict[str, Any]
    sessions: list[SmtpSession]
    facts: dict[int, TcpFacts]
    connections: list[dict[str, Any]]
    quality: dict[str, Any]
    issues: list[str]
    frames: int


@dataclass
class AnalyzeResult:
    """Everything ``mailwire analyze`` found, for rendering, JSON, and the diagnose stage."""

    captures: list[CaptureAnalysis]
    judged: list[Judged]
    findings: list[Finding]

    @property
    def sessions(self) -> list[SmtpSession]:
        return [j.session for j in self.judged if j.session is not None]

    def worst_first(self) -> list[Judged]:
        return sorted(
            self.judged, key=lambda j: (SEVERITY.get(j.verdict.outcome, 99), j.capture, j.tcp.conn_id)
        )

    def to_json(self) -> dict[str, Any]:
        sessions = []
        for j in self.judged:
            if j.session is not None:
                d = j.session.to_dict()
            else:
                d = _bare_session(j)
            d["verdict"] = j.verdict.to_dict()
            sessions.append(d)
        return {
            "schema": SCHEMA_VERSION,
            "captures": [
                {
                    "path": c.path,
                    "frames": c.frames,
                    "smtp_sessions": len(c.sessions),
                    "info": c.info,
                    "quality": c.quality,
                    "issues": c.issues,
                }
                for c in self.captures
            ],
            "connections": [dict(conn, capture=c.path) for c in self.captures for conn in c.connections],
            "smtp_sessions": sessions,
            "findings": [f.to_dict() for f in self.findings],
        }


def _bare_session(j: Judged) -> dict[str, Any]:
    s = SmtpSession(conn_id=j.tcp.conn_id, capture=j.capture)
    return s.to_dict()


# --- TCP adapter --------------------------------------------------------------------------------


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First attribute (or mapping key) of ``names`` present on ``obj``."""
    for n in names:
        if isinstance(obj, dict):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            return getattr(obj, n)
    return default


def _collect_raw(table: PacketTable, stream: np.ndarray, raw: _Raw) -> None:
    """Keep the few TCP columns the verdicts need (TCP rows only) and ICMP errors quoting TCP."""
    cols = table.columns
    if len(table) == 0:
        return
    raw.last_ts_ns = max(raw.last_ts_ns, int(cols["ts_ns"][-1]))
    rows = np.nonzero(stream >= 0)[0]
    if rows.shape[0]:
        raw.parts.append(
            {
                "frame": cols["frame"][rows],
                "ts_ns": cols["ts_ns"][rows],
                "stream": stream[rows].astype(np.int32),
                "tcp_flags": cols["tcp_flags"][rows].astype(np.int16),
                "ttl": cols["ttl"][rows].astype(np.int16),
                "ip_id": cols["ip_id"][rows].astype(np.int32),
                "payload_len": cols["payload_len"][rows].astype(np.int32),
            }
        )
    icmp = (cols["icmp_type"] >= 0) & (cols["inner_proto"] == 6)
    for i in np.nonzero(icmp)[0][:10000]:
        raw.icmp.append(
            (
                int(cols["frame"][i]),
                int(cols["ts_ns"][i]),
                int(cols["icmp_type"][i]),
                int(cols["icmp_code"][i]),
                int(cols["icmp_mtu"][i]),
                int(cols["inner_sport"][i]),
                int(cols["inner_dport"][i]),
                format_addr(int(cols["inner_dst_hi"][i]), int(cols["inner_dst_lo"][i])),
            )
        )


def _facts(
    conn: Any, conn_id: int, raw: _Raw, chains: list[Any], path: str, session: SmtpSession | None
) -> TcpFacts:
    t = TcpFacts(conn_id=conn_id, capture=path, capture_end_ts_ns=raw.last_ts_ns)
    role = {0: "client", 1: "server"}
    c = raw.cols
    mine = np.nonzero(c["stream"] == conn_id)[0] if c["frame"].shape[0] else np.zeros(0, dtype=np.int64)
    if mine.shape[0]:
        t.first_ts_ns = int(c["ts_ns"][mine[0]])
        t.last_ts_ns = int(c["ts_ns"][mine[-1]])
        t.last_frame = int(c["frame"][mine[-1]])
    flags = c["tcp_flags"][mine].astype(np.int64) if mine.shape[0] else np.zeros(0, dtype=np.int64)
    last_ip_id: dict[str, int] = {}
    for j in np.nonzero(flags & (TH_SYN | TH_FIN | TH_RST))[0].tolist():
        i = int(mine[j])
        frame, ts, fl = int(c["frame"][i]), int(c["ts_ns"][i]), int(c["tcp_flags"][i])
        d = int(c["dir"][i])
        who = role[d]
        ttl, ip_id = int(c["ttl"][i]), int(c["ip_id"][i])
        if fl & TH_SYN and not fl & TH_ACK:
            t.syn_frames.append(frame)
            t.handshake_seen = True
        elif fl & TH_SYN:
            if t.syn_ack_frame < 0:
                t.syn_ack_frame = frame
            t.handshake_seen = True
        if fl & TH_RST:
            usual_ttl, usual_n = raw.ttl_mode.get((conn_id, d), (-1, 0))
            # the sender's IP id just before the RST (ids of one host grow; a forged RST's rarely fit)
            before = mine[:j][
                (c["dir"][mine[:j]] == d) & ((c["tcp_flags"][mine[:j]].astype(np.int64) & TH_RST) == 0)
            ]
            prev = int(c["ip_id"][before[-1]]) if before.shape[0] else None
            near = None if prev is None or ip_id < 0 or prev < 0 else (ip_id - prev) % 65536 < 2048
            ttl_odd = usual_ttl >= 0 and ttl >= 0 and usual_n > 2 and abs(ttl - usual_ttl) > 1
            t.rsts.append(
                RstFact(
                    frame,
                    ts,
                    who,
                    ttl,
                    ip_id,
                    usual_ttl,
                    near,
                    bool(ttl_odd or (near is False and ip_id != 0)),
                )
            )
        elif fl & TH_FIN:
            t.fins.append((frame, who))
        if ip_id >= 0:
            last_ip_id[who] = ip_id
    has_payload_s2c = session is not None and session.bytes_s2c_sent > 0
    t.established = t.syn_ack_frame >= 0 or not t.syn_frames or has_payload_s2c
    if session is not None:
        ports = {(session.client_port, session.server_port)}
        for frame, ts, ty, code, mtu, isp, idp, _dst in raw.icmp:
            if (isp, idp) in ports:
                frag = (ty == 3 and code == 4) or ty == 2
                unreach = (ty == 3 and code != 4) or (ty == 1)
                t.icmp.append(IcmpFact(frame, ts, ty, code, mtu, frag, unreach))
    t.max_c2s_segment = raw.max_seg.get((conn_id, 0), 0)
    if conn is not None:
        mss = _get(conn, "mss_client", "mss", default=-1)
        if isinstance(mss, (list, tuple)):
            mss = mss[0]
        t.mss = int(mss) if mss is not None else -1
        for z in _get(conn, "zero_windows", "zero_window_episodes", default=[]) or []:
            sender_kdir = _get(z, "kdir", default=None)
            sender = _get(z, "sender", "by", default=None)
            if sender is None and sender_kdir is not None:
                sender = role.get(int(sender_kdir), "server")
            end_frame = _get(z, "end_frame", default=-1)
            t.zero_windows.append(
                ZeroWindowFact(
                    str(sender or "server"),
                    int(_get(z, "start_frame", "frame", default=-1)),
                    int(_get(z, "start_ns", "start_ts_ns", default=0) or 0),
                    int(end_frame if end_frame is not None else -1),
                    float(_get(z, "duration_s", default=0.0) or 0.0),
                    int(_get(z, "probes", default=0) or 0),
                )
            )
        acked = _get(conn, "client_acked", "orig_acked", "c2s_acked", default=None)
        if acked is not None:
            t.c2s_acked = int(acked)
    for ch in chains:
        if int(_get(ch, "stream", "conn_id", "conn", default=-1)) != conn_id:
            continue
        d = _get(ch, "direction", default=0)
        direction = d if isinstance(d, str) else ("c2s" if int(d) == 0 else "s2c")
        resends_raw = _get(ch, "resends", "retransmissions", default=[]) or []
        resends = []
        for r in resends_raw:
            resends.append(
                Resend(
                    int(_get(r, "frame", default=-1)),
                    int(_get(r, "ts_ns", default=0) or 0),
                    float(
                        _get(r, "interval_s", default=None)
                        or (int(_get(r, "interval_ns", default=0) or 0) / 1e9)
                    ),
                )
            )
        t.chains.append(
            ChainFact(
                direction,
                int(_get(ch, "orig_frame", "first_frame", "frame", default=-1)),
                int(_get(ch, "orig_ts_ns", "ts_ns", default=0) or 0),
                int(_get(ch, "size", "length", "seglen", "len", default=0) or 0),
                int(_get(ch, "seq_offset", "rel_seq", default=0) or 0),
                resends,
                bool(_get(ch, "acked", default=False)),
                int(_get(ch, "ack_frame", default=-1) or -1),
            )
        )
    return t


# --- the pipeline -------------------------------------------------------------------------------


def analyze_capture(path: str | Path, *, progress: Callable[[int], None] | None = None) -> CaptureAnalysis:
    """Analyse one capture file (see the module docstring)."""
    from mailwire.tcp.engine import TcpAnalyzer

    name = str(path)
    conns: dict[int, _Conn] = defaultdict(_Conn)

    def start(cid: int, c: _Conn) -> None:
        c.decided, c.smtp = True, True
        c.builder = SessionBuilder(
            SmtpSession(conn_id=cid, capture=name, detected_by=c.detected_by or "greeting")
        )
        for ev in c.held:
            deliver(c, ev)
        c.held = []

    def deliver(c: _Conn, ev: Any) -> None:
        assert c.builder is not None
        d = ev.direction
        if c.swap:
            d = "s2c" if d == "c2s" else "c2s"
        if hasattr(ev, "data"):
            c.builder.feed(d, ev.data, ev.frame, ev.ts_ns)
        else:
            c.builder.gap(d, ev.length, ev.frame, ev.ts_ns)

    def on_event(ev: Any) -> None:
        c = conns[ev.conn_id]
        if c.decided:
            if c.smtp:
                deliver(c, ev)
            return
        c.held.append(ev)
        data = getattr(ev, "data", b"")
        c.held_bytes += len(data)
        if data and not c.first[ev.direction]:
            c.first[ev.direction] = bytes(data[:512])
        f = c.first
        if looks_like_smtp(f["s2c"], f["c2s"]):
            c.detected_by = (
                "greeting"
                if f["s2c"][:3] == b"220"
                else ("tunnel" if f["c2s"][:8] == b"CONNECT " else "client_hello")
            )
            start(ev.conn_id, c)
        elif looks_like_smtp(f["c2s"], f["s2c"]) and f["c2s"][:3] == b"220":
            c.swap, c.detected_by = True, "greeting"
            start(ev.conn_id, c)
        elif (f["s2c"] and f["c2s"]) or len(c.held) > _HOLD_EVENTS or c.held_bytes > _HOLD_BYTES:
            c.decided = True  # decided "not by content"; the port may still make it SMTP later
            c.smtp = False
            c.held = c.held if len(c.held) <= _HOLD_EVENTS else []

    info = CaptureInfo(path=name)
    analyzer = TcpAnalyzer(on_stream=on_event)
    raw = _Raw()
    issues: list[str] = []
    n_frames = 0
    try:
        for table in iter_tables(path, info=info):
            ch = analyzer.feed(table)
            n_frames += len(table)
            _collect_raw(table, ch.stream, raw)
            issues.extend(str(i) for i in table.issues[:100])
            if progress is not None:
                progress(len(table))
    except CaptureError as exc:
        issues.append(str(exc))
    result = analyzer.finish()
    raw.finish(result.frames)
    conn_by_id = {
        int(_get(c, "stream", "conn_id", "id", default=i)): c for i, c in enumerate(result.connections)
    }
    sessions: list[SmtpSession] = []
    facts: dict[int, TcpFacts] = {}
    for cid, conn in sorted(conn_by_id.items()):
        c = conns.get(cid)
        server_port = int(_get(conn, "server_port", "resp_p", "dport", default=-1) or -1)
        is_smtp = c is not None and c.smtp
        if not is_smtp and server_port in SMTP_PORTS:
            if c is None:
                c = conns[cid]
            c.detected_by = "port"
            start(cid, c)
            is_smtp = True
        if not is_smtp or c is None or c.builder is None:
            continue
        s = c.builder.finish()
        s.client = str(_get(conn, "client", "orig_h", "client_addr", default=""))
        s.server = str(_get(conn, "server", "resp_h", "server_addr", default=""))
        s.client_port = int(_get(conn, "client_port", "orig_p", default=-1) or -1)
        s.server_port = server_port
        if c.swap:
            s.client, s.server, s.client_port, s.server_port = (
                s.server,
                s.client,
                s.server_port,
                s.client_port,
            )
        f = _facts(conn, cid, raw, result.chains, name, s)
        if f.c2s_acked is not None:
            s.bytes_c2s_acked = f.c2s_acked
        sessions.append(s)
        facts[cid] = f
    conn_json: list[dict[str, Any]] = []
    for c in result.connections:
        try:
            conn_json.append(c.to_json())
        except AttributeError:
            conn_json.append({"conn_id": _get(c, "stream", default=None)})
    try:
        quality = result.quality.to_json()
    except AttributeError:
        quality = {}
    cinfo = {"format": getattr(info, "format", ""), "compression": getattr(info, "compression", "")}
    return CaptureAnalysis(name, cinfo, sessions, facts, conn_json, quality, issues, n_frames)


def analyze_captures(
    paths: Iterable[str | Path], *, progress: Callable[[int], None] | None = None
) -> AnalyzeResult:
    """Analyse captures; verdicts per SMTP session and findings across all of them."""
    caps = [analyze_capture(p, progress=progress) for p in paths]
    judged: list[Judged] = []
    for cap in caps:
        for s in cap.sessions:
            t = cap.facts[s.conn_id]
            v = decide(s, t, cap.path)
            s.verdict = v.to_dict()
            judged.append(Judged(cap.path, s.server, s, t, v))
    return AnalyzeResult(caps, judged, findings(judged))


__all__ = ["SCHEMA_VERSION", "AnalyzeResult", "CaptureAnalysis", "analyze_capture", "analyze_captures"]

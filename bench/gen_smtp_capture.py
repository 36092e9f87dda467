#!/usr/bin/env python3
"""Seeded generator of large, realistic synthetic SMTP captures (pcap, Ethernet) for benchmarks.

Theory of operation
-------------------
The capture is taken on a busy outbound mail server (the "client" side of every SMTP session),
so its own segments appear when sent and the remote MX's segments when they arrive, one RTT later.

1. **Planning** (Python per session, NumPy per DATA body). Sessions start as a Poisson process
   and run concurrently: handshake, SMTP dialogue (pipelined or not), the message body cut into
   MSS-size segments paced by slow start and a per-session bottleneck rate, delayed ACKs every
   second segment, 250/221 and a FIN close. A share of sessions meets trouble: SYNs unanswered or
   lost once (1 s initial RTO), 4xx/5xx replies, a DATA segment lost with RTO retransmissions
   backing off exponentially (0.2 s + RTT, doubling) then go-back-N resends, or a blackhole that
   never heals until the MX answers ``421 4.4.2 … Error: timeout exceeded`` and closes.
   Every packet is a row of a few integer columns (time, session, direction, flags, relative
   seq/ack, and up to three payload pieces pointing into one shared byte source).
2. **Ordering**: all rows are sorted by time (stable), cut at ``--packets``.
3. **Header fields** (NumPy, vectorised): raw seq/ack from per-session ISNs, IP ids counted per
   direction, TTLs, windows, TCP timestamps.
4. **Assembly** (one compiled Numba loop): pcap record header, Ethernet, IPv4/IPv6, TCP with
   options, payload copy, IPv4 header checksum and TCP checksum, into one preallocated buffer
   written with a single ``write``.

A *truth sidecar* (``FILE.truth.json``) lists the sessions and every retransmission chain with
its frame numbers, timestamps and intended RTOs: the independent expectation tests compare tshark
and mailwire against. Addresses are documentation ranges only (RFC 5737, RFC 3849).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
C2S, S2C = 0, 1
# TCP option layouts: NOP NOP TS (32-byte header) / MSS SACK_PERM TS NOP WS (40) / NOP NOP TS NOP NOP
# SACK with one block (44)
OPT_TS, OPT_SYN, OPT_SACK = 0, 1, 2
TS_OPT_LEN = 12
DELACK = 0.040  # receiver delayed-ACK timer, s
RTO_MIN = 0.200  # Linux TCP_RTO_MIN, s
SYN_RTO = 1.0  # Linux initial RTO for SYNs, s
BASE_EPOCH_NS = 1_772_442_000 * 10**9  # 2026-03-02 09:00:00 UTC
POOL_RAW = 24 << 20  # random bytes behind the base64 attachment pool

I64 = npt.NDArray[np.int64]

COLS = ("t", "sess", "dir", "flags", "seq", "ack", "opt", "s0", "l0", "s1", "l1", "s2", "l2", "sle", "sre")
COL_DT = {
    "t": np.int64,
    "sess": np.int32,
    "dir": np.int8,
    "flags": np.uint8,
    "seq": np.int64,
    "ack": np.int64,
    "opt": np.uint8,
    "s0": np.int64,
    "l0": np.int32,
    "s1": np.int64,
    "l1": np.int32,
    "s2": np.int64,
    "l2": np.int32,
    "sle": np.int64,  # SACK block edges, relative to the peer's ISN (OPT_SACK rows only)
    "sre": np.int64,
}


@dataclass
class Session:
    """Per-session constants (addresses, ports, path properties) and what happened."""

    sid: int
    ver: int
    client: int  # index in the address table
    server: int
    sport: int
    t0: float  # start, s since capture base
    rtt: float
    gap: float  # bottleneck serialization time of a full-size frame, s
    mss_c: int
    mss_s: int
    ws_c: int
    ws_s: int
    outcome: str
    body_len: int = 0
    replies: list[str] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    mx: str = ""


class Plan:
    """Accumulates planned packets as column blocks; the index of a row is its emission order."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []
        self.pending: dict[str, list[int]] = {c: [] for c in COLS}
        self.count = 0
        self.blob = bytearray()  # session-specific payload text, placed after the pool
        self.chains: list[dict[str, Any]] = []

    def text(self, data: bytes) -> int:
        off = len(self.blob)
        self.blob += data
        return off

    def one(
        self,
        sess: int,
        t: float,
        d: int,
        flags: int,
        seq: int,
        ack: int,
        src: int = 0,
        ln: int = 0,
        opt: int = OPT_TS,
    ) -> int:
        p = self.pending
        p["t"].append(int(t * 1e9))
        p["sess"].append(sess)
        p["dir"].append(d)
        p["flags"].append(flags)
        p["seq"].append(seq)
        p["ack"].append(ack)
        p["opt"].append(opt)
        p["s0"].append(-1 - src if ln else 0)  # blob offsets are stored as -1 - offset
        p["l0"].append(ln)
        for c in ("s1", "l1", "s2", "l2", "sle", "sre"):
            p[c].append(0)
        self.count += 1
        return self.count - 1

    def _flush(self) -> None:
        if self.pending["t"]:
            self.blocks.append({c: np.asarray(v, dtype=COL_DT[c]) for c, v in self.pending.items()})
            self.pending = {c: [] for c in COLS}

    def many(self, cols: dict[str, Any], n: int) -> I64:
        self._flush()
        block = {}
        for c in COLS:
            v = cols.get(c, 0)
            block[c] = np.broadcast_to(np.asarray(v, dtype=COL_DT[c]), (n,)).copy()
        self.blocks.append(block)
        self.count += n
        return np.arange(self.count - n, self.count, dtype=np.int64)

    def columns(self) -> dict[str, np.ndarray]:
        self._flush()
        return {c: np.concatenate([b[c] for b in self.blocks]) for c in COLS}


# --- SMTP text ------------------------------------------------------------------------------------

DOMAINS = ["example.com", "example.net", "example.org"]
USERS = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "billing",
    "noreply",
]
QID_ALPHA = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"


def _qid(rng: np.random.Generator) -> str:
    return "".join(QID_ALPHA[i] for i in rng.integers(0, len(QID_ALPHA), 12))


def _mail_headers(rng: np.random.Generator, s: Session, sender: str, boundary: str) -> bytes:
    subj = ["Invoice", "Your order", "Meeting notes", "Monthly report", "Re: project", "Newsletter"]
    day = 2 + int(s.t0 // 86400)
    hh, mm, ss = 9 + int(s.t0 // 3600) % 14, int(s.t0 // 60) % 60, int(s.t0) % 60
    date = f"Mon, {day:02d} Mar 2026 {hh:02d}:{mm:02d}:{ss:02d} +0000"
    h = (
        f"Received: by relay.example.org (Postfix, from userid 1001)\r\n\tid {_qid(rng)}; {date}\r\n"
        f"Message-ID: <{rng.integers(1 << 40)}.{s.sid}@example.org>\r\n"
        f"Date: {date}\r\nFrom: {sender}\r\nTo: {', '.join(s.rcpts)}\r\n"
        f"Subject: {subj[s.sid % len(subj)]} #{s.sid}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"This is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        "Hello,\r\n\r\nplease find the document attached.\r\n\r\nBest regards\r\n\r\n"
        f'--{boundary}\r\nContent-Type: application/pdf; name="doc{s.sid}.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n\r\n"
    )
    return h.encode()


# --- timing of a bulk transfer --------------------------------------------------------------------


def _paced(nseg: int, t0: float, rtt: float, gap: float, iw: int) -> npt.NDArray[np.float64]:
    """Send times of ``nseg`` back-to-back segments: slow-start rounds one RTT apart (IW doubling
    each round), never faster than the bottleneck ``gap``; closed form, no per-segment loop."""
    i = np.arange(nseg, dtype=np.float64)
    k = np.floor(np.log2(i / iw + 1.0))
    start_k = iw * (np.exp2(k) - 1.0)
    r = k * rtt + (i - start_k) * gap
    return t0 + np.maximum.accumulate(r - i * gap) + i * gap


def _acks_for(
    t_send: npt.NDArray[np.float64], ends: I64, rtt: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float64], I64]:
    """Delayed ACKs, one per two delivered segments, arriving one (jittered) RTT later; strictly
    increasing by at least 2 µs so that rounding to µs keeps their order."""
    pairs = t_send[1::2]
    if pairs.size == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    ta = pairs + rtt * (1.0 + 0.03 * rng.random(pairs.size))
    j = np.arange(pairs.size) * 2e-6
    ta = np.maximum.accumulate(ta - j) + j
    return ta, ends[1::2]


# --- one session ----------------------------------------------------------------------------------


class Builder:
    """Plans the packets of sessions, one at a time."""

    def __init__(self, plan: Plan, rng: np.random.Generator, pool_len: int) -> None:
        self.p = plan
        self.rng = rng
        self.pool_len = pool_len

    # small helpers: t is the session clock (s), cs/ss the next relative seq of client/server
    def c(
        self, s: Session, t: float, flags: int, cs: int, ss: int, data: bytes = b"", opt: int = OPT_TS
    ) -> int:
        off = self.p.text(data) if data else 0
        return self.p.one(s.sid, t, C2S, flags, cs, ss, off, len(data), opt)

    def s(
        self, s: Session, t: float, flags: int, ss: int, cs: int, data: bytes = b"", opt: int = OPT_TS
    ) -> int:
        off = self.p.text(data) if data else 0
        return self.p.one(s.sid, t, S2C, flags, ss, cs, off, len(data), opt)

    def chain(
        self,
        s: Session,
        d: int,
        seq: int,
        length: int,
        idx: list[int],
        ts: list[float],
        kind: str,
        rto: list[float],
        dup_acks: list[int] | None = None,
    ) -> None:
        """Record a retransmission chain: rows of every transmission, their planned times, the
        retransmission timer value behind each resend (empty for go-back-N and fast retransmits)
        and, for fast retransmits, the rows of the duplicate ACKs that triggered and followed it."""
        self.p.chains.append(
            {
                "session": s.sid,
                "direction": "c2s" if d == C2S else "s2c",
                "rel_seq": seq,
                "len": length,
                "kind": kind,
                "rows": idx,
                "planned_ts": ts,
                "rto_s": rto,
                "dup_ack_rows": dup_acks or [],
            }
        )

    def session(self, s: Session) -> None:
        rng, rtt = self.rng, s.rtt
        t = 0.0
        cs = ss = 0  # next relative sequence numbers (SYN occupies 0)
        # --- handshake, with SYN loss variants
        syn_times = [0.0]
        if s.outcome == "syn_timeout":
            for k in range(4):  # Postfix gives up after 30 s: SYN at 0, 1, 3, 7, 15 s
                syn_times.append(syn_times[-1] + SYN_RTO * 2**k)
        elif s.outcome == "syn_lost_once" or (s.outcome == "delivered" and rng.random() < 0.004):
            syn_times.append(SYN_RTO)
        rows = [self.c(s, s.t0 + ts, SYN, 0, 0, opt=OPT_SYN) for ts in syn_times]
        if len(syn_times) > 1:
            rto = [SYN_RTO * 2**k for k in range(len(syn_times) - 1)]
            self.chain(s, C2S, 0, 0, rows, [s.t0 + x for x in syn_times], "syn_rto", rto)
        if s.outcome == "syn_timeout":
            return
        t = syn_times[-1] + rtt
        self.s(s, s.t0 + t, SYN | ACK, 0, 1, opt=OPT_SYN)
        cs, ss = 1, 1
        t += 30e-6 + 20e-6 * rng.random()
        self.c(s, s.t0 + t, ACK, cs, ss)
        t_ack_sent = t

        def reply(
            t_cmd: float, text: str, delay: float, flags: int = PSH | ACK, unacked: bool = True
        ) -> float:
            """The MX's reply to a command sent at t_cmd; a pure delayed ACK first if it thinks long
            and something is still unacknowledged (a second ACK would be a duplicate ACK)."""
            nonlocal ss
            if delay > DELACK and unacked:
                self.s(s, s.t0 + t_cmd + rtt + DELACK, ACK, ss, cs)
            data = text.encode()
            tr = t_cmd + rtt + delay
            self.s(s, s.t0 + tr, flags, ss, cs, data)
            ss += len(data) + (1 if flags & FIN else 0)
            s.replies.append(text[:3])
            return tr

        def command(t_prev: float, text: str) -> float:
            nonlocal cs
            tc = t_prev + 80e-6 + 400e-6 * rng.random()
            data = text.encode()
            self.c(s, s.t0 + tc, PSH | ACK, cs, ss, data)
            cs += len(data)
            return tc

        def client_close(t_prev: float) -> None:
            """Client acknowledges the MX's FIN with its own; the MX's last ACK one RTT later."""
            nonlocal cs
            tf = t_prev + 40e-6 + 60e-6 * rng.random()
            self.c(s, s.t0 + tf, FIN | ACK, cs, ss)
            cs += 1
            self.s(s, s.t0 + tf + rtt, ACK, ss, cs)

        # --- greeting (sent by the MX when the handshake completes)
        greet_delay = float(rng.choice([0.0005, 0.002, 0.02, 0.3, 2.0], p=[0.5, 0.25, 0.15, 0.07, 0.03]))
        t_g = t_ack_sent + greet_delay * (0.5 + rng.random())  # the MX's clock; arrival adds rtt
        if s.outcome == "421_greeting":
            data = f"421 4.7.0 {s.mx} Error: too many connections from client\r\n".encode()
            self.s(s, s.t0 + t_g + rtt, PSH | ACK, ss, cs, data)
            ss += len(data)
            self.s(s, s.t0 + t_g + rtt + 25e-6, FIN | ACK, ss, cs)
            ss += 1
            s.replies.append("421")
            client_close(t_g + rtt + 25e-6)
            return
        data = f"220 {s.mx} ESMTP Postfix\r\n".encode()
        t = t_g + rtt
        self.s(s, s.t0 + t, PSH | ACK, ss, cs, data)
        ss += len(data)
        s.replies.append("220")

        t = command(t, "EHLO relay.example.org\r\n")
        t = reply(
            t,
            f"250-{s.mx}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-ETRN\r\n250-STARTTLS\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n",
            0.0003 + 0.002 * rng.random(),
        )
        sender = f"{USERS[s.sid % len(USERS)]}@example.org"
        boundary = f"=_mw{s.sid:08x}"
        hdr = _mail_headers(rng, s, sender, boundary)
        tail = f"\r\n--{boundary}--\r\n.\r\n".encode()
        s.body_len = max(s.body_len, len(hdr) + len(tail))
        cmds = [f"MAIL FROM:<{sender}> SIZE={s.body_len}\r\n"] + [f"RCPT TO:<{r}>\r\n" for r in s.rcpts]
        rc = "250 2.1.5 Ok\r\n"
        if s.outcome == "550_rcpt":
            rc = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table\r\n"
        elif s.outcome == "450_rcpt":
            rc = "450 4.2.0 <{}>: Recipient address rejected: Greylisted, see http://example.com/grey\r\n"
        rcpt_replies = [rc.format(r) for r in s.rcpts]
        rejected = s.outcome in ("550_rcpt", "450_rcpt")
        if rng.random() < 0.75:  # PIPELINING: MAIL, RCPTs and DATA in one segment, replies in one
            t = command(t, "".join([*cmds, "DATA\r\n"]))
            last = (
                "554 5.5.1 Error: no valid recipients\r\n"
                if rejected
                else "354 End data with <CR><LF>.<CR><LF>\r\n"
            )
            t = reply(t, "".join(["250 2.1.0 Ok\r\n", *rcpt_replies, last]), 0.001 + 0.05 * rng.random())
        else:
            t = command(t, cmds[0])
            t = reply(t, "250 2.1.0 Ok\r\n", 0.0005 + 0.01 * rng.random())
            for cmd, rr in zip(cmds[1:], rcpt_replies, strict=True):
                t = command(t, cmd)
                t = reply(t, rr, 0.001 + 0.08 * rng.random())
            if not rejected:
                t = command(t, "DATA\r\n")
                t = reply(t, "354 End data with <CR><LF>.<CR><LF>\r\n", 0.0003)
        if rejected:
            t = command(t, "QUIT\r\n")
            t = reply(t, "221 2.0.0 Bye\r\n", 0.0002)
            self.s(s, s.t0 + t + 20e-6, FIN | ACK, ss, cs)
            ss += 1
            client_close(t + 20e-6)
            return

        # --- the message body
        t_end, closed, unacked = self.body(s, t + 150e-6, cs, ss, hdr, tail)
        cs += s.body_len
        if closed:  # stalled: the MX gave up with 421 4.4.2 and the client reset
            return
        final = f"250 2.0.0 Ok: queued as {_qid(rng)}\r\n"
        if s.outcome == "554_data":
            final = "554 5.7.1 Message rejected: spam content detected\r\n"
        elif s.outcome == "451_data":
            final = "451 4.7.1 Try again later: temporary local problem\r\n"
        # t_end is when the client sent its last data segment; the MX's queueing takes a while
        t = reply(t_end, final, 0.02 + 0.6 * rng.random() ** 2, unacked=unacked)
        t = command(t, "QUIT\r\n")
        t = reply(t, "221 2.0.0 Bye\r\n", 0.0002)
        self.s(s, s.t0 + t + 20e-6, FIN | ACK, ss, cs)
        ss += 1
        client_close(t + 20e-6)

    def fast_recovery(
        self,
        s: Session,
        emit: Any,
        emit_acks: Any,
        starts: I64,
        lens: I64,
        ends: I64,
        t_send: npt.NDArray[np.float64],
        cs: int,
    ) -> tuple[float, bool, bool]:
        """One DATA segment lost beyond the capture point, the rest delivered: every later segment
        draws an immediate duplicate ACK with a SACK block; the third one triggers a fast
        retransmit; the hole filled, one cumulative ACK covers all that arrived meanwhile."""
        rng, rtt = self.rng, s.rtt
        nseg = len(starts)
        k = int(rng.integers(2, nseg - 8))
        k -= k % 2  # ACK pairs before k complete
        rows = emit(starts, lens, t_send)  # every original is captured (the loss is downstream)
        ta, acked = _acks_for(t_send[:k], ends[:k], rtt, rng)
        emit_acks(ta, acked)
        # duplicate ACKs, one per segment arriving after the hole, in order, >= 2 µs apart
        t_prev = float(ta[-1]) if ta.size else float(t_send[k]) + rtt
        t_dup = np.maximum(t_send[k + 1 :] + rtt, t_prev + 2e-6 + np.arange(1, nseg - k) * 2e-6)
        t_dup = np.maximum.accumulate(t_dup - np.arange(t_dup.size) * 2e-6) + np.arange(t_dup.size) * 2e-6
        t_fr = float(t_dup[2]) + 10e-6  # the sender reacts to the third duplicate ACK at once
        j = int(np.searchsorted(t_send, t_fr, side="left")) - 1  # last original sent before it
        n_dup = j - k
        dup_rows = emit_acks(
            t_dup[:n_dup],
            np.full(n_dup, starts[k]),
            (np.full(n_dup, starts[k + 1]), ends[k + 1 : j + 1]),
        )
        r_fr = emit(starts[k : k + 1], lens[k : k + 1], np.array([t_fr]))[0].item()
        self.chain(
            s,
            C2S,
            cs + int(starts[k]),
            int(lens[k]),
            [int(rows[k]), r_fr],
            [float(t_send[k]) + s.t0, t_fr + s.t0],
            "fast_retransmit",
            [],
            [int(x) for x in dup_rows],
        )
        t_cum = max(t_fr + rtt, float(t_dup[n_dup - 1]) + 2e-6)  # hole filled: ACK at once
        emit_acks(np.array([t_cum]), ends[j : j + 1])
        if j == nseg - 1:
            return t_fr, False, False
        ta2, acked2 = _acks_for(t_send[j + 1 :], ends[j + 1 :], rtt, rng)
        ta2 = np.maximum(ta2, t_cum + 2e-6 + np.arange(ta2.size) * 2e-6)
        emit_acks(ta2, acked2)
        return float(t_send[-1]), False, bool((nseg - j - 1) % 2)

    def body(
        self, s: Session, t0: float, cs: int, ss: int, hdr: bytes, tail: bytes
    ) -> tuple[float, bool, bool]:
        """Plan the DATA stream; returns (time of the last client data segment, connection closed,
        last segment still unacknowledged: the MX's delayed ACK or its reply will cover it)."""
        rng, rtt, p = self.rng, s.rtt, self.p
        n = s.body_len
        mss = min(s.mss_c, s.mss_s) - TS_OPT_LEN
        h, tl = len(hdr), len(tail)
        pl = n - h - tl
        hb = p.text(hdr)
        tb = p.text(tail)
        pp = int(rng.integers(0, self.pool_len - pl)) if pl < self.pool_len else 0

        def emit(starts: I64, lens: I64, ts: npt.NDArray[np.float64]) -> I64:
            a, e = starts, starts + lens
            l0 = np.clip(np.minimum(e, h) - a, 0, None)
            b1, e1 = np.maximum(a, h), np.minimum(e, h + pl)
            l1 = np.clip(e1 - b1, 0, None)
            b2 = np.maximum(a, h + pl)
            l2 = np.clip(e - b2, 0, None)
            flags = np.where(e == n, PSH | ACK, ACK)
            cols = {
                "t": (ts * 1e9).astype(np.int64) + int(s.t0 * 1e9),
                "sess": s.sid,
                "dir": C2S,
                "flags": flags,
                "seq": cs + a,
                "ack": ss,
                "opt": OPT_TS,
                "s0": -1 - (hb + a),
                "l0": l0,
                "s1": pp + b1 - h,
                "l1": l1,
                "s2": -1 - (tb + b2 - h - pl),
                "l2": l2,
            }
            return p.many(cols, len(a))

        def emit_acks(ta: npt.NDArray[np.float64], acked: I64, sack: tuple[I64, I64] | None = None) -> I64:
            cols = {
                "t": (ta * 1e9).astype(np.int64) + int(s.t0 * 1e9),
                "sess": s.sid,
                "dir": S2C,
                "flags": ACK,
                "seq": ss,
                "ack": cs + acked,
                "opt": OPT_TS,
            }
            if sack is not None:
                cols.update(opt=OPT_SACK, sle=cs + sack[0], sre=cs + sack[1])
            return p.many(cols, ta.size) if ta.size else np.empty(0, dtype=np.int64)

        nseg = -(-n // mss)
        starts = np.arange(nseg, dtype=np.int64) * mss
        lens = np.minimum(mss, n - starts)
        ends = starts + lens
        t_send = _paced(nseg, t0, rtt, s.gap, 10)
        if s.outcome == "fast_recovered" and nseg >= 12:
            return self.fast_recovery(s, emit, emit_acks, starts, lens, ends, t_send, cs)
        lossy = s.outcome in ("rto_recovered", "stall_421") and nseg >= 4
        if not lossy:
            emit(starts, lens, t_send)
            ta, acked = _acks_for(t_send, ends, rtt, rng)
            emit_acks(ta, acked)
            return float(t_send[-1]), False, bool(nseg % 2)

        # Loss at segment k: k and everything sent before the sender runs out of ACK clock is lost
        k = int(rng.integers(1, max(2, nseg - 2)))
        k -= k % 2  # ACK pairs before k complete
        burst_end = int(np.searchsorted(t_send, t_send[k] + rtt, side="left"))
        burst_end = max(k + 1, min(burst_end, nseg))
        rows = emit(starts[:burst_end], lens[:burst_end], t_send[:burst_end])
        ta, acked = _acks_for(t_send[:k], ends[:k], rtt, rng)
        emit_acks(ta, acked)
        t_last_ack = float(ta[-1]) if ta.size else float(t_send[k])
        rto0 = RTO_MIN + rtt  # srtt + max(4 rttvar, rto_min), rttvar small on a steady path
        t_arm = max(t_last_ack, float(t_send[burst_end - 1]))
        chain_rows, chain_ts, rto = [int(rows[k])], [float(t_send[k]) + s.t0], []
        if s.outcome == "stall_421":
            # The MX hears nothing after segment k-1 and times out (smtpd_timeout), sends 421 and FIN
            t_mx_last = float(t_send[k - 1]) + rtt / 2 if k else t0
            timeout = float(rng.choice([30.0, 60.0, 120.0], p=[0.3, 0.5, 0.2]))
            t_421 = t_mx_last + timeout + rtt / 2
            tr, j = t_arm + rto0, 0
            while tr < t_421 - 1e-3:
                chain_rows.append(emit(starts[k : k + 1], lens[k : k + 1], np.array([tr]))[0].item())
                chain_ts.append(tr + s.t0)
                rto.append(rto0 * 2**j)
                j += 1
                tr += rto0 * 2**j
            self.chain(s, C2S, cs + int(starts[k]), int(lens[k]), chain_rows, chain_ts, "rto", rto)
            data = f"421 4.4.2 {s.mx} Error: timeout exceeded\r\n".encode()
            acked_cs = cs + int(starts[k])
            self.s(s, s.t0 + t_421, PSH | ACK, ss, acked_cs, data)
            s.replies.append("421")
            self.s(s, s.t0 + t_421 + 20e-6, FIN | ACK, ss + len(data), acked_cs)
            # the client's socket sees EOF with data unacknowledged: it resets
            self.c(s, s.t0 + t_421 + 80e-6, RST | ACK, cs + int(ends[burst_end - 1]), ss + len(data) + 1)
            return t_421, True, False

        # Recovered: the blackhole lasts 1-3 RTOs, then the retransmission of k gets through
        n_rtx = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        tr = t_arm + rto0
        for j in range(n_rtx):
            chain_rows.append(emit(starts[k : k + 1], lens[k : k + 1], np.array([tr]))[0].item())
            chain_ts.append(tr + s.t0)
            rto.append(rto0 * 2**j)
            if j < n_rtx - 1:
                tr += rto0 * 2 ** (j + 1)
        self.chain(s, C2S, cs + int(starts[k]), int(lens[k]), chain_rows, chain_ts, "rto", rto)
        t_ack_k = tr + rtt * 1.01  # in-order after a quiet spell: the receiver ACKs at once
        emit_acks(np.array([t_ack_k]), ends[k : k + 1])
        # Go-back-N in slow start from cwnd 2: k+1 .. burst_end-1 are resent, then new data
        rest = nseg - (k + 1)
        if rest == 0:
            return tr, False, False
        t2 = _paced(rest, t_ack_k + 30e-6, rtt, s.gap, 2)
        rows2 = emit(starts[k + 1 :], lens[k + 1 :], t2)
        for i in range(k + 1, burst_end):
            r = i - (k + 1)
            self.chain(
                s,
                C2S,
                cs + int(starts[i]),
                int(lens[i]),
                [int(rows[i]), int(rows2[r])],
                [float(t_send[i]) + s.t0, float(t2[r]) + s.t0],
                "go_back_n",
                [],
            )
        ta2, acked2 = _acks_for(t2, ends[k + 1 :], rtt, rng)
        ta2 = np.maximum(ta2, t_ack_k + 2e-6 + np.arange(ta2.size) * 2e-6)
        emit_acks(ta2, acked2)
        return float(t2[-1]), False, bool(rest % 2)


# --- assembly -------------------------------------------------------------------------------------


@njit(cache=True)
def _csum_add(buf: np.ndarray, start: int, length: int, acc: int) -> int:
    i = start
    end = start + length - 1
    while i < end:
        acc += (int(buf[i]) << 8) | int(buf[i + 1])
        i += 2
    if length & 1:
        acc += int(buf[start + length - 1]) << 8
    return acc


@njit(cache=True)
def _fold(acc: int) -> int:
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return (~acc) & 0xFFFF


@njit(cache=True)
def _put16(b: np.ndarray, o: int, v: int) -> None:
    b[o] = (v >> 8) & 0xFF
    b[o + 1] = v & 0xFF


@njit(cache=True)
def _put32(b: np.ndarray, o: int, v: int) -> None:
    b[o] = (v >> 24) & 0xFF
    b[o + 1] = (v >> 16) & 0xFF
    b[o + 2] = (v >> 8) & 0xFF
    b[o + 3] = v & 0xFF


@njit(cache=True)
def _assemble(
    out: np.ndarray,
    rec_off: np.ndarray,
    ts_sec: np.ndarray,
    ts_frac: np.ndarray,
    ver: np.ndarray,
    src_a: np.ndarray,
    dst_a: np.ndarray,
    addrs: np.ndarray,
    d: np.ndarray,
    macs: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    seq: np.ndarray,
    ack: np.ndarray,
    flags: np.ndarray,
    win: np.ndarray,
    ip_id: np.ndarray,
    ttl: np.ndarray,
    flow: np.ndarray,
    opt: np.ndarray,
    mss: np.ndarray,
    wscale: np.ndarray,
    tsval: np.ndarray,
    tsecr: np.ndarray,
    sack_le: np.ndarray,
    sack_re: np.ndarray,
    ps: np.ndarray,
    pl: np.ndarray,
    src: np.ndarray,
) -> None:
    n = rec_off.shape[0]
    for i in range(n):
        o = rec_off[i]
        tcp_hl = 40 if opt[i] == OPT_SYN else (44 if opt[i] == OPT_SACK else 32)
        ip_hl = 20 if ver[i] == 4 else 40
        plen = pl[i, 0] + pl[i, 1] + pl[i, 2]
        flen = 14 + ip_hl + tcp_hl + plen
        # pcap record header, little endian
        for k in range(4):
            out[o + k] = (ts_sec[i] >> (8 * k)) & 0xFF
            out[o + 4 + k] = (ts_frac[i] >> (8 * k)) & 0xFF
            out[o + 8 + k] = (flen >> (8 * k)) & 0xFF
            out[o + 12 + k] = (flen >> (8 * k)) & 0xFF
        e = o + 16
        for k in range(6):  # dst MAC, src MAC by direction
            out[e + k] = macs[1 - d[i], k]
            out[e + 6 + k] = macs[d[i], k]
        ip = e + 14
        if ver[i] == 4:
            _put16(out, e + 12, 0x0800)
            out[ip] = 0x45
            out[ip + 1] = 0
            _put16(out, ip + 2, ip_hl + tcp_hl + plen)
            _put16(out, ip + 4, ip_id[i])
            _put16(out, ip + 6, 0x4000)  # DF
            out[ip + 8] = ttl[i]
            out[ip + 9] = 6
            out[ip + 10] = 0
            out[ip + 11] = 0
            for k in range(4):
                out[ip + 12 + k] = addrs[src_a[i], k]
                out[ip + 16 + k] = addrs[dst_a[i], k]
            _put16(out, ip + 10, _fold(_csum_add(out, ip, 20, 0)))
            acc = _csum_add(out, ip + 12, 8, 0)
        else:
            _put16(out, e + 12, 0x86DD)
            _put32(out, ip, (6 << 28) | flow[i])
            _put16(out, ip + 4, tcp_hl + plen)
            out[ip + 6] = 6
            out[ip + 7] = ttl[i]
            for k in range(16):
                out[ip + 8 + k] = addrs[src_a[i], k]
                out[ip + 24 + k] = addrs[dst_a[i], k]
            acc = _csum_add(out, ip + 8, 32, 0)
        acc += 6 + tcp_hl + plen  # pseudo-header: protocol and TCP length
        tc = ip + ip_hl
        _put16(out, tc, sport[i])
        _put16(out, tc + 2, dport[i])
        _put32(out, tc + 4, seq[i])
        _put32(out, tc + 8, ack[i])
        out[tc + 12] = (tcp_hl // 4) << 4
        out[tc + 13] = flags[i]
        _put16(out, tc + 14, win[i])
        _put16(out, tc + 16, 0)
        _put16(out, tc + 18, 0)
        x = tc + 20
        if opt[i] == OPT_SYN:
            out[x] = 2
            out[x + 1] = 4
            _put16(out, x + 2, mss[i])
            out[x + 4] = 4
            out[x + 5] = 2
            x += 6
        else:
            out[x] = 1
            out[x + 1] = 1
            x += 2
        out[x] = 8
        out[x + 1] = 10
        _put32(out, x + 2, tsval[i])
        _put32(out, x + 6, tsecr[i])
        x += 10
        if opt[i] == OPT_SYN:
            out[x] = 1
            out[x + 1] = 3
            out[x + 2] = 3
            out[x + 3] = wscale[i]
            x += 4
        elif opt[i] == OPT_SACK:
            out[x] = 1
            out[x + 1] = 1
            out[x + 2] = 5
            out[x + 3] = 10
            _put32(out, x + 4, sack_le[i])
            _put32(out, x + 8, sack_re[i])
            x += 12
        for j in range(3):
            ln = pl[i, j]
            if ln > 0:
                s0 = ps[i, j]
                out[x : x + ln] = src[s0 : s0 + ln]
                x += ln
        acc = _csum_add(out, tc, tcp_hl + plen, acc)
        _put16(out, tc + 16, _fold(acc))


# --- driver ---------------------------------------------------------------------------------------

OUTCOMES = {  # share of sessions
    "delivered": 0.74,
    "fast_recovered": 0.05,
    "rto_recovered": 0.04,
    "stall_421": 0.02,
    "550_rcpt": 0.04,
    "450_rcpt": 0.03,
    "421_greeting": 0.02,
    "554_data": 0.02,
    "451_data": 0.01,
    "syn_timeout": 0.01,
    "syn_lost_once": 0.02,
}


def _addresses(rng: np.random.Generator) -> tuple[np.ndarray, list[str], int, int, int]:
    """Address table: client (relay) addresses first, then MX addresses; v4 rows use 4 bytes."""
    rows: list[bytes] = []
    names: list[str] = []
    for i in range(4):  # the relay's IPv4 and IPv6 addresses
        rows.append(bytes([192, 0, 2, 10 + i]) + bytes(12))
        names.append(f"192.0.2.{10 + i}")
    for i in range(4):
        a = bytes.fromhex(f"20010db8002500000000000000000{10 + i:03x}")
        rows.append(a)
        names.append(f"2001:db8:25::{10 + i:x}")
    n_client = len(rows)
    mx4 = rng.choice(np.arange(1, 255), size=120, replace=False)
    for net, hosts in ((bytes([198, 51, 100]), mx4[:60]), (bytes([203, 0, 113]), mx4[60:])):
        for h in hosts:
            rows.append(net + bytes([int(h)]) + bytes(12))
            names.append(".".join(str(b) for b in net) + f".{int(h)}")
    n_mx4 = len(rows) - n_client
    for _ in range(80):
        sub, host = int(rng.integers(0x100, 0xFFFF)), int(rng.integers(1, 0xFFFF))
        a = bytes.fromhex(f"20010db8{sub:04x}0000000000000000{host:04x}")
        rows.append(a)
        names.append(f"2001:db8:{sub:x}::{host:x}")
    arr = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 16).copy()
    return arr, names, n_client, n_mx4, len(rows) - n_client - n_mx4


def generate(
    packets: int,
    seed: int,
    out: Path,
    nano: bool = False,
    mss: int | None = None,
    body_median: float = 40_000.0,
    rate: float = 120.0,
    trouble: float = 1.0,
    quiet: bool = False,
) -> dict[str, Any]:
    """Write a capture of exactly ``packets`` frames (fewer only if sessions run out) and its truth."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    raw = rng.bytes(POOL_RAW)
    pool = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    pool_len = len(pool)
    addrs, addr_names, n_client, n_mx4, n_mx6 = _addresses(rng)
    plan = Plan()
    b = Builder(plan, rng, pool_len)
    sessions: list[Session] = []
    outcomes = list(OUTCOMES)
    probs = np.array([v if k == "delivered" else v * trouble for k, v in OUTCOMES.items()])
    probs = probs / probs.sum()
    t = 0.0
    used: set[tuple[int, int, int]] = set()
    next_port = [int(p) for p in rng.integers(32768, 60999, size=n_client)]
    target = int(packets * 1.15) + 200
    while plan.count < target:
        t += float(rng.exponential(1.0 / rate))
        ver = 6 if rng.random() < 0.3 else 4
        client = int(rng.integers(0, 4)) + (4 if ver == 6 else 0)
        server = n_client + (int(rng.integers(0, n_mx4)) if ver == 4 else n_mx4 + int(rng.integers(0, n_mx6)))
        while True:  # unique 4-tuples: Linux's ephemeral ports advance per destination
            next_port[client] = 32768 + (next_port[client] - 32768 + int(rng.integers(1, 9))) % (
                60999 - 32768
            )
            if (client, server, next_port[client]) not in used:
                break
        used.add((client, server, next_port[client]))
        rtt = float(np.clip(rng.lognormal(math.log(0.03), 0.7), 0.002, 0.3))
        mbps = float(np.exp(rng.uniform(math.log(5), math.log(400))))
        mbps = min(mbps, 200_000 * 8 / rtt / 1e6)  # in flight at most ~200 KB (below the receive window)
        base_mss = 1460 if ver == 4 else 1440
        mss_c = base_mss if mss is None else mss + TS_OPT_LEN
        mss_s = (base_mss if rng.random() < 0.9 else base_mss - 80) if mss is None else mss + TS_OPT_LEN
        body = int(min(rng.lognormal(math.log(body_median), 1.6), pool_len - 4096))
        outcome = outcomes[int(rng.choice(len(outcomes), p=probs))]
        if outcome in ("rto_recovered", "stall_421", "fast_recovered"):
            body = max(body, 16 * 1448)  # enough segments for a loss mid-body
        mx_name = f"mx{server - n_client + 1}.{DOMAINS[server % 3]}"
        n_rcpt = int(rng.choice([1, 1, 1, 2, 3]))
        rcpts = [
            f"{USERS[int(rng.integers(len(USERS)))]}{int(rng.integers(100))}@{DOMAINS[server % 3]}"
            for _ in range(n_rcpt)
        ]
        s = Session(
            sid=len(sessions),
            ver=ver,
            client=client,
            server=server,
            sport=next_port[client],
            t0=t,
            rtt=rtt,
            gap=1514 * 8 / (mbps * 1e6),
            mss_c=mss_c,
            mss_s=mss_s,
            ws_c=7,
            ws_s=int(rng.choice([7, 8, 9, 10])),
            outcome=outcome,
            body_len=body,
            rcpts=rcpts,
            mx=mx_name,
        )
        sessions.append(s)
        b.session(s)
    t_plan = time.perf_counter()

    cols = plan.columns()
    n_planned = len(cols["t"])
    t_ns = cols["t"] + BASE_EPOCH_NS
    if not nano:
        t_ns = (t_ns // 1000) * 1000
    order = np.argsort(t_ns, kind="stable")[:packets]
    n = len(order)
    frame_of_row = np.full(n_planned, -1, dtype=np.int64)
    frame_of_row[order] = np.arange(1, n + 1)
    c = {k: v[order] for k, v in cols.items()}
    ts = t_ns[order]

    # Per-session constants as arrays, gathered per packet
    S = len(sessions)
    sess = c["sess"]
    d = c["dir"].astype(np.int64)
    s_ver = np.array([x.ver for x in sessions], dtype=np.uint8)
    s_cli = np.array([x.client for x in sessions], dtype=np.int32)
    s_srv = np.array([x.server for x in sessions], dtype=np.int32)
    s_sport = np.array([x.sport for x in sessions], dtype=np.int64)
    isn = rng.integers(0, 1 << 32, size=(S, 2), dtype=np.int64)
    ts_base = rng.integers(0, 1 << 31, size=(S, 2), dtype=np.int64)
    id_base = rng.integers(0, 1 << 16, size=(S, 2), dtype=np.int64)
    s_ttl = np.stack([np.full(S, 64), rng.choice([64 - 14, 64 - 9, 128 - 17, 255 - 12, 64 - 21], size=S)], 1)
    s_win = np.stack([np.full(S, 502), rng.integers(400, 2048, size=S)], 1)
    s_mss = np.stack([[x.mss_c for x in sessions], [x.mss_s for x in sessions]], 1)
    s_ws = np.stack([[x.ws_c for x in sessions], [x.ws_s for x in sessions]], 1)
    s_rtt = np.array([x.rtt for x in sessions])
    flow = rng.integers(0, 1 << 20, size=(S, 2), dtype=np.int64)

    ver = s_ver[sess]
    src_a = np.where(d == C2S, s_cli[sess], s_srv[sess]).astype(np.int32)
    dst_a = np.where(d == C2S, s_srv[sess], s_cli[sess]).astype(np.int32)
    sport = np.where(d == C2S, s_sport[sess], 25)
    dport = np.where(d == C2S, 25, s_sport[sess])
    flags = c["flags"]
    seq = (isn[sess, d] + c["seq"]) & 0xFFFFFFFF
    ack = np.where(flags & ACK, (isn[sess, 1 - d] + c["ack"]) & 0xFFFFFFFF, 0)
    win = s_win[sess, d]
    syn = (flags & SYN) != 0
    win = np.where(syn, np.where(d == C2S, 64240, 65160), win)
    win = np.where(flags & RST, 0, win)
    # IP ids count up per (session, direction) in frame order
    key = sess.astype(np.int64) * 2 + d
    o2 = np.argsort(key, kind="stable")
    ks = key[o2]
    first = np.r_[0, np.flatnonzero(np.diff(ks)) + 1]
    cnt = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    ip_id = np.empty(n, dtype=np.int64)
    ip_id[o2] = cnt
    ip_id = (id_base[sess, d] + ip_id) & 0xFFFF
    ttl = s_ttl[sess, d]
    rel_ms = (ts - BASE_EPOCH_NS) // 1_000_000
    tsval = (ts_base[sess, d] + rel_ms) & 0xFFFFFFFF
    owd_ms = (s_rtt[sess] * 500).astype(np.int64)
    tsecr = np.where(syn & (flags & ACK == 0), 0, (ts_base[sess, 1 - d] + np.maximum(rel_ms - owd_ms, 0)))
    tsecr &= 0xFFFFFFFF

    # Payload source: the base64 pool first, then the session text blob (stored as -1 - offset)
    src = np.concatenate(
        [np.frombuffer(pool, dtype=np.uint8), np.frombuffer(bytes(plan.blob), dtype=np.uint8)]
    )
    ps = np.stack([c["s0"], c["s1"], c["s2"]], 1)
    ps = np.where(ps < 0, pool_len + (-1 - ps), ps)
    pl = np.stack([c["l0"], c["l1"], c["l2"]], 1).astype(np.int64)
    plen = pl.sum(1)
    hdr = 14 + np.where(ver == 4, 20, 40) + np.array([32, 40, 44])[c["opt"]]
    rec = 16 + hdr + plen
    rec_off = 24 + np.r_[0, np.cumsum(rec)[:-1]] if n else np.zeros(0, dtype=np.int64)
    total = 24 + int(rec.sum())
    buf = np.empty(total, dtype=np.uint8)
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    buf[:24] = np.frombuffer(
        np.array([magic], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 262144, 1], "<u4").tobytes(),
        dtype=np.uint8,
    )
    ts_sec = ts // 10**9
    ts_frac = ts % 10**9 if nano else (ts % 10**9) // 1000
    macs = np.array(
        [[0x02, 0x00, 0x5E, 0x10, 0x00, 0x19], [0x02, 0x00, 0x5E, 0x10, 0x00, 0x01]], dtype=np.int64
    )
    _assemble(
        buf,
        rec_off.astype(np.int64),
        ts_sec,
        ts_frac,
        ver.astype(np.int64),
        src_a,
        dst_a,
        addrs,
        d,
        macs,
        sport.astype(np.int64),
        dport.astype(np.int64),
        seq,
        ack,
        flags.astype(np.int64),
        win.astype(np.int64),
        ip_id,
        ttl.astype(np.int64),
        flow[sess, d],
        c["opt"].astype(np.int64),
        s_mss[sess, d].astype(np.int64),
        s_ws[sess, d].astype(np.int64),
        tsval,
        tsecr,
        (isn[sess, 1 - d] + c["sle"]) & 0xFFFFFFFF,  # SACK edges are in the peer's sequence space
        (isn[sess, 1 - d] + c["sre"]) & 0xFFFFFFFF,
        ps,
        pl,
        src,
    )
    t_asm = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        buf.tofile(f)
    t_write = time.perf_counter()

    planned = np.bincount(cols["sess"], minlength=S)
    truth = _truth(sessions, plan, frame_of_row, sess, planned, ts, isn, addr_names, n, nano, seed, total)
    Path(str(out) + ".truth.json").write_text(json.dumps(truth, indent=1))
    if not quiet:
        print(
            f"{out}: {n} packets, {total / 1e6:.1f} MB, {truth['summary']['sessions']} sessions; "
            f"plan {t_plan - t_start:.1f} s, assemble {t_asm - t_plan:.1f} s, write {t_write - t_asm:.1f} s",
            file=sys.stderr,
        )
    return truth


def _truth(
    sessions: list[Session],
    plan: Plan,
    frame_of_row: I64,
    sess: np.ndarray,
    planned: np.ndarray,
    ts: I64,
    isn: I64,
    names: list[str],
    n: int,
    nano: bool,
    seed: int,
    total: int,
) -> dict[str, Any]:
    """The sidecar: what the generator meant, in Wireshark's frame numbers."""
    counts = np.bincount(sess, minlength=len(sessions))
    first = np.full(len(sessions), -1, dtype=np.int64)
    last = np.full(len(sessions), -1, dtype=np.int64)
    u, i_first = np.unique(sess, return_index=True)
    first[u] = i_first + 1
    u, i_last = np.unique(sess[::-1], return_index=True)
    last[u] = n - i_last
    out_s = []
    for s in sessions:
        if counts[s.sid] == 0:
            continue
        out_s.append(
            {
                "id": s.sid,
                "ip_version": s.ver,
                "client": names[s.client],
                "server": names[s.server],
                "sport": s.sport,
                "dport": 25,
                "mx": s.mx,
                "outcome": s.outcome,
                "replies": s.replies,
                "body_bytes": s.body_len,
                "rtt_s": round(s.rtt, 6),
                "packets": int(counts[s.sid]),
                "first_frame": int(first[s.sid]),
                "last_frame": int(last[s.sid]),
                "truncated": bool(counts[s.sid] < planned[s.sid]),
            }
        )
    chains = []
    dup_acks: list[int] = []
    for ch in plan.chains:
        dups = [f for f in (int(frame_of_row[r]) for r in ch["dup_ack_rows"]) if f > 0]
        dup_acks += dups
        fr = [int(frame_of_row[r]) for r in ch["rows"]]
        kept = [i for i, f in enumerate(fr) if f > 0]
        if len(kept) < 2 or kept[0] != 0:
            continue
        sid = ch["session"]
        d = 0 if ch["direction"] == "c2s" else 1
        fts = [int(ts[fr[i] - 1]) for i in kept]
        planned_ts = [ch["planned_ts"][i] for i in kept]
        chains.append(
            {
                "session": sid,
                "direction": ch["direction"],
                "kind": ch["kind"],
                "seq": int((isn[sid, d] + ch["rel_seq"]) & 0xFFFFFFFF),
                "len": ch["len"],
                "frames": [fr[i] for i in kept],
                "ts_ns": fts,
                # what the generator meant, before rounding timestamps to the file's resolution
                "planned_intervals_s": [round(b - a, 9) for a, b in itertools.pairwise(planned_ts)],
                "rto_s": [round(x, 9) for x in ch["rto_s"][: len(kept) - 1]],
                "dup_ack_frames": dups,
            }
        )
    oc = dict(Counter(str(x["outcome"]) for x in out_s))
    return {
        "generator": "bench/gen_smtp_capture.py",
        "seed": seed,
        "packets": n,
        "bytes": total,
        "timestamp_resolution": "ns" if nano else "us",
        "summary": {
            "sessions": len(out_s),
            "outcomes": oc,
            "retransmission_chains": len(chains),
            "retransmitted_frames": sum(len(c["frames"]) - 1 for c in chains),
            "duplicate_acks": len(dup_acks),
        },
        "sessions": out_s,
        "retransmissions": chains,
        "duplicate_ack_frames": sorted(dup_acks),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--packets", type=int, default=1_000_000, help="frames to write (default 1 000 000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (same seed, same bytes)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/smtp-1m.pcap"), help="output pcap")
    ap.add_argument("--nano", action="store_true", help="nanosecond pcap (default: microsecond)")
    ap.add_argument("--mss", type=int, default=None, help="TCP payload per full segment (default: 1448/1428)")
    ap.add_argument("--body-median", type=float, default=40_000.0, help="median message size, bytes")
    ap.add_argument("--rate", type=float, default=120.0, help="new sessions per second")
    ap.add_argument(
        "--trouble",
        type=float,
        default=1.0,
        help="multiplier on the share of troubled sessions (loss, stalls, 4xx/5xx, SYN loss)",
    )
    a = ap.parse_args(argv)
    if a.packets < 1:
        ap.error("--packets must be >= 1")
    if a.mss is not None and not 64 <= a.mss <= 1448:
        ap.error("--mss must be within 64..1448")
    generate(a.packets, a.seed, a.out, a.nano, a.mss, a.body_median, a.rate, a.trouble)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Postfix delivery records → attempts (reference §2).

Owns the payload grammar of the ``smtp``/``lmtp``/``error``/``retry`` status lines, the
informational lines of non-final MX hosts (``connect to …``, ``conversation with … timed out``,
``lost connection with …``, ``host … said``/``refused to talk to me``, ``SSL_connect error``),
and the ``qmgr``/``cleanup`` lines that give sender, size, message-id and expiry.

Theory of operation: an ``smtp`` process handles one delivery request at a time, so the
informational lines of one process (logging host + pid) belong to the next status line of the
same process; they wait in a small per-process buffer and are completed (recipient, domain,
queue id) and emitted just before that status line. Per-queue-id facts live in a bounded table
that forgets an id at ``removed`` (short ids are reused).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mailwire.maillog.classify import Cause, postfix_reason
from mailwire.maillog.records import Attempt, message_state

# daemons whose status lines are outbound delivery attempts
OUTBOUND = frozenset(("smtp", "lmtp", "error", "retry"))
# daemons that write status lines we leave out of outbound triage (local delivery)
LOCAL_AGENTS = frozenset(("local", "virtual", "pipe", "discard"))
DAEMONS = (
    OUTBOUND
    | LOCAL_AGENTS
    | frozenset(
        (
            "qmgr",
            "cleanup",
            "smtpd",
            "pickup",
            "bounce",
            "postscreen",
            "anvil",
            "master",
            "scache",
            "dnsblog",
            "tlsmgr",
            "postqueue",
            "postsuper",
            "sendmail",
            "trivial-rewrite",
            "verify",
            "proxymap",
            "tlsproxy",
            "postdrop",
            "postlogd",
            "flush",
            "showq",
            "oqmgr",
            "qmqpd",
            "spawn",
            "postmap",
            "postfix-script",
        )
    )
)

_intern = sys.intern  # domains, hosts, IPs repeat across attempts: keep one copy each
KEEP = OUTBOUND | frozenset(("qmgr", "cleanup"))
QID = r"(?P<qid>[0-9A-F]{5,}|[0-9A-Za-z]{12,})"
_QID_MSG = re.compile(QID + r": (?P<rest>.*)$", re.DOTALL)
# the usual shape in one match (reference §2.2); anything else goes through the tolerant tokenizer
# An address may legally hold ">" and "," (quoted local parts, hostile input), so an address ends
# at the first ">, " that the next field key follows, not at the first ">" or ",". Written as
# runs of [^>] with a look-ahead only at each ">": as fast as [^>,]* on ordinary addresses.
_TO = r"(?P<to>[^>]*(?:>(?!, (?:orig_to=<|relay=))[^>]*)*)"
_ORIG = r"(?P<orig>[^>]*(?:>(?!, relay=)[^>]*)*)"
_STRICT = re.compile(
    r"to=<" + _TO + r">, (?:orig_to=<" + _ORIG + r">, )?relay=(?P<relay>[^,]+), "
    r"(?:conn_use=(?P<cu>\d+), )?"
    r"delay=(?P<delay>[\d.]+), delays=(?P<a>[\d.]+)/(?P<b>[\d.]+)/(?P<c>[\d.]+)/(?P<d>[\d.]+), "
    r"(?:dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}), )?status=(?P<status>[A-Za-z\-]+)(?: \((?P<reason>.*)\))?$",
    re.DOTALL,
)
_STRICT_Q = re.compile(QID + r": " + _STRICT.pattern, re.DOTALL)
_KEYS = r"(?:orig_to|relay|conn_use|delay|delays|dsn|status)="
_STATUS = re.compile(
    r"to=(?:<(?P<to>.*?)>|(?P<bare>[^<,]*)), (?=" + _KEYS + r")"
    r"(?P<fields>.*?)status=(?P<status>[A-Za-z\-]+)(?: \((?P<reason>.*)\))?$",
    re.DOTALL,
)
_FIELD = re.compile(r"(\w+)=(<.*?>|[^,]*)(?:, (?=\w+=)|, $|$)")
_RELAY = re.compile(r"(?P<host>[^\[]*)\[(?P<ip>[^\]]*)\](?::(?P<port>\d+))?$")
_QMGR = re.compile(
    QID + r": (?:from=<(?P<from>.*?)>, (?:size=(?P<size>\d+), nrcpt=\d+|status=(?P<st>[\w\-]+?),)"
    r"|(?P<rm>removed$))"
)
_CLEANUP = re.compile(QID + r": message-id=<?([^>\s]*)>?")
_INFO_PREFIXES = (
    "connect to ",
    "conversation with ",
    "lost connection with ",
    "host ",
    "SSL_connect error to ",
    "Cannot start TLS",
    "TLS is required",
    "Server certificate not verified",
)
_NOTES = ("Trusted ", "Untrusted ", "Verified ", "Anonymous ", "warning:", "statistics:")
_DELIVERY_HINT = re.compile(r"\bstatus=|\bto=<|connect to |lost connection with |conversation with ")

MAX_QIDS = 500_000  # bound on remembered queue ids (oldest forgotten first)
MAX_PENDING = 64  # bound on waiting info lines per smtp process
MAX_PENDING_PROCS = 10_000  # bound on processes with waiting info lines (oldest emitted unlinked)


def _domain(addr: str | None) -> str | None:
    if not addr or "@" not in addr:
        return None
    return _intern(addr.rsplit("@", 1)[1].lower().rstrip(".")) or None


def _float(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _delays(s: str | None) -> tuple[float, float, float, float] | None:
    try:
        a, b, c, d = (float(x) for x in (s or "").split("/"))
    except ValueError:
        return None
    return a, b, c, d


class PostfixParser:
    """Feeds Postfix payloads; appends finished attempts to ``out``."""

    def __init__(self, out: list[Attempt]) -> None:
        self.out = out
        # qid → [sender, size, message_id, last recipient, last domain]
        self.qids: dict[str, list[str | int | None]] = {}
        self.pending: dict[tuple[str | None, str | None], list[Attempt]] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _qstate(self, qid: str) -> list[str | int | None]:
        return message_state(self.qids, qid, 5, MAX_QIDS)

    def _attempt(
        self,
        t: datetime,
        file: str,
        lineno: int,
        cause: Cause,
        qid: str | None,
        host: str | None,
        prog: str,
        pid: str | None,
        raw: str,
        reason: str,
    ) -> Attempt:
        # Constructed with the few fields every attempt has, the rest set only when present: a
        # dataclass call with two dozen keywords costs three times as much, on every status line.
        a = Attempt(t, file, lineno, "postfix", cause.outcome, qid)
        if cause.host:
            a.relay_host = _intern(cause.host)
        if cause.ip:
            a.remote_ip = _intern(cause.ip)
        a.remote_port = cause.port
        a.kind = cause.kind
        a.stage = cause.stage
        if cause.reply_code is not None:
            a.reply_code = cause.reply_code
            a.enhanced_code = cause.enhanced_code
            a.reply_text = cause.reply_text
            a.reply_command = cause.reply_command
        a.category = cause.category
        a.provider = cause.provider
        a.blocklist = cause.blocklist
        a.possible_duplicate = cause.possible_duplicate
        a.logging_host = _intern(host) if host else None
        a.program = _intern(prog)
        a.pid = int(pid) if pid else None
        if cause.outcome != "delivered":  # a delivery keeps its reply in reply_text
            a.reason = reason
            a.raw = raw  # the line itself, as evidence
        if qid is not None:
            st = self.qids.get(qid)
            if st is not None:
                a.sender = st[0]  # type: ignore[assignment]
                a.size = st[1]  # type: ignore[assignment]
                a.message_id = st[2]  # type: ignore[assignment]
        return a

    # -- entry point -----------------------------------------------------------------------------
    def feed(
        self,
        when: Callable[[], datetime],
        file: str,
        lineno: int,
        host: str | None,
        prog: str,
        daemon: str,
        pid: str | None,
        msg: str,
        raw: str,
    ) -> int:
        """Returns 1 when the line was used, 0 when it carries nothing for triage, 2 when it looked
        like a delivery record but could not be parsed."""
        if daemon == "qmgr":
            q = _QMGR.match(msg)
            if q is None:
                m = _QID_MSG.match(msg)
                if m is not None and m.group("rest").startswith("to="):
                    # qmgr's own deferrals: "mail transport unavailable" and the like (local)
                    return self._status(
                        when, file, lineno, host, prog, daemon, pid, m.group("qid"), m.group("rest"), raw
                    )
                return 0
            qid, sender, size, st_, removed = q.groups()
            if removed:
                self.qids.pop(qid, None)
                return 1
            st = self._qstate(qid)
            st[0] = sender
            if size:
                st[1] = int(size)
                return 1
            if st_ in ("expired", "force-expired"):
                a = self._attempt(when(), file, lineno, Cause("expired"), qid, host, prog, pid, raw, msg)
                a.mta_action = st_
                a.recipient = st[3]  # type: ignore[assignment]
                a.domain = st[4]  # type: ignore[assignment]
                self.out.append(a)
                return 1
            return 0
        if daemon == "cleanup":
            c = _CLEANUP.match(msg)
            if c is None:
                return 0
            self._qstate(c.group(1))[2] = c.group(2) or None
            return 1
        if daemon not in OUTBOUND:
            return 0  # smtpd, pickup, bounce, anvil …: nothing for outbound triage
        if msg.startswith(_NOTES):
            return 0  # TLS session notes, warnings: cheap exit before any regex
        sq = _STRICT_Q.match(msg)
        if sq is not None:  # the usual status line, queue id and all fields in one match
            g = sq.groups()
            return self._status(when, file, lineno, host, prog, daemon, pid, g[0], "", raw, g[1:])
        m = _QID_MSG.match(msg)
        oqid: str | None = None
        rest = msg
        if m is not None:
            oqid, rest = m.group("qid"), m.group("rest")
        if rest.startswith("to="):
            return self._status(when, file, lineno, host, prog, daemon, pid, oqid, rest, raw)
        if rest.startswith(_INFO_PREFIXES):
            return self._info(when, file, lineno, host, prog, pid, oqid, rest, raw)
        return (
            2
            if _DELIVERY_HINT.search(rest)
            and not rest.startswith(("warning:", "Untrusted", "Trusted", "Verified", "Anonymous"))
            else 0
        )

    def _status(
        self,
        when: Callable[[], datetime],
        file: str,
        lineno: int,
        host: str | None,
        prog: str,
        daemon: str,
        pid: str | None,
        qid: str | None,
        rest: str,
        raw: str,
        pre: tuple[Any, ...] | None = None,
    ) -> int:
        if pre is None:
            s = _STRICT.match(rest)
            pre = s.groups() if s is not None else None
        if pre is not None:
            to, orig, relay, cu, dl, da, db, dc, dd, dsn, status, reason = pre
            delay: float | None = float(dl)
            delays: tuple[float, float, float, float] | None = (float(da), float(db), float(dc), float(dd))
        else:
            m = _STATUS.match(rest)
            if m is None:
                return 2
            status = m.group("status")
            to = m.group("to") if m.group("to") is not None else m.group("bare")
            fields = dict(_FIELD.findall(m.group("fields")))
            reason = m.group("reason")
            relay = fields.get("relay", "none")
            orig = fields.get("orig_to")
            cu = fields.get("conn_use")
            dsn = fields.get("dsn")
            delay = _float(fields.get("delay"))
            delays = _delays(fields.get("delays"))
        if status in ("deliverable", "undeliverable"):
            return 0  # address verification probe: no mail was sent
        reason = reason or ""
        if daemon == "lmtp" and "[" in relay and "/" in relay:
            return 0  # LMTP over a UNIX socket: local delivery
        cause = postfix_reason(reason, "sent" if status == "sent" else status.lower())
        r = _RELAY.match(relay)
        if r is not None:
            rhost, rip, rport = r.groups()
            if cause.ip is None or cause.outcome == "delivered" or cause.ip == rip:
                cause.host = rhost or cause.host
                cause.ip = rip or cause.ip
                if rport:
                    cause.port = int(rport)
        a = self._attempt(when(), file, lineno, cause, qid, host, prog, pid, raw, reason)
        a.recipient = to or None
        a.domain = _domain(to)
        if orig:
            a.orig_recipient = orig.strip("<>")
        a.mta_action = _intern(status.lower())
        a.dsn = _intern(dsn) if dsn else None
        a.delay = delay
        a.delays = delays
        if cu and cu.isdigit():
            a.conn_use = int(cu)
        if qid is not None:
            st = self._qstate(qid)
            st[3] = a.recipient
            st[4] = a.domain
        # the waiting info lines of this process belong to this delivery request
        pend = self.pending.pop((host, pid), None)
        if pend:
            last = pend[-1]
            if last.remote_ip is not None and last.remote_ip == a.remote_ip and last.outcome == a.outcome:
                # same server, same failure: the info line (e.g. SSL_connect error) is a detail
                # of the try this status line reports, not a try of its own
                pend.pop()
            for p in pend:
                if p.queue_id is None:
                    p.queue_id = qid
                    if qid is not None:
                        st2 = self.qids.get(qid)
                        if st2 is not None:
                            p.sender, p.size, p.message_id = st2[0], st2[1], st2[2]  # type: ignore[assignment]
                if p.queue_id == qid:
                    p.recipient = a.recipient
                    p.domain = a.domain
                self.out.append(p)
        self.out.append(a)
        return 1

    def _info(
        self,
        when: Callable[[], datetime],
        file: str,
        lineno: int,
        host: str | None,
        prog: str,
        pid: str | None,
        qid: str | None,
        rest: str,
        raw: str,
    ) -> int:
        if rest.startswith("host ") and " said: " not in rest and " refused to talk to me: " not in rest:
            return 0
        cause = postfix_reason(rest, None)
        if cause.kind == "unrecognized":
            return 2
        a = self._attempt(when(), file, lineno, cause, qid, host, prog, pid, raw, rest)
        a.final = False
        a.mta_action = "info"
        key = (host, pid)
        pend = self.pending.get(key)
        if pend is None:
            if len(self.pending) >= MAX_PENDING_PROCS:  # processes that never logged a status line
                self.out.extend(self.pending.pop(next(iter(self.pending))))
            self.pending[key] = [a]
        elif len(pend) < MAX_PENDING:
            pend.append(a)
        else:
            self.out.append(a)  # a runaway process: emit without linking rather than grow
        return 1

    def flush(self) -> None:
        """Emit info lines whose status line never came (end of input)."""
        for pend in self.pending.values():
            for p in pend:
                if p.queue_id is not None and p.domain is None:
                    st = self.qids.get(p.queue_id)
                    if st is not None:
                        p.recipient, p.domain = st[3], st[4]  # type: ignore[assignment]
                self.out.append(p)
        self.pending.clear()

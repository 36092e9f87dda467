"""Sendmail delivery records → attempts (reference §4.1).

Owns the ``to=… stat=…`` lines of ``sendmail``/``sm-mta``/``sm-msp-queue`` (one attempt per
listed recipient), the ``from=`` lines (sender, size, message-id), ``timeout waiting for input
from HOST during client PHASE`` (the stage of the next timeout of that queue id) and the
``Cannot send message for N days`` expiry notices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from mailwire.maillog.classify import Cause, command_stage, errno_cause, reply_cause
from mailwire.maillog.records import Attempt, message_state

MAX_QIDS = 200_000  # bound on remembered queue ids (oldest forgotten first)

_QID = re.compile(r"(?P<qid>[0-9A-Za-z]{8,20}): (?P<rest>.*)$", re.DOTALL)
_TO = re.compile(r"to=(?P<to>.+?), (?=(?:ctladdr|delay|xdelay|mailer|pri|relay|dsn|reply|stat)=)")
_RELAY = re.compile(
    r"\brelay=(?P<host>[^\s,\[]*?)\.? ?(?:\[(?P<ip>[^\]]+)\])?(?: \[(?P<ip2>[^\]]+)\])?(?:,|$)"
)
_DSN = re.compile(r"\bdsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3})")
_REPLYF = re.compile(r"\breply=(?P<reply>.*?), stat=")
_STAT = re.compile(r"\bstat=(?P<stat>.*)$", re.DOTALL)
_XDELAY = re.compile(r"\bxdelay=(?P<x>[\d+:]+)")
_DELAY = re.compile(r"\bdelay=(?P<d>[\d+:]+)")
# a sender may hold ">" or ",": it ends at the ">, size=" that follows it
_FROM = re.compile(r"from=<?(?P<from>.*?)>?, size=(?P<size>\d+)")
_MSGID = re.compile(r"\bmsgid=<?(?P<mid>[^>,\s]*)>?")
_TIMEOUT_LINE = re.compile(r"timeout waiting for input from (?P<host>\S+) during client (?P<phase>.+?)\s*$")
_EXPIRED = re.compile(r"Cannot send message for \d+ (?:days?|hours?)")

_STAT_RULES: tuple[tuple[re.Pattern[str], str, str | None], ...] = tuple(
    (re.compile(p), outcome, kind)
    for p, outcome, kind in (
        (
            r"^Deferred: Connection timed out with (?P<host>\S+?)\.?(?: during (?P<phase>.+))?$",
            "network",
            "timeout",
        ),
        (r"^Deferred: Connection refused by (?P<host>\S+?)\.?$", "network", "connect_refused"),
        (r"^Deferred: Connection reset by (?P<host>\S+?)\.?$", "network", "reset"),
        (r"^Deferred: (?P<host>\S+?): (?:No route to host|Host \S+ is down)", "network", "host_unreachable"),
        (r"^Deferred: (?P<host>\S+?): Network is unreachable", "network", "net_unreachable"),
        (r"Name server: (?P<host>\S+?): host name lookup failure", "dns", "dns_temp"),
        (r"Host unknown|Name server: (?P<host>\S+?): host not found|no data known", "dns", "dns_perm"),
    )
)
_PHASES = {
    "greeting": "greeting",
    "EHLO": "helo",
    "HELO": "helo",
    "LHLO": "helo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA 354": "data",
    "DATA status": "dot",
    "QUIT": "quit",
    "RSET": "rset",
    "probe": "rset",
}


def _split_rcpts(to: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in to:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [r.strip().strip("<>") for r in out if r.strip()]


def stat_cause(stat: str, reply: str | None, dsn: str | None, host: str | None = None) -> Cause:
    if stat.startswith("Sent"):
        c = Cause("delivered")
        i, j = stat.find("("), stat.rfind(")")
        if 0 <= i < j:
            rc = reply_cause(stat[i + 1 : j], "end of data", None, None)
            if rc.reply_code:
                c.reply_code, c.enhanced_code, c.reply_text = rc.reply_code, rc.enhanced_code, rc.reply_text
        return c
    if reply:
        return reply_cause(reply, None, host, None)
    for pat, outcome, kind in _STAT_RULES:
        m = pat.search(stat)
        if m is not None:
            d = m.groupdict()
            if outcome == "network" and kind != "timeout":
                c = errno_cause(stat)
                c.host = d.get("host")
                return c
            phase = d.get("phase")
            stage = _PHASES.get(phase.strip(), command_stage(phase)) if phase else None
            return Cause(outcome, kind, stage, host=d.get("host"))
    body = stat[10:] if stat.startswith("Deferred: ") else stat
    if body[:3].isdigit() and body[:1] in "45":
        return reply_cause(body, None, host, None)
    if _EXPIRED.search(stat):
        return Cause("expired")
    if stat.startswith("User unknown") or stat.startswith("Service unavailable"):
        c = reply_cause(("550 " if stat.startswith("User") else "554 ") + stat, None, None, None)
        return c
    klass = dsn[:1] if dsn else ("4" if stat.startswith("Deferred") or stat == "queued" else "5")
    if stat == "queued":
        return Cause("local", "queued")
    return Cause(
        "rejected" if klass == "5" else "deferred", "unrecognized", category="other", reply_text=stat
    )


def _hms(s: str) -> float | None:
    try:
        days = 0
        if "+" in s:
            d, s = s.split("+", 1)
            days = int(d)
        h, m, sec = (int(x) for x in s.split(":"))
        return days * 86400 + h * 3600 + m * 60 + sec
    except ValueError:
        return None


class SendmailParser:
    def __init__(self, out: list[Attempt]) -> None:
        self.out = out
        self.qids: dict[str, list[str | int | None]] = {}  # qid → [sender, size, msgid, stage]

    def _state(self, qid: str) -> list[str | int | None]:
        return message_state(self.qids, qid, 4, MAX_QIDS)

    def feed(
        self,
        when: Callable[[], datetime],
        file: str,
        lineno: int,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        raw: str,
    ) -> int:
        m = _QID.match(msg)
        if m is None:
            return 0
        qid, rest = m.group("qid"), m.group("rest")
        if rest.startswith("to="):
            return self._to(when, file, lineno, host, prog, pid, qid, rest, raw)
        if rest.startswith("from="):
            f = _FROM.match(rest)
            if f is not None:
                st = self._state(qid)
                st[0], st[1] = f.group("from"), int(f.group("size"))
                i = _MSGID.search(rest)
                if i is not None:
                    st[2] = i.group("mid")
                return 1
            return 0
        t = _TIMEOUT_LINE.search(rest)
        if t is not None:
            phase = t.group("phase")
            self._state(qid)[3] = _PHASES.get(phase, command_stage(phase))
            return 1
        if _EXPIRED.search(rest):
            st = self._state(qid)
            a = Attempt(
                time=when(),
                file=file,
                line=lineno,
                mta="sendmail",
                outcome="expired",
                queue_id=qid,
                sender=st[0],  # type: ignore[arg-type]
                size=st[1],  # type: ignore[arg-type]
                message_id=st[2],  # type: ignore[arg-type]
                logging_host=host,
                program=prog,
                pid=int(pid) if pid else None,
                reason=rest,
                raw=raw,
                mta_action="expired",
            )
            self.out.append(a)
            return 1
        return 0

    def _to(
        self,
        when: Callable[[], datetime],
        file: str,
        lineno: int,
        host: str | None,
        prog: str,
        pid: str | None,
        qid: str,
        rest: str,
        raw: str,
    ) -> int:
        tm = _TO.match(rest)
        sm = _STAT.search(rest)
        if tm is None or sm is None:
            return 2
        stat = sm.group("stat").strip()
        if stat.startswith("queued") or "mailer=local" in rest or "mailer=prog" in rest:
            return 0
        dsn_m = _DSN.search(rest)
        dsn = dsn_m.group("dsn") if dsn_m else None
        rp = _REPLYF.search(rest)
        rl = _RELAY.search(rest)
        rhost = rip = None
        if rl is not None:
            rhost = rl.group("host") or None
            rip = rl.group("ip2") or rl.group("ip")
            if rhost is None and rl.group("ip2"):
                rhost = rl.group("ip")
        cause = stat_cause(stat, rp.group("reply") if rp else None, dsn, rhost)
        st = self.qids.get(qid)
        if cause.outcome == "network" and cause.kind == "timeout" and cause.stage is None and st and st[3]:
            cause.stage = st[3]  # type: ignore[assignment]
        t = when()
        xd = _XDELAY.search(rest)
        dl = _DELAY.search(rest)
        for rcpt in _split_rcpts(tm.group("to")):
            a = Attempt(
                time=t,
                file=file,
                line=lineno,
                mta="sendmail",
                outcome=cause.outcome,
                queue_id=qid,
                recipient=rcpt,
                domain=rcpt.rsplit("@", 1)[1].lower() if "@" in rcpt else None,
                relay_host=rhost or cause.host,
                remote_ip=rip,
                kind=cause.kind,
                stage=cause.stage,
                dsn=dsn,
                reply_code=cause.reply_code,
                enhanced_code=cause.enhanced_code,
                reply_text=cause.reply_text,
                category=cause.category,
                provider=cause.provider,
                blocklist=cause.blocklist,
                mta_action=stat.split(":")[0].split(" ")[0].lower(),
                logging_host=host,
                program=prog,
                pid=int(pid) if pid else None,
                reason=stat,
                raw=None if cause.outcome == "delivered" else raw,
                delay=_hms(dl.group("d")) if dl else None,
            )
            if xd is not None:
                a.delays = None
            if st is not None:
                a.sender, a.size, a.message_id = st[0], st[1], st[2]  # type: ignore[assignment]
            self.out.append(a)
        return 1

    def flush(self) -> None:
        return None

"""Exim main-log delivery records → attempts (reference §3).

Owns the flags ``=>``/``->``/``>>`` (delivered), ``**`` (failed), ``==`` (deferred), the
per-host lines the smtp transport writes before them (``H=host [ip] Connection refused``,
``H=host [ip]: SMTP timeout after …``; pre-4.85 without ``H=``), the ``<=`` arrival lines (size,
message-id), and syslog's split long lines (``[1/3]``). Classification is by *text*, never by
the negative errno numbers, which moved between Exim versions.

Theory of operation: host lines of one message id wait until that message's next delivery
line. The delivery line repeats the last host's failure (with or without ``H=``), so the last
waiting host line with the same address is merged into it; earlier host lines are non-final
tries of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from mailwire.maillog.classify import Cause, command_stage, errno_cause, reply_cause
from mailwire.maillog.records import Attempt, message_state

EXIM_ID = r"(?P<id>[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11,12}-[0-9A-Za-z]{4}))"
_LINE = re.compile(EXIM_ID + r" (?P<rest>.*)$", re.DOTALL)
_INNER_TS = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{3})?(?: [+-]\d{4})?(?: \[\d+\])? ")
_SPLIT = re.compile(r"\[(?P<n>\d+)[/\\](?P<m>\d+)\] ?(?P<text>.*)$", re.DOTALL)
_HOSTF = re.compile(r"\bH=(?P<host>\S+) \[(?P<ip>[^\]]+)\](?::(?P<port>\d+))?(?P<reuse>\*)?")
_ADDR = re.compile(r"(?P<addr>\S+)(?: <(?P<orig>\S*?)>(?=\s|$))?")  # orig may hold ">"
_DEFER = re.compile(r" defer \((?P<errno>-?\d+|dd)\)(?::? ?(?P<text>.*))?$", re.DOTALL)
_CONF = re.compile(r' C="(?P<c>(?:[^"\\]|\\.)*)"')
_SIZE = re.compile(r"\bS=(?P<s>\d+)")
_MSGID = re.compile(r"\bid=(?P<mid>\S+)")
_HOSTLINE = re.compile(
    r"(?:H=)?(?P<host>\S+) \[(?P<ip>[^\]]+)\](?::(?P<port>\d+))?\*?:? (?P<msg>.+)$", re.DOTALL
)

_REPLY = re.compile(
    r"SMTP error from remote (?:mail server|mailer) after (?P<cmd>.+?): "
    r"(?:host (?P<host>\S+) \[(?P<ip>[^\]]+)\]: )?"
    r"(?P<reply>[2-5]\d\d[ -].*|[2-5]\d\d)$",
    re.DOTALL,
)
_TIMEOUT = re.compile(
    r"SMTP timeout (?:while connected to (?P<host>\S+) \[(?P<ip>[^\]]+)\] )?after (?:pipelined )?(?P<cmd>.+?)"
    r"(?: \(\d+ bytes written\))?(?:: .*)?$",
    re.DOTALL,
)
_CLOSED = re.compile(
    r"Remote host (?:(?P<host>\S+) \[(?P<ip>[^\]]+)\] )?closed connection in response to "
    r"(?:pipelined )?(?P<cmd>.+?)"
    r"(?: \(EHLO response was: .*\))?$",
    re.DOTALL,
)
_SENDFAIL = re.compile(r"smtp send to (?P<host>\S+) \[(?P<ip>[^\]]+)\] failed: (?P<err>.+)$")
_GIVEUP = re.compile(r"have been failing for a long time|retry timeout exceeded")
_RETRY = re.compile(r"retry time not (?:yet )?reached")
_DNS = re.compile(
    r"Unrouteable address|lookup of host .* failed|all MXs point to missing|missing MX"
    r"|no IP address found for host|host lookup did not complete|Unrouteable"
)
_ERRNO_TEXT = re.compile(
    r"Connection timed out|Connection refused|No route to host|Network is unreachable"
    r"|Connection reset by peer|Host is unreachable"
)
_LOOP = re.compile(r"lowest numbered MX record points to local host")

MAX_IDS = 200_000
MAX_PENDING = 32
MAX_SPLIT = 1024


def _cmd_stage(cmd: str) -> str | None:
    c = cmd.strip()
    low = c.lower()
    if low.startswith("initial connection"):
        return "greeting"
    if low.startswith("sending data block"):
        return "body"
    if low.startswith("end of data"):
        return "dot"
    return command_stage(c)


def exim_message(text: str, host: str | None, ip: str | None) -> Cause | None:
    """Classify the message part of an Exim deferral/failure/host line; None if not a failure text."""
    if _GIVEUP.search(text):
        return Cause("expired", host=host, ip=ip)
    if _RETRY.search(text):
        return Cause("suppressed", "retry_time_not_reached", host=host, ip=ip)
    m = _REPLY.search(text)
    if m is not None:
        h, i = m.group("host") or host, m.group("ip") or ip
        c = reply_cause(m.group("reply").replace("\\n", " "), m.group("cmd"), h, i)
        st = _cmd_stage(m.group("cmd"))
        if st is not None:
            c.stage = st
        return c
    m = _TIMEOUT.search(text)
    if m is not None:
        stage = _cmd_stage(m.group("cmd"))
        return Cause(
            "network",
            "timeout",
            stage,
            host=m.group("host") or host,
            ip=m.group("ip") or ip,
            possible_duplicate=stage == "dot",
        )
    m = _CLOSED.search(text)
    if m is not None:
        stage = _cmd_stage(m.group("cmd"))
        return Cause(
            "network",
            "lost_connection",
            stage,
            host=m.group("host") or host,
            ip=m.group("ip") or ip,
            possible_duplicate=stage == "dot",
        )
    m = _SENDFAIL.search(text)
    if m is not None:
        return Cause("network", "write_failed", None, host=m.group("host"), ip=m.group("ip"))
    if "TLS session" in text or "TLS error" in text:
        kind = (
            "verify" if "certificate verification failed" in text or "verify" in text.lower() else "handshake"
        )
        return Cause("tls", kind, "starttls", host=host, ip=ip)
    if _LOOP.search(text):
        return Cause("local", "config_loop", host=host, ip=ip)
    if _DNS.search(text):
        return Cause(
            "dns",
            "dns_temp" if "defer" in text or "did not complete" in text else "dns_perm",
            host=host,
            ip=ip,
        )
    m2 = _ERRNO_TEXT.search(text)
    if m2 is not None:
        c = errno_cause(m2.group(0), ip)
        c.host = host
        return c
    return None


class EximParser:
    def __init__(self, out: list[Attempt]) -> None:
        self.out = out
        self.ids: dict[str, list[str | int | None]] = {}  # id → [sender, size, message_id]
        self.pending: dict[str, list[Attempt]] = {}
        self.splits: dict[tuple[str | None, str | None], list[str]] = {}

    def _state(self, mid: str) -> list[str | int | None]:
        return message_state(self.ids, mid, 3, MAX_IDS)

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
        if msg.startswith("["):
            sp = _SPLIT.match(msg)
            if sp is not None:  # syslog split a long entry: collect the pieces
                key = (host, pid)
                if key not in self.splits and len(self.splits) >= MAX_IDS:
                    del self.splits[next(iter(self.splits))]  # a split entry that never completed
                parts = self.splits.setdefault(key, [])
                if len(parts) < MAX_SPLIT:
                    parts.append(sp.group("text"))
                if sp.group("n") != sp.group("m"):
                    return 1
                msg = "".join(self.splits.pop(key))
        if msg[:1].isdigit() and len(msg) > 20 and msg[4] == "-":
            ts = _INNER_TS.match(msg)
            if ts is not None:
                msg = msg[ts.end() :]
        m = _LINE.match(msg)
        if m is None:
            return 0
        mid = m.group("id")
        rest = m.group("rest")
        flag = rest[:3]
        if flag == "<= ":
            st = self._state(mid)
            st[0] = rest[3:].split(" ", 1)[0]
            s = _SIZE.search(rest)
            if s is not None:
                st[1] = int(s.group("s"))
            i = _MSGID.search(rest)
            if i is not None:
                st[2] = i.group("mid")
            return 1
        if rest == "Completed":
            self.ids.pop(mid, None)
            return 1
        if flag in ("=> ", "-> ", ">> ", "** ", "== "):
            return self._delivery(when, file, lineno, host, prog, pid, mid, flag[:2], rest[3:], raw)
        if flag == "*> ":
            return 0  # delivery suppressed by -N: nothing was sent
        hl = _HOSTLINE.match(rest)
        if hl is not None:
            cause = exim_message(hl.group("msg"), hl.group("host"), hl.group("ip"))
            if cause is None or cause.outcome in ("delivered", "suppressed", "expired"):
                return 0
            cause.host = cause.host or hl.group("host")
            cause.ip = cause.ip or hl.group("ip")
            if hl.group("port"):
                cause.port = int(hl.group("port"))
            a = self._attempt(when(), file, lineno, cause, mid, host, prog, pid, raw, hl.group("msg"))
            a.final = False
            a.mta_action = "host"
            if mid not in self.pending and len(self.pending) >= MAX_IDS:  # never completed: emit unlinked
                self.out.extend(self.pending.pop(next(iter(self.pending))))
            pend = self.pending.setdefault(mid, [])
            if len(pend) < MAX_PENDING:
                pend.append(a)
            else:
                self.out.append(a)
            return 1
        return 0

    def _attempt(
        self,
        t: datetime,
        file: str,
        lineno: int,
        cause: Cause,
        mid: str,
        host: str | None,
        prog: str,
        pid: str | None,
        raw: str,
        reason: str,
    ) -> Attempt:
        a = Attempt(
            time=t,
            file=file,
            line=lineno,
            mta="exim",
            outcome=cause.outcome,
            queue_id=mid,
            relay_host=cause.host,
            remote_ip=cause.ip,
            remote_port=cause.port,
            kind=cause.kind,
            stage=cause.stage,
            reply_code=cause.reply_code,
            enhanced_code=cause.enhanced_code,
            reply_text=cause.reply_text,
            reply_command=cause.reply_command,
            category=cause.category,
            provider=cause.provider,
            blocklist=cause.blocklist,
            possible_duplicate=cause.possible_duplicate,
            logging_host=host,
            program=prog,
            pid=int(pid) if pid else None,
            reason=reason,
            raw=None if cause.outcome == "delivered" else raw,
        )
        st = self.ids.get(mid)
        if st is not None:
            a.sender, a.size, a.message_id = st[0], st[1], st[2]  # type: ignore[assignment]
        return a

    def _delivery(
        self,
        when: Callable[[], datetime],
        file: str,
        lineno: int,
        host: str | None,
        prog: str,
        pid: str | None,
        mid: str,
        flag: str,
        body: str,
        raw: str,
    ) -> int:
        am = _ADDR.match(body)
        if am is None:
            return 2
        addr = am.group("addr")
        hf = _HOSTF.search(body)
        rhost = hf.group("host") if hf else None
        rip = hf.group("ip") if hf else None
        cause: Cause | None
        if flag in ("=>", "->", ">>"):
            cause = Cause("delivered", host=rhost, ip=rip)
            c = _CONF.search(body)
            if c is not None:
                rc = reply_cause(c.group("c"), "end of data", rhost, rip)
                cause.reply_code, cause.enhanced_code, cause.reply_text = (
                    rc.reply_code,
                    rc.enhanced_code,
                    rc.reply_text,
                )
            reason = c.group("c") if c else ""
            if rip is None and "T=" not in body:
                return 0  # local delivery (no transport/host): not outbound
        else:
            d = _DEFER.search(body) if flag == "==" else None
            if d is not None:
                text = d.group("text") or ""
            else:
                i = body.find(": ")
                text = body[i + 2 :] if i >= 0 else ""
            reason = text
            # the message after the host field is the most specific part
            if hf is not None and hf.end() < len(body):
                after = body[hf.end() :].lstrip(": ")
                cause = exim_message(after, rhost, rip) if after else None
                if cause is None:
                    cause = exim_message(text, rhost, rip)
            else:
                cause = exim_message(text, rhost, rip)
            if cause is None:
                if " T=" not in body:
                    return 0  # e.g. a bounce discarded by a router: no transport tried
                cause = Cause(
                    "rejected" if flag == "**" else "deferred",
                    "unrecognized",
                    category="other",
                    reply_text=text,
                    host=rhost,
                    ip=rip,
                )
            if cause.outcome == "delivered":
                cause.outcome = "rejected" if flag == "**" else "deferred"
            if cause.outcome == "dns":  # Exim decides: a deferral is a temporary lookup failure
                cause.kind = "dns_temp" if flag == "==" else "dns_perm"
        if hf is not None and hf.group("port"):
            cause.port = int(hf.group("port"))
        a = self._attempt(when(), file, lineno, cause, mid, host, prog, pid, raw, reason)
        a.recipient = addr
        a.domain = addr.rsplit("@", 1)[1].lower() if "@" in addr else None
        a.orig_recipient = am.group("orig")
        a.mta_action = {
            "=>": "delivered",
            "->": "delivered",
            ">>": "delivered",
            "**": "failed",
            "==": "deferred",
        }[flag]
        if hf is not None and hf.group("reuse"):
            a.conn_use = 2
        pend = self.pending.pop(mid, None)
        if pend:
            last = pend[-1]
            if (
                a.outcome != "delivered"
                and (a.remote_ip is None or last.remote_ip == a.remote_ip)
                and (last.outcome == a.outcome)
            ):
                pend.pop()  # the delivery line repeats the last host's failure: one try, not two
                a.remote_ip = a.remote_ip or last.remote_ip
                a.relay_host = a.relay_host or last.relay_host
                a.remote_port = a.remote_port or last.remote_port
                if a.stage is None:
                    a.stage = last.stage
                    a.kind = last.kind if a.kind in (None, "connect_timeout") else a.kind
            for p in pend:
                p.recipient, p.domain = a.recipient, a.domain
                self.out.append(p)
        self.out.append(a)
        return 1

    def flush(self) -> None:
        for pend in self.pending.values():
            self.out.extend(pend)
        self.pending.clear()
        self.splits.clear()

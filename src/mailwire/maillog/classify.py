"""Classification of one attempt's reason text: outcome, kind, stage, reply, sub-category.

Owns the reference's §6.1 order and its §8 phrase list for the texts the MTAs generate
themselves (network, DNS, TLS, local, suppressed, expired), and the reply parsing shared by the
three MTAs. Reply sub-categories come from :mod:`mailwire.signatures`. Must not know the line formats.

Rule: reject vs defer follows the code the *remote* sent, not the MTA's action — Postfix logs a
5xx greeting as ``status=deferred`` (``smtp_skip_5xx_greeting``), and ``soft_bounce`` turns 5xx
into deferrals; both stay ``rejected`` here, with the MTA's action kept in ``mta_action``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwire.signatures import categorize


@dataclass(slots=True)
class Cause:
    outcome: str
    kind: str | None = None
    stage: str | None = None
    reply_code: int | None = None
    enhanced_code: str | None = None
    reply_text: str | None = None
    reply_command: str | None = None
    category: str | None = None
    provider: str | None = None
    blocklist: str | None = None
    host: str | None = None
    ip: str | None = None
    port: int | None = None
    possible_duplicate: bool = False


# --- shared vocabularies ------------------------------------------------------------------------

_ERRNO_KINDS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), outcome, kind)
    for p, outcome, kind in (
        (r"timed out", "network", "connect_timeout"),
        (r"refused", "network", "connect_refused"),
        (r"no route to host|host is unreachable|host \S+ is down", "network", "host_unreachable"),
        (r"network is unreachable", "network", "net_unreachable"),
        (r"connection reset", "network", "reset"),
        (r"cannot assign requested address|address not available|can.t assign", "local", "bind"),
    )
)


def errno_cause(err: str, ip: str | None = None) -> Cause:
    """An OS error text of a failed connect (Postfix ``connect to …``, Exim host lines)."""
    for pat, outcome, kind in _ERRNO_KINDS:
        if pat.search(err):
            if kind == "net_unreachable" and ip and ":" in ip:
                # IPv6 without a route on our side: local noise, not remote intermittency (§2.4)
                return Cause("local", "ipv6_unreachable", "connect", ip=ip)
            return Cause(outcome, kind, "connect", ip=ip)
    return Cause("network", "connect_error", "connect", ip=ip)


# Postfix stage phrases (reference §2.3, §8 pf.stage_map)
_PF_STAGES: tuple[tuple[str, str], ...] = (
    ("receiving the initial server greeting", "greeting"),
    ("performing the EHLO handshake", "helo"),
    ("performing the HELO handshake", "helo"),
    ("performing the LHLO handshake", "helo"),
    ("receiving the STARTTLS response", "starttls"),
    ("sending XFORWARD", "mail"),
    ("sending MAIL FROM", "mail"),
    ("sending RCPT TO", "rcpt"),
    ("sending DATA command", "data"),
    ("sending message body", "body"),
    ("sending end of data", "dot"),
    ("sending final RSET", "rset"),
    ("sending RSET probe", "rset"),
    ("sending QUIT", "quit"),
)


def postfix_stage(text: str) -> str | None:
    for phrase, stage in _PF_STAGES:
        if text.startswith(phrase):
            return stage
    return None


# SMTP command a reply answered → stage
def command_stage(cmd: str | None) -> str | None:
    if not cmd:
        return None
    c = cmd.upper()
    if c.startswith("PIPELINED "):
        c = c[10:]
    if "END OF DATA" in c or c.startswith("END OF"):
        return "dot"
    if c.startswith("MAIL") or c.startswith("XFORWARD"):
        return "mail"
    if c.startswith("RCPT"):
        return "rcpt"
    if c.startswith("DATA 354") or c.startswith("DATA"):
        return "data"
    if c.startswith("SENDING DATA BLOCK") or c.startswith("BDAT"):
        return "body"
    if c.startswith(("EHLO", "HELO", "LHLO")):
        return "helo"
    if c.startswith("STARTTLS"):
        return "starttls"
    if c.startswith("INITIAL CONNECTION") or c.startswith("GREETING") or c.startswith("BANNER"):
        return "greeting"
    if c.startswith("RSET") or c.startswith("FINAL RSET"):
        return "rset"
    if c.startswith("QUIT"):
        return "quit"
    return None


_REPLY = re.compile(
    r"(?P<code>[2-5]\d\d)(?:[ -](?:(?P<esc>[245]\.\d{1,3}\.\d{1,3})\b ?)?(?P<text>.*))?$", re.DOTALL
)


_REMOTE_TIMEOUT = re.compile(r"time ?out|timed out", re.IGNORECASE)


def reply_cause(
    reply: str, cmd: str | None, host: str | None, ip: str | None, *, greeting: bool = False
) -> Cause:
    """A remote's reply (code, enhanced code, text) → rejected/deferred/delivered + sub-category."""
    m = _REPLY.match(reply.strip())
    if m is None:
        return Cause(
            "deferred",
            "unparsed_reply",
            command_stage(cmd),
            reply_text=reply,
            reply_command=cmd,
            category="other",
            host=host,
            ip=ip,
        )
    code = int(m.group("code"))
    esc = m.group("esc")
    text = m.group("text") or ""
    stage = "greeting" if greeting else command_stage(cmd)
    if code < 400:
        return Cause("delivered", None, stage, code, esc, text, cmd, host=host, ip=ip)
    if code < 500 and (esc in ("4.4.1", "4.4.2") or _REMOTE_TIMEOUT.search(text)):
        # The remote itself says the connection broke (RFC 3463 X.4.2 "bad connection", e.g.
        # "421 4.4.2 … Error: timeout exceeded" after it waited in vain for our data): a network
        # failure that happens to carry a reply, not a policy decision.
        return Cause(
            "network",
            "remote_timeout",
            stage,
            code,
            esc,
            text,
            cmd,
            host=host,
            ip=ip,
        )  # no duplicate risk: the MX answered, so it did not take the message
    category, provider, bl = categorize(code, esc, text, host)
    outcome = "rejected" if code >= 500 else "deferred"
    return Cause(outcome, None, stage, code, esc, text, cmd, category, provider, bl, host, ip)


# --- Postfix reason texts (§2.3) -----------------------------------------------------------------

_H = r"(?P<host>[^\[\s]+)(?:\[(?P<ip>[^\]]+)\])?(?::(?P<port>\d+))?"
PF_CONNECT = re.compile(r"connect to " + _H + r": (?P<err>.+?)(?: \(port (?P<oldport>\d+)\))?$")
PF_LOST = re.compile(r"lost connection with " + _H + r" while (?P<stage>.+)$")
PF_TIMEOUT = re.compile(r"conversation with " + _H + r" timed out while (?P<stage>.+)$")
PF_REPLY = re.compile(
    r"host " + _H + r" (?P<verb>said|refused to talk to me): (?P<reply>.*)$",
    re.DOTALL,
)
# split off separately: a lazy reply group before an optional suffix backtracks quadratically
_IN_REPLY = re.compile(r" \(in reply to (?P<cmd>[^)]+)\)$")
PF_SSL = re.compile(r"SSL_connect error to " + _H + r": (?P<err>.+)$")
PF_TLS_REFUSED = re.compile(r"TLS is required, but host " + _H + r" refused to start TLS: (?P<reply>.*)$")
PF_TLS_NOT_OFFERED = re.compile(r"TLS is required, but was not offered by host " + _H)
PF_SASL = re.compile(r"SASL authentication failed; (?:server|cannot authenticate to server) " + _H)
PF_SIZE = re.compile(r"message size \d+ exceeds size limit \d+ of server " + _H)
PF_DNS = re.compile(
    r"Name service error for name=(?P<name>\S+) type=(?P<type>\w+): (?P<err>.+)$"
    r"|^(?P<name2>\S+): host not found"
    r"|^Host or domain name not found"
)
PF_LOCAL = re.compile(
    r"^(?:local data error while talking to|mail transport unavailable|unknown mail transport error"
    r"|TLS is required, but (?:our TLS engine is )?unavailable|client TLS configuration problem"
    r"|mail for \S+ loops back to myself|bounce failed|delivery deferred to|delivery agent"
    r"|unable to look up host|server configuration error|\S+ configuration problem)"
)


def _port(m: re.Match[str]) -> int | None:
    p = m.group("port")
    return int(p) if p else None


def postfix_reason(reason: str, status: str | None) -> Cause:
    """Classify the ``(…)`` text of a Postfix status line, or a Postfix info line's message."""
    if status == "sent" or status == "deliverable":
        m = _REPLY.match(reason)
        c = Cause("delivered")
        if m is not None:
            code, c.enhanced_code, c.reply_text = m.groups()
            c.reply_code = int(code)
        return c
    if reason.startswith("delivery temporarily suspended: "):
        inner = postfix_reason(reason[32:], status)
        inner.outcome = "suppressed"
        return inner
    if reason.startswith("SASL authentication failed"):
        m = PF_SASL.match(reason)
        return Cause(
            "local",
            "sasl_auth",
            category="auth",
            reply_text=reason,
            host=m.group("host") if m else None,
            ip=m.group("ip") if m else None,
        )
    m = PF_REPLY.match(reason) if reason.startswith("host ") else None
    if m is not None:
        greet = m.group("verb") != "said"
        reply = m.group("reply")
        cmd = None
        ir = _IN_REPLY.search(reply, max(0, len(reply) - 64))
        if ir is not None:
            cmd = ir.group("cmd")
            reply = reply[: ir.start()]
        c = reply_cause(reply, cmd, m.group("host"), m.group("ip"), greeting=greet)
        c.port = _port(m)
        return c
    m = PF_CONNECT.match(reason)
    if m is not None:
        c = errno_cause(m.group("err"), m.group("ip"))
        c.host = m.group("host")
        c.port = _port(m) or (int(m.group("oldport")) if m.group("oldport") else None)
        return c
    m = PF_TIMEOUT.match(reason)
    if m is not None:
        stage = postfix_stage(m.group("stage"))
        return Cause(
            "network",
            "timeout",
            stage,
            host=m.group("host"),
            ip=m.group("ip"),
            possible_duplicate=stage == "dot",
        )
    m = PF_LOST.match(reason)
    if m is not None:
        stage = postfix_stage(m.group("stage"))
        return Cause(
            "network",
            "lost_connection",
            stage,
            host=m.group("host"),
            ip=m.group("ip"),
            possible_duplicate=stage == "dot",
        )
    if reason.startswith("Cannot start TLS: handshake failure"):
        return Cause("tls", "handshake", "starttls")
    m = PF_SSL.match(reason)
    if m is not None:
        return Cause("tls", "handshake", "starttls", host=m.group("host"), ip=m.group("ip"), port=_port(m))
    m = PF_TLS_REFUSED.match(reason)
    if m is not None:
        c = reply_cause(m.group("reply"), "STARTTLS", m.group("host"), m.group("ip"))
        c.outcome, c.kind, c.stage = "tls", "refused", "starttls"
        return c
    m = PF_TLS_NOT_OFFERED.match(reason)
    if m is not None:
        return Cause("tls", "not_offered", "starttls", host=m.group("host"), ip=m.group("ip"))
    if reason.startswith("Server certificate not verified"):
        return Cause("tls", "verify", "starttls")
    if reason.startswith("Sender requested REQUIRETLS"):
        return Cause("tls", "requiretls", "starttls")
    m = PF_DNS.search(reason)
    if m is not None:
        err = m.group("err") or ""
        temp = (
            "try again" in err
            or "Malformed" in err
            or (status == "deferred" and "Non-recoverable" not in err and "no data record" not in err)
        )
        return Cause("dns", "dns_temp" if temp else "dns_perm")
    if reason.startswith("Domain ") and "does not accept mail (nullMX)" in reason:
        return Cause("dns", "null_mx")
    if reason.startswith("server unavailable or unable to receive mail"):
        return Cause("network", "no_server", "connect")
    m = PF_SIZE.match(reason)
    if m is not None:
        return Cause(
            "rejected",
            None,
            "mail",
            552,
            "5.3.4",
            reason,
            None,
            "content",
            host=m.group("host"),
            ip=m.group("ip"),
        )
    if PF_LOCAL.match(reason) or ("Network is unreachable" in reason and "connect to" not in reason):
        return Cause("local", "local_config")
    # A reason we do not know: fall back on the MTA's action so nothing is dropped silently.
    if status == "bounced" or status == "undeliverable":
        return Cause("rejected", "unrecognized", category="other", reply_text=reason)
    if status == "expired":
        return Cause("expired")
    return Cause("deferred", "unrecognized", category="other", reply_text=reason)

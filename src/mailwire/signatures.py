"""The provider reply-signature table: 4xx/5xx reply text → category (reference §7).

The one table both stages use: the mail-log classifier (:mod:`mailwire.maillog.classify`,
through :func:`categorize`) and the SMTP verdicts on captures (:mod:`mailwire.smtp.verdict`,
through :func:`classify`), so a reply reads the same in a log and in a capture and
``mailwire diagnose`` can join the two.

Order of evaluation, as in the reference: provider rows (§7.1) — only the rows of the provider
the MX host belongs to, every provider's rows when the host is unknown (a capture, an
unrecognised relay), and always the rows of services that front others (Proofpoint, Cisco,
Trend Micro, AT&T); then third-party blocklists (§7.2), greylisting (§7.3), generic keywords
(§7.4) and last the enhanced status code (§5.3). Patterns are our own wording of the phrases
the reference lists, matched case-insensitively on the reply text with the multi-line
continuation prefixes removed and the enhanced code in front. Generic rules are gated by
cheap literal tests so most replies never run a regex.

Categories: ``reputation``, ``blocklist``, ``rate_limit``, ``greylist``, ``policy``, ``auth``,
``tls_policy``, ``mailbox``, ``content``, ``server_busy``, ``other``. The capture report's
vocabulary has no ``tls_policy``: :func:`classify` reports it as ``policy`` (rule ``G9_tls``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

CATEGORIES = (
    "reputation",
    "blocklist",
    "rate_limit",
    "greylist",
    "policy",
    "auth",
    "tls_policy",
    "mailbox",
    "content",
    "server_busy",
    "other",
)


class Signature(NamedTuple):
    id: str
    provider: str | None  # None: applies to every provider
    pattern: re.Pattern[str]
    category: str
    code_class: int | None  # 4 or 5 when the row only applies to that reply class


def _s(
    id_: str, provider: str | None, pattern: str, category: str, code_class: int | None = None
) -> Signature:
    return Signature(id_, provider, re.compile(pattern, re.IGNORECASE), category, code_class)


# MX host suffix → provider (reference §7, sisimai RhostClass)
PROVIDER_HOSTS: tuple[tuple[str, str], ...] = (
    (".yahoodns.net", "yahoo"),
    (".google.com", "google"),
    (".googlemail.com", "google"),
    (".olc.protection.outlook.com", "microsoft"),
    (".mail.protection.outlook.com", "microsoft"),
    (".outlook.com", "microsoft"),
    (".hotmail.com", "microsoft"),
    (".mimecast.com", "mimecast"),
    (".messagelabs.com", "messagelabs"),
    (".icloud.com", "apple"),
    (".me.com", "apple"),
    (".apple.com", "apple"),
    (".pphosted.com", "proofpoint"),
    (".gmx.com", "gmx"),
    (".gmx.net", "gmx"),
    (".web.de", "gmx"),
)

PROVIDER_ROWS: tuple[Signature, ...] = (
    _s(
        "Y1",
        "yahoo",
        r"\[TSS04\]|temporarily deferred due to (unexpected volume or )?user complaints",
        "reputation",
    ),
    _s("Y2", "yahoo", r"\[TS0[12]\]", "reputation"),
    _s("Y3", "yahoo", r"\[TS03\]|all messages from \S+ (will be )?permanently deferred", "reputation"),
    _s("Y4", "yahoo", r"\[TSS(09|11)\]|will be permanently deferred", "reputation"),
    _s(
        "Y5",
        "yahoo",
        r"\[BL2[13]\]|because the ip is in spamhaus's list|not accepted from ip addresses on spamhaus xbl",
        "blocklist",
    ),
    _s("Y6", "yahoo", r"temporarily deferred - \[?4\.16\.5\d", "reputation"),
    _s("Y7", "yahoo", r"\[PH01\]|not accepted for policy reasons", "policy"),
    _s("Y8", "yahoo", r"requires all senders to authenticate with either spf or dkim", "auth"),
    _s("Y9", "yahoo", r"user is receiving mail too quickly", "rate_limit"),
    _s("Y10", "yahoo", r"max message per connection reached", "rate_limit"),
    _s("Y11", "yahoo", r"resources unavailable temporarily\. please try later", "server_busy"),
    _s("Y12", "yahoo", r"dd this user doesn't have a .* account|this mailbox is disabled", "mailbox"),
    # Microsoft before Google: with the MX host unknown (a capture) every provider's rows run, and
    # G13's bare "server busy" would otherwise take M2's "4.7.500 Server busy. … from [" (§9)
    _s("M1", "microsoft", r"part of their network is on our block list \((a?s3140|a?s3150)\)", "reputation"),
    _s("M2", "microsoft", r"4\.7\.500 server busy\. please try again later from \[", "rate_limit"),
    _s(
        "M3",
        "microsoft",
        r"4\.7\.[56]\d\d .*access denied, please try again later|4\.7\.8[5-9]\d",
        "rate_limit",
    ),
    _s("M4", "microsoft", r"rate limited due to ip reputation", "reputation"),
    _s("M5", "microsoft", r"5\.7\.6(0[6-9]|[1-4]\d) access denied, banned sending ip", "reputation"),
    _s("M6", "microsoft", r"5\.7\.511 access denied, banned sender", "reputation"),
    _s(
        "M7",
        "microsoft",
        r"5\.7\.708 access denied, traffic not accepted from this ip|5\.7\.705 .*tenant has exceeded"
        r" threshold",
        "reputation",
    ),
    _s("M8", "microsoft", r"5\.7\.513 .*customer block list", "policy"),
    _s(
        "M9",
        "microsoft",
        r"does not pass dmarc verification|sender policy framework violation"
        r"|must pass either spf or dkim|must have a reverse dns record",
        "auth",
    ),
    _s(
        "M10",
        "microsoft",
        r"5\.7\.1 .*(delivery not authorized|unable to relay|client was not authenticated)",
        "policy",
    ),
    _s(
        "M11",
        "microsoft",
        r"recipient's per hour message receive limit|recipient thread limit exceeded"
        r"|too many concurrent smtp connections|too many connections from your host",
        "rate_limit",
    ),
    _s("M12", "microsoft", r"\bSC-00[1-4]\b", "reputation"),
    _s("M13", "microsoft", r"4\.7\.66 tls 1\.0 and 1\.1 are not supported", "tls_policy"),
    _s("G1", "google", r"4\.7\.28.*unusual rate of (unsolicited )?mail", "rate_limit", 4),
    _s("G2", "google", r"unusual rate of unsolicited mail", "reputation", 5),
    _s("G3", "google", r"very low reputation of the sending (ip address|domain)", "reputation"),
    _s("G4", "google", r"likely unsolicited mail", "content"),
    _s("G5", "google", r"due to the nature of the content or the links within", "content"),
    _s(
        "G6",
        "google",
        r"receiving mail at a rate|is receiving mail too quickly|peak smtp relay limit",
        "rate_limit",
    ),
    _s(
        "G7",
        "google",
        r"senders to authenticate with (either )?spf( or dkim)?|fails to pass spf checks|hard fail policy"
        r"|dmarc policy"
        r"|fails to pass authentication checks|authenticate (their email )?with dkim"
        r"|aligned with either the authenticated spf or dkim",
        "auth",
    ),
    _s(
        "G8", "google", r"does not have a ptr record|ptr record's forward dns|ipv6 sending guidelines", "auth"
    ),
    _s("G9", "google", r"tls required for rcpt domain|senders to use tls/ssl for smtp", "tls_policy"),
    _s("G10", "google", r"try again later, closing connection", "rate_limit"),
    _s("G11", "google", r"ip not in whitelist for rcpt domain", "policy"),
    _s("G12", "google", r"timeout - closing connection|connection expired, try reconnecting", "other"),
    _s(
        "G13",
        "google",
        r"server busy|temporary system problem|mail server temporarily rejected message",
        "server_busy",
    ),
    _s("G14", "google", r"sending messages with the same message-id", "policy"),
    _s(
        "G15",
        "google",
        r"is over quota|out of storage space|account that you tried to reach does not exist",
        "mailbox",
    ),
    _s("A1b", "apple", r"rejected due to listing in spamhaus", "blocklist"),
    _s("A1", "apple", r"\[CS01\]|due to local policy", "policy"),
    _s("A1c", "apple", r"not accepting connections", "server_busy"),
    _s(
        "MC1",
        "mimecast",
        r"poor reputation sender|local ct ip reputation|ip temporarily blacklisted"
        r"|internal resources are temporarily unavailable",
        "reputation",
    ),
    # providers that front others: recognised by their text, whatever the MX host
    _s(
        "PP1",
        None,
        r"ipcheck\.proofpoint\.com|support\.proofpoint\.com/dnsbl-lookup|blocked - see https://ipcheck",
        "reputation",
    ),
    _s(
        "CS1",
        None,
        r"senderbase\.org|talosintelligence|as a measure to protect our email infrastructure, this "
        r"connection is being blocked",
        "reputation",
    ),
    _s(
        "TM1",
        None,
        r"blocked using trend micro|trend micro (email reputation|rbl)|mail-abuse\.com",
        "blocklist",
    ),
    _s("AT1", None, r"blocked by sbc:blacklist\.mailrelay\.att\.net|dnsbl:attrbl 521", "blocklist"),
)


# §7.2 third-party DNSBLs; the group names the list
# Generic rules run on the lowercased reply. Each has cheap literal gates (``in`` tests); the regex
# runs only when a gate hits — case-insensitive regex searches cost microseconds per reply.
class Rule(NamedTuple):
    category: str
    gates: tuple[str, ...]
    pattern: re.Pattern[str]


def _r(category: str, gates: tuple[str, ...], pattern: str) -> Rule:
    return Rule(category, gates, re.compile(pattern))


# §7.2 third-party DNSBLs; the groups name the list
BLOCKLIST = _r(
    "blocklist",
    (
        "spamhaus",
        "barracuda",
        "spamcop",
        "uceprotect",
        "sorbs",
        "blocked using",
        "listed",
        "black",
        "rbl",
        "dnsbl",
        "block list",
        "blocklist",
    ),
    r"(?P<name>spamhaus|barracuda|spamcop|uceprotect|\bsorbs\b)"
    r"|blocked using (?P<zone>[\w.\-]+)|listed (?:by|in|at|on) (?P<zone2>[\w.\-]+)"
    r"|is in a black ?list|\brbl\b|blacklisted|\bdnsbl\b|block ?list",
)
GREYLIST = _r(
    "greylist",
    ("greylist", "graylist", "grey list", "gray list", "postgrey"),
    r"gr[ae]y ?list|postgrey",
)

# §7.4 generic keywords, in evaluation order
GENERIC: tuple[Rule, ...] = (
    _r(
        "rate_limit",
        (
            "too many",
            "rate limit",
            "throttl",
            "try again slower",
            "exceed",
            "per connection",
            "per hour",
            "message per",
            "messages per",
            "connections per",
            "too fast",
            "sending rate",
        ),
        r"too many (connections|concurrent|sessions|recipients|messages)|rate limit|throttl"
        r"|try again slower|exceeded .*limit|connection rate limit exceeded"
        r"|max(imum)? (message|connection)s? per|too fast|sending rate",
    ),
    _r(
        "reputation",
        ("reputation", "complaints", "spammer", "sending spam"),
        r"reputation|user complaints|looks suspiciously like spammer|you are sending spam",
    ),
    _r(
        "auth",
        (
            "spf",
            "dkim",
            "dmarc",
            "sender policy framework",
            "reverse dns",
            "ptr record",
            "rdns",
            "cannot find your hostname",
        ),
        r"\bspf\b|\bdkim\b|\bdmarc\b|sender policy framework|reverse dns|ptr record|\brdns\b"
        r"|cannot find your hostname",
    ),
    _r(
        "mailbox",
        ("user", "mailbox", "quota", "does not exist", "recipient"),
        r"user unknown|no such (user|recipient|mailbox)|mailbox (unavailable|not found|full|disabled)"
        r"|over quota"
        r"|does not exist|unknown (user|recipient)|recipient unknown|recipient address rejected: user",
    ),
    _r(
        "server_busy",
        ("service", "system", "temporary", "try that server", "busy"),
        r"service (temporarily )?(unavailable|not available)|system (resources|busy)"
        r"|insufficient system (storage|resources)|temporary (local )?problem"
        r"|try that server first|server busy|too busy",
    ),
    _r(
        "content",
        ("spam", "virus", "content", "message", "malformed", "rfc"),
        r"spam|virus|content|message (too big|size exceeds)|malformed|rfc ?5322",
    ),
    _r(
        "policy",
        (
            "policy",
            "not authori",
            "relay",
            "access denied",
            "blocked",
            "refused",
            "not logged in",
            "sender address rejected",
        ),
        r"policy|not authori[sz]ed|relay(ing)? (denied|not permitted)|access denied|blocked|refused"
        r"|not logged in|sender address rejected",
    ),
)
# 'try again later' alone is ambiguous (reference §7.4): a 4xx then counts as rate limiting only
# for verdicts, its category stays 'other'.


def _hit(rule: Rule, low: str) -> re.Match[str] | None:
    for g in rule.gates:
        if g in low:
            return rule.pattern.search(low)
    return None


def provider_of(host: str | None) -> str | None:
    if not host:
        return None
    h = host.lower().rstrip(".")
    for suffix, name in PROVIDER_HOSTS:
        if h.endswith(suffix) or h == suffix[1:]:
            return name
    return None


# a continuation prefix stands alone: "550-5.7.1 " yes, the "001 " of "SC-001 " no (M12)
_CONT = re.compile(r"(?<![\w.\-])\d{3}[- ](?:\d\.\d{1,3}\.\d{1,3} )?")


def strip_continuations(text: str) -> str:
    """Remove the ``550-5.7.1 `` prefixes Postfix keeps when it joins a multi-line reply."""
    return _CONT.sub("", text)


def enhanced_category(esc: str | None) -> str | None:
    """Fallback on the enhanced status code (reference §5.3)."""
    if not esc:
        return None
    _, subj, det = [*esc.split("."), "", ""][:3]
    if subj == "1" or (subj == "2" and det in ("1", "2", "0")):
        return "mailbox"
    if subj == "7":
        if det in ("23", "24", "25", "26", "27"):
            return "auth"
        if det == "28":
            return "rate_limit"
        if det in ("4", "5", "10", "29", "30"):
            return "tls_policy"
        return "policy"
    if (subj == "3" and det == "2") or (subj == "4" and det == "5"):
        return "server_busy"
    if subj == "5" and det == "3":
        return "rate_limit"
    if (subj == "3" and det == "4") or subj == "6":
        return "content"
    return None


class Match(NamedTuple):
    category: str
    rule: str  # row id (Y1, G3, …), "dnsbl", "greylist", "generic_<category>", "enhanced_<esc>", "none"
    provider: str | None
    blocklist: str | None  # the list's name for category "blocklist"


def match(code: int | None, esc: str | None, text: str, host: str | None = None) -> Match:
    """The first row of the table that fits one reply (``code`` may be None when unknown)."""
    provider = provider_of(host)
    # provider texts often name the enhanced code ("4.7.500 Server busy"): match with it in front
    flat = (esc + " " if esc else "") + strip_continuations(text)
    low = flat.lower()
    klass = code // 100 if code else None
    for row in PROVIDER_ROWS:
        if row.provider is None:
            if not any(g in low for g in _FRONT_GATES[row.id]):
                continue
        elif provider is not None and row.provider != provider:
            continue
        if row.code_class is not None and klass is not None and row.code_class != klass:
            continue
        if row.pattern.search(flat):
            bl = None
            if row.category == "blocklist":
                m = _hit(BLOCKLIST, low)
                bl = _bl_name(m, low) if m else row.id
            return Match(row.category, row.id, provider or _row_provider(row), bl)
    m = _hit(BLOCKLIST, low)
    if m is not None:
        return Match("blocklist", "dnsbl", provider, _bl_name(m, low))
    # a 5xx is final: it may mention greylisting but will not pass on retry
    if klass != 5 and _hit(GREYLIST, low):
        return Match("greylist", "greylist", provider, None)
    for rule in GENERIC:
        if _hit(rule, low):
            return Match(rule.category, "generic_" + rule.category, provider, None)
    cat = enhanced_category(esc)
    if cat is not None:
        return Match(cat, f"enhanced_{esc}", provider, None)
    return Match("other", "none", provider, None)


def categorize(
    code: int | None, esc: str | None, text: str, host: str | None
) -> tuple[str, str | None, str | None]:
    """(category, provider, blocklist name) for one reply (the mail-log classifier's view)."""
    m = match(code, esc, text, host)
    return m.category, m.provider, m.blocklist


@dataclass(frozen=True, slots=True)
class Classification:
    """One reply's category in the capture report's vocabulary (no ``tls_policy``)."""

    category: str
    rule: str
    provider: str


_TRY_LATER = re.compile(r"try again later", re.IGNORECASE)


def classify(code: int, text: str, enhanced: str | None = None, host: str | None = None) -> Classification:
    """The category of a 4xx/5xx reply seen in a capture (for 2xx/3xx the answer is ``other``).

    ``text`` is the joined reply text as the dissector gives it (each line may begin with the
    enhanced code); it is matched the way a log line's reply is, through :func:`match`.
    """
    if code // 100 not in (4, 5):
        return Classification("other", "none", "")
    m = match(code, enhanced, _strip_line_codes(text, enhanced), host)
    if m.category == "tls_policy":
        return Classification("policy", m.rule + "_tls", m.provider or "")
    if m.rule == "none" and code in (421, 450, 451, 452) and _TRY_LATER.search(text):
        # ambiguous (§7.4): greylisting, rate limiting or a busy server
        return Classification("other", "try_again_later_ambiguous", m.provider or "")
    return Classification(m.category, m.rule, m.provider or "")


def _strip_line_codes(text: str, enhanced: str | None) -> str:
    """Drop the enhanced code the dissector leaves at the start of each joined line.

    A log's reply loses the same codes (its parser takes the first, :func:`strip_continuations`
    the rest); :func:`match` puts one back in front.
    """
    if not enhanced:
        return text
    t = text.lstrip()
    if t.startswith(enhanced):
        t = t[len(enhanced) :].lstrip()
    return t.replace(" " + enhanced + " ", " ")


# literal gates of the rows that apply whatever the provider
_FRONT_GATES = {
    "PP1": ("proofpoint", "ipcheck"),
    "CS1": ("senderbase", "talos", "protect our email infrastructure"),
    "TM1": ("trend micro", "mail-abuse"),
    "AT1": ("att.net", "attrbl"),
}


def _row_provider(row: Signature) -> str | None:
    """The provider a matched row names: its own, or the service that fronts others."""
    if row.provider is not None:
        return row.provider
    return {"PP1": "proofpoint", "CS1": "cisco", "TM1": "trendmicro", "AT1": "att"}.get(row.id)


# a DNSBL zone of a well-known list, e.g. "b.barracudacentral.org", "zen.spamhaus.org"
_ZONE = re.compile(r"[a-z0-9.\-]*(?:spamhaus|barracuda|spamcop|uceprotect|sorbs)[a-z0-9.\-]*")
_USING = re.compile(r"(?:blocked using|listed (?:by|in|at|on)) ([a-z0-9.\-]+\.[a-z]{2,})")


def _bl_name(m: re.Match[str], low: str = "") -> str:
    """The list's name: the zone the reply names ("blocked using X"), else a well-known list's zone."""
    u = _USING.search(low)
    if u is not None:
        return u.group(1).rstrip(".")
    z = _ZONE.search(low)
    if z is not None:
        return z.group(0).strip(".-")
    name = m.group("name") or m.group("zone") or m.group("zone2")
    return (name or m.group(0)).lower().rstrip(".;,")

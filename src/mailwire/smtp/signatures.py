"""Reply text -> failure category: provider signatures, blocklists, greylisting, generic words.

Theory of operation
-------------------
A 4xx/5xx reply's text (multi-line replies joined) is matched, case-insensitively, against an
ordered table of named rules; the first match wins. The order follows the reference
(``mail-log-failure-signatures.md`` §7): provider rows first (Yahoo/AOL, Gmail, Microsoft,
Apple, Mimecast, Proofpoint, Cisco, Trend Micro, AT&T), then third-party DNSBL mentions
(§7.2), greylisting (§7.3), generic keywords (§7.4), and last the RFC 3463 enhanced code
(§5.3). Every rule is one line in :data:`RULES` so the table reads like the reference.

Categories are the issue's vocabulary: ``reputation``, ``blocklist``, ``rate_limit``,
``greylist``, ``policy``, ``auth``, ``mailbox``, ``content``, ``server_busy``, ``other``.
(The reference's ``tls_policy`` is reported as ``policy`` with rule name ``*_tls``.)

This module only classifies text; it never decides an outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = (
    "reputation",
    "blocklist",
    "rate_limit",
    "greylist",
    "policy",
    "auth",
    "mailbox",
    "content",
    "server_busy",
    "other",
)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # row id in the reference (Y1, G3, ...) or a generic name
    provider: str
    pattern: re.Pattern[str]
    category: str
    klass: int = 0  # 4 or 5 to restrict the rule to one reply class; 0 for both


@dataclass(frozen=True, slots=True)
class Classification:
    category: str
    rule: str
    provider: str


def _r(name: str, provider: str, pattern: str, category: str, klass: int = 0) -> Rule:
    return Rule(name, provider, re.compile(pattern, re.IGNORECASE), category, klass)


RULES: tuple[Rule, ...] = (
    # --- Yahoo / AOL (§7.1 Y*)
    _r(
        "Y1",
        "yahoo",
        r"\[TSS04\]|temporarily deferred due to (unexpected volume or )?user complaints",
        "reputation",
    ),
    _r("Y2", "yahoo", r"\[TS0[12]\]", "reputation"),
    _r("Y3", "yahoo", r"\[TS03\]|all messages from \S+ permanently deferred", "reputation"),
    _r("Y4", "yahoo", r"\[TSS(09|11)\]|will be permanently deferred", "reputation"),
    _r(
        "Y5",
        "yahoo",
        r"\[BL2[13]\]|because the ip is in spamhaus's list|not accepted from ip addresses on spamhaus xbl",
        "blocklist",
    ),
    _r("Y6", "yahoo", r"temporarily deferred - \[?4\.16\.5\d", "reputation"),
    _r("Y7", "yahoo", r"\[PH01\]|not accepted for policy reasons", "policy"),
    _r("Y8", "yahoo", r"requires all senders to authenticate with either spf or dkim", "auth"),
    _r("Y9", "yahoo", r"user is receiving mail too quickly", "rate_limit"),
    _r("Y10", "yahoo", r"max message per connection reached", "rate_limit"),
    _r("Y11", "yahoo", r"resources unavailable temporarily\. please try later", "server_busy"),
    _r("Y12", "yahoo", r"dd this user doesn't have a .* account|this mailbox is disabled", "mailbox"),
    # --- Gmail (§7.1 G*)
    _r("G1", "gmail", r"4\.7\.28.*unusual rate of (unsolicited )?mail", "rate_limit"),
    _r("G2", "gmail", r"unusual rate of unsolicited mail", "reputation", 5),
    _r("G3", "gmail", r"very low reputation of the sending (ip address|domain)", "reputation"),
    _r("G4", "gmail", r"likely unsolicited mail", "content"),
    _r("G5", "gmail", r"due to the nature of the content or the links within", "content"),
    _r(
        "G6",
        "gmail",
        r"receiving mail at a rate|is receiving mail too quickly|peak smtp relay limit",
        "rate_limit",
    ),
    _r(
        "G7",
        "gmail",
        r"senders to authenticate with (either )?spf( or dkim)?|fails to pass spf checks|hard fail policy"
        r"|dmarc policy|fails to pass authentication checks|authenticate (their email )?with dkim"
        r"|aligned with either the authenticated spf or dkim",
        "auth",
    ),
    _r("G8", "gmail", r"does not have a ptr record|ptr record's forward dns|ipv6 sending guidelines", "auth"),
    _r("G9_tls", "gmail", r"tls required for rcpt domain|senders to use tls/ssl for smtp", "policy"),
    _r("G10", "gmail", r"try again later, closing connection", "rate_limit"),
    _r("G11", "gmail", r"ip not in whitelist for rcpt domain", "policy"),
    _r("G12", "gmail", r"timeout - closing connection|connection expired, try reconnecting", "other"),
    _r(
        "G13",
        "gmail",
        r"server busy|temporary system problem|mail server temporarily rejected message",
        "server_busy",
    ),
    _r("G14", "gmail", r"sending messages with the same message-id", "policy"),
    _r(
        "G15",
        "gmail",
        r"is over quota|out of storage space|account that you tried to reach does not exist",
        "mailbox",
    ),
    # --- Microsoft (§7.1 M*)
    _r("M1", "microsoft", r"part of their network is on our block list \((A?S3140|A?S3150)\)", "reputation"),
    _r("M4", "microsoft", r"rate limited due to ip reputation", "reputation"),
    _r("M2", "microsoft", r"4\.7\.500 server busy\. please try again later from \[", "rate_limit"),
    _r(
        "M3",
        "microsoft",
        r"4\.7\.[56]\d\d .*access denied, please try again later|4\.7\.8[5-9]\d",
        "rate_limit",
    ),
    _r("M5", "microsoft", r"5\.7\.6(0[6-9]|[1-4]\d) access denied, banned sending ip", "reputation"),
    _r("M6", "microsoft", r"5\.7\.511 access denied, banned sender", "reputation"),
    _r(
        "M7",
        "microsoft",
        r"5\.7\.708 access denied, traffic not accepted from this ip|5\.7\.705 .*tenant has "
        r"exceeded threshold",
        "reputation",
    ),
    _r("M8", "microsoft", r"5\.7\.513 .*customer block list", "policy"),
    _r(
        "M9",
        "microsoft",
        r"does not pass dmarc verification|sender policy framework violation|must pass either spf or dkim"
        r"|must have a reverse dns record",
        "auth",
    ),
    _r(
        "M10",
        "microsoft",
        r"5\.7\.1 .*(delivery not authorized|unable to relay|client was not authenticated)",
        "policy",
    ),
    _r(
        "M11",
        "microsoft",
        r"recipient's per hour message receive limit|recipient thread limit exceeded"
        r"|too many concurrent smtp connections|too many connections from your host",
        "rate_limit",
    ),
    _r("M12", "microsoft", r"\bSC-00[1-4]\b", "reputation"),
    _r("M13_tls", "microsoft", r"4\.7\.66 tls 1\.0 and 1\.1 are not supported", "policy"),
    # --- others (§7.1)
    _r("A1_blocklist", "apple", r"rejected due to listing in spamhaus", "blocklist"),
    _r("A1_busy", "apple", r"not accepting connections", "server_busy"),
    _r("A1", "apple", r"\[CS01\]|due to local policy", "policy"),
    _r(
        "MC1",
        "mimecast",
        r"poor reputation sender|local ct ip reputation|ip temporarily blacklisted|internal "
        r"resources are temporarily unavailable",
        "reputation",
    ),
    _r(
        "PP1",
        "proofpoint",
        r"ipcheck\.proofpoint\.com|support\.proofpoint\.com/dnsbl-lookup|blocked - see https://ipcheck",
        "reputation",
    ),
    _r(
        "CS1",
        "cisco",
        r"senderbase\.org|talosintelligence|as a measure to protect our email infrastructure, this "
        r"connection is being blocked",
        "reputation",
    ),
    _r(
        "TM1",
        "trendmicro",
        r"blocked using trend micro|trend micro (email reputation|rbl)|mail-abuse\.com",
        "blocklist",
    ),
    _r("AT1", "att", r"blocked by sbc:blacklist\.mailrelay\.att\.net|dnsbl:attrbl 521", "blocklist"),
    # --- third-party DNSBL mentions (§7.2)
    _r("dnsbl_spamhaus", "", r"spamhaus", "blocklist"),
    _r("dnsbl_barracuda", "", r"barracuda(central| reputation|networks\.com/reputation)", "blocklist"),
    _r("dnsbl_spamcop", "", r"spamcop", "blocklist"),
    _r("dnsbl_uceprotect", "", r"uceprotect", "blocklist"),
    _r("dnsbl_sorbs", "", r"\bsorbs\b", "blocklist"),
    _r(
        "dnsbl_generic",
        "",
        r"blocked using \S+|listed (by|in|at|on) \S+|is in a black ?list|\brbl\b|blacklisted|\bdnsbl\b",
        "blocklist",
    ),
    # --- greylisting (§7.3)
    _r("greylist", "", r"grey ?list(ed|ing)?|gray ?list(ed|ing)?|postgrey", "greylist", 4),
    # --- generic keywords (§7.4)
    _r(
        "generic_rate_limit",
        "",
        r"too many (connections|concurrent|sessions|recipients|messages)|rate limit|throttl|try again slower"
        r"|exceeded .*limit|max(imum)? (message|connection)s? per",
        "rate_limit",
    ),
    _r(
        "generic_reputation",
        "",
        r"reputation|user complaints|looks suspiciously like spammer|you are sending spam",
        "reputation",
    ),
    _r(
        "generic_auth",
        "",
        r"\bspf\b|\bdkim\b|\bdmarc\b|sender policy framework|reverse dns|ptr "
        r"record|\brdns\b|cannot find your hostname",
        "auth",
    ),
    _r(
        "generic_mailbox",
        "",
        r"user unknown|no such user|mailbox (unavailable|not found|full|disabled)|over quota|does not exist"
        r"|unknown user|recipient address rejected",
        "mailbox",
    ),
    _r(
        "generic_server_busy",
        "",
        r"service (temporarily )?unavailable|system (resources|busy)|insufficient system (storage|resources)"
        r"|temporary (local )?problem|try that server first|too busy",
        "server_busy",
    ),
    _r(
        "generic_content",
        "",
        r"spam|virus|content|message (too big|size exceeds)|malformed|rfc ?5322",
        "content",
    ),
    _r(
        "generic_policy",
        "",
        r"not logged in|relay(ing)? (denied|not permitted)|sender address rejected|not authori[sz]ed|policy",
        "policy",
    ),
)

# §5.3: enhanced-code fallback (class digit stripped), consulted when no text rule matched.
_ENHANCED_FALLBACK: tuple[tuple[str, str], ...] = (
    ("1.", "mailbox"),
    ("2.1", "mailbox"),
    ("2.2", "mailbox"),
    ("3.2", "server_busy"),
    ("4.5", "server_busy"),
    ("5.3", "rate_limit"),
    ("7.23", "auth"),
    ("7.24", "auth"),
    ("7.25", "auth"),
    ("7.26", "auth"),
    ("7.27", "auth"),
    ("7.28", "rate_limit"),
    ("7.4", "policy"),
    ("7.5", "policy"),
    ("7.10", "policy"),
    ("7.", "policy"),
    ("3.4", "content"),
    ("6.", "content"),
)


def classify(code: int, text: str, enhanced: str | None = None) -> Classification:
    """The category of a 4xx/5xx reply (for 2xx/3xx the answer is ``other``)."""
    klass = code // 100
    if klass in (4, 5):
        for rule in RULES:
            if rule.klass and rule.klass != klass:
                continue
            if rule.pattern.search(text):
                return Classification(rule.category, rule.name, rule.provider)
        if enhanced:
            tail = enhanced.split(".", 1)[1] + "."
            for prefix, category in _ENHANCED_FALLBACK:
                if tail.startswith(prefix if prefix.endswith(".") else prefix + "."):
                    return Classification(category, f"enhanced_{enhanced}", "")
        if code in (421, 450, 451, 452) and re.search(r"try again later", text, re.IGNORECASE):
            return Classification("other", "try_again_later_ambiguous", "")
    return Classification("other", "none", "")


__all__ = ["CATEGORIES", "RULES", "Classification", "Rule", "classify"]

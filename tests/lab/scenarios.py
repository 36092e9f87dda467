"""The lab's scenarios: which fault, where, which messages, and what should become of each.

A scenario is data only: the runner (``tests.lab.runner``) turns it into namespaces, iptables
rules, a receiver config, Postfix settings and captures. Fault rules are iptables rules in one of
the lab's namespaces (``(role, rule)``); "between" names the two capture points the fault sits
between (capture points: sender = the sender's interface, edge = the edge router's lb-facing
interface, recv = the MX's interface), or None when the fault is the remote's own behaviour.

Reply texts follow the shapes real receivers use (Postfix RBL replies, provider throttling and
greylisting replies); the wording here is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.lab.netns import ABSENT_ADDR, IFACES, LB_EDGE_SIDE, MX2_ADDR, MX_ADDR, SENDER_ADDR

DOMAIN = "dest.test"  # MX 203.0.113.25 (Postfix's relayhost)
OTHER_DOMAIN = "other.test"  # MX 203.0.113.26, through a transport map
ROUTES = {OTHER_DOMAIN: MX2_ADDR}
# One-way delay added beyond the edge in each direction, so round trips look like the Internet's
# (about 30 ms) rather than a veth's (microseconds).
DELAY_MS = 15.0

# The replies a healthy delivery gets, in order: greeting, EHLO, MAIL, RCPT, DATA (354), end of
# data, QUIT (Postfix pipelines MAIL/RCPT/DATA).
OK_REPLIES = [220, 250, 250, 250, 354, 250, 221]
# Stuck mid-DATA: the receiver's idle timer fires and it says 421 4.4.2 and hangs up.
IDLE_421 = [220, 250, 250, 250, 354, 421]

BLOCKLIST_550 = (
    "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using "
    "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10"
)
REPUTATION_550 = (
    "550 5.7.1 Message rejected: the sending IP address 192.0.2.10 has a very low "
    "reputation with us; see https://mx1.dest.test/reputation"
)
GREYLIST_450 = (
    "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, please try again later "
    "(see http://greylist.example.test/)"
)
RATE_451 = "451 4.7.1 <{rcpt}>: Recipient address rejected: rate limit exceeded, try again later"


@dataclass
class Message:
    """One message to inject. ``local`` is the recipient's local part (unique in a scenario)."""

    local: str
    size: int
    expected: str  # "delivered" | "deferred" | "bounced"
    replies: list[int] = field(default_factory=list)  # what the receiver should answer, in order
    key_reply: int | None = None  # the reply that decides its fate, if any
    domain: str = DOMAIN

    @property
    def rcpt(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def mx(self) -> str:
        return ROUTES.get(self.domain, MX_ADDR)


@dataclass
class Scenario:
    name: str
    description: str
    fault: str  # short kind: "none", "size_drop", "pmtud_blackhole", ...
    box: str | None  # the namespace where it is injected: "lb", "edge", "recv", or None
    between: tuple[str, str] | None
    messages: list[Message]
    rules: list[tuple[str, str]] = field(default_factory=list)
    mtu: list[tuple[str, str, int]] = field(default_factory=list)  # (role, side, mtu)
    sysctls: list[tuple[str, str, str]] = field(default_factory=list)  # (role, key, value)
    receiver: dict[str, Any] = field(default_factory=dict)
    receiver_running: bool = True
    relay_addr: str = MX_ADDR
    tso: bool = False
    delay_ms: float = DELAY_MS  # one-way delay beyond the edge, each direction (0: none)
    sequential: bool = False  # inject one message at a time, each after the previous one's fate
    postfix: dict[str, int] = field(default_factory=dict)  # Postfix timeouts (seconds)
    timeout: float = 40.0  # bound on waiting for every message's fate
    nat: dict[str, Any] | None = None  # address translation on the path, if any (truth "fault.nat")
    settle: float = 1.0  # keep capturing this long after the last status line
    notes: str = ""


FWD_TO_MX = "-A FORWARD -i lb0 -o lb1 -p tcp --dport 25"


# A small socket send buffer at the sender: a large message cannot be written in one go, so Postfix
# blocks in write() and its own smtp_data_xfer_timeout ends the attempt ("timed out while sending
# message body"), while a message that fits is answered by the MX's 421 "in reply to end of DATA".
SMALL_SNDBUF = [("sender", "net.ipv4.tcp_wmem", "4096 16384 16384")]


def _ok(local: str, size: int, domain: str = DOMAIN) -> Message:
    return Message(local, size, "delivered", OK_REPLIES, 250, domain)


def _stuck(local: str, size: int, domain: str = DOMAIN) -> Message:
    return Message(local, size, "deferred", IDLE_421, 421, domain)


SCENARIOS: dict[str, Scenario] = {}


def _add(s: Scenario) -> None:
    SCENARIOS[s.name] = s


_add(
    Scenario(
        name="healthy",
        description="No fault. Every message, small and large, is delivered; TSO on at the sender.",
        fault="none",
        box=None,
        between=None,
        tso=True,
        messages=[_ok("small1", 600), _ok("medium2", 5000), _ok("large3", 30000), _ok("large4", 60000)],
    )
)

_add(
    Scenario(
        name="size_drop",
        description=(
            "The incident: the load balancer silently drops every sender-to-MX packet larger than "
            "1000 bytes (no ICMP). Small messages fit in small segments and are delivered; larger "
            "ones stall mid-DATA, the sender retransmits with growing intervals, the MX answers "
            "421 4.4.2 timeout exceeded and hangs up, and Postfix defers them. TSO on at the sender."
        ),
        fault="size_drop",
        box="lb",
        between=("sender", "edge"),
        tso=True,
        sysctls=SMALL_SNDBUF,
        rules=[("lb", f"{FWD_TO_MX} -m length --length 1001:65535 -j DROP")],
        receiver={"idle_timeout": 3.0},
        postfix={"xfer_timeout": 6, "done_timeout": 6},
        # Two destination domains with their own MX each: both see deliveries and failures.
        messages=[
            _ok("small1", 500),
            _stuck("medium2", 4000, OTHER_DOMAIN),
            _ok("small3", 700, OTHER_DOMAIN),
            _stuck("large4", 20000),
            _stuck("large5", 45000, OTHER_DOMAIN),
        ],
    )
)

# The lb's source NAT (PAT) toward the edge: the port range lies below Linux's ephemeral range
# (32768-60999), so every connection's port changes as well as its address.
SNAT_PORTS = (20000, 20999)

_add(
    Scenario(
        name="size_drop_snat",
        description=(
            "The incident behind a source-NATing load balancer: the lb silently drops every "
            "sender-to-MX packet larger than 1000 bytes (no ICMP) and rewrites the source address "
            f"and port of the sender's connections to {LB_EDGE_SIDE}:{SNAT_PORTS[0]}-{SNAT_PORTS[1]} "
            "(iptables SNAT), so the edge and the MX never see the sender's address. The drop sits "
            "in FORWARD (filter), before POSTROUTING (nat): it sees the untranslated packets. "
            "One small message delivered, two larger ones stall mid-DATA and are deferred."
        ),
        fault="size_drop",
        box="lb",
        between=("sender", "edge"),
        tso=True,
        sysctls=SMALL_SNDBUF,
        rules=[
            ("lb", f"{FWD_TO_MX} -m length --length 1001:65535 -j DROP"),
            (
                "lb",
                f"-t nat -A POSTROUTING -o {IFACES['lb']['edge']} -p tcp --dport 25 -j SNAT "
                f"--to-source {LB_EDGE_SIDE}:{SNAT_PORTS[0]}-{SNAT_PORTS[1]}",
            ),
        ],
        nat={
            "box": "lb",
            "kind": "snat",
            "iface": IFACES["lb"]["edge"],
            "original_source": SENDER_ADDR,
            "translated_source": LB_EDGE_SIDE,
            "translated_ports": list(SNAT_PORTS),
            "ports_translated": True,
            "between": ["sender", "edge"],  # captures upstream see the original, downstream the new
        },
        receiver={"idle_timeout": 3.0},
        postfix={"xfer_timeout": 6, "done_timeout": 6},
        messages=[_ok("small1", 500), _stuck("medium2", 4000, OTHER_DOMAIN), _stuck("large3", 20000)],
    )
)

_add(
    Scenario(
        name="pmtud_blackhole",
        description=(
            "A true PMTUD black hole: the lb-edge link has MTU 1280, and the lb's ICMP "
            "'fragmentation needed' messages are dropped, so full-size DF segments vanish."
        ),
        fault="pmtud_blackhole",
        box="lb",
        between=("sender", "edge"),
        sysctls=SMALL_SNDBUF,
        mtu=[("lb", "edge", 1280), ("edge", "lb", 1280)],
        rules=[("lb", "-A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP")],
        receiver={"idle_timeout": 3.0},
        postfix={"xfer_timeout": 6, "done_timeout": 6},
        messages=[_ok("small1", 600), _stuck("large2", 20000), _stuck("large3", 40000)],
    )
)

_add(
    Scenario(
        name="intermittent",
        description=(
            "The lb sends every other new connection through a bad path that drops packets "
            "over 1000 bytes: the 1st and 3rd messages stall, the 2nd and 4th (same size) pass, "
            "across two destination domains."
        ),
        fault="intermittent_size_drop",
        box="lb",
        between=("sender", "edge"),
        sequential=True,
        sysctls=SMALL_SNDBUF,
        rules=[
            (
                "lb",
                f"-t mangle {FWD_TO_MX} -m conntrack --ctstate NEW -m statistic --mode nth --every 2 "
                "--packet 0 -j CONNMARK --set-mark 1",
            ),
            ("lb", f"{FWD_TO_MX} -m connmark --mark 1 -m length --length 1001:65535 -j DROP"),
        ],
        receiver={"idle_timeout": 3.0},
        postfix={"xfer_timeout": 6, "done_timeout": 6},
        messages=[
            _stuck("bad1", 15000),
            _ok("good2", 15000, OTHER_DOMAIN),
            _stuck("bad3", 15000, OTHER_DOMAIN),
            _ok("good4", 15000),
        ],
    )
)

_add(
    Scenario(
        name="random_loss",
        description=(
            "The lb drops 5% of TCP packets at random, both directions. Every message is "
            "delivered, with retransmissions."
        ),
        fault="random_loss",
        box="lb",
        between=("sender", "edge"),
        rules=[("lb", "-A FORWARD -p tcp -m statistic --mode random --probability 0.05 -j DROP")],
        postfix={"xfer_timeout": 20, "done_timeout": 20},
        messages=[_ok(f"msg{i}", 40000) for i in range(1, 6)],
    )
)

_add(
    Scenario(
        name="reject_5xx",
        description=(
            "The MX rejects recipients with permanent 5xx replies quoting a DNS blocklist and "
            "the sender's IP reputation; one message to another recipient is delivered."
        ),
        fault="reject_5xx",
        box="recv",
        between=None,
        receiver={"rcpt_replies": {"listed": BLOCKLIST_550, "reputation": REPUTATION_550}},
        messages=[
            Message("listed1", 3000, "bounced", [220, 250, 250, 554, 554, 250, 221], 554),
            Message("reputation2", 3000, "bounced", [220, 250, 250, 550, 554, 250, 221], 550),
            _ok("ok3", 3000),
        ],
    )
)

_add(
    Scenario(
        name="defer_4xx",
        description=(
            "The MX answers recipients with temporary 4xx replies: greylisting and rate "
            "limiting. Postfix defers those messages; another recipient is delivered."
        ),
        fault="defer_4xx",
        box="recv",
        between=None,
        receiver={
            "rcpt_replies": {
                "greylist": GREYLIST_450.format(rcpt=f"greylist1@{DOMAIN}"),
                "ratelimit": RATE_451.format(rcpt=f"ratelimit2@{DOMAIN}"),
            }
        },
        messages=[
            Message("greylist1", 3000, "deferred", [220, 250, 250, 450, 554, 250, 221], 450),
            Message("ratelimit2", 3000, "deferred", [220, 250, 250, 451, 554, 250, 221], 451),
            _ok("ok3", 3000),
        ],
    )
)

_add(
    Scenario(
        name="zero_window",
        description=(
            "The MX stops reading after its 354: its receive buffer fills, it advertises a zero "
            "window, the sender probes, and Postfix gives up sending the body."
        ),
        fault="zero_window",
        box="recv",
        between=None,
        receiver={"stop_reading": True, "stop_reading_hold": 12.0, "rcvbuf": 4096, "idle_timeout": 30.0},
        postfix={"xfer_timeout": 6, "done_timeout": 6},
        messages=[Message("stalled1", 200000, "deferred", [220, 250, 250, 250, 354], 354)],
    )
)

_add(
    Scenario(
        name="rst_injected",
        description=(
            "The lb forges a TCP reset toward the sender once a connection has carried 6000 bytes "
            "from the sender: the sender sees an RST from the MX's address that the MX never sent. "
            "A small message stays under the limit and is delivered."
        ),
        fault="rst_injected",
        box="lb",
        between=("sender", "edge"),
        rules=[
            (
                "lb",
                f"{FWD_TO_MX} -m connbytes --connbytes 6000: --connbytes-dir original "
                "--connbytes-mode bytes -j REJECT --reject-with tcp-reset",
            )
        ],
        receiver={"idle_timeout": 60.0},
        messages=[_ok("small1", 600), Message("large2", 30000, "deferred", [220, 250, 250, 250, 354], None)],
    )
)

_add(
    Scenario(
        name="remote_down_closed",
        description="Nothing listens on the MX's port 25: its kernel answers each SYN with a reset.",
        fault="port_closed",
        box="recv",
        between=None,
        receiver_running=False,
        messages=[Message("nobody1", 2000, "deferred", [], None)],
    )
)

_add(
    Scenario(
        name="remote_down_syn_drop",
        description=(
            "The lb drops every SYN to port 25: connection attempts time out "
            "(Postfix's smtp_connect_timeout, shortened to 3 s)."
        ),
        fault="syn_drop",
        box="lb",
        between=("sender", "edge"),
        rules=[("lb", f"{FWD_TO_MX} --syn -j DROP")],
        messages=[Message("nobody1", 2000, "deferred", [], None)],
    )
)

_add(
    Scenario(
        name="remote_down_unreachable",
        description=(
            "The MX's address is not on its link: the edge router cannot resolve it (ARP) and "
            "answers with ICMP host unreachable."
        ),
        fault="host_unreachable",
        box="edge",
        between=("edge", "recv"),
        relay_addr=ABSENT_ADDR,
        postfix={"connect_timeout": 10},
        messages=[Message("nobody1", 2000, "deferred", [], None)],
    )
)


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown lab scenario {name!r}; known: {', '.join(SCENARIOS)}") from None

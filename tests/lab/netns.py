"""The lab's network: four namespaces in a line, joined by veth pairs and routed.

    sender (Postfix) ── lb (faults) ── edge (edge router) ── recv (the MX)
      192.0.2.0/24      198.51.100.0/24        203.0.113.0/24

This module owns creating, configuring and removing the namespaces, and running commands inside
them. It knows nothing about SMTP or scenarios. Namespace names carry the PID of the process that
made them, so parallel or aborted runs never collide; ``remove`` ends every process still inside a
namespace by PID (``ip netns pids``) before deleting it, and an atexit hook does the same for a lab
that was never closed.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

# Addresses (documentation ranges only) and interface names, by namespace role.
SENDER_ADDR = "192.0.2.10"
LB_SENDER_SIDE = "192.0.2.1"
LB_EDGE_SIDE = "198.51.100.1"
EDGE_LB_SIDE = "198.51.100.2"
EDGE_RECV_SIDE = "203.0.113.1"
MX_ADDR = "203.0.113.25"
# A second MX (another provider's) on the same receiving host, for multi-domain scenarios.
MX2_ADDR = "203.0.113.26"
# An address on the recv link that nobody holds: the edge's ARP for it fails (host unreachable).
ABSENT_ADDR = "203.0.113.99"

ROLES = ("sender", "lb", "edge", "recv")

# Interface per (role, side): the name inside that role's namespace.
IFACES = {
    "sender": {"lb": "s0"},
    "lb": {"sender": "lb0", "edge": "lb1"},
    "edge": {"lb": "e0", "recv": "e1"},
    "recv": {"edge": "r0"},
}

REQUIRED_TOOLS = ("ip", "iptables", "tc", "tcpdump", "tshark", "postfix", "sendmail", "postconf")

# Our namespace names: mw<PID of the run>x<n>-<role>.
STALE_RE = re.compile(r"^mw(\d+)x\d+-(?:sender|lb|edge|recv)$")
_counter = itertools.count()
_open_labs: list[Lab] = []


class LabUnavailable(RuntimeError):
    """The lab cannot run here (not root, or a system tool is missing); the message says what."""


def check_prerequisites() -> None:
    """Raise LabUnavailable naming exactly what is missing."""
    if os.geteuid() != 0:
        raise LabUnavailable(
            f"the lab needs root (network namespaces, iptables, Postfix); running as uid {os.geteuid()}"
        )
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        raise LabUnavailable(
            "missing system tools: " + ", ".join(missing) + " (scripts/install-system-deps.sh installs them)"
        )


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded), capturing output; raise with its stderr on failure."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Lab:
    """Four namespaces in a line. Use as a context manager; ``remove`` is idempotent."""

    tag: str = field(default_factory=lambda: f"mw{os.getpid()}x{next(_counter)}")
    tso: bool = True
    created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def iface(self, role: str, side: str) -> str:
        return IFACES[role][side]

    # --- running things inside -------------------------------------------------------------------
    def argv(self, role: str, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role), *cmd]

    def run(
        self, role: str, cmd: Sequence[str], *, check: bool = True, timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        return run(self.argv(role, cmd), check=check, timeout=timeout)

    def popen(self, role: str, cmd: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(role, cmd), **kw)  # type: ignore[call-overload]

    def sysctl(self, role: str, key: str, value: str) -> None:
        self.run(role, ["sysctl", "-q", "-w", f"{key}={value}"])

    def iptables(self, role: str, rule: str) -> None:
        self.run(role, ["iptables", *rule.split()])

    # --- building --------------------------------------------------------------------------------
    def build(self) -> Lab:
        check_prerequisites()
        sweep_stale()
        _open_labs.append(self)
        try:
            for role in ROLES:
                run(["ip", "netns", "add", self.ns(role)])
                self.created.append(self.ns(role))
                self.run(role, ["ip", "link", "set", "lo", "up"])
            self._link("sender", "lb")
            self._link("lb", "edge")
            self._link("edge", "recv")
            self._addr("sender", "lb", f"{SENDER_ADDR}/24")
            self._addr("lb", "sender", f"{LB_SENDER_SIDE}/24")
            self._addr("lb", "edge", f"{LB_EDGE_SIDE}/24")
            self._addr("edge", "lb", f"{EDGE_LB_SIDE}/24")
            self._addr("edge", "recv", f"{EDGE_RECV_SIDE}/24")
            self._addr("recv", "edge", f"{MX_ADDR}/24")
            self._addr("recv", "edge", f"{MX2_ADDR}/24")
            self.run("sender", ["ip", "route", "add", "default", "via", LB_SENDER_SIDE])
            self.run("lb", ["ip", "route", "add", "default", "via", EDGE_LB_SIDE])
            self.run("edge", ["ip", "route", "add", "192.0.2.0/24", "via", LB_EDGE_SIDE])
            self.run("recv", ["ip", "route", "add", "default", "via", EDGE_RECV_SIDE])
            for role in ("lb", "edge"):
                self.sysctl(role, "net.ipv4.ip_forward", "1")
            for role in ROLES:
                # No IPv6 chatter (router solicitations, DAD) in the captures.
                self.sysctl(role, "net.ipv6.conf.all.disable_ipv6", "1")
                self.sysctl(role, "net.ipv6.conf.default.disable_ipv6", "1")
            if not self.tso:
                # Segmentation offload off at the sender: the stack hands the wire MSS-sized
                # packets, as a NIC without TSO would; tcpdump then sees no super-segments.
                self.run("sender", ["ip", "link", "set", "s0", "gso_max_segs", "1"])
        except BaseException:
            self.remove()
            raise
        return self

    def _link(self, a: str, b: str) -> None:
        run(
            [
                "ip",
                "link",
                "add",
                self.iface(a, b),
                "netns",
                self.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                self.iface(b, a),
                "netns",
                self.ns(b),
            ]
        )
        for role, side in ((a, b), (b, a)):
            dev = self.iface(role, side)
            # One flow, one CPU: steer every receive on this veth to CPU 0 (RPS), so two CPUs never
            # handle packets of one flow in parallel and reorder them (spurious retransmissions).
            self.run(role, ["sh", "-c", f"echo 1 > /sys/class/net/{dev}/queues/rx-0/rps_cpus"])
            self.run(role, ["ip", "link", "set", dev, "up"])

    def _addr(self, role: str, side: str, cidr: str) -> None:
        self.run(role, ["ip", "addr", "add", cidr, "dev", self.iface(role, side)])

    def set_mtu(self, role: str, side: str, mtu: int) -> None:
        self.run(role, ["ip", "link", "set", self.iface(role, side), "mtu", str(mtu)])

    # --- removing --------------------------------------------------------------------------------
    def pids(self, role: str) -> list[int]:
        proc = run(["ip", "netns", "pids", self.ns(role)], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def remove(self) -> None:
        """End every process left in the lab's namespaces (by PID), then delete them."""
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            pids = [p for ns in self.created for p in self._ns_pids(ns)]
            for pid in pids:
                _signal(pid, sig)
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if _alive(p)]
                time.sleep(0.05)
        for ns in reversed(self.created):
            run(["ip", "netns", "del", ns], check=False)
        self.created.clear()
        if self in _open_labs:
            _open_labs.remove(self)

    @staticmethod
    def _ns_pids(ns: str) -> list[int]:
        proc = run(["ip", "netns", "pids", ns], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]

    def __enter__(self) -> Lab:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    # Reap it if it is our child, so it does not linger as a zombie that still "exists".
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def sweep_stale() -> list[str]:
    """Remove namespaces left by lab runs whose process is gone (killed, or aborted hard)."""
    listed = run(["ip", "netns", "list"], check=False).stdout
    removed = []
    for line in listed.splitlines():
        m = STALE_RE.match(line.split(" ", 1)[0]) if line else None
        if m is None or _alive(int(m.group(1))):
            continue
        ns = m.group(0)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in Lab._ns_pids(ns):
                _signal(pid, sig)
            time.sleep(0.2)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    return removed


@atexit.register
def _remove_open_labs() -> None:
    for lab in list(_open_labs):
        lab.remove()

"""truth.json: what the lab did in one scenario, written by the runner, read by the tests.

Owns the record's shape (``SCHEMA_VERSION``) and reading the receiver's own JSON-lines log back
into per-recipient reply sequences. The record says what was injected (fault, box, the two capture
points it sits between, the iptables rules, MTUs), where each capture was taken, and per message:
requested and Postfix-logged size, Message-ID, queue id, expected outcome, the replies the
receiver should send and did send, and the Postfix log's status line for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.lab.netns import IFACES, MX2_ADDR, MX_ADDR, SENDER_ADDR
from tests.lab.scenarios import ROUTES, Scenario

SCHEMA_VERSION = 1

CAPTURE_POINTS = {
    "sender": {
        "file": "sender.pcap",
        "namespace": "sender",
        "iface": IFACES["sender"]["lb"],
        "where": "the sending server's own interface (host-side capture)",
    },
    "edge": {
        "file": "edge.pcap",
        "namespace": "edge",
        "iface": IFACES["edge"]["lb"],
        "where": "the edge router's inside (load-balancer-facing) interface",
    },
    "recv": {
        "file": "recv.pcap",
        "namespace": "recv",
        "iface": IFACES["recv"]["edge"],
        "where": "the remote MX's interface",
    },
}


def receiver_replies(log_path: Path) -> dict[str, list[int]]:
    """Recipient address → reply codes the receiver sent on that recipient's connection, in order."""
    by_conn: dict[int, list[int]] = {}
    rcpt_of: dict[int, str] = {}
    if not log_path.exists():
        return {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        conn = int(rec.get("conn", 0))
        if rec.get("event") == "reply":
            by_conn.setdefault(conn, []).append(int(rec["code"]))
        elif rec.get("event") == "command" and rec.get("verb") == "RCPT":
            addr = str(rec["text"]).partition(":")[2].strip().strip("<>").split(">")[0].lower()
            rcpt_of.setdefault(conn, addr)
    return {rcpt: by_conn.get(conn, []) for conn, rcpt in rcpt_of.items()}


def build(
    scenario: Scenario,
    *,
    messages: list[dict[str, Any]],
    timing: dict[str, float],
    captures: list[str],
    tag: str,
) -> dict[str, Any]:
    s = asdict(scenario)
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": scenario.name,
        "description": scenario.description,
        "fault": {
            "kind": scenario.fault,
            "box": scenario.box,
            "between": list(scenario.between) if scenario.between else None,
            "iptables": [{"namespace": role, "rule": rule} for role, rule in scenario.rules],
            "mtu": [{"namespace": r, "toward": side, "mtu": m} for r, side, m in scenario.mtu],
            "sysctls": [{"namespace": r, "key": k, "value": v} for r, k, v in scenario.sysctls],
            "receiver": s["receiver"],
            "receiver_running": scenario.receiver_running,
            "nat": scenario.nat,
            "notes": scenario.notes,
        },
        "addresses": {
            "sender": SENDER_ADDR,
            "mx": scenario.relay_addr,
            "mx_listening": [MX_ADDR, MX2_ADDR],
            "routes": {"dest.test": scenario.relay_addr, **ROUTES},
            "sender_subnet": "192.0.2.0/24",
            "lb_edge_subnet": "198.51.100.0/24",
            "edge_recv_subnet": "203.0.113.0/24",
        },
        "path": ["sender", "lb", "edge", "recv"],
        "capture_points": {name: CAPTURE_POINTS[name] for name in captures},
        "tso_at_sender": scenario.tso,
        "delay_beyond_edge_ms": {
            "one_way": scenario.delay_ms,
            "between": ["edge", "recv"],
            "how": "NFQUEUE hold in the edge namespace (tests/lab/delay.py)",
        },
        "postfix_timeouts": scenario.postfix,
        "messages": messages,
        "timing_seconds": timing,
        "namespace_tag": tag,
    }


def write(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data

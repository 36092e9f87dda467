"""Run one lab scenario end to end and leave its evidence in a directory.

``run_scenario(name, out)`` builds the four namespaces, applies the fault, starts the receiver,
Postfix and the captures, injects the messages, waits (bounded) until Postfix has logged a fate
for each, stops everything by PID and removes the namespaces — in ``finally``, whatever happened —
then writes ``sender.pcap``, ``edge.pcap``, ``recv.pcap``, ``maillog``, ``receiver.jsonl`` and
``truth.json`` into ``out``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.lab import scenarios, truth
from tests.lab.capture import Capture
from tests.lab.netns import IFACES, MX2_ADDR, MX_ADDR, Lab
from tests.lab.postfix import Postfix

REPO_ROOT = Path(__file__).resolve().parents[2]
MX_NAMES = {MX_ADDR: "mx1.dest.test", MX2_ADDR: "mx.other.test"}
OUTPUTS = ("sender.pcap", "edge.pcap", "recv.pcap", "maillog", "receiver.jsonl", "truth.json")


def _start_helper(
    lab: Lab, role: str, module: str, args: list[str], timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start ``python -m MODULE ARGS`` in a namespace; return once it printed READY (bounded)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = lab.popen(
        role,
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(REPO_ROOT),
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"READY":
        _stop(proc)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{module} did not start within {timeout}s: {line!r} {err}")
    return proc


def _start_receiver(lab: Lab, cfg: dict[str, Any], work: Path) -> subprocess.Popen[bytes]:
    path = work / "receiver.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return _start_helper(lab, "recv", "tests.lab.receiver", [str(path)])


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_scenario(name: str, out: Path) -> Path:
    """Run scenario ``name``; its files land in ``out`` (created). Returns ``out``."""
    sc = scenarios.get(name)
    out.mkdir(parents=True, exist_ok=True)
    for f in OUTPUTS:
        (out / f).unlink(missing_ok=True)
    timing: dict[str, float] = {}
    t0 = time.monotonic()
    # Postfix's daemons run as the postfix user and need a world-traversable directory.
    work = Path(tempfile.mkdtemp(prefix=f"mailwire-lab-{name}-"))
    work.chmod(0o755)
    lab = Lab(tso=sc.tso)
    receiver: subprocess.Popen[bytes] | None = None
    delayer: subprocess.Popen[bytes] | None = None
    pf: Postfix | None = None
    caps = [
        Capture("sender", "sender", IFACES["sender"]["lb"], out / "sender.pcap"),
        Capture("edge", "edge", IFACES["edge"]["lb"], out / "edge.pcap"),
        Capture("recv", "recv", IFACES["recv"]["edge"], out / "recv.pcap"),
    ]
    mids: list[str] = []
    finished = False
    try:
        lab.build()
        for role, side, mtu in sc.mtu:
            lab.set_mtu(role, side, mtu)
        for role, key, value in sc.sysctls:
            lab.sysctl(role, key, value)
        for role, rule in sc.rules:
            lab.iptables(role, rule)
        if sc.delay_ms:
            # Beyond the edge: both directions between the edge's two links wait in NFQUEUE.
            delayer = _start_helper(lab, "edge", "tests.lab.delay", ["--ms", str(sc.delay_ms)])
            for a, b in (("e0", "e1"), ("e1", "e0")):
                lab.iptables("edge", f"-A FORWARD -i {a} -o {b} -j NFQUEUE --queue-num 0 --queue-bypass")
        timing["build"] = time.monotonic() - t0
        if sc.receiver_running:
            cfg = {
                "host": "0.0.0.0",
                "port": 25,
                "hostnames": MX_NAMES,
                "log": str(out / "receiver.jsonl"),
                "max_seconds": 120,
            }
            cfg.update(sc.receiver)
            receiver = _start_receiver(lab, cfg, work)
        t1 = time.monotonic()
        pf = Postfix(
            lab, work / "postfix", relayhost=f"[{sc.relay_addr}]", routes=dict(scenarios.ROUTES), **sc.postfix
        )
        pf.start()
        timing["postfix_start"] = time.monotonic() - t1
        for cap in caps:
            cap.start(lab)
        t2 = time.monotonic()
        deadline = t2 + sc.timeout
        if sc.sequential:
            for m in sc.messages:
                mids.append(pf.inject(m.rcpt, m.size))
                pf.wait_final(mids, max(1.0, deadline - time.monotonic()))
        else:
            mids = [pf.inject(m.rcpt, m.size) for m in sc.messages]
        pf.wait_final(mids, max(1.0, deadline - time.monotonic()))
        time.sleep(sc.settle)
        timing["traffic"] = time.monotonic() - t2
        finished = True
    finally:
        # Each step on its own: one failing stop must not keep the namespaces alive.
        steps: list[Callable[[], None]] = [c.stop for c in caps]
        steps += [pf.stop] if pf is not None else []
        steps += [lambda: _stop(receiver), lambda: _stop(delayer), lab.remove]
        for step in steps:
            try:
                step()
            except Exception as exc:  # reported; the next step still runs
                print(f"lab cleanup: {exc}", file=sys.stderr)
        if pf is not None and pf.maillog.exists():
            shutil.copyfile(pf.maillog, out / "maillog")
        if not finished:
            shutil.rmtree(work, ignore_errors=True)
    try:
        messages = _message_records(sc, pf, mids, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timing["total"] = time.monotonic() - t0
    record = truth.build(
        sc,
        messages=messages,
        timing={k: round(v, 3) for k, v in timing.items()},
        captures=[c.name for c in caps],
        tag=lab.tag,
    )
    truth.write(out / "truth.json", record)
    return out


def _message_records(
    sc: scenarios.Scenario, pf: Postfix | None, mids: list[str], out: Path
) -> list[dict[str, Any]]:
    qids = pf.queue_ids() if pf else {}
    sizes = pf.sizes() if pf else {}
    fates = pf.deliveries() if pf else {}
    seen = truth.receiver_replies(out / "receiver.jsonl")
    records = []
    for i, m in enumerate(sc.messages):
        mid = mids[i] if i < len(mids) else None
        qid = qids.get(mid) if mid else None
        fate = fates.get(qid, []) if qid else []
        records.append(
            {
                "index": i + 1,
                "rcpt": m.rcpt,
                "mx": sc.relay_addr if m.domain == scenarios.DOMAIN else m.mx,
                "size_requested": m.size,
                "size": sizes.get(qid) if qid else None,
                "message_id": mid,
                "queue_id": qid,
                "expected_outcome": m.expected,
                "expected_replies": m.replies,
                "key_reply": m.key_reply,
                "receiver_replies": seen.get(m.rcpt.lower(), []),
                "log": [
                    {
                        "status": d.status,
                        "dsn": d.dsn,
                        "relay": d.relay,
                        "reason": d.reason,
                        "maillog_line": d.line,
                    }
                    for d in fate
                ],
                "observed_outcome": _outcome(fate[0].status) if fate else None,
            }
        )
    return records


def _outcome(status: str) -> str:
    return {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}.get(status, status)

"""The lab's SMTP receiver on loopback (no root needed), driven by the standard library's smtplib."""

from __future__ import annotations

import json
import select
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.runner import REPO_ROOT
from tests.lab.truth import receiver_replies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**cfg: Any) -> tuple[int, Path]:
        port = _free_port()
        log = tmp_path / f"recv-{port}.jsonl"
        conf = {"host": "127.0.0.1", "port": port, "log": str(log), "max_seconds": 60} | cfg
        path = tmp_path / f"recv-{port}.json"
        path.write_text(json.dumps(conf))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.receiver", str(path)], cwd=REPO_ROOT, stdout=subprocess.PIPE
        )
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline().strip() == b"READY"
        return port, log

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=5)


def test_delivers_and_logs(receiver: Any) -> None:
    port, log = receiver()
    body = "Subject: hi\r\n\r\n" + "line\r\n.leading dot\r\n" * 2000
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250 and s.has_extn("pipelining")
        assert s.sendmail("a@sender.test", ["b@dest.test"], body) == {}
    time.sleep(0.2)
    assert receiver_replies(log)["b@dest.test"] == [220, 250, 250, 250, 354, 250, 221]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    body_bytes = next(e["bytes"] for e in events if e["event"] == "body")
    assert body_bytes >= len(body)  # smtplib dot-stuffs, the receiver counts wire bytes


def test_rcpt_reply_by_local_part_prefix(receiver: Any) -> None:
    text = "550 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org"
    port, _ = receiver(rcpt_replies={"listed": text})
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("a@sender.test")
        code, msg = s.rcpt("listed7@dest.test")
        assert code == 550 and b"zen.spamhaus.org" in msg
        code, _ = s.rcpt("other@dest.test")
        assert code == 250


def test_idle_timeout_says_421_and_hangs_up(receiver: Any) -> None:
    port, log = receiver(idle_timeout=0.5, hostname="mx.lab.test")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"220 ")
    assert b"421 4.4.2 mx.lab.test Error: timeout exceeded\r\n" in data
    time.sleep(0.2)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "idle_timeout" in events and events[-1] == "close"


def test_stop_reading_closes_the_window(receiver: Any) -> None:
    port, _ = receiver(stop_reading=True, stop_reading_hold=3.0, rcvbuf=4096)
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo("client.test")
    s.mail("a@sender.test")
    s.rcpt("b@dest.test")
    code, _ = s.docmd("DATA")
    assert code == 354
    sock = s.sock
    assert sock is not None
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    # Write until the kernel will take no more: the receiver's window is shut.
    while time.monotonic() < deadline:
        try:
            sent += sock.send(b"x" * 65536)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                break
    assert time.monotonic() < deadline, "the receiver kept reading"
    assert sent < 8 << 20
    sock.close()

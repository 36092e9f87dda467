"""A real full proxy on loopback: client -> proxy -> SMTP-like server, two tcpdump captures (one per
side of the proxy). The proxy terminates TCP (its own ISNs, its own segmentation: it relays in
small reads), so only the byte stream is common: compare must say so and find the same bytes."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mailwire.compare import compare_captures

BODY = b"".join(
    b"line %05d of the message body, padded to look like mail text....\r\n" % i for i in range(800)
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(sock: socket.socket, stop: threading.Event) -> None:
    """Answers one SMTP-like session: greeting, a reply per command line, 354/250 around DATA."""
    sock.settimeout(10)
    conn, _ = sock.accept()
    conn.settimeout(10)
    with conn:
        conn.sendall(b"220 mx.dest.test ESMTP\r\n")
        buf = b""
        in_data = False
        while not stop.is_set():
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            while True:
                if in_data:
                    end = buf.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    buf = buf[end + 5 :]
                    in_data = False
                    conn.sendall(b"250 2.0.0 Ok: queued as 1234\r\n")
                    continue
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 2 :]
                if line == b"DATA":
                    in_data = True
                    conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                elif line == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.1.0 Ok " + line[:20] + b"\r\n")


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(700)  # small reads: the proxy re-cuts the stream
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _proxy(sock: socket.socket, backend: int) -> None:
    sock.settimeout(10)
    front, _ = sock.accept()
    back = socket.create_connection(("127.0.0.1", backend), timeout=10)
    t1 = threading.Thread(target=_pipe, args=(front, back), daemon=True)
    t2 = threading.Thread(target=_pipe, args=(back, front), daemon=True)
    t1.start()
    t2.start()
    t1.join(15)
    t2.join(15)
    front.close()
    back.close()


def _client(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        f = c.makefile("rb")
        f.readline()
        for cmd in (b"EHLO sender.example.test", b"MAIL FROM:<a@example.test>", b"RCPT TO:<b@dest.test>"):
            c.sendall(cmd + b"\r\n")
            f.readline()
        c.sendall(b"DATA\r\n")
        f.readline()
        for i in range(0, len(BODY), 3000):  # the client writes in its own chunks
            c.sendall(BODY[i : i + 3000])
        c.sendall(b".\r\n")
        f.readline()
        c.sendall(b"QUIT\r\n")
        f.readline()


def _tcpdump(path: Path, port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        ["tcpdump", "-i", "lo", "--immediate-mode", "-B", "32768", "-U", "-s", "0", "-w", str(path),
         f"tcp port {port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert p.stderr is not None
    deadline = time.monotonic() + 10
    line = b""
    while time.monotonic() < deadline and b"listening" not in line:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            break
    if b"listening" not in line:
        p.kill()
        p.wait(5)
        pytest.skip("tcpdump could not capture on lo")
    return p


def _wait_stable(paths: list[Path], quiet_s: float = 1.5, limit_s: float = 20.0) -> None:
    """Until no capture file has grown for ``quiet_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    last = [-1] * len(paths)
    since = time.monotonic()
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size if p.exists() else 0 for p in paths]
        if sizes != last:
            last, since = sizes, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


def _run_once(tmp: Path) -> tuple[Path, Path, int, int, int]:
    """One proxied session under two captures; returns the files, the ports and kernel drops."""
    p_proxy, p_server = _free_port(), _free_port()
    front_pcap, back_pcap = tmp / "front.pcap", tmp / "back.pcap"
    dumps = [_tcpdump(front_pcap, p_proxy), _tcpdump(back_pcap, p_server)]
    stop = threading.Event()
    dropped = 0
    try:
        srv = socket.create_server(("127.0.0.1", p_server))
        prx = socket.create_server(("127.0.0.1", p_proxy))
        ts = threading.Thread(target=_server, args=(srv, stop), daemon=True)
        tp = threading.Thread(target=_proxy, args=(prx, p_server), daemon=True)
        ts.start()
        tp.start()
        _client(p_proxy)
        tp.join(20)
        ts.join(20)
        srv.close()
        prx.close()
        _wait_stable([front_pcap, back_pcap])  # let tcpdump read and write the last packets
    finally:
        stop.set()
        for d in dumps:
            d.send_signal(signal.SIGTERM)
        for d in dumps:
            try:
                _, err = d.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                d.kill()
                _, err = d.communicate(timeout=5)
            m = re.search(rb"(\d+) packets dropped by kernel", err or b"")
            dropped += int(m.group(1)) if m else 0
    return front_pcap, back_pcap, p_proxy, p_server, dropped


def test_real_full_proxy_on_loopback(tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump not installed")
    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        run_dir.mkdir()
        front_pcap, back_pcap, p_proxy, p_server, dropped = _run_once(run_dir)
        if dropped == 0:
            break
    else:
        pytest.skip(
            f"tcpdump's kernel buffer dropped packets in 3 attempts (last: {dropped}): machine too busy"
        )
    doc = compare_captures([front_pcap, back_pcap]).to_json()
    hop = doc["hops"][0]
    assert hop["matched"]["by_method"] == {"full_proxy": 1}, hop["matched"]
    assert hop["verdict"]["kind"] == "no_loss"
    px = hop["proxied_connections"][0]
    c2s = len(b"EHLO sender.example.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    c2s += len(BODY) + len(b".\r\nQUIT\r\n")
    assert px["client_to_server"] == {"upstream_bytes": c2s, "downstream_bytes": c2s}
    assert px["server_to_client"]["upstream_bytes"] == px["server_to_client"]["downstream_bytes"] > 0
    assert px["upstream"].endswith(f":{p_proxy}") and px["downstream"].endswith(f":{p_server}")
    assert "full proxy" in hop["verdict"]["sentence"]

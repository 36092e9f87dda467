"""The lab's remote MX: a small SMTP server whose every reply the scenario chooses.

Standard library only; one thread per connection with blocking sockets, so "stop reading" really
stops reading and the kernel's receive window closes. It runs inside the recv namespace as
``ip netns exec NS python -m tests.lab.receiver CONFIG.json`` and prints ``READY`` on stdout once
it listens. What it owns: the SMTP dialogue (greeting, EHLO, MAIL, RCPT, DATA, end of data, QUIT),
a Postfix-like idle timeout (``421 4.4.2 <host> Error: timeout exceeded``), and a JSON-lines log
of every command and reply, the receiver's own ground truth. It ends by itself after
``max_seconds`` at the latest.

Config keys (all optional): ``host``, ``port``, ``hostname``, ``hostnames`` (local address → the
name this MX gives when reached on that address), ``greeting``, ``replies`` (per
command: EHLO, HELO, MAIL, RCPT, DATA, EOD, RSET, NOOP, QUIT), ``rcpt_replies`` (recipient local
part prefix → RCPT reply, overriding ``replies["RCPT"]``), ``idle_timeout`` (seconds), ``stop_reading``
(after the 354, read nothing more for ``stop_reading_hold`` seconds, then close), ``rcvbuf``
(SO_RCVBUF of the listening socket, to make the window small), ``log`` (path), ``max_seconds``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": 25,
    "hostname": "mx.example.test",
    "hostnames": {},
    "greeting": None,  # "220 <hostname> ESMTP" unless given
    "replies": {},
    "rcpt_replies": {},
    "idle_timeout": 30.0,
    "stop_reading": False,
    "stop_reading_hold": 10.0,
    "rcvbuf": 0,
    "log": None,
    "max_seconds": 300.0,
}

MAX_LINE = 4096  # a command line longer than this is answered 500 and the line dropped


def default_replies(hostname: str) -> dict[str, str]:
    return {
        "EHLO": f"250-{hostname}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
        "250 ENHANCEDSTATUSCODES",
        "HELO": f"250 {hostname}",
        "MAIL": "250 2.1.0 Ok",
        "RCPT": "250 2.1.5 Ok",
        "DATA": "354 End data with <CR><LF>.<CR><LF>",
        "EOD": "250 2.0.0 Ok: queued",
        "RSET": "250 2.0.0 Ok",
        "NOOP": "250 2.0.0 Ok",
        "QUIT": "221 2.0.0 Bye",
    }


class Log:
    """Thread-safe JSON-lines event log (flushed per line, so a killed receiver loses nothing)."""

    def __init__(self, path: str | None) -> None:
        self._fh = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def __call__(self, conn: int, event: str, **kw: Any) -> None:
        if self._fh is None:
            return
        rec = {"ts": time.time(), "conn": conn, "event": event, **kw}
        with self._lock:
            self._fh.write(json.dumps(rec) + "\n")
            self._fh.flush()


class Session:
    """One SMTP connection: read command lines, answer from the config."""

    def __init__(
        self, sock: socket.socket, peer: tuple[str, int], conn_id: int, cfg: dict[str, Any], log: Log
    ) -> None:
        self.sock, self.peer, self.id, self.cfg, self.log = sock, peer, conn_id, cfg, log
        self.hostname = str(cfg["hostnames"].get(sock.getsockname()[0], cfg["hostname"]))
        self.replies = default_replies(self.hostname) | cfg["replies"]
        self.buf = b""
        self.state = "greeting"
        self.rcpt_ok = 0

    def send(self, reply: str) -> None:
        self.sock.sendall(reply.replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\r\n")
        self.log(self.id, "reply", state=self.state, code=int(reply[:3]), text=reply)

    def recv_more(self) -> bool:
        """Read more bytes; False on EOF. Raises TimeoutError when idle too long."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def readline(self) -> bytes | None:
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                self.buf = b""
                self.send("500 5.5.2 Error: line too long")
            if not self.recv_more():
                return None
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def run(self) -> None:
        self.sock.settimeout(self.cfg["idle_timeout"])
        self.log(self.id, "open", peer=f"{self.peer[0]}:{self.peer[1]}")
        try:
            self.dialogue()
        except TimeoutError:
            # What Postfix's smtpd says when smtpd_timeout expires, then it hangs up.
            self.log(self.id, "idle_timeout", state=self.state)
            with contextlib.suppress(OSError):
                self.send(f"421 4.4.2 {self.hostname} Error: timeout exceeded")
        except OSError as exc:
            self.log(self.id, "error", state=self.state, error=str(exc))
        finally:
            self.sock.close()
            self.log(self.id, "close", state=self.state)

    def dialogue(self) -> None:
        greeting = self.cfg["greeting"] or f"220 {self.hostname} ESMTP"
        self.send(greeting)
        if greeting.startswith(("4", "5")):
            # A refusing greeting: answer what comes (QUIT) briefly, then hang up.
            self.state = "refused"
        while True:
            line = self.readline()
            if line is None:
                self.log(self.id, "eof", state=self.state)
                return
            text = line.decode("utf-8", "replace")
            verb = text.split(" ", 1)[0].upper()
            self.log(self.id, "command", state=self.state, verb=verb, text=text)
            if self.state == "refused" and verb != "QUIT":
                self.send("503 5.5.1 Error: refused at greeting")
                continue
            if verb in ("EHLO", "HELO", "RSET", "NOOP"):
                self.send(self.replies[verb])
                self.state = "ready" if verb != "NOOP" else self.state
            elif verb == "MAIL":
                self.send(self.replies["MAIL"])
                self.state = "mail"
                self.rcpt_ok = 0
            elif verb == "RCPT":
                reply = self.rcpt_reply(text)
                self.send(reply)
                self.rcpt_ok += reply.startswith("2")
            elif verb == "DATA":
                if self.rcpt_ok == 0:
                    self.send("554 5.5.1 Error: no valid recipients")
                    continue
                reply = self.replies["DATA"]
                self.send(reply)
                if reply.startswith("354"):
                    self.state = "data"
                    if self.cfg["stop_reading"]:
                        self.stop_reading()
                        return
                    if not self.read_body():
                        return
                    self.state = "eod"
                    self.send(self.replies["EOD"])
                    self.state = "ready"
            elif verb == "QUIT":
                self.send(self.replies["QUIT"])
                self.state = "quit"
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")

    def rcpt_reply(self, text: str) -> str:
        addr = text.partition(":")[2].strip().strip("<>").split(">")[0]
        local = addr.split("@", 1)[0].lower()
        for prefix, reply in self.cfg["rcpt_replies"].items():
            if local.startswith(prefix.lower()):
                return str(reply)
        return self.replies["RCPT"]

    def read_body(self) -> bool:
        """Consume the message up to the lone dot. False if the peer went away first."""
        # A leading CRLF lets an empty body's ".\r\n" match the same terminator search.
        buf, size = b"\r\n" + self.buf, -2
        while True:
            end = buf.find(b"\r\n.\r\n")
            if end >= 0:
                size += end + 2
                self.buf = buf[end + 5 :]
                self.log(self.id, "body", bytes=size)
                return True
            size += max(0, len(buf) - 4)  # a terminator may straddle two reads: keep 4 bytes
            buf = buf[-4:]
            data = self.sock.recv(65536)
            if not data:
                self.log(self.id, "eof", state=self.state, body_bytes=size)
                return False
            buf += data

    def stop_reading(self) -> None:
        """Read nothing more: the receive buffer fills and the advertised window drops to zero."""
        self.log(self.id, "stop_reading", hold=self.cfg["stop_reading_hold"])
        time.sleep(float(self.cfg["stop_reading_hold"]))


def serve(cfg: dict[str, Any]) -> None:
    log = Log(cfg["log"])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if cfg["rcvbuf"]:
        # Set before listen() so accepted sockets inherit it and the window scale stays small.
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(cfg["rcvbuf"]))
    lsock.bind((cfg["host"], int(cfg["port"])))
    lsock.listen(64)
    lsock.settimeout(0.5)
    log(0, "listen", host=cfg["host"], port=cfg["port"])
    print("READY", flush=True)
    deadline = time.monotonic() + float(cfg["max_seconds"])
    conn_id = 0
    while time.monotonic() < deadline:
        try:
            sock, peer = lsock.accept()
        except TimeoutError:
            continue
        conn_id += 1
        session = Session(sock, peer, conn_id, cfg, log)
        threading.Thread(target=session.run, daemon=True).start()
    log(0, "max_seconds_reached")


def load_config(path: str) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(Path(path).read_text(encoding="utf-8")))
    return cfg


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.lab.receiver CONFIG.json", file=sys.stderr)
        return 2
    serve(load_config(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Open an HTML file in headless Chromium and record what happened, over the DevTools protocol.

No dependency beyond the standard library: Chromium is started with ``--remote-debugging-pipe``
(the transport Puppeteer uses): it reads NUL-terminated JSON commands on fd 3 and writes events
and replies on fd 4. We attach to a fresh page with Network, Log and Runtime enabled, navigate to
the file, wait for the load event, then evaluate a few expressions and take a screenshot.

Every wait is bounded; the browser process is ended by its PID and its profile directory removed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"


@dataclass
class PageVisit:
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    log_entries: list[tuple[str, str, str]] = field(default_factory=list)  # (level, source, text)
    exceptions: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # results of the evaluated expressions
    screenshot: bytes = b""
    loaded: bool = False


class _Pipe:
    def __init__(self, wfd: int, rfd: int) -> None:
        self.wfd, self.rfd = wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]
        return self.next_id

    def _read_one(self, deadline: float) -> dict[str, Any] | None:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
            if not r:
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        out: dict[str, Any] = json.loads(raw)
        return out

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)

    def wait_event(self, name: str, timeout: float) -> bool:
        if any(e.get("method") == name for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                return False
            self.events.append(msg)
            if msg.get("method") == name:
                return True

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                return
            self.events.append(msg)


def visit(
    html_file: Path,
    expressions: dict[str, str],
    *,
    width: int = 1100,
    height: int = 1600,
    timeout: float = 30.0,
    clip_selector: str | None = None,
) -> PageVisit:
    """Load ``html_file`` and return what the page requested, logged, threw and evaluated to."""
    profile = tempfile.mkdtemp(prefix="mailwire-chromium-")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def _fds() -> None:  # in the child: the protocol pipes on fds 3 and 4
        a, b = os.dup(to_child_r), os.dup(from_child_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--mute-audio",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        "--remote-debugging-pipe",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_fds,
        pass_fds=(3, 4),
        start_new_session=True,
    )
    os.close(to_child_r)
    os.close(from_child_w)
    out = PageVisit()
    pipe = _Pipe(to_child_w, from_child_r)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
        sess = pipe.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})[
            "sessionId"
        ]
        for dom in ("Network.enable", "Log.enable", "Runtime.enable", "Page.enable"):
            pipe.call(dom, session=sess)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=sess,
        )
        pipe.events.clear()
        pipe.call("Page.navigate", {"url": html_file.resolve().as_uri()}, session=sess)
        out.loaded = pipe.wait_event("Page.loadEventFired", timeout)
        pipe.drain(1.0)  # late console messages / CSP reports
        for name, expr in expressions.items():
            r = pipe.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sess)
            out.values[name] = r.get("result", {}).get("value")
        shot_params: dict[str, Any] = {"format": "png", "captureBeyondViewport": False}
        if clip_selector:  # screenshot just that element (e.g. one section), wherever it is
            expr = (
                f"(()=>{{const b=document.querySelector({json.dumps(clip_selector)}).getBoundingClientRect();"
                "return [b.left+window.scrollX,b.top+window.scrollY,b.width,b.height]})()"
            )
            r = pipe.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sess)
            x, y, w, h = r["result"]["value"]
            shot_params = {"format": "png", "captureBeyondViewport": True,
                           "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1}}  # fmt: skip
        shot = pipe.call("Page.captureScreenshot", shot_params, session=sess)
        out.screenshot = base64.b64decode(shot["data"])
        for e in pipe.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.requestWillBeSent":
                out.requests.append(p["request"]["url"])
            elif m == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                out.console.append((p.get("type", ""), text))
            elif m == "Log.entryAdded":
                ent = p["entry"]
                out.log_entries.append((ent.get("level", ""), ent.get("source", ""), ent.get("text", "")))
            elif m == "Runtime.exceptionThrown":
                out.exceptions.append(json.dumps(p.get("exceptionDetails", {}))[:500])
        with contextlib.suppress(OSError):
            pipe.send("Browser.close")
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        os.close(to_child_w)
        os.close(from_child_r)
        shutil.rmtree(profile, ignore_errors=True)
    return out


def available() -> bool:
    return Path(CHROMIUM).exists()

"""tcpdump at the lab's capture points: start, wait until it listens, stop by PID.

Full snaplen, pcap output, no name resolution. ``start`` returns once tcpdump has said
"listening on" (bounded wait), so no packet of the scenario is missed; ``stop`` sends SIGINT to
that tcpdump's PID and waits (bounded) for it to flush and exit.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import Lab


@dataclass
class Capture:
    name: str
    role: str
    iface: str
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    stderr: str = ""

    def start(self, lab: Lab, timeout: float = 10.0) -> None:
        # -U: write each packet as it comes, so a killed tcpdump still leaves a usable file.
        cmd = ["tcpdump", "-i", self.iface, "-s", "0", "-n", "-U", "-Z", "root", "-w", str(self.path)]
        self.proc = lab.popen(self.role, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while b"listening on" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                said = buf.decode(errors="replace")
                raise RuntimeError(f"tcpdump on {self.role}/{self.iface} not ready: {said}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk and self.proc.poll() is not None:
                    continue
                buf += chunk
        self.stderr = buf.decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr is not None:
            self.stderr += proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
        self.proc = None

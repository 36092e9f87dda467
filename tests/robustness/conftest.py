"""Fixtures for the robustness suite: the CLI as a user runs it, hostile inputs, tshark/capinfos oracles.

Everything here is built from the shared corpus and the bundled example; hostile files are made
fresh per session under pytest's tmp directory (never committed).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, corpus_captures

EXAMPLE = ROOT / "examples" / "incident"
TRACEBACK = "Traceback (most recent call last)"
CLI_TIMEOUT = 180  # seconds; a hung command fails the test instead of hanging CI


@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + "\n" + self.err

    def json(self) -> Any:
        return json.loads(self.out)


def mailwire(*args: str | Path, stdin: bytes | None = None, timeout: int = CLI_TIMEOUT) -> Run:
    """Run the real command line in a fresh interpreter, 80 columns wide, as a user's shell would."""
    argv = [str(a) for a in args]
    env = dict(os.environ, COLUMNS="80", LINES="50", NO_COLOR="1", PYTHONUNBUFFERED="1")
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mailwire.cli", *argv],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    return Run(
        argv, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )


def assert_no_traceback(run: Run) -> None:
    assert TRACEBACK not in run.both, f"mailwire {' '.join(run.args)} crashed:\n{run.err[-3000:]}"


def schema(name: str) -> dict[str, Any]:
    text = resources.files("mailwire").joinpath(f"schemas/{name}.schema.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def validate(doc: Any, name: str) -> None:
    import jsonschema

    jsonschema.validate(doc, schema(name))


# --- oracles ---------------------------------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (scripts/install-system-deps.sh installs it)")
    return path


class Oracle:
    """Frame counts and frame filters from tshark (cached)."""

    def __init__(self) -> None:
        self._counts: dict[str, int | None] = {}
        self._filters: dict[tuple[str, str, tuple[int, ...]], set[int]] = {}

    def count(self, path: str | Path) -> int | None:
        key = str(Path(path).resolve())
        if key not in self._counts:
            self.prime([path])
        return self._counts[key]

    def prime(self, paths: Iterable[str | Path]) -> None:
        """Frame counts as Wireshark numbers frames (tshark: pcapng custom blocks count, capinfos
        does not), read for several files in parallel."""
        from concurrent.futures import ThreadPoolExecutor

        todo = sorted({str(Path(p).resolve()) for p in paths} - set(self._counts))
        tshark = _need("tshark")

        def count(p: str) -> int | None:
            t = subprocess.run(
                [tshark, "-r", p, "-T", "fields", "-e", "frame.number"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            nums = [int(x) for x in t.stdout.split() if x.isdigit()]
            return max(nums) if nums else None

        with ThreadPoolExecutor(max_workers=4) as pool:
            for p, n in zip(todo, pool.map(count, todo), strict=True):
                self._counts[p] = n

    def matching(self, path: str | Path, display_filter: str, frames: Iterable[int]) -> set[int]:
        """Which of ``frames`` tshark shows with ``display_filter`` applied."""
        fr = tuple(sorted(set(frames)))
        key = (str(Path(path).resolve()), display_filter, fr)
        if key not in self._filters:
            expr = f"({display_filter}) && frame.number in {{{','.join(map(str, fr))}}}"
            proc = subprocess.run(
                [_need("tshark"), "-r", key[0], "-Y", expr, "-T", "fields", "-e", "frame.number"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert "was unexpected" not in proc.stderr and "isn't a valid" not in proc.stderr, (
                f"display filter {display_filter!r} given by mailwire is not valid for tshark: {proc.stderr}"
            )
            self._filters[key] = {int(x) for x in proc.stdout.split() if x.isdigit()}
        return self._filters[key]


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    _need("tshark")
    return Oracle()


# --- inputs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus() -> list[Path]:
    caps = corpus_captures()
    if not caps:
        pytest.skip("shared capture corpus not found (../shared/captures)")
    return caps


@pytest.fixture(scope="session")
def example() -> Path:
    if not (EXAMPLE / "sender.pcap").is_file():
        pytest.skip("examples/incident is missing")
    return EXAMPLE


HOSTILE_LOG = (
    "Mar 31 10:00:01 mx postfix/smtp[123]: 4A1B2C3D4E: to=<<script>alert(1)</script>@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=30, delays=0/0/0/30, dsn=4.4.2, status=deferred "
    "(conversation with mx.example.com[192.0.2.1] timed out while sending message body)\n"
    'Mar 31 10:00:02 mx postfix/smtp[124]: 4A1B2C3D4F: to=<a"><script>alert(2)</script>@example.org>, '
    "relay=mx.example.org[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced "
    "(host mx.example.org[192.0.2.2] said: 550 5.7.1 <script>alert(3)</script> blocked "
    "(in reply to RCPT TO command))\n"
    "Mar 31 10:00:03 mx postfix/smtp[125]: 4A1B2C3D50: to=<ok@example.org>, relay=mx.example.org"
    "[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 1234)\n"
    'Mar 31 10:00:04 mx postfix/smtp[126]: 4A1B2C3D51: to=<"a,b"@example.org>, relay=mx.example.org'
    "[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (host mx.example.org[192.0.2.2] "
    "said: 550 5.1.1 no such user (in reply to RCPT TO command))\n"
)


@dataclass
class Hostile:
    dir: Path
    captures: dict[str, Path]  # unreadable as a whole: the command must say so, naming the file
    partial: dict[str, Path]  # damaged but with readable frames before the damage
    logs: dict[str, Path]


def _truncations(src: Path, n: int, seed: int) -> Iterable[tuple[int, bytes]]:
    data = src.read_bytes()
    rng = random.Random(seed)
    for _ in range(n):
        cut = rng.randrange(25, len(data) - 1)
        yield cut, data[:cut]


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory, corpus: list[Path]) -> Hostile:
    d = tmp_path_factory.mktemp("hostile")
    by_name = {p.name: p for p in corpus}
    rng = random.Random(20261125)
    caps: dict[str, Path] = {}

    def put(name: str, data: bytes, into: dict[str, Path]) -> None:
        p = d / name
        p.write_bytes(data)
        into[name] = p

    put("zero-length.pcap", b"", caps)
    put("random-bytes.pcap", rng.randbytes(4096), caps)
    put("random-bytes.pcapng", b"\x0a\x0d\x0d\x0a" + rng.randbytes(4096), caps)
    put("garbage.pcap.gz", gzip.compress(rng.randbytes(3000)), caps)
    put("header-cut.pcap", by_name["zeek__smtp.pcap"].read_bytes()[:13], caps)
    put("text-file.pcap", b"this is not a capture\n" * 20, caps)
    (d / "a-directory.pcap").mkdir()
    caps["a-directory.pcap"] = d / "a-directory.pcap"
    caps["missing.pcap"] = d / "missing.pcap"

    partial: dict[str, Path] = {}
    for src, seed in (
        ("zeek__smtp.pcap", 1),
        ("ppa3__mail_sender_server_2.pcapng", 2),
        ("pcapngtest__le_difficult_test202.pcapng", 3),
        ("sv__smtp-errors.pcap", 4),
    ):
        for cut, data in _truncations(by_name[src], 2, seed):
            put(f"cut{cut}-{src}", data, partial)
    # a body byte flipped region: random overwrite inside the records of a pcap
    body = bytearray(by_name["ark__smtp-decrypted.pcap"].read_bytes())
    for _ in range(30):
        i = rng.randrange(24, len(body))
        body[i] = rng.randrange(256)
    put("scribbled-ark__smtp-decrypted.pcap", bytes(body), partial)

    logs: dict[str, Path] = {}
    for name, data in (
        ("binary-junk.log", rng.randbytes(6000)),
        ("script-addresses.log", HOSTILE_LOG.encode()),
        ("zero-length.log", b""),
        ("garbage.log.gz", gzip.compress(rng.randbytes(3000))),
        (
            "nul-and-long.log",
            b"\x00" * 100 + b"Mar 31 10:00:01 mx postfix/smtp[1]: " + b"A" * 300_000 + b"\n",
        ),
    ):
        put(name, data, logs)
    logs["a-directory.log"] = caps["a-directory.pcap"]
    logs["missing.log"] = d / "missing.log"
    return Hostile(d, caps, partial, logs)


def _is_file(s: str) -> bool:
    return (ROOT / s).is_file() or Path(s).is_file()


def walk_frames(doc: Any, on: Callable[[str | None, int, dict[str, Any], str], None]) -> None:
    """Call ``on(capture, frame, holder, key)`` for every frame number a mailwire JSON document cites.

    The capture is taken from the nearest enclosing object naming one (``capture``, ``source``,
    ``file``, ``path``; ``upstream``/``downstream`` for compare's per-side frame keys).
    """
    frame_keys = {"frame", "first_frame", "last_frame", "reset_frame", "tls_frame", "rto_frame"}
    list_keys = {"frames", "stall_frames", "idle_frames"}

    def visit(o: Any, stack: list[dict[str, Any]]) -> None:
        if isinstance(o, list):
            for x in o:
                visit(x, stack)
            return
        if not isinstance(o, dict):
            return
        stack = [*stack, o]

        def capture_for(key: str) -> str | None:
            side = {"upstream_frame": "upstream", "downstream_frame": "downstream"}.get(key)
            for holder in reversed(stack):
                if side is not None:
                    if isinstance(holder.get(side), str) and _is_file(holder[side]):
                        return str(holder[side])
                    continue
                for k in ("capture", "source", "file", "path"):
                    if isinstance(holder.get(k), str) and holder[k]:
                        return str(holder[k])
            return None

        for k, v in o.items():
            if k in frame_keys or k in ("upstream_frame", "downstream_frame"):
                if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                    on(capture_for(k), v, o, k)
            elif k == "ref" and o.get("kind") in ("frame", "session") and isinstance(v, int):
                on(capture_for(k), v, o, k)
            elif k in list_keys and isinstance(v, list) and all(isinstance(x, int) for x in v):
                for x in v:
                    if x >= 0:
                        on(capture_for(k), x, o, k)
            else:
                visit(v, stack)

    visit(doc, [])

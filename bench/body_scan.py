"""Message-body scan speed: mailwire's search for lines that start with a dot, next to Python's.

``python bench/body_scan.py [--mb 200] [--repeat 3]``: builds message bodies of two kinds (base64,
as attachments are sent, and prose with a period in nearly every 8-byte word, as text parts are),
lays them out as a capture buffer does (1448-byte TCP payloads between 66 bytes of headers) and
times finding every ``"\\n."`` in them three ways:

- ``mailwire``: ``PayloadView.find_all``, in place over the pieces (what the SMTP dissector runs);
- ``bytes.find``: the pieces joined into one ``bytes`` (the copy counted), then a ``find`` loop, as
  a Python dissector would do it;
- ``numpy``: one vectorised compare over the joined bytes (copy counted).

Each line gives GB/s of body and the ratio to mailwire (peer time / mailwire time). The hit lists
of the three are compared: a wrong count is an error, not a figure.
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable

import numpy as np

PIECE, HEADERS = 1448, 66


def bodies(total: int, seed: int = 1) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    b64 = base64.encodebytes(rng.bytes(total * 3 // 4 + 64)).replace(b"\n", b"\r\n")[:total]
    words = np.array(
        [b"The", b"relay", b"answered.", b"timeout", b"exceeded.", b"Mr.", b"e.g.", b"see", b"2.5", b"ok."],
        dtype=object,
    )
    lines: list[bytes] = []
    size = 0
    while size < total:
        line = b" ".join(rng.choice(words, size=10))
        if rng.random() < 0.01:
            line = b".." + line  # a dot-stuffed line: a hit
        lines.append(line)
        size += len(line) + 2
    prose = b"\r\n".join(lines)[:total]
    return {"base64": b64, "prose": prose}


def layout(body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The body in PIECE-byte payloads separated by HEADERS bytes, as in a capture buffer."""
    n = len(body) // PIECE
    buf = np.zeros(n * (PIECE + HEADERS) + 8, np.uint8)
    starts = np.arange(n, dtype=np.int64) * (PIECE + HEADERS) + HEADERS
    rows = buf[: n * (PIECE + HEADERS)].reshape(n, PIECE + HEADERS)
    rows[:, HEADERS:] = np.frombuffer(body[: n * PIECE], np.uint8).reshape(n, PIECE)
    return buf, starts, np.full(n, PIECE, np.int64)


def best(fn: Callable[[], list[int]], repeat: int) -> tuple[float, list[int]]:
    out: list[int] = []
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def scan(kind: str, body: bytes, repeat: int) -> None:
    from mailwire.tcp.reassembly import PayloadView

    buf, starts, lens = layout(body)
    nbytes = int(lens.sum())

    def joined() -> bytes:
        return b"".join(buf[s : s + PIECE] for s in starts.tolist())  # type: ignore[misc]

    def by_find() -> list[int]:
        data, hits, i = joined(), [], 0
        while (i := data.find(b"\n.", i)) >= 0:
            hits.append(i)
            i += 1
        return hits

    def by_numpy() -> list[int]:
        arr = np.frombuffer(joined(), np.uint8)
        return np.flatnonzero((arr[:-1] == 0x0A) & (arr[1:] == 0x2E)).tolist()

    view = PayloadView(buf, starts, lens)
    view.find_all(b"\n.")  # the compiled kernel loaded once, outside the timing
    t_mw, want = best(lambda: view.find_all(b"\n."), repeat)
    print(f"{kind:7} {nbytes / 1e6:6.0f} MB, {len(want)} hits")
    print(f"  {'mailwire':10} {nbytes / t_mw / 1e9:6.2f} GB/s")
    for name, fn in (("bytes.find", by_find), ("numpy", by_numpy)):
        t, got = best(fn, repeat)
        if got != want:
            raise SystemExit(f"{kind}: {name} found {len(got)} hits, mailwire {len(want)}")
        print(f"  {name:10} {nbytes / t / 1e9:6.2f} GB/s   mailwire is {t / t_mw:.1f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="body megabytes of each kind")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    for kind, body in bodies(a.mb << 20).items():
        scan(kind, body, a.repeat)


if __name__ == "__main__":
    main()

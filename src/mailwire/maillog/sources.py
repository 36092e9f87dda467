"""Log inputs: files (plain, gzip, bzip2, xz, zstd), rotated sets, stdin, journald export.

Owns turning inputs into lines with bounded memory: bytes are read in blocks, split at newlines,
decoded block-wise (invalid UTF-8 replaced, never fatal) and an over-long line is cut off and
reported rather than buffered. Rotated siblings (``maillog.2.gz``, ``maillog.1``, ``maillog``)
are put oldest first, so per-process linking and year inference run in time order. journald's
``-o export`` block format, with its length-prefixed binary fields, is read here too.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

BLOCK = 1 << 20
MAX_LINE = 64 << 10  # longer lines are cut and counted as garbage
MAX_EXPORT_FIELD = 1 << 20

_ROT = re.compile(r"^(?P<base>.*?)(?:[.-](?P<n>\d{1,4}|\d{8}))?(?P<ext>\.(?:gz|bz2|xz|zst))?$")


def rotation_key(path: str) -> tuple[str, int]:
    """Sort key: same base name together, higher rotation number (older) first, the live file last."""
    m = _ROT.match(Path(path).name)
    if m is None:
        return (path, 0)
    base = str(Path(path).parent / m.group("base"))
    n = m.group("n")
    if n is None:
        return (base, 0)
    if len(n) == 8:  # dateext: maillog-20240331 — later dates are newer
        return (base, -100_000_000 + int(n) - 99_999_999)
    return (base, -int(n))


def order_inputs(paths: Sequence[str]) -> list[str]:
    if len(paths) < 2 or "-" in paths:
        return list(paths)
    return sorted(paths, key=rotation_key)


def open_binary(path: str) -> IO[bytes]:
    """Open a path (``-`` = stdin) for reading, transparently decompressing by magic bytes."""
    raw: IO[bytes]
    if path == "-":
        raw = (
            io.BufferedReader(sys.stdin.buffer.raw) if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
        )
    else:
        raw = open(path, "rb")  # noqa: SIM115 - handed to the caller, who closes it
    peek = raw.peek(6)[:6] if hasattr(raw, "peek") else b""
    if peek[:2] == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if peek[:3] == b"BZh":
        return cast(IO[bytes], bz2.BZ2File(raw))
    if peek[:6] == b"\xfd7zXZ\x00":
        return cast(IO[bytes], lzma.LZMAFile(raw))
    if peek[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(raw))
    return raw


def peek_start(fh: IO[bytes]) -> bytes:
    if hasattr(fh, "peek"):
        try:
            return bytes(fh.peek(64)[:64])
        except (OSError, EOFError):
            return b""
    return b""


def is_export(start: bytes) -> bool:
    return start.startswith((b"__CURSOR=", b"__REALTIME_TIMESTAMP=", b"__MONOTONIC_TIMESTAMP="))


def iter_line_blocks(fh: IO[bytes]) -> Iterator[list[str | None]]:
    """Lines without their end-of-line, a block at a time (one list per ~1 MiB read);
    ``None`` stands for a line cut off at ``MAX_LINE`` bytes."""
    # read1 hands over what was decompressed so far: a truncated archive still yields its lines
    read = fh.read1 if hasattr(fh, "read1") else fh.read
    rest = b""
    skipping = False  # inside an over-long line: drop bytes until its newline
    while True:
        block = read(BLOCK)
        if not block:
            break
        if skipping:
            nl = block.find(b"\n")
            if nl < 0:
                continue
            block = block[nl + 1 :]
            skipping = False
        data = rest + block if rest else block
        last = data.rfind(b"\n")
        if last < 0:
            rest = data
        else:
            text = data[:last].decode("utf-8", "replace")
            rest = data[last + 1 :]
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            lines: list[str | None] = text.split("\n")  # type: ignore[assignment]
            if len(text) > MAX_LINE:  # only then can a line be over-long
                lines = [None if x is not None and len(x) > MAX_LINE else x for x in lines]
            yield lines
        if len(rest) > MAX_LINE:
            yield [None]
            rest = b""
            skipping = True
    if rest and not skipping:
        line = rest.decode("utf-8", "replace")
        yield [line[:-1] if line.endswith("\r") else line]


def iter_lines(fh: IO[bytes]) -> Iterator[str | None]:
    """Lines one by one (see ``iter_line_blocks``)."""
    for block in iter_line_blocks(fh):
        yield from block


def iter_export(fh: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """journald export entries: (line number of the entry's first field, fields) — None = broken entry."""
    reader = fh
    lineno = 0
    start = 1
    fields: dict[str, Any] = {}
    broken = False
    while True:
        line = reader.readline(MAX_LINE)
        if not line:
            break
        lineno += 1
        if line in (b"\n", b"\r\n"):
            if fields or broken:
                yield start, None if broken else fields
            fields, broken = {}, False
            start = lineno + 1
            continue
        if not line.endswith(b"\n"):
            broken = True  # over-long or truncated
            continue
        body = line[:-1]
        eq = body.find(b"=")
        if eq > 0:
            fields[body[:eq].decode("ascii", "replace")] = body[eq + 1 :].decode("utf-8", "replace")
            continue
        # binary field: NAME\n<le64 size><data>\n
        size_b = reader.read(8)
        if len(size_b) < 8:
            broken = True
            break
        size = int.from_bytes(size_b, "little")
        if size > MAX_EXPORT_FIELD:
            broken = True
            break  # cannot resynchronise safely after a hostile length
        data = reader.read(size)
        nl = reader.read(1)
        if len(data) < size or nl != b"\n":
            broken = True
            break
        fields[body.decode("ascii", "replace")] = data.decode("utf-8", "replace")
        lineno += data.count(b"\n") + 1
    if fields or broken:
        yield start, None if broken else fields

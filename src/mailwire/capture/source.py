"""Byte sources: a capture file, or stdin, as one bounded-read binary stream, decompressed if needed.

Theory of operation
-------------------
``open_source(path)`` opens the file (``"-"`` = stdin), peeks at the first bytes and, when they
carry a gzip, bzip2, xz or zstd magic number, wraps the stream in the matching *streaming*
decompressor. The name of the file is never consulted: a ``.pcap`` that is really gzip'd is read,
a ``.gz`` that is really plain is read too.

Readers downstream only ever call ``read(n)`` with a bounded ``n`` (the chunk size), so a
decompression bomb costs time, never memory: at most one chunk of decompressed bytes exists at once.
This module knows nothing about capture formats.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

# Magic numbers of the compressed formats we undo (first bytes of the stream).
_MAGICS: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
]


class SourceError(Exception):
    """The source cannot be opened or decompressed (message names the file)."""


class _Prefixed(io.RawIOBase):
    """A non-seekable stream whose first bytes were already consumed for sniffing."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        mv = memoryview(b).cast("B")
        if self._head:
            n = min(len(mv), len(self._head))
            mv[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._rest, "readinto", None)
        if readinto is not None:
            return int(readinto(mv) or 0)
        data = self._rest.read(len(mv))
        n = len(data)
        mv[:n] = data
        return n


@dataclass
class Source:
    """An open byte source: ``stream`` yields the (decompressed) capture bytes."""

    name: str  # what messages call the file
    stream: BinaryIO
    compression: str  # "none", "gzip", "bzip2", "xz", "zstd"
    _closers: list[BinaryIO]

    def read(self, n: int) -> bytes:
        """At most ``n`` bytes; fewer only at the end of the stream."""
        out = bytearray()
        while len(out) < n:
            try:
                piece = self.stream.read(n - len(out))
            except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
                raise SourceError(f"{self.name}: {self.compression} stream is corrupt: {exc}") from exc
            if not piece:
                break
            out += piece
        return bytes(out)

    def readinto(self, mv: memoryview) -> int:
        """Fill ``mv`` (bounded by its size); fewer bytes only at the end of the stream."""
        got = 0
        total = len(mv)
        while got < total:
            try:
                if self.compression == "none":
                    k = self.stream.readinto(mv[got:])  # type: ignore[attr-defined]
                else:
                    piece = self.stream.read(min(total - got, 1 << 20))
                    k = len(piece)
                    mv[got : got + k] = piece
            except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
                raise SourceError(f"{self.name}: {self.compression} stream is corrupt: {exc}") from exc
            if not k:
                break
            got += k
        return got

    def close(self) -> None:
        for c in self._closers:
            with contextlib.suppress(OSError):
                c.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sniff(raw: BinaryIO) -> tuple[bytes, str]:
    head = b""
    while len(head) < 6:
        piece = raw.read(6 - len(head))
        if not piece:
            break
        head += piece
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return head, kind
    return head, "none"


def open_source(path: str | Path) -> Source:
    """Open ``path`` (``"-"`` = stdin) for bounded reads, undoing compression found by magic."""
    name = str(path)
    closers: list[BinaryIO] = []
    if name == "-":
        raw: BinaryIO = sys.stdin.buffer
        name = "<stdin>"
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by Source.close
        except OSError as exc:
            raise SourceError(f"{name}: cannot open: {exc.strerror or exc}") from exc
        closers.append(raw)
    head, kind = _sniff(raw)
    base: BinaryIO = io.BufferedReader(_Prefixed(head, raw), 1 << 16)
    stream: BinaryIO
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=base, mode="rb")  # type: ignore[assignment]
    elif kind == "bzip2":
        stream = bz2.BZ2File(base, "rb")  # type: ignore[assignment]
    elif kind == "xz":
        stream = lzma.LZMAFile(base, "rb")  # type: ignore[assignment]  # noqa: SIM115
    elif kind == "zstd":
        stream = zstandard.ZstdDecompressor().stream_reader(base, read_across_frames=True)
    else:
        stream = base
    closers.insert(0, stream)
    return Source(name=name, stream=stream, compression=kind, _closers=closers)


__all__ = ["Source", "SourceError", "open_source"]

"""Byte sources: a capture file, or stdin, as one bounded-read binary stream, decompressed if needed.

Theory of operation
-------------------
``open_source(path)`` opens the file (``"-"`` = stdin), peeks at the first bytes and, when they
carry a gzip, bzip2, xz or zstd magic number, decompresses it with a *streaming* decompressor fed
in bounded pieces. The name of the file is never consulted: a ``.pcap`` that is really gzip'd is
read, a ``.gz`` that is really plain is read too.

Readers downstream only ever call ``read(n)``/``readinto`` with a bounded ``n`` (the chunk size),
and every decompressor call is capped at the bytes still wanted, so a decompression bomb costs
time, never memory.

A compressed stream that is cut short (a capture still being written, an interrupted copy) or
corrupt part-way does not raise: every byte decompressed before the damage is delivered, then the
stream ends and :attr:`Source.problem` says what happened and at which compressed byte offset.
This module knows nothing about capture formats.
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

# Magic numbers of the compressed formats we undo (first bytes of the stream).
_MAGICS: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
]
_PIECE = 1 << 16  # compressed bytes read from the file per step
# compressed bytes handed to gzip/bzip2/xz per call: a decompressor that raises drops the output of
# that call, so small feeds keep nearly everything decoded before damage
_FEED = 1 << 13


class SourceError(Exception):
    """The source cannot be opened (message names the file)."""


class _Counting:
    """Reads the raw file (after the sniffed head), counting compressed bytes consumed."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw
        self.consumed = 0
        self.frames: _ZstdFrames | None = None

    def read(self, n: int = _PIECE) -> bytes:
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
        else:
            data = self._raw.read(max(1, min(n, 1 << 20)))
        self.consumed += len(data)
        if self.frames is not None:
            self.frames.feed(data)
        return data

    def readinto(self, mv: memoryview) -> int:
        """Plain captures: straight into the caller's buffer, no copy (after the sniffed head)."""
        if self._head:
            data = self.read(len(mv))
            mv[: len(data)] = data
            return len(data)
        k = int(self._raw.readinto(mv) or 0)  # type: ignore[attr-defined]
        self.consumed += k
        return k


class _ZstdFrames:
    """Walks zstd frame and block headers (no decoding) to tell a whole stream from a cut one.

    zstandard's stream reader ends silently at a cut, so completeness is judged from the framing:
    the input must end exactly after a frame's last block (and checksum) or a skippable frame.
    """

    def __init__(self) -> None:
        self.state = "magic"
        self.want = 4
        self.acc = bytearray()
        self.skip = 0
        self.checksum = 0
        self.unknown = False  # framing we do not recognise: leave judgement to the decoder

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n and not self.unknown:
            if self.skip:
                k = min(self.skip, n - i)
                self.skip -= k
                i += k
                continue
            k = min(self.want - len(self.acc), n - i)
            self.acc += data[i : i + k]
            i += k
            if len(self.acc) == self.want:
                field_ = bytes(self.acc)
                self.acc.clear()
                self._advance(field_)

    def _advance(self, f: bytes) -> None:
        v = int.from_bytes(f, "little")
        if self.state == "magic":
            if v == 0xFD2FB528:
                self.state, self.want = "descriptor", 1
            elif 0x184D2A50 <= v <= 0x184D2A5F:
                self.state, self.want = "skippable", 4
            else:
                self.unknown = True
        elif self.state == "descriptor":
            single = (v >> 5) & 1
            self.checksum = 4 if (v >> 2) & 1 else 0
            rest = (0 if single else 1) + (0, 1, 2, 4)[v & 3] + (single, 2, 4, 8)[v >> 6]
            self.state, self.want = ("header", rest) if rest else ("block", 3)
        elif self.state == "header":
            self.state, self.want = "block", 3
        elif self.state == "block":
            last, kind, size = v & 1, (v >> 1) & 3, v >> 3
            self.skip = (1 if kind == 1 else size) + (self.checksum if last else 0)
            self.state, self.want = ("magic", 4) if last else ("block", 3)
        else:  # skippable frame: its size, then its content
            self.skip = v
            self.state, self.want = "magic", 4

    def complete(self) -> bool:
        return self.unknown or (self.state == "magic" and not self.acc and not self.skip)


class _Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


def _new_decompressor(kind: str) -> _Decompressor:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


class _Inflater:
    """gzip / bzip2 / xz: decompressor objects fed bounded pieces, output capped per call.

    Concatenated members (gzip) and streams (bzip2, xz) are read one after the other, as
    ``zcat``/``bzcat``/``xzcat`` do; zero padding after the last one is ignored.
    """

    def __init__(self, kind: str, raw: _Counting) -> None:
        self.kind = kind
        self.raw = raw
        self.d = _new_decompressor(kind)
        self.pending = b""  # compressed input not yet accepted by the decompressor
        self.started = False  # the current member has received input
        self.full = False  # last call filled its output cap: more output may be waiting
        self.problem: str | None = None
        self.done = False

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n and not self.done:
            if not self.pending and not self.full and self._needs_input():
                data = self.raw.read(_FEED)
                if not data:
                    if self.started:
                        self.problem = (
                            f"{self.kind} stream ends early at compressed byte offset {self.raw.consumed} "
                            "(file cut short?); frames before it kept"
                        )
                    self.done = True
                    break
                self.pending = data
            limit = n - len(out)
            try:
                got = self.d.decompress(self.pending, limit)
            except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
                at = self.raw.consumed - len(self.pending)
                self.problem = (
                    f"{self.kind} stream is corrupt near compressed byte offset {at}: {exc}; "
                    "frames before it kept"
                )
                self.done = True
                break
            self.started = self.started or bool(self.pending)
            self.pending = self._leftover()
            self.full = len(got) == limit
            out += got
            if self.d.eof:
                self._next_member()
        return bytes(out)

    def _needs_input(self) -> bool:
        return bool(getattr(self.d, "needs_input", True))

    def _leftover(self) -> bytes:
        # zlib hands back what it did not take; bz2/lzma keep it internally
        return bytes(getattr(self.d, "unconsumed_tail", b""))

    def _next_member(self) -> None:
        # at a member's end every input byte it did not use is in unused_data (zlib also leaves a
        # copy in unconsumed_tail, so ``pending`` must not be added again)
        rest = self.d.unused_data
        self.pending = b""
        self.d = _new_decompressor(self.kind)
        self.started = False
        self.full = False
        rest = rest.lstrip(b"\x00")
        while not rest:
            data = self.raw.read(_PIECE)
            if not data:
                self.done = True
                return
            rest = data.lstrip(b"\x00")
        self.pending = rest


class _Zstd:
    """zstd: zstandard's stream reader (bounded output per read) plus a framing check at the end."""

    def __init__(self, raw: _Counting) -> None:
        self.raw = raw
        raw.frames = _ZstdFrames()
        self.frames = raw.frames
        self.r = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_PIECE, read_across_frames=True)  # type: ignore[arg-type]
        self.problem: str | None = None
        self.done = False

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n and not self.done:
            try:
                piece = self.r.read(min(n - len(out), 1 << 20))
            except (zstandard.ZstdError, OSError) as exc:
                self.problem = (
                    f"zstd stream is corrupt near compressed byte offset {self.raw.consumed}: {exc}; "
                    "frames before it kept"
                )
                self.done = True
                break
            if not piece:
                self.done = True
                if not self.frames.complete():
                    self.problem = (
                        f"zstd stream ends early at compressed byte offset {self.raw.consumed} "
                        "(file cut short?); frames before it kept"
                    )
                break
            out += piece
        return bytes(out)


@dataclass
class Source:
    """An open byte source: ``read``/``readinto`` yield the (decompressed) capture bytes."""

    name: str  # what messages call the file
    compression: str  # "none", "gzip", "bzip2", "xz", "zstd"
    _raw: _Counting
    _dec: _Inflater | _Zstd | None
    _closers: list[BinaryIO] = field(default_factory=list)
    problem: str | None = None  # why the stream ended before its proper end (None: it did not)

    @property
    def compressed_bytes(self) -> int:
        """Bytes read from the file (or stdin) so far: the on-disk size once the stream ended."""
        return self._raw.consumed

    def read(self, n: int) -> bytes:
        """At most ``n`` bytes; fewer only at the end of the stream (or where it is damaged)."""
        out = bytearray()
        while len(out) < n and self.problem is None:
            piece = self._piece(n - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def readinto(self, mv: memoryview) -> int:
        """Fill ``mv`` (bounded by its size); fewer bytes only at the end of the stream."""
        got = 0
        total = len(mv)
        while got < total and self.problem is None:
            if self._dec is None:
                try:
                    k = self._raw.readinto(mv[got:])
                except OSError as exc:
                    self.problem = f"read error at byte offset {self._raw.consumed}: {exc.strerror or exc}"
                    break
                if not k:
                    break
                got += k
                continue
            piece = self._piece(min(total - got, 1 << 20))
            k = len(piece)
            if not k:
                break
            mv[got : got + k] = piece
            got += k
        return got

    def _piece(self, n: int) -> bytes:
        try:
            if self._dec is None:
                return self._raw.read(n)
            piece = self._dec.read(n)
        except OSError as exc:
            self.problem = f"read error at byte offset {self._raw.consumed}: {exc.strerror or exc}"
            return b""
        if self._dec.problem is not None and self.problem is None:
            self.problem = self._dec.problem
        return piece

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
    try:
        head, kind = _sniff(raw)
    except OSError as exc:
        for c in closers:
            c.close()
        raise SourceError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    counting = _Counting(head, raw)
    dec: _Inflater | _Zstd | None
    if kind == "zstd":
        dec = _Zstd(counting)
    elif kind == "none":
        dec = None
    else:
        dec = _Inflater(kind, counting)
    return Source(name=name, compression=kind, _raw=counting, _dec=dec, _closers=closers)


__all__ = ["Source", "SourceError", "open_source"]

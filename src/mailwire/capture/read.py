"""Reading captures: file → bounded buffers → record walk → header decode → PacketTables.

Theory of operation
-------------------
Data flow for one capture::

    open_source (file or stdin; gzip/bzip2/xz/zstd undone by magic, streaming)
      → bounded buffer of ``chunk_bytes`` (plus the unfinished record carried over)
      → PcapReader / PcapngReader.step: compiled record walk → offsets, lengths, timestamps
      → decode.decode: link / IP / TCP / UDP / ICMP columns, vectorised
      → PacketTable (yielded; ``frame`` continues across chunks)

Memory is bounded by the chunk size and ``max_packets`` rows per table, whatever the file size:
a buffer is read, walked and decoded, its tables yielded, and only the tail holding an unfinished
record is copied into the next buffer. Each yielded table keeps a reference to its own buffer
(payload bytes are views into it), so consumers that keep tables keep their buffers, and nothing
else does. A buffer nothing refers to any more is filled again for a later chunk
(:class:`_Buffers`): fresh memory costs a page fault per 4 KB, more than reading into it. A
record larger than the buffer grows the next buffer, up to the per-record limits the readers
enforce (so a length field can never make us allocate more than that).

Errors: a file we cannot read at all raises :class:`CaptureError` (message names the file); damage
inside a readable file becomes :class:`DecodeIssue` entries on the tables, and reading goes on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mailwire.capture import pcap, pcapng
from mailwire.capture.decode import decode
from mailwire.capture.source import SourceError, open_source
from mailwire.capture.table import COLUMNS, SACK_COLUMNS, DecodeIssue, Interface, PacketTable, empty_columns

DEFAULT_CHUNK = 64 << 20
MAX_PACKETS = 1 << 17  # rows per table: bounds the column memory of one chunk


class CaptureError(Exception):
    """The capture cannot be read at all (not a capture, unreadable, corrupt compression)."""


@dataclass
class CaptureInfo:
    """What the reader learnt about the file itself (filled while iterating)."""

    path: str
    format: str = ""
    compression: str = "none"
    interfaces: list[Interface] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    bytes_read: int = 0


class _Buffers:
    """Chunk buffers, each reused once no table, view or consumer refers to it any more."""

    def __init__(self, keep: int = 4) -> None:
        self._pool: list[np.ndarray] = []
        self._keep = keep

    def get(self, n: int) -> np.ndarray:
        pool = self._pool
        for i in range(len(pool)):
            # references: the pool's and getrefcount's own argument; any view or table adds one
            if sys.getrefcount(pool[i]) <= 2:
                if pool[i].shape[0] >= n:
                    return pool[i]
                # free but too small (the first chunk's buffer had no carry to hold): let it go
                # rather than keep it beside a new one (a chunk's worth of memory for nothing)
                pool[i] = np.empty(0, np.uint8)
        pool[:] = [b for b in pool if b.shape[0]]
        buf = np.empty(-(-n // (1 << 20)) << 20, np.uint8)  # whole MiB: the next carry fits too
        if len(pool) < self._keep:
            pool.append(buf)
        return buf


def _reader(name: str, head: bytes) -> pcap.PcapReader | pcapng.PcapngReader:
    if pcapng.sniff(head):
        return pcapng.PcapngReader(name, head)
    if pcap.sniff(head):
        return pcap.PcapReader(name, head)
    shown = head[:4].hex() if head else "nothing"
    raise CaptureError(f"{name}: not a pcap or pcapng capture (starts with {shown})")


def iter_tables(
    path: str | Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK,
    max_packets: int = MAX_PACKETS,
    info: CaptureInfo | None = None,
) -> Iterator[PacketTable]:
    """Decode ``path`` (``"-"`` = stdin) into PacketTables in file order, one bounded chunk at a time.

    Always yields at least one table (possibly empty) so interfaces and issues are delivered.
    Raises :class:`CaptureError` when the file cannot be read at all.
    """
    chunk_bytes = max(int(chunk_bytes), 4096)
    try:
        src = open_source(path)
    except SourceError as exc:
        raise CaptureError(str(exc)) from exc
    name = src.name
    if info is None:
        info = CaptureInfo(path=name)
    info.path = name
    info.compression = src.compression
    buffers = _Buffers()
    with src:
        # room for a carry beside a chunk from the start: this buffer is reused, not replaced
        buf = buffers.get(chunk_bytes + (1 << 20))[:chunk_bytes]
        got = src.readinto(memoryview(buf))  # type: ignore[arg-type]
        buf = buf[:got]
        first = bytes(buf[:64])
        if not got:
            if src.problem is not None:
                raise CaptureError(
                    f"{name}: {src.problem.removesuffix('; frames before it kept')}; "
                    f"nothing could be decompressed before it ({src.compressed_bytes} bytes on disk)"
                )
            if src.compression != "none":
                raise CaptureError(
                    f"{name}: {src.compression} stream holds no data "
                    f"({src.compressed_bytes} bytes on disk), not a capture"
                )
            raise CaptureError(f"{name}: file is empty (0 bytes), not a capture")
        try:
            reader = _reader(name, first)
        except (pcap.PcapFormatError, pcapng.PcapngFormatError, CaptureError) as exc:
            why = str(exc)
            if src.problem is not None:  # say why so little came out of the compressed stream
                why += f" (the {src.problem.removesuffix('; frames before it kept')}"
                why += f"; {src.compressed_bytes} bytes on disk)"
            raise CaptureError(why) from exc
        info.format = reader.format
        info.interfaces = reader.interfaces
        hdr = reader.header_len
        base = 0  # file offset (decompressed) of buf[0]
        pos = hdr
        end = got
        eof = got < chunk_bytes
        frame = 1
        pending: list[DecodeIssue] = []
        reported = False  # the source's problem (cut or corrupt stream) is reported once
        if src.problem is not None:
            pending.append(DecodeIssue(name, src.problem, offset=got))
            reported = True
        yielded = False
        while True:
            state = "again"
            while state == "again":
                try:
                    recs, pos, state, issues = reader.step(buf, pos, end, eof, base, frame, max_packets)
                except pcapng.PcapngFormatError as exc:
                    if frame == 1 and not yielded:
                        raise CaptureError(str(exc)) from exc
                    pending.append(DecodeIssue(name, str(exc).removeprefix(f"{name}: ")))
                    state, recs, issues, eof, pos = "stop", None, [], True, end
                pending.extend(issues)
                if recs is not None:
                    table = _table(name, buf, recs, frame, reader.interfaces, pending)
                    pending = []
                    frame += len(table)
                    yielded = True
                    yield table
                if state == "stop":
                    break
            if eof or state == "stop":
                if state != "stop":
                    tail = reader.trailing_issue(end - pos, base + pos, frame)
                    if tail is not None:
                        pending.append(tail)
                break
            # carry the unfinished record into a fresh buffer (tables keep the old one)
            carry = buf[pos:end]
            cn = carry.size
            nbuf = buffers.get(cn + chunk_bytes)[: cn + chunk_bytes]
            nbuf[:cn] = carry
            del carry, buf  # no reference of ours keeps the old buffer from being reused
            got = src.readinto(memoryview(nbuf)[cn:])  # type: ignore[arg-type]
            if src.problem is not None and not reported:
                pending.append(DecodeIssue(name, src.problem, offset=base + end + got))
                reported = True
            eof = eof or got < chunk_bytes
            base += pos
            buf = nbuf[: cn + got]
            del nbuf
            pos, end = 0, cn + got
        info.bytes_read = base + end
        info.details = reader.describe()
        if pending or not yielded:
            yield PacketTable(
                path=name,
                buf=np.zeros(0, np.uint8),
                columns=empty_columns(0),
                interfaces=reader.interfaces,
                issues=pending,
            )


def _table(
    name: str,
    buf: np.ndarray,
    recs: dict[str, np.ndarray],
    frame: int,
    interfaces: list[Interface],
    issues: list[DecodeIssue],
) -> PacketTable:
    n = recs["pkt_off"].shape[0]
    cols = empty_columns(n)
    cols["frame"] = np.arange(frame, frame + n, dtype=np.int64)
    for key in ("pkt_off", "caplen", "wirelen", "ts_ns", "interface", "link_type", "warnings"):
        cols[key] = recs[key].astype(COLUMNS[key], copy=False)
    decode(buf, cols)
    comments = recs.get("_comments")
    return PacketTable(
        path=name,
        buf=buf,
        columns=cols,
        interfaces=interfaces,
        issues=list(issues),
        comments=dict(comments) if isinstance(comments, dict) else {},
    )


def concat(tables: list[PacketTable]) -> PacketTable:
    """One table from several (buffers joined, offsets shifted)."""
    if not tables:
        return PacketTable(path="", buf=np.zeros(0, np.uint8), columns=empty_columns(0))
    if len(tables) == 1:
        return tables[0]
    bufs: list[np.ndarray] = []
    shift = 0
    cols: dict[str, list[np.ndarray]] = {k: [] for k in [*COLUMNS, *SACK_COLUMNS]}
    for t in tables:
        # several tables of one chunk share its buffer: append each buffer once
        if not bufs or t.buf is not bufs[-1]:
            if bufs:
                shift += bufs[-1].shape[0]
            bufs.append(t.buf)
        for k in cols:
            v = t.columns[k]
            cols[k].append(v + shift if k == "pkt_off" else v)
    comments: dict[int, str] = {}
    issues: list[DecodeIssue] = []
    for t in tables:
        comments.update(t.comments)
        issues.extend(t.issues)
    return PacketTable(
        path=tables[0].path,
        buf=np.concatenate(bufs) if bufs else np.zeros(0, np.uint8),
        columns={k: np.concatenate(v) for k, v in cols.items()},
        interfaces=tables[-1].interfaces,
        issues=issues,
        comments=comments,
    )


def read_table(path: str | Path, *, info: CaptureInfo | None = None) -> PacketTable:
    """The whole capture as one table (small files, tests). Large files: use :func:`iter_tables`."""
    return concat(list(iter_tables(path, info=info)))


__all__ = ["CaptureError", "CaptureInfo", "concat", "iter_tables", "read_table"]

"""Long lists of records kept in a temporary file rather than in memory.

A capture's per-session records (SMTP session, TCP facts, verdict: about 10 kB a session) and its
connection records grow with the capture; held in memory they were the largest part of
``mailwire analyze``'s peak. :class:`Spill` collects records; past ``in_memory`` of them they go
to an unnamed temporary file, pickled ``PIECE`` records at a time, and :class:`Spilled` reads them
back a piece at a time (one piece kept). Each record comes with a small key (its connection
number, its verdict's rank) kept in memory, so that shards are merged and sessions ranked without
reading the records. :class:`Picked` is a read-only view of records of several lists in a chosen
order (merged shards, sessions across captures, worst first).

The records are loaded again on every pass over them: what reads them is written to pass once (the
JSON document, the findings) or to pick a few (the terminal summary).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import operator
import os
import pickle
import tempfile
from abc import abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import IO, Any, Generic, TypeVar, overload

import numpy as np

T = TypeVar("T")
V = TypeVar("V")
C = TypeVar("C", bound=type)

PIECE = 64  # records per pickle: a piece is loaded to read one of its records
IN_MEMORY = 2048  # records kept in memory before the file is used (small captures never touch it)


class _Listlike(Sequence[T]):
    """Compares equal to a list (or any sequence) of the same items, as the lists these replace."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so not hashable either

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self._at(k) for k in range(*i.indices(len(self)))]
        return self._at(i)

    @abstractmethod
    def _at(self, i: int) -> T:
        """Item ``i`` (an index within range; negative counts from the end)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)} records>"


class Spilled(_Listlike[T]):
    """Records in a file (``pieces``: offset, size and record count of each pickle), or in memory
    when they are few (``items``, which may also be a view of other lists: merged shards).
    ``keys[i]`` is the key given with record ``i``."""

    __slots__ = ("_cached", "_cached_i", "_file", "_items", "_pieces", "_starts", "keys")

    def __init__(
        self,
        keys: list[Any],
        *,
        items: Sequence[T] | None = None,
        file: IO[bytes] | None = None,
        pieces: list[tuple[int, int, int]] | None = None,
    ) -> None:
        self.keys = keys
        self._items = items
        self._file = file
        self._pieces = pieces or []
        starts, n = [], 0
        for _off, _size, count in self._pieces:
            starts.append(n)
            n += count
        self._starts = starts
        self._cached_i = -1
        self._cached: list[T] = []

    @property
    def in_file(self) -> bool:
        return self._items is None

    def __len__(self) -> int:
        return len(self.keys)

    def _piece(self, p: int) -> list[T]:
        if p != self._cached_i:
            assert self._file is not None
            off, size, _count = self._pieces[p]
            data = os.pread(self._file.fileno(), size, off)
            if len(data) != size:
                raise OSError(f"records file cut short at piece {p}")
            self._cached = pickle.loads(data)
            self._cached_i = p
        return self._cached

    def _at(self, i: int) -> T:
        if self._items is not None:
            return self._items[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        p = bisect.bisect_right(self._starts, i) - 1
        return self._piece(p)[i - self._starts[p]]

    def __iter__(self) -> Iterator[T]:
        if self._items is not None:
            yield from self._items
            return
        for p in range(len(self._pieces)):
            yield from self._piece(p)
        self._cached_i, self._cached = -1, []  # a full pass keeps nothing behind

    @property
    def layout(self) -> list[tuple[int, int]]:
        """Size in bytes and record count of each piece in the file."""
        return [(size, count) for _off, size, count in self._pieces]

    def raw_pieces(self) -> Iterator[bytes]:
        """Each piece's pickled bytes, in order (copied by :mod:`mailwire.workers`
        into a worker's result file without loading the records)."""
        assert self._file is not None
        for off, size, _count in self._pieces:
            yield os.pread(self._file.fileno(), size, off)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as a whole (small lists, or a caller that wants a copy): the records themselves
        return (_in_memory, (list(self), list(self.keys)))


def _in_memory(items: list[T], keys: list[Any]) -> Spilled[T]:
    return Spilled(keys, items=items)


def from_pieces(file: IO[bytes], keys: list[Any], start: int, layout: list[tuple[int, int]]) -> Spilled[Any]:
    """Records already pickled in ``file`` from offset ``start``, one piece after the other as
    :attr:`Spilled.layout` describes them (the result keeps the file open)."""
    pieces, off = [], start
    for size, count in layout:
        pieces.append((off, size, count))
        off += size
    return Spilled(keys, file=file, pieces=pieces)


def _temporary() -> IO[bytes] | None:
    """An unnamed temporary file, kept open by whatever reads from it; None when the temporary
    directory refuses one (the records then stay in memory: larger, nothing lost)."""
    try:
        # unbuffered: a write the disk refuses fails at once, with everything before it on disk
        return tempfile.TemporaryFile(buffering=0)
    except OSError:
        return None


def _write_all(file: IO[bytes], data: bytes) -> None:
    if file.write(data) != len(data):  # a short write: the disk is full
        raise OSError(f"temporary file: {len(data)} bytes not written")


class WordFile:
    """Arrays of int64 words appended to an unnamed temporary file (made at the first append) and
    read back by byte offset: the TCP stage's retired per-connection state. A write the disk
    refuses, or no file at all, raises ``OSError`` with nothing recorded: the caller keeps its
    data in memory."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._file: IO[bytes] | None = None
        self.end = 0  # bytes written

    def append(self, data: np.ndarray) -> int:
        """Write ``data`` (int64) at the end; its byte offset."""
        if self._file is None:
            # closed by close(): it outlives this call
            self._file = tempfile.TemporaryFile(prefix=self._prefix, buffering=0)  # noqa: SIM115
        raw = np.ascontiguousarray(data, dtype=np.int64).tobytes()
        if os.pwrite(self._file.fileno(), raw, self.end) != len(raw):
            raise OSError(errno.ENOSPC, "short write")
        at = self.end
        self.end += len(raw)
        return at

    def read(self, offset: int, words: int, what: str) -> np.ndarray:
        """``words`` int64 words from byte ``offset`` (``what`` names them in an error)."""
        raw = os.pread(self._file.fileno(), 8 * words, offset) if self._file is not None else b""
        if len(raw) != 8 * words:
            raise OSError(errno.EIO, f"{what}: short read from the temporary file")
        return np.frombuffer(raw, dtype=np.int64)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.end = 0


class Spill(Generic[T]):
    """Collects records with their keys; :meth:`done` gives them as a :class:`Spilled`. When no
    temporary file can be made, or the disk refuses a write, the records stay in memory (those
    already written are read back): larger, nothing lost."""

    def __init__(self, in_memory: int | None = None) -> None:
        self._in_memory = IN_MEMORY if in_memory is None else in_memory
        self._buf: list[T] = []
        self._keys: list[Any] = []
        self._file: IO[bytes] | None = None
        self._failed = False
        self._pieces: list[tuple[int, int, int]] = []
        self._offset = 0

    def append(self, item: T, key: Any) -> None:
        self._buf.append(item)
        self._keys.append(key)
        if self._file is None:
            if len(self._buf) <= self._in_memory or self._failed:
                return
            self._file = _temporary()
            if self._file is None:
                self._failed = True
                return
        while self._file is not None and len(self._buf) >= PIECE:
            self._write(PIECE)

    def _write(self, n: int) -> None:
        assert self._file is not None
        data = pickle.dumps(self._buf[:n], protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_all(self._file, data)
        except OSError:
            self._to_memory()
            return
        del self._buf[:n]
        self._pieces.append((self._offset, len(data), n))
        self._offset += len(data)

    def _to_memory(self) -> None:
        """The disk refused a write: the pieces written so far read back, the file closed."""
        assert self._file is not None
        fd = self._file.fileno()
        written: list[T] = [x for off, size, _ in self._pieces for x in pickle.loads(os.pread(fd, size, off))]
        self._buf[:0] = written
        self._file.close()
        self._file, self._pieces, self._failed = None, [], True

    def done(self) -> Spilled[T]:
        if self._file is None:
            out: Spilled[T] = Spilled(self._keys, items=self._buf)
        else:
            if self._buf:
                self._write(len(self._buf))
            if self._file is None:  # that write was refused: all of them in memory now
                out = Spilled(self._keys, items=self._buf)
            else:
                out = Spilled(self._keys, file=self._file, pieces=self._pieces)
        self._buf, self._keys, self._file = [], [], None
        return out


def spilled(items: Iterable[T], key: Callable[[T], Any], in_memory: int | None = None) -> Spilled[T]:
    """``items`` collected into a :class:`Spilled`, each with ``key(item)``."""
    sp: Spill[T] = Spill(in_memory)
    for x in items:
        sp.append(x, key(x))
    return sp.done()


class Parked(Generic[T]):
    """Objects put away by number until they are taken back, once each: the SMTP sessions finished
    while the capture is still being read. Past ``in_memory`` of them they go to an unnamed
    temporary file, one pickle each (taken back in any order, each costs one load). Numbers are
    not negative (connection numbers): where each one's pickle is, is kept in arrays indexed by
    number, a dozen bytes a number where a dictionary of tuples took about 200."""

    def __init__(self, in_memory: int | None = None) -> None:
        self._in_memory = IN_MEMORY if in_memory is None else in_memory
        self._held: dict[int, T] = {}
        # per number: offset of its pickle in the file (-1: none there) and its size
        self._off = array("q")
        self._size = array("q")
        self._n_at = 0
        self._file: IO[bytes] | None = None
        self._failed = False
        self._offset = 0

    def __len__(self) -> int:
        return len(self._held) + self._n_at

    def _where(self, k: int) -> tuple[int, int] | None:
        if 0 <= k < len(self._off) and self._off[k] >= 0:
            return self._off[k], self._size[k]
        return None

    def __contains__(self, k: object) -> bool:
        return k in self._held or (isinstance(k, int) and self._where(k) is not None)

    def _written(self) -> Iterator[tuple[int, int, int]]:
        """(number, offset, size) of every pickle in the file not taken back."""
        for k, off in enumerate(self._off):
            if off >= 0:
                yield k, off, self._size[k]

    def put(self, k: int, x: T) -> None:
        if k < 0:
            raise ValueError(f"parked objects are numbered from 0, not {k}")
        self._held[k] = x
        if len(self._held) <= self._in_memory or self._failed:
            return
        if self._file is None:
            self._file = _temporary()
            if self._file is None:
                self._failed = True
                return
        try:
            for n, obj in self._held.items():
                data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
                _write_all(self._file, data)
                if n >= len(self._off):
                    grow = max(n + 1, 2 * len(self._off), 1024) - len(self._off)
                    self._off.extend(repeat(-1, grow))
                    self._size.extend(repeat(0, grow))
                self._n_at += self._off[n] < 0
                self._off[n], self._size[n] = self._offset, len(data)
                self._offset += len(data)
        except OSError:  # the disk refused: those written come back, all stay in memory
            fd = self._file.fileno()
            for n, off, size in list(self._written()):
                if n not in self._held:
                    self._held[n] = pickle.loads(os.pread(fd, size, off))
            self._off, self._size, self._n_at = array("q"), array("q"), 0
            self._file.close()
            self._file, self._failed = None, True
            return
        self._held.clear()

    def take(self, k: int) -> T:
        """The object put away as ``k`` (KeyError if none is, or it was taken already)."""
        if k in self._held:
            return self._held.pop(k)
        at = self._where(k)
        if at is None:
            raise KeyError(k)
        off, size = at
        self._off[k] = -1
        self._n_at -= 1
        assert self._file is not None
        data = os.pread(self._file.fileno(), size, off)
        if len(data) != size:
            raise OSError(f"parked objects' file cut short at {k}")
        obj: T = pickle.loads(data)
        return obj

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Picked(_Listlike[T]):
    """Item ``i`` is ``parts[part[i]][index[i]]``: records of several lists in a chosen order,
    read from them as they are reached."""

    __slots__ = ("_index", "_part", "_parts")

    def __init__(self, parts: Sequence[Sequence[T]], picks: Iterable[tuple[int, int]]) -> None:
        self._parts = list(parts)
        pairs = list(picks)
        self._part = [p for p, _ in pairs]
        self._index = [i for _, i in pairs]

    @staticmethod
    def joined(parts: Sequence[Sequence[T]]) -> Picked[T]:
        """The parts one after the other."""
        return Picked(parts, ((p, i) for p, part in enumerate(parts) for i in range(len(part))))

    def __len__(self) -> int:
        return len(self._part)

    def _at(self, i: int) -> T:
        return self._parts[self._part[i]][self._index[i]]

    def __iter__(self) -> Iterator[T]:
        parts = self._parts
        for p, i in zip(self._part, self._index, strict=True):
            yield parts[p][i]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


class Field(_Listlike[V]):
    """One attribute of each record of a sequence (``CaptureAnalysis.sessions``), read on demand."""

    __slots__ = ("_get", "_of")

    def __init__(self, of: Sequence[Any], get: Callable[[Any], V]) -> None:
        self._of, self._get = of, get

    def __len__(self) -> int:
        return len(self._of)

    def _at(self, i: int) -> V:
        return self._get(self._of[i])

    def __iter__(self) -> Iterator[V]:
        return map(self._get, self._of)


class ByKey(Mapping[int, V]):
    """One attribute of each record, by the record's number (``CaptureAnalysis.facts``), in the
    records' order."""

    __slots__ = ("_get", "_of", "_pos")

    def __init__(self, of: Sequence[Any], numbers: Iterable[int], get: Callable[[Any], V]) -> None:
        self._of, self._get = of, get
        self._pos = {n: i for i, n in enumerate(numbers)}

    def __getitem__(self, k: int) -> V:
        return self._get(self._of[self._pos[k]])

    def __iter__(self) -> Iterator[int]:
        return iter(self._pos)

    def __len__(self) -> int:
        return len(self._pos)


def positional(cls: C) -> C:
    """Pickle a dataclass as its field values in order, rebuilt by calling the class. The default
    for a slotted class is a dictionary of slot values per object, set one by one when loaded:
    measured on the 1 M-packet bench capture's session records, 0.31 -> 0.18 s to pickle,
    0.19 -> 0.09 s to load, 16.7 -> 12.6 MB."""
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        raise TypeError(f"{cls.__name__}: every field must be an __init__ argument")
    names = [f.name for f in fields]
    get = operator.attrgetter(*names)

    def reduce(self: Any) -> tuple[Any, tuple[Any, ...]]:
        got = get(self)
        return (type(self), got if len(names) > 1 else (got,))

    setattr(cls, "__reduce__", reduce)  # noqa: B010  # a class attribute mypy would not let be set
    return cls


__all__ = [
    "IN_MEMORY",
    "PIECE",
    "ByKey",
    "Field",
    "Parked",
    "Picked",
    "Spill",
    "Spilled",
    "from_pieces",
    "positional",
    "spilled",
]

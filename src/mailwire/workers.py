"""Captures analysed in worker processes: several captures at once (one per capture point), and a
large capture split by connection across the CPUs it would otherwise leave idle.

The analysis of one capture is single-threaded Python and NumPy, so processes are the unit of
parallelism. Workers are forked: they start with every module (and the compiled kernels) already
loaded, and a result comes back pickled in a file (about 20 MB and 0.5 s per million packets);
records the worker had put in a temporary file (:mod:`mailwire.spill`) are copied in unread and
read from there by whoever reaches them.
The calling process works too: it runs the first task itself while the others run in the pool.

A capture is split into *shards* when there are more CPUs than captures: each of ``w`` workers
reads and decodes the whole capture and numbers its connections, then analyses only those
numbered ``k`` modulo ``w``; ``merge`` joins the parts (for ``mailwire analyze``:
:func:`mailwire.smtp.pipeline.merge_shards`). Reading, decoding and numbering are repeated in
every shard, the rest is divided: on the 1 M-packet bench capture and 2 CPUs, 6.0 s → 4.0 s
in process (each shard 3.2 s, then 0.5 s to pass one shard's result back).

Small inputs stay in the calling process, where a fork would cost more than it saves. A worker
that fails is not trusted to report its own failure: its task is run again in the calling
process, so errors read exactly as they would without workers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from mailwire.spill import Spilled, from_pieces

T = TypeVar("T")

PARALLEL_MIN_BYTES = 64 << 20  # below this in all, one process is faster than forking workers
SHARD_MIN_BYTES = 64 << 20  # a capture this large is split when CPUs are left over
# shards of one capture unless asked for more: each repeats the reading (about 1.2 s and 100 MB
# per million packets), so past this the memory grows faster than the time falls
MAX_SHARDS = 8

_counter: Any = None  # the worker's shared frame counter (set by _init)


def _init(counter: Any) -> None:
    global _counter
    _counter = counter


def _count(n: int) -> None:
    with _counter.get_lock():
        _counter.value += n


@dataclass(frozen=True)
class Task:
    """One call: capture ``index`` of the list, as shard ``shard`` of ``shards`` (1: whole)."""

    index: int
    shard: int = 0
    shards: int = 1

    @property
    def reports_progress(self) -> bool:
        return self.shard == 0  # every shard reads every frame: one of them counts them


def _call(fn: Callable[..., T], path: str, task: Task, with_progress: bool, fd: int) -> None:
    """Run the task; its result is pickled into the caller's file ``fd`` (inherited at the fork),
    and loaded by the caller once its own task is done: the pool's result thread would otherwise
    build a worker's records while the calling process is at its own peak. Through the pool's
    pipe it came as one bytes object, received and copied whole (about 20 MB per million packets,
    twice, at the caller's peak); from the file it is read a frame at a time."""
    result = _here(fn, path, task, _count if with_progress and task.reports_progress else None)
    with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as out:
        out.seek(0)
        out.truncate()
        dump_result(result, out)


_RECORDS_PER_PICKLE = 256


def _put(v: Any, out: IO[bytes]) -> None:
    pickle.dump(v, out, protocol=pickle.HIGHEST_PROTOCOL)


def dump_result(result: Any, out: IO[bytes]) -> None:
    """``result`` pickled into ``out`` for :func:`load_result`. A dataclass's long lists and
    dictionaries go as a series of pickles of ``_RECORDS_PER_PICKLE`` records each: the loader
    keeps every object of one pickle until its end (its memo), among them a dictionary of slot
    values per slotted record, which doubled the memory of loading a shard's records at once
    (measured: 65 MB of records, 137 MB at the peak of one load; in pieces, 68)."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        _put(("whole", result), out)
        return
    names = [f.name for f in dataclasses.fields(result)]
    _put(("fields", type(result), names), out)
    for name in names:
        v = getattr(result, name)
        if isinstance(v, Spilled) and v.in_file:
            # the worker's records file copied piece by piece, without loading a record
            _put(("spilled", v.keys, v.layout), out)
            for data in v.raw_pieces():
                out.write(data)
        elif isinstance(v, Spilled):
            _put(("spilled_list", v.keys), out)
            _dump_pieces("list", list(v), out)
        elif type(v) in (list, dict) and len(v) > _RECORDS_PER_PICKLE:
            _dump_pieces(type(v).__name__, list(v.items()) if type(v) is dict else v, out)
        else:
            _put(("value", v), out)


def _dump_pieces(tag: str, items: list[Any], out: IO[bytes]) -> None:
    n = _RECORDS_PER_PICKLE
    _put((tag, -(-len(items) // n)), out)
    for i in range(0, len(items), n):
        _put(items[i : i + n], out)


def load_result(fh: IO[bytes]) -> Any:
    """What :func:`dump_result` wrote. Records that the worker had in a file stay in ``fh``, read
    from there when they are reached (the result keeps ``fh`` open)."""
    kind, *rest = pickle.load(fh)
    if kind == "whole":
        return rest[0]
    cls, names = rest
    obj = cls.__new__(cls)
    for name in names:
        tag, *args = pickle.load(fh)
        v = args[0]
        if tag == "spilled":
            keys, layout = args
            start = fh.tell()
            v = from_pieces(fh, keys, start, layout)
            fh.seek(start + sum(size for size, _ in layout))
        elif tag == "spilled_list":
            _tag, n = pickle.load(fh)
            v = Spilled(args[0], items=[x for _ in range(n) for x in pickle.load(fh)])
        elif tag == "list":
            v = [x for _ in range(v) for x in pickle.load(fh)]
        elif tag == "dict":
            v = {k: x for _ in range(v) for k, x in pickle.load(fh)}
        object.__setattr__(obj, name, v)
    return obj


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _sizes(paths: Sequence[str | Path]) -> list[int] | None:
    sizes = []
    for p in paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            return None  # let the calling process report it
    return sizes


def plan(paths: Sequence[str | Path], jobs: int | None, *, split: bool = False) -> tuple[int, list[Task]]:
    """(processes, tasks): ``jobs`` processes if given (1 = none), else one per CPU when the input
    is large enough to pay for forking, and one process for standard input. Each capture is one
    task; with ``split``, a capture of ``SHARD_MIN_BYTES`` or more (any size when ``jobs`` is
    given) is split into as many shards as there are processes per capture."""
    n = len(paths)
    whole = [Task(i) for i in range(n)]
    if not n or any(str(p) == "-" for p in paths) or "fork" not in multiprocessing.get_all_start_methods():
        return 1, whole
    sizes = _sizes(paths)
    if sizes is None:
        return 1, whole
    if jobs is not None and jobs > 0:
        procs = jobs
    elif sum(sizes) >= PARALLEL_MIN_BYTES:
        procs = available_cpus()
    else:
        procs = 1
    if procs <= 1:
        return 1, whole
    per = procs // n if split else 1
    if jobs is None:
        per = min(per, MAX_SHARDS)
    tasks: list[Task] = []
    for i, size in enumerate(sizes):
        w = per if per > 1 and (size >= SHARD_MIN_BYTES or jobs is not None) else 1
        tasks.extend(Task(i, k, w) for k in range(w))
    return min(procs, len(tasks)), tasks


def jobs_for(paths: Sequence[str | Path], jobs: int | None, *, split: bool = False) -> int:
    """How many processes :func:`map_captures` uses (1: just the calling one)."""
    return plan(paths, jobs, split=split)[0]


def map_captures(
    fn: Callable[..., T],
    paths: Sequence[str | Path],
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    merge: Callable[[list[T]], T] | None = None,
) -> list[T]:
    """``[fn(p, progress=…) for p in paths]``, in worker processes where that pays (see
    :func:`plan`). ``fn`` is a module-level function. Given ``merge``, a large capture may be
    split: ``fn(p, progress=…, shard=(k, w))`` for each ``k`` and ``merge`` of the ``w`` results
    in shard order. ``progress`` is called in this process with the frames read."""
    procs, tasks = plan(paths, jobs, split=merge is not None)
    if procs <= 1:
        return [fn(p, progress=progress) for p in paths]
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    seen = 0

    def forward() -> None:  # the workers' frames, as the shared counter has them
        nonlocal seen
        now = int(counter.value)
        if progress is not None and now > seen:
            progress(now - seen)
            seen = now

    def mine(n: int) -> None:
        assert progress is not None
        progress(n)
        forward()

    got: list[tuple[bool, Any]] = [(False, None)] * len(tasks)
    # one unnamed file per worker task, made before the workers are forked so that they inherit
    # it: nothing is left behind, however this process ends. A result whose records stay in its
    # file keeps the file open; the others are closed once loaded (their disk space goes at once)
    outs: list[IO[bytes]] = []
    try:
        for _ in tasks[1:]:
            outs.append(tempfile.TemporaryFile())  # noqa: SIM115
    except OSError:  # no temporary directory to write in: everything in this process
        for fh in outs:
            fh.close()
        return [fn(p, progress=progress) for p in paths]
    try:
        with ProcessPoolExecutor(
            max_workers=procs - 1, mp_context=ctx, initializer=_init, initargs=(counter,)
        ) as pool:
            futures: list[Future[None]] = [
                pool.submit(_call, fn, str(paths[t.index]), t, progress is not None, fh.fileno())
                for t, fh in zip(tasks[1:], outs, strict=True)
            ]
            first = tasks[0]
            own = mine if progress is not None and first.reports_progress else None
            got[0] = (True, _here(fn, str(paths[first.index]), first, own))
            for j, (f, fh) in enumerate(zip(futures, outs, strict=True), start=1):
                while True:  # bounded: every worker ends with its task or fails
                    try:
                        f.result(timeout=0.25)
                        fh.seek(0)
                        got[j] = (True, load_result(fh))
                        break
                    except TimeoutError:
                        forward()
                    except Exception:
                        break
                if not got[j][0]:
                    fh.close()
                forward()
    finally:
        outs.clear()  # each file closes with the last result that reads from it
    # a failed task is run again here, so its error reads as it would without workers
    results = [
        r if ok else _here(fn, str(paths[t.index]), t, None) for t, (ok, r) in zip(tasks, got, strict=True)
    ]
    out: list[T] = []
    for i in range(len(paths)):
        parts = [r for t, r in zip(tasks, results, strict=True) if t.index == i]
        out.append(parts[0] if len(parts) == 1 or merge is None else merge(parts))
    return out


def _here(fn: Callable[..., T], path: str | Path, task: Task, progress: Callable[[int], None] | None) -> T:
    if task.shards == 1:
        return fn(path, progress=progress)
    return fn(path, progress=progress, shard=(task.shard, task.shards))


__all__ = [
    "MAX_SHARDS",
    "PARALLEL_MIN_BYTES",
    "SHARD_MIN_BYTES",
    "Task",
    "available_cpus",
    "dump_result",
    "jobs_for",
    "load_result",
    "map_captures",
    "plan",
]

"""Per-capture work in worker processes: several captures (one per capture point) are analysed at
once, one process each, up to the number of CPUs.

The analysis of one capture is single-threaded Python and NumPy, and captures are independent, so
processes are the unit of parallelism. Workers are forked: they start with every module (and the
compiled kernels) already loaded, and a capture's result comes back pickled (about 20 MB and
0.5 s per million packets). Small inputs stay in the calling process, where a fork would cost more
than it saves. A worker that fails is not trusted to report its own failure: that capture is
analysed again in the calling process, so errors read exactly as they would without workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PARALLEL_MIN_BYTES = 64 << 20  # below this in all, one process is faster than forking workers

_counter: Any = None  # the worker's shared frame counter (set by _init)


def _init(counter: Any) -> None:
    global _counter
    _counter = counter


def _count(n: int) -> None:
    with _counter.get_lock():
        _counter.value += n


def _call(fn: Callable[..., T], path: str, with_progress: bool) -> T:
    return fn(path, progress=_count if with_progress else None)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs_for(paths: Sequence[str | Path], jobs: int | None) -> int:
    """How many worker processes to use: ``jobs`` if given (1 = none), else one per capture up to
    the CPUs, and none for a single capture, for standard input or for small inputs."""
    n = len(paths)
    if n < 2 or any(str(p) == "-" for p in paths) or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if jobs is not None and jobs > 0:
        return min(jobs, n)
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)
        except OSError:
            return 1  # let the calling process report it
    return min(n, available_cpus()) if total >= PARALLEL_MIN_BYTES else 1


def map_captures(
    fn: Callable[..., T],
    paths: Sequence[str | Path],
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[T]:
    """``[fn(p, progress=…) for p in paths]``, in worker processes where that pays (see
    :func:`jobs_for`). ``fn`` is a module-level function; ``progress`` is called in this process
    with the frames the workers report, a few times a second."""
    n = jobs_for(paths, jobs)
    if n <= 1:
        return [fn(p, progress=progress) for p in paths]
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    outcome: list[tuple[bool, Any]] = []
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init, initargs=(counter,)) as pool:
        futures: list[Future[T]] = [pool.submit(_call, fn, str(p), progress is not None) for p in paths]
        seen = 0
        pending = set(futures)
        while pending:  # bounded: every worker ends with its capture (or fails)
            _done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if progress is not None:
                now = int(counter.value)
                if now > seen:
                    progress(now - seen)
                    seen = now
        for f in futures:
            try:
                outcome.append((True, f.result()))
            except Exception:
                outcome.append((False, None))
    # a failed capture is analysed again here, so its error reads as it would without workers
    return [r if ok else fn(p, progress=None) for p, (ok, r) in zip(paths, outcome, strict=True)]


__all__ = ["PARALLEL_MIN_BYTES", "available_cpus", "jobs_for", "map_captures"]

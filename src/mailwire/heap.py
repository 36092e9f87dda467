"""How mailwire manages the process's memory around its big passes: the cyclic garbage collector,
and freed memory handed back to the operating system.

An analysis builds millions of small, long-lived, acyclic objects (per-frame facts, sessions,
records). Reference counting frees them; the cyclic collector only rescans them, over and over
(measured: a third of the run time on a 1 M-packet capture with it on). :func:`paused` turns it
off for a pass and, on the way out, moves everything then alive into the permanent generation
(``gc.freeze``) before turning it back on: otherwise the first collection after the pass walked
the whole result once more (0.3 s on that capture). Frozen objects are still freed by reference
counting when dropped; only garbage *cycles* created during the pass would outlive it, and the
passes make none on purpose. Nested passes leave the work to the outermost one.

glibc keeps freed heap memory for reuse, and after a large buffer is freed it serves buffers up to
that size from the heap rather than from fresh mappings: the per-chunk arrays of a pass over the
frames leave holes that the end-of-capture steps do not all reuse, and RSS would stay at the
pass's high-water mark plus what the end adds. :func:`release_free_memory` (``malloc_trim(0)``)
returns the free pages, the middle of the heap included, for one walk over the free lists.

That rule (glibc's dynamic mmap threshold: each freed mapping raises the size below which
allocations come from the heap, up to 32 MiB) is also why the pass's peak RSS stood well above the
memory it held: its per-chunk arrays of a few MiB came from the heap, between long-lived objects,
and their holes stayed resident. :func:`map_large_buffers` fixes the threshold at 1 MiB (glibc's
``M_MMAP_THRESHOLD``), so that every larger buffer is a mapping of its own, returned whole when
freed (measured, one process, 1 M and 2 M packets: peak RSS 213 -> 189 MB and 315 -> 294 MB, the
same run time).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

_M_MMAP_THRESHOLD = -3  # mallopt() parameter number (glibc's malloc.h)
MMAP_THRESHOLD = 1 << 20


@contextmanager
def paused() -> Iterator[None]:
    """Run the enclosed pass with the cyclic collector off, large buffers mapped on their own
    (see the module docstring)."""
    map_large_buffers()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # the process's own symbols (libc's among them): find_library would fork ldconfig, which
        # from a process of a few hundred MB costs time and, for a moment, doubles its page count
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back this way
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


@cache
def map_large_buffers() -> bool:
    """Fix the C library's mmap threshold at :data:`MMAP_THRESHOLD` for this process and the
    workers it forks (once; see the module docstring). False where there is no ``mallopt``
    (not glibc) or it refused."""
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(fn(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (see the module docstring); False where the
    C library has no ``malloc_trim`` or nothing was released."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False


__all__ = ["MMAP_THRESHOLD", "map_large_buffers", "paused", "release_free_memory"]

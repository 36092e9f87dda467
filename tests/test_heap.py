"""mailwire.heap: freed heap memory goes back to the system, large buffers are mapped on their own,
the collector pause restores state."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys

import pytest

from mailwire.heap import map_large_buffers, paused, release_free_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_pages_are_handed_back() -> None:
    # 64 kB blocks come from the heap (below glibc's mmap threshold); the last one stays alive,
    # so the heap's top cannot shrink by itself and only a trim can release the pages below it
    blocks = [bytearray(b"x" * 65536) for _ in range(3000)]
    keep = blocks[-1]
    del blocks[:-1]
    before = _rss_mb()
    assert release_free_memory() is True
    after = _rss_mb()
    assert before - after > 100, (before, after)  # about 196 MB were freed
    assert keep[:1] == b"x"


def test_paused_turns_the_collector_off_and_back_on() -> None:
    assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
        with paused():  # nested: the outer one restores
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


_PLACE = """
import sys
import numpy as np
from mailwire.heap import map_large_buffers
if sys.argv[1] == "fixed":
    assert map_large_buffers() is True
big = np.ones(16 << 20, np.uint8)  # a mapping of its own either way (above 128 kB at the start)
del big  # glibc's dynamic rule: now buffers up to 16 MiB come from the heap
later = np.ones(4 << 20, np.uint8)
addr = later.ctypes.data
for line in open("/proc/self/maps"):
    span, *rest = line.split()
    lo, hi = (int(x, 16) for x in span.split("-"))
    if lo <= addr < hi:
        print("heap" if rest[-1] == "[heap]" else "own mapping")
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's threshold is glibc's")
@pytest.mark.parametrize(("mode", "expected"), [("fixed", "own mapping"), ("default", "heap")])
def test_large_buffers_are_mapped_on_their_own(mode: str, expected: str) -> None:
    # a fresh process each: the setting is per process. The default case shows what the fixed
    # threshold prevents (a 4 MiB buffer placed in the heap, its pages kept after it is freed)
    out = subprocess.run(
        [sys.executable, "-c", _PLACE, mode], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == expected, out.stderr


def test_paused_fixes_the_threshold_for_the_pass() -> None:
    with paused():
        pass
    # cached: the pass set it, a second call finds it set (True where glibc is the C library)
    assert map_large_buffers() is (platform.libc_ver()[0] == "glibc")

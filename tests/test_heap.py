"""mailwire.heap: freed heap memory goes back to the system, the collector pause restores state."""

from __future__ import annotations

import gc
import platform

import pytest

from mailwire.heap import paused, release_free_memory


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

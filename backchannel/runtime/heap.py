"""Giving freed heap memory back to the operating system (glibc).

A long run allocates and frees response bodies, pages and records of every
size. The interpreter frees them, but glibc keeps the freed pages in the
middle of its heap mapped: a soak's RSS rose about 1-3 MiB a minute while
the memory Python holds (tracemalloc) stayed flat. ``malloc_trim(0)``
hands every free page back (``madvise``), so RSS follows what is live.

Where the C library has no ``malloc_trim`` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)


def malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` (True when memory was released), or None if absent."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


async def trim_periodically(interval: float) -> None:
    """Trim the heap every ``interval`` seconds. Never returns unless cancelled.

    One trim walks the heap's free lists: about a millisecond per 100 MiB
    of heap, on the event loop (it takes the allocator's lock anyway).
    """
    trim = malloc_trim()
    if trim is None:
        log.info("no malloc_trim in this C library: freed heap is left to the allocator")
        return
    while True:
        await trio.sleep(interval)
        started = time.perf_counter()
        trim()
        log.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1e3)

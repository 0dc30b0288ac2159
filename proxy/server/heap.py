"""Giving freed heap memory back to the operating system (glibc only).

CPython returns large freed buffers to glibc's malloc, which keeps them in
its heap for reuse. glibc only shrinks the heap from the top, and its mmap
threshold rises after the first large buffer is freed, so after bursts of
big reads and writes (large bodies, TLS records) RSS keeps the high-water
mark of the heap, with free pages in the middle. The 30-minute soak saw RSS
climb from 51 to 64 MiB while the memory Python tracked stayed at 1.5 MiB;
``malloc_trim(0)`` (which since glibc 2.8 also releases whole free pages
inside the heap) brought it back to 50 MiB, and RSS after each trim stayed
flat. The watchdog calls it every ``INTERVAL`` seconds; a trim of a 60 MiB
heap takes about a millisecond (docs/reliability.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

INTERVAL = 30.0  # seconds between trims


def _load_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim  # absent from musl
    except (OSError, AttributeError):
        return None
    return trim


_trim = _load_trim()


def release_free_memory() -> bool:
    """Return free heap pages to the OS; False where that is not possible."""
    if _trim is None:
        return False
    _trim(0)
    return True

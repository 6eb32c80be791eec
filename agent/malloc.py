"""glibc's malloc, set for a long-running agent whose big buffers come and go with each scrape."""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2


def tune() -> bool:
    """Buffers of 128 KiB and more get their own mappings, given back to the kernel when freed.

    glibc starts there, but raises the threshold to the size of every such buffer freed (up to
    32 MiB): after the first scrape the exposition page (MiBs at 500 containers) is carved from the
    heap, whose pages stay with the process. Fixing it, at 500 containers with three sinks
    (bench/RESULTS.md, "Memory"): steady RSS 101 -> 79 MiB, peak 120 -> 93 MiB. A
    MALLOC_MMAP_THRESHOLD_ in the environment is the operator's choice and stays. Another libc
    (musl has no mallopt): nothing done. True when set here.

    And at most ARENA_MAX malloc arenas: glibc gives each thread that allocates its own, up to 8
    per core, and memory freed in one is not reused by another. The agent's threads (collection,
    asyncio.to_thread) allocate the page's and the log reads' buffers; at 500 containers with three
    sinks, 2 arenas instead of the default: steady 56.8 -> 55.4 MiB, peak 59.6 -> 57.6 MiB
    (bench/RESULTS.md, one run; 1 arena: 55.0 and 59.2). A MALLOC_ARENA_MAX in the environment
    stays."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, ARENA_MAX)
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))

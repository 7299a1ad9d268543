"""Keep freed tensor memory from piling up in the process while prompt caches are built.

Caching the query's training prompts allocates, batch after batch, a float32 cache that is
converted and freed, beside the float16 copy that stays. glibc serves such blocks (a few MB) from
its heap once its mmap threshold has grown past them, and the freed float32 blocks leave holes
that the next, longer batch does not fit: on SmolLM2, 960 prompts whose caches hold 1.18 GB grew
the process by 3.45 GB (1.84 GB with a fixed threshold; `bench/query_cache_memory.py`). A fixed
mmap threshold gives every large block its own mapping, returned to the system when freed.
Pilots that cache many prompts call it; the demo recipe (4,800 prompts, about 6 GB) does not:
every later forward pass would map and fault in its large blocks anew, and its one build with the
threshold fixed took 3,345 s against 2,229 s before (not separated from the machine's state).
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's `mallopt` parameter for the mmap threshold (malloc.h), and the value used: glibc's
#: default before it adapts.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc `mallopt`."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))

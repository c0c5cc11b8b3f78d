"""Memory an image frees handed back to the system at once, in the command line's own process.

glibc serves a large allocation with a mapping of its own and unmaps it when it is freed, but each
such free raises its threshold for the next ones (up to 32 MB): from the second 4 MP reference on,
decoded images land in the heap, whose freed middle glibc keeps. Measured with eight 4 MP PNG
references (bench/bench_throughput.py), the command line then peaks at 1.21x their pixels
instead of 0.64x. Setting the threshold once turns that adjustment off. A ComfyUI process is not
the pack's to tune, so only the command line calls this.
"""

from __future__ import annotations

import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
MAPPED_FROM_BYTES = 1024 * 1024  # allocations this large get their own mapping: image rows, not small objects


def hand_freed_images_back() -> None:
    """Fix glibc's mmap threshold; elsewhere (macOS, Windows, a C library without mallopt) a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MAPPED_FROM_BYTES)
    except (OSError, AttributeError):
        pass  # no mallopt in this C library: nothing to tune

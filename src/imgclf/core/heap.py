"""Giving freed memory back to the system where glibc's allocator would keep it resident.

glibc raises its mmap threshold each time a large block is freed, so later large temporaries
(a batch of 128 images as float32 at 96 px: 14 MB) come from the heap, between the small blocks
a loop keeps (each batch's features and stored maps, ~2 MB). The heap cannot shrink past a kept
block, so a long loop's freed temporaries stay resident: the linear probe's pass over CIFAR-10's
45,000 training images held 5.9 GB of anonymous memory where ~1.9 GB was live (2026-11-28, 2-core
VM), and the run peaked at 11.5 GB.

Pinning the threshold (MALLOC_MMAP_THRESHOLD_=131072) cures that, but then every training step
maps its activations anew and faults them in: flowers5's fine-tuning epochs fell from 265 to 158
images/s. `malloc_trim` instead releases the free pages where they lie, and costs ~2.6 ms with a
batch's 14 MB to hand back; a loop that keeps something from each of many batches calls
`trim_heap` every few batches (`Trimmer`).
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl (Alpine) has no libc.so.6 or no malloc_trim
        return None


def trim_heap() -> bool:
    """Hand the allocator's free pages back to the system; False where that cannot be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class Trimmer:
    """`step()` after each batch of a long loop that keeps a little from each: `trim_heap` every
    `every` batches (8: the heap grows by at most ~8 batches' temporaries between trims, and the
    trims cost ~0.2 % of a probe batch's time)."""

    def __init__(self, every: int = 8):
        self.every, self.count = every, 0

    def step(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            trim_heap()

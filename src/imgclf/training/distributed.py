"""Rank awareness, so torchrun/DDP can be added without restructuring the loop.

Today a single process is rank 0 of world 1. Under torchrun, RANK/WORLD_SIZE are set: each rank
takes its own shard of every epoch's permutation, and only rank 0 writes files.
"""

from __future__ import annotations

import os

import numpy as np


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's share of an epoch's shuffled indices (equal sizes, so ranks stay in step)."""
    w = world_size()
    n = len(indices) - len(indices) % w if len(indices) >= w else len(indices)
    return indices[rank() : n : w]

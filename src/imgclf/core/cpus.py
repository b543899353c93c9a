"""How many CPUs this process may use (no torch import: decoding processes load it)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on: in containers, job slots and under taskset that is fewer
    than the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

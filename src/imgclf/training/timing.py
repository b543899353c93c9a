"""Timing training steps honestly: CUDA events on a GPU, the wall clock on a CPU."""

from __future__ import annotations

import time

import torch


class StepTimer:
    """Seconds spent in training steps only. On CUDA, events recorded in the stream around the
    steps (as airbench measures), so queued work is counted and host-side waits are not."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.first_step_seconds = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        if self.cuda:
            self.begin, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.begin.record()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def first_step_done(self) -> None:
        # The first step includes torch.compile's compilation (and cuDNN's algorithm search): the
        # caller reports it separately from steady-state speed.
        if self.cuda:
            torch.cuda.synchronize()
        self.first_step_seconds = self.elapsed()

    def stop(self) -> float:
        if not self.cuda:
            return self.elapsed()
        self.end.record()
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1000

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


# What torch.compile costs and saves, measured with bench/gpu_session.sh on one H100 (2026-11-26):
# its first step took 14.7 s for resnet_fast (CIFAR-10) and ~25 s for Lite0 at 224 px (flowers5:
# epoch 1 32 s against 9.6 s uncompiled, cuDNN's search in both); after it, Lite0 stepped at
# 5,900 img/s against 4,000 uncompiled (a step ~32 % shorter).
COMPILE_S = 30.0
COMPILE_SAVES = 0.3


def compile_pays(seconds_ahead: float) -> bool:
    """Does compiling pay back within `seconds_ahead` of uncompiled training? Twice over, since a
    plateau may end the run before the budget or the epoch cap does."""
    return seconds_ahead * COMPILE_SAVES >= 2 * COMPILE_S


class CompileChoice:
    """Whether the training step runs through torch.compile. `on`: from the first step. `auto`, on
    CUDA: the first epoch of a stage runs uncompiled and is timed; compiling starts at the next
    epoch only if the training time ahead (the epoch cap, or the time budget's rest) pays it back.
    A fixed rule (compile any CUDA run of 200+ steps) compiled the default's 90-second budget on
    flowers5 into 2 epochs and a worse model (0.759 against 0.807 test accuracy uncompiled), and
    made preset fast's 18 s of training 15 s of compiling. Not with the feature cache (its upper
    layers are small, and their inputs change shape with the crops)."""

    def __init__(self, setting: str, device, cached: bool):
        self.on = setting == "on" and not cached
        self.pending = setting == "auto" and device.type == "cuda" and not cached
        self.record = {"setting": setting, "on": self.on, "from_epoch": 1 if self.on else None}

    def decide(
        self, seconds: float, first_s: float, steps: int, steps_ahead: int, time_left: float | None, epoch: int = 1
    ):
        """After a timed epoch of the stage (`seconds` for `steps` steps, the first of them
        `first_s` when it held the process's warm-up): compile from epoch `epoch` (0-based) on?
        Decided once."""
        self.pending = False
        step_s = max(0.0, seconds - first_s) / max(1, steps - (1 if first_s else 0))
        ahead = step_s * steps_ahead if time_left is None else min(step_s * steps_ahead, max(0.0, time_left))
        self.on = compile_pays(ahead)
        self.record.update(on=self.on, seconds_ahead=round(ahead, 1), step_ms=round(step_s * 1000, 2))
        self.record["from_epoch"] = epoch + 1 if self.on else None
        return self.on

    def says(self, epoch: int) -> str:
        ahead = f"~{self.record['seconds_ahead']:.0f} s of training ahead at {self.record['step_ms']:.1f} ms a step"
        if self.on:
            return f"  torch.compile: on from epoch {epoch + 1}: {ahead}; compiling (~{COMPILE_S:.0f} s once) saves ~{COMPILE_SAVES:.0%} of each step"
        return f"  torch.compile: off: {ahead}, too little to pay back compiling (~{COMPILE_S:.0f} s)"

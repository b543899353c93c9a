"""How long the default trains: a time budget, and a learning curve that decides when to stop.

A fixed number of epochs is a guess: too few on a big set whose validation accuracy is still
climbing, too many on a small one where the probe already had most of it. With a time budget
(`--time-budget 5m`, or the default below) the last training stage runs a warm-up, stable,
cooldown schedule (WSD: Hu et al. 2024, MiniCPM; Hägele et al. 2024 found it matches a cosine
schedule of the same length with a cooldown of ~20 % of the steps) and the cooldown starts when
the first of these comes:

- validation has not improved for `patience` epochs at the stable rate (a plateau);
- the time left buys no more than the cooldown (a fifth of the run so far) and its validations;
- the epoch cap, if the user set one, leaves only the cooldown.

So however the run ends, it ends on a rate annealed to zero, which a fixed schedule cut short
by early stopping never does. Decisions need only wall-clock time and the validation score, and
the plan's state (where the cooldown starts and ends, the seconds spent) rides in the training
state, so a resumed run carries on with the same schedule and what is left of its budget.

    plan = Plan(steps_per_epoch=40, first_epoch=0, max_epochs=100, deadline=time.monotonic() + 300)
    plan.factor(epoch, step)            # the multiplier of the peak learning rate
    plan.step_done(epoch, step, now)    # True: the epoch ends here (the cooldown is over)
    plan.epoch_done(epoch, improved, validation_seconds, now)  # True: training is over
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imgclf.store.checkpoint import read_training_info
from imgclf.training import distributed as dist

COOLDOWN = 0.2  # the cooldown's share of the steps: WSD's usual 10-20 %, the upper end for short runs
WARMUP = 0.04  # the rate's first step, as a share of the peak (as the one-cycle schedule starts)
# The warm-up lasts an epoch, and at least this many steps: a small folder's epoch is 2-5 steps, and
# so short a climb to the peak rate threw a 48-photo run's training loss from 0.35 to 1.9 (val 1.00 to
# 0.50 for four epochs); with 20 it stayed under 0.5 and val at 0.92-1.00. 100 flowers (20 a class,
# 3 seeds, 500 test photos): 0.630 against 0.625 on average, within a seed's spread (0.60-0.64).
MIN_WARMUP_STEPS = 20
# Epochs without a better validation score that start the cooldown: from pretrained features a
# curve flattens within a few epochs; from scratch it climbs slowly and noisily for longer.
PLATEAU_EPOCHS = {"finetune": 3, "scratch": 5}
MAX_EPOCHS = 200  # the cap of a budgeted run the user gave no --epochs: time or a plateau ends it first
# The default budget: a share per training image, what the Keras tutorial CNN (the peer users reach
# for first) takes on the same 2-core machine, all in: 131 s for 1,924 images, 150 s for 2,400,
# 544 s for 8,192 (issue 34), 62-68 ms an image. 60 ms stays under the lowest of them with room
# for the 3 % a budget has overrun by, so the default finishes no later than that peer, and
# sooner when validation stops improving. A CUDA GPU trains ~10x faster per image. Apple's GPU (MPS)
# is not measured here; published PyTorch MPS training speeds for EfficientNet-B0-sized networks at
# 224 px (~100-200 images/s) are no faster than this CPU recipe, so it gets the CPU's share, unscaled
# by cores: a budget cut to a GPU's share there would leave little more than the probe.
BUDGET_PER_IMAGE_S = {"cpu": 0.060, "gpu": 0.006, "mps": 0.060}
BUDGET_CORES = 2  # the per-image share above was measured on this many cores
# How training speeds up with cores: (cores / BUDGET_CORES) ** CORE_SCALING, up to 4x the cores. One
# core against two on this VM (2026-12-01, 1,000 flowers5 photos, the default fine-tune at 128 px,
# OMP_NUM_THREADS and taskset): epochs 1.65-1.72x as fast, the probe's passes 1.67x, the whole run
# 1.43x, so 1.7x a doubling (2 ** 0.77). Counting cores as linear (the rule until then) cut an 8-core
# machine's budget to a quarter for ~2.9x the speed: fewer epochs, lower accuracy, than on 2 cores.
# With the measured rate every machine trains about as many epochs as the 2-core one did. (The Keras
# CNN whose time the 60 ms stands in for was not measured on more cores.)
CORE_SCALING = 0.77
# A validation split this small cannot rank epochs: one image moves its accuracy by 1/n, more than an
# epoch of fine-tuning changes it, so a "plateau" and a "best epoch" are mostly noise. flowers5-small
# (bench/transfer.py: 60 photos a class, 30 of them validation; 3 seeds, 500 test photos each): the
# plateau ended runs after 7-10 epochs of a 90 s budget and twice kept the linear probe, 0.663 on
# average; training to the budget's end and shipping the last, cooled-down epoch scored 0.707 (+4.0
# to +4.8 points in every seed). Under 100 images one image is over a point; the held-out sets of
# issue 34 validate on 190-1,000.
SMALL_VAL = 100
BUDGET_RANGE_S = (90.0, 3600.0)  # at least the decoding, a probe and a few epochs; at most an hour
# The floor on a CPU where a plateau can end the run (SMALL_VAL validation images or more): there the
# 90 s floor bought time, not accuracy. 900 training images, 3 seeds each (2-core VM, 2026-11-28):
# flowers5 200 a class 0.713 in 57-84 s at 90 s against 0.730 in 48-49 s at 54 s (60 ms an image);
# CIFAR-10 100 a class and Daimler's pedestrians ended on a plateau at 32-47 s under either, the same
# test accuracy to the image. Under SMALL_VAL the budget, not a plateau, ends the run and the 90 s
# stay: 45 s cost 0.5-3 points there (docs/benchmarks/budget.md). A GPU keeps 90 s, unmeasured.
PLATEAU_FLOOR_S = 45.0
# The fixed part of what follows training (the ONNX export, model.json, the report's figures and
# explanations): 9-11 s for Lite0 on 2 cores, measured with the passes over images taken off. Since
# the export runs in memory (~1 s), 3.5-4 s (2026-11-28, 96-128 px); kept as slack: a budgeted run ends
# a few seconds early rather than over on a slower machine.
AFTER_TRAINING_S = 10.0


def compute_cores() -> int:
    """The cores a CPU training computes on, as the budget counts them: torch's intra-op threads (its
    default is the physical cores; OMP_NUM_THREADS, taskset and a Ray worker's share lower it), at
    most the CPUs this process may use. Not the logical CPUs: on a laptop with two threads a core
    (4 cores, 8 threads) torch trains on 4 threads, and the hyperthreads add ~5 % (published PyTorch
    CPU measurements), so counting 8 would budget for 2.9x the 2-core speed where the work runs ~1.7x."""
    import torch

    from imgclf.core.cpus import usable_cpus

    return max(1, min(torch.get_num_threads(), usable_cpus()))


def core_speed(cores: int) -> float:
    """How much faster a CPU training runs on `cores` than on BUDGET_CORES (CORE_SCALING); beyond 4x the
    cores memory bandwidth caps the rest."""
    return (min(max(1, cores), 4 * BUDGET_CORES) / BUDGET_CORES) ** CORE_SCALING


def describe_seconds(seconds: float) -> str:
    """'4m05s', '45s', '1h02m': how budgets are printed."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def default_budget(n_train: int, gpu: bool, cores: int, mps: bool = False, plateau: bool = False) -> tuple[float, str]:
    """The budget the default chooses: (seconds, the reason printed and recorded). `mps`: the GPU
    is Apple's; `plateau`: validation is large enough for a plateau to end the run (PLATEAU_FLOOR_S)."""
    per = BUDGET_PER_IMAGE_S["mps" if mps else "gpu" if gpu else "cpu"]
    if not gpu:
        per /= core_speed(cores)
    # Not scaled by resolution: flowers5 at 128 px got 3.3 epochs from it and the same test accuracy
    # as the fixed 7 epochs (0.782 both, bench/budget.py), as 96 px faces did in 6 epochs of 12.
    lo, hi = BUDGET_RANGE_S
    lo = PLATEAU_FLOOR_S if plateau and not gpu else lo
    seconds = float(min(hi, max(lo, per * n_train)))
    where = "Apple's GPU (MPS)" if mps else "a GPU" if gpu else f"{cores} CPU core{'s' if cores != 1 else ''}"
    return seconds, (
        f"time_budget={describe_seconds(seconds)}: {per * 1000:.0f} ms for each of "
        f"{n_train:,} training images on {where} (within {describe_seconds(lo)}-{describe_seconds(hi)}); "
        "training stops sooner when validation stops improving"
    )


@dataclass
class PlanState:
    """What a resumed run needs to carry on: the cooldown's steps (None: not started) and the seconds spent."""

    cool_start: int | None = None
    cool_end: int | None = None
    reason: str = ""  # why the cooldown started: plateau, time or epochs
    stalled: int = 0  # epochs since the run's own best (the probe does not count: a dip below it is a warm-up)
    best: float = -math.inf
    best_loss: float = math.inf
    spent: float = 0.0  # seconds of the whole run (preparation included) at the last finished epoch


class Plan:
    """The last stage's schedule in a budgeted run (module docstring). Steps count from the stage's
    first epoch; `deadline` is a time.monotonic() value, or None for no time limit."""

    def __init__(
        self,
        steps_per_epoch: int,
        first_epoch: int,
        max_epochs: int,
        deadline: float | None,
        patience: int,
        state: PlanState | None = None,
        val_steps: float = 0.0,
        after_validations: float = 0.0,
        after_seconds: float = 0.0,
    ):
        self.spe, self.first, self.max_epochs = steps_per_epoch, first_epoch, max_epochs
        self.end, self.patience = deadline, patience
        # A validation costs about a forward pass of its batches, a third of a training step each,
        # until one has been timed.
        self.val_steps = val_steps
        # What follows training (calibration, the test split with TTA, the report) is reserved from
        # the budget in validations' worth: they run the same network over images, like a validation.
        self.after_validations, self.after_seconds = after_validations, after_seconds
        self.s = state or PlanState()
        self.max_steps = (max_epochs - first_epoch) * steps_per_epoch
        self.warmup = max(1, min(max(steps_per_epoch, MIN_WARMUP_STEPS), self.max_steps // 4))
        self.step_s: float | None = None  # seconds a step, averaged as the run goes
        self.val_s = 0.0  # seconds a validation takes
        self.last_step_at: float | None = None
        self.spent_before = 0.0  # seconds an interrupted earlier process spent on this run
        # Is the clock read at every step (one process)? Under DDP the ranks must step alike, so rank
        # 0 reads it between epochs only and broadcasts its verdict (training.loop).
        self.step_clock = True

    def _g(self, epoch: int, step: int) -> int:
        return (epoch - self.first) * self.spe + step

    def factor(self, epoch: int, step: int) -> float:
        """Multiplier of the peak learning rate at this step: warm-up, stable 1, then linear to 0."""
        g = self._g(epoch, step)
        if self.s.cool_start is not None and g >= self.s.cool_start:
            return max(0.0, (self.s.cool_end - g) / max(1, self.s.cool_end - self.s.cool_start))
        if g < self.warmup:
            return WARMUP + (1 - WARMUP) * g / self.warmup
        return 1.0

    @property
    def deadline(self) -> float | None:
        """When the last step must end: the budget's end, less what follows training."""
        if self.end is None:
            return None
        return self.end - self.after_seconds - self.after_validations * self._val_seconds()

    def _val_seconds(self) -> float:
        return self.val_s or self.val_steps * (self.step_s or 0.0) / 3

    def exhausted(self, now: float | None = None) -> bool:
        """Is the budget spent before a first step could run? (Then the starting model is the run's.)"""
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def step_done(self, epoch: int, step: int, now: float | None = None, check_time: bool = True) -> bool:
        """After step `step` of `epoch`: update the step time, start the cooldown if the time left
        calls for it, and say whether the epoch must end here (the cooldown has ended)."""
        now = time.monotonic() if now is None else now
        if self.last_step_at is not None:
            dt = now - self.last_step_at
            self.step_s = dt if self.step_s is None else 0.9 * self.step_s + 0.1 * dt
        self.last_step_at = now
        g = self._g(epoch, step) + 1  # steps done
        if check_time and self.end is not None and now >= self.end:  # slower steps than foreseen: stop at the budget
            self._cool(self.s.cool_start if self.s.cool_start is not None else g - 1, g, self.s.reason or "time")
            return True
        if self.s.cool_start is None:
            if g + self._cool_len(g) >= self.max_steps:
                self._cool(g, self.max_steps, "epochs")
            elif check_time and self.deadline is not None and self.step_s is not None:
                length = self._cool_len(g)
                if now + self._seconds_for(g, length) >= self.deadline:
                    self._cool(g, g + self._affordable(g, now, length), "time")
        return self.s.cool_end is not None and g >= self.s.cool_end

    def epoch_starts(self) -> None:
        """The time between epochs (validation, checkpoints) is not a step's."""
        self.last_step_at = None

    def epoch_done(
        self, epoch: int, score: float, loss: float, validation_seconds: float, spent: float, now: float | None = None
    ) -> bool:
        """After `epoch`'s validation (its score by the run's criterion): count a plateau, start the
        cooldown on one, and say whether training is over (the cooldown has run out)."""
        self.val_s = validation_seconds if not self.val_s else 0.5 * (self.val_s + validation_seconds)
        self.s.spent = spent
        g = self._g(epoch + 1, 0)
        # Better: a higher score, or the same one at a lower loss (small validation splits tie often).
        if score > self.s.best or (score == self.s.best and loss < self.s.best_loss):
            self.s.best, self.s.best_loss, self.s.stalled = score, loss, 0
        else:
            self.s.stalled += 1
        if self.s.cool_start is None and self.s.stalled >= self.patience:
            length = min(self.max_steps - g, max(self.spe, self._cool_len(g)))
            if self.deadline is not None and self.step_s is not None:
                length = self._affordable(g, time.monotonic() if now is None else now, length)
            self._cool(g, g + length, "plateau")
        if not self.step_clock and self.end is not None:  # DDP: the clock is read here, between epochs
            now = time.monotonic() if now is None else now
            if now >= self.end:
                return True
            if self.s.cool_start is None and self.step_s is not None:
                # Room for another stable epoch and the cooldown after it? Else cool down from here.
                if now + self._seconds_for(g, self.spe + self._cool_len(g + self.spe)) >= self.deadline:
                    self._cool(g, g + self._affordable(g, now, max(self.spe, self._cool_len(g))), "time")
        return self.s.cool_end is not None and g >= self.s.cool_end

    def _cool_len(self, g: int) -> int:
        """Cooldown steps after `g` steps at the peak: COOLDOWN of the whole run."""
        return max(1, round(g * COOLDOWN / (1 - COOLDOWN)))

    def _seconds_for(self, g: int, length: int) -> float:
        """Seconds to run `length` more steps from step `g`, with the validations at the epoch ends they cross."""
        ends = (g + length) // self.spe - g // self.spe + 1
        return length * (self.step_s or 0.0) + ends * self._val_seconds()

    def _affordable(self, g: int, now: float, length: int) -> int:
        """The most steps (up to `length`) that still end, validated, before the deadline; at least 1."""
        while length > 1 and now + self._seconds_for(g, length) > self.deadline:
            length = max(1, int(length * 0.8))
        return length

    def _cool(self, start: int, end: int, reason: str) -> None:
        self.s.cool_start, self.s.cool_end, self.s.reason = start, max(start + 1, end), reason

    @property
    def cooling(self) -> bool:
        return self.s.cool_start is not None

    def why(self) -> str:
        """One line on how the run ended, for the console and model.json."""
        return {
            "plateau": f"validation stopped improving for {self.patience} epochs: cooled down and stopped",
            "time": "the time budget left room for the cooldown only",
            "epochs": f"the {self.max_epochs}-epoch cap",
            "": "not finished",
        }[self.s.reason]

    def state(self) -> dict:
        return asdict(self.s)

    @staticmethod
    def load_state(d: dict | None) -> PlanState | None:
        return None if not d else PlanState(**d)


def budget_plan(
    cfg, first_epoch: int, steps_per_epoch: int, resumed: Path | None, started, data, bs: int, image_s: float | None
):
    """The budgeted run's plan for its last stage (training.budget), or None without a budget;
    a resumed run takes its state (cooldown, seconds spent) from the training state file.
    `image_s`: seconds one image takes through the whole network, where the probe measured it."""
    if not cfg.time_budget:
        return None
    state = read_training_info(resumed).get("plan") if resumed is not None and resumed.exists() else None
    state = Plan.load_state(state)
    # A resumed run has what its first process left: the clock restarts with the seconds spent taken off.
    spent_before = state.spent if state else 0.0
    end = (started or time.monotonic()) + cfg.time_budget - spent_before
    # After training: calibration and the operating point over the validation images, then the test
    # split, each with its TTA views, through the whole network: at the probe's measured seconds an
    # image, else counted in validations (which, on a feature cache, run only the upper layers).
    n_val = max(1, len(data.val))
    passes = after_passes(cfg, data)
    plan = Plan(
        steps_per_epoch,
        first_epoch,
        cfg.epochs,
        end,
        int(cfg.patience),
        state,
        val_steps=len(data.val) / max(1, 2 * bs),
        after_validations=0.0 if image_s else passes / n_val,
        after_seconds=AFTER_TRAINING_S + (image_s or 0.0) * passes,
    )
    plan.spent_before = spent_before
    plan.step_clock = not dist.active()
    return plan


def after_passes(cfg, data) -> int:
    """Images through the whole network after training: calibration and the operating point over the
    validation images, then the test split, each with the run's TTA views."""
    n_test = len(data.val) if data.n_test is None else data.n_test
    views = 2 if cfg.tta in ("flip", "crop") else 4 if cfg.tta == "flip-crop" else 1
    return views * (len(data.val) + n_test)


@dataclass
class StageClock:
    """What a budgeted run has left for its preparation (the linear probe, then the candidates):
    the budget's end less what follows training, which is counted in passes of one image through
    the network, at a speed known only once the probe has timed a batch. Without it a stated
    `--time-budget 2m` on CIFAR-10's 45,000 training images ran 342 s: the probe alone embedded
    90,000 views in 154 s and fitted its logistic regression in 91 s."""

    end: float  # time.monotonic() at which the budget ends
    passes: int  # images through the network after training (after_passes)

    def left(self, image_s: float, now: float | None = None) -> float:
        """Seconds left before what follows training, at `image_s` seconds an image."""
        now = time.monotonic() if now is None else now
        return self.end - now - AFTER_TRAINING_S - image_s * self.passes


def stage_clock(cfg, started: float | None, data) -> StageClock | None:
    """The preparation's clock of a run with a time budget, or None. A resumed run's starts again
    (what its probe and candidates fitted is read back, not fitted again)."""
    if not cfg.time_budget:
        return None
    return StageClock((started or time.monotonic()) + cfg.time_budget, after_passes(cfg, data))


def plan_verdict(plan: Plan, row: dict, score_key: str, has_val: bool, val_seconds: float, started, epoch: int) -> bool:
    """The plan's verdict after an epoch (rank 0's, under DDP: every rank stops alike)."""
    score, loss = (row[score_key], row["val_loss"]) if has_val else (row["train_acc"], row["train_loss"])
    spent = plan.spent_before + time.monotonic() - (started or time.monotonic())
    if dist.is_main():
        stop = plan.epoch_done(epoch, score, loss, val_seconds, spent)
    verdict = dist.broadcast((stop, plan.state()) if dist.is_main() else None) if dist.active() else (stop, None)
    if verdict[1] is not None:
        plan.s = Plan.load_state(verdict[1])
    return verdict[0]

"""The training loop: readable top to bottom (nanoGPT spirit).

Data stays put (airbench spirit): the decoded uint8 training set is one tensor on the training
device when it fits, so an epoch is slicing plus batched tensor augmentation — no decoding and no
per-sample Python. Larger sets are gathered batch by batch from the memory-mapped cache.
Epochs end with an atomic commit (training.commits: each one, or as often as writing costs at most
a tenth of the time), so a killed run resumes at the last committed epoch with the same random
stream (each epoch's randomness is seeded by (seed, epoch)).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.markup import escape  # a run folder is the user's path

from imgclf.core.device import amp_dtype
from imgclf.data.augment import AugmentPolicy
from imgclf.models.forward import autocast, normalize, predict_logits
from imgclf.settings.config import TrainConfig
from imgclf.store.checkpoint import load_training_state, read_training_info
from imgclf.training import distributed as dist
from imgclf.training.averaging import WeightAverage
from imgclf.training.balance import balanced_accuracy, class_weights, resolve_class_weight
from imgclf.training.batches import SplitData, TrainImages
from imgclf.training.budget import budget_plan, plan_verdict
from imgclf.training.commits import STATE_FILE, Commits
from imgclf.training.divergence import Diverged, diverged, diverged_message
from imgclf.training.epoch import EpochKit, train_epoch
from imgclf.training.featcache import FeatureCache, LowerMaps, epochs_cache
from imgclf.training.finetune import Stages, describe
from imgclf.training.history import read_history, write_history
from imgclf.training.timing import CompileChoice, StepTimer


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0  # of the criterion below
    best_val_loss: float = float("inf")
    criterion: str = "accuracy"  # "balanced accuracy" when classes are weighted (training.balance)
    stopped_early: bool = False
    train_seconds: float = 0.0  # training steps only (CUDA-event timed on GPUs)
    first_step_seconds: float = 0.0  # the first step alone: compilation and warm-up show here
    stages: list[dict] = field(default_factory=list)  # training.finetune: epochs, parameters and lrs of each stage
    plan: dict | None = None  # training.budget: how a budgeted run's cooldown came and ended it
    compile: dict = field(default_factory=dict)  # training.timing.CompileChoice: whether, from when, why


# Long on purpose: the whole loop (setup, resume, epochs, validation, checkpoints) reads top to
# bottom in one place, as nanoGPT's train.py does; the per-step and per-epoch parts are below it.
def fit(
    model: torch.nn.Module,
    cfg: TrainConfig,
    data: SplitData,
    policy: AugmentPolicy,
    run_dir: Path,
    device: torch.device,
    console,
    resume: bool = False,
    on_epoch=None,
    baseline: tuple[float, float] | None = None,
    feature_maps: LowerMaps | None = None,
    started: float | None = None,
    image_seconds: float | None = None,
) -> FitResult:
    """Train `model` for cfg.epochs, validating after every epoch and committing (training.commits).

    `baseline` (val score, val loss) is the starting model's (a linear probe's, already saved as
    model.safetensors): it is "epoch 0", kept unless an epoch beats it. The score is accuracy, or
    balanced accuracy (the mean recall over classes) when classes are weighted: a model taught to
    favour small classes gives up some of the big classes' images, which plain accuracy on an
    imbalanced validation split counts as a loss (CIFAR-10 with 22-540 images a class: it stopped
    at epoch 5 of 14 below the probe, test macro F1 0.62 against 0.69 unweighted).

    `on_epoch(epoch, row)` (1-based epoch, the history row with val_acc/val_loss) is called after
    each epoch's checkpoint is written; it may raise to stop the run (a tuner's pruning does).

    `feature_maps`: the frozen layers' output for the training images, their mirrors and the
    validation images, as the linear probe recorded it (training.featcache), used when
    `cfg.feature_cache` is on.

    `started`: the time.monotonic() at which the run (this process) began, when `cfg.time_budget`
    bounds the whole run's wall time (training.budget: the last stage then ends on a cooldown
    chosen by the learning curve and the clock)."""
    torch.manual_seed(cfg.seed)
    amp = amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    dist.sync_weights(model)  # DDP: rank 0's probe head (or resumed state) on every rank
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    train = TrainImages(data.images, data.train, data.labels, device)
    if hasattr(model, "init_from_data"):  # e.g. resnet_fast's patch-whitening stem
        model.init_from_data(normalize(train.sample(5000, cfg.seed), mean, std))
    state_path = run_dir / STATE_FILE
    # Fine-tuning trains the head alone, then every layer (training.finetune); a resumed run
    # rebuilds the optimizer of the stage that saved the state, before loading that state.
    stages = Stages(model, cfg, min(cfg.batch_size, len(train)))
    done = read_training_info(state_path)["epoch"] if resume and state_path.exists() else 0
    opt = stages.optimizer(model, max(0, done - 1))
    if stages.freeze or stages.decay != 1:
        console.print("  " + describe(stages.record(model)).replace("\n", "\n  "))

    n_local = len(dist.shard(np.arange(len(train))))
    bs = dist.rank_batch(cfg.batch_size, len(train))  # batch_size is the global batch (training.distributed)
    steps_per_epoch = max(1, n_local // bs)  # drop the ragged last batch: BatchNorm dislikes tiny ones
    total_steps = cfg.epochs * steps_per_epoch
    ema = WeightAverage(model, total_steps) if cfg.ema else None
    n_classes = int(data.labels.max()) + 1
    weights = class_weights(
        resolve_class_weight(cfg.class_weight, data.labels[data.train], n_classes)[0],
        data.labels[data.train],
        n_classes,
    )
    weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    result = FitResult(criterion="accuracy" if weights is None else "balanced accuracy")
    score_key = "val_acc" if weights is None else "val_balanced_acc"
    if dist.active():
        console.print(
            f"  DDP: {dist.world_size()} workers x {bs} images = global batch {bs * dist.world_size()}, "
            f"{steps_per_epoch} steps an epoch; gradients averaged over the workers"
        )
    # One random side per image for the whole run; alternate_flips mirrors it every other epoch.
    first_flips = torch.rand(len(train), generator=torch.Generator().manual_seed(cfg.seed)).lt(0.5).to(device)

    start_epoch, bad_epochs, has_best = _start(result, baseline, resume, state_path, model, opt, ema, cfg, console)
    resumed = state_path if resume else None
    plan = budget_plan(cfg, stages.freeze, steps_per_epoch, resumed, started, data, bs, image_seconds)
    stages.plan = plan

    feats = epochs_cache(model, stages, cfg, data, train, mean, std, device, feature_maps, result, policy, console)
    choice = CompileChoice(cfg.compile, device, cached=feats is not None)
    step_model = _step_module(model, feats, device, choice.on, console)
    kit = EpochKit(
        model,
        step_model,
        train,
        feats,
        cfg,
        policy,
        stages,
        scaler,
        ema,
        weights,
        device,
        amp,
        mean,
        std,
        first_flips,
        bs,
        steps_per_epoch,
        plan,
    )
    timer = StepTimer(device)
    commits = Commits(run_dir)
    if plan is not None and baseline is not None and start_epoch == 0 and plan.exhausted():
        # The probe is a whole model: a budget spent before fine-tuning could start still ships one.
        console.print("time budget spent before fine-tuning could start: the linear probe is the model")
        result.stopped_early = True
    for epoch in range(start_epoch, cfg.epochs):
        if result.stopped_early:
            break
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # the same order on every rank
        own = cfg.seed * 100_003 + epoch + 1_000_003 * dist.rank()  # each rank's own augmentation draws
        aug_gen = torch.Generator(device=device).manual_seed(own)
        crop_gen = torch.Generator().manual_seed(own)  # the cache's maps are in host memory
        perm = torch.from_numpy(dist.shard(torch.randperm(len(train), generator=g).numpy()))
        if stages.starts(epoch):
            opt, bad_epochs = stages.optimizer(model, epoch), 0  # the stage's own patience, too
            if dist.active():  # DDP hooks the parameters that train at wrapping time: wrap again
                kit.step_model = _step_module(model, feats, device, choice.on, console)
            console.print(f"stage 2: all layers train{' (layer-wise learning rates)' if stages.decay != 1 else ''}")
        elif choice.pending and epoch > start_epoch and not stages.head_only(epoch - 1):  # this stage's epoch was timed
            _decide_compile(choice, result.history[-1], timer, epoch, start_epoch, steps_per_epoch, bs, cfg, plan)
            console.print(choice.says(epoch))
            if choice.on:
                kit.step_model = _step_module(model, feats, device, True, console)
        stages.train_mode(model, epoch)
        loss_sum, correct, seen = train_epoch(
            kit, opt, perm, epoch, epoch == start_epoch, aug_gen, crop_gen, timer, console
        )
        seconds = timer.stop()
        val_started = time.monotonic()
        loss_sum, correct, seen = dist.total(loss_sum, correct, torch.tensor(float(seen), device=device))
        seen = int(seen.item())
        result.train_seconds += seconds
        row = {
            "epoch": epoch + 1,
            "stage": stages.number(epoch),
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "lr": max(g["lr"] for g in opt.param_groups),  # the head's
            "seconds": seconds,
            "images_per_s": seen / seconds,
        }
        shipped = ema.average.module if ema else model  # the weights validation judges and a run ships
        # Rank 0 validates; the others take its numbers, so every rank judges and stops alike.
        row.update(
            dist.broadcast(_validate(shipped, data, device, amp, cfg, 2 * bs, feats) if dist.is_main() else None)
        )
        result.history.append(row)
        has_val = len(data.val) > 0
        val_seconds = time.monotonic() - val_started
        why = diverged(row, n_classes, has_val)
        if why:  # before anything is saved: no NaN weights ever look like a model
            if dist.is_main():
                write_history(run_dir / "history.csv", result.history)
                commits.keep_best()
            raise Diverged(
                diverged_message(why, epoch + 1, cfg.lr or row["lr"], run_dir, result.best_epoch if has_best else None)
            )
        improved, bad_epochs = _judge(result, row, score_key, has_val, has_best, bad_epochs, epoch, cfg)
        has_best = has_best or improved
        cooled = plan is not None and plan.cooling  # this epoch's steps were (some of them) in the cooldown
        if plan is not None:  # the plan, not the patience count, ends a budgeted run
            result.stopped_early = plan_verdict(plan, row, score_key, has_val, val_seconds, started, epoch)
        console.print(
            f"epoch {epoch + 1:>3}{'' if plan else f'/{cfg.epochs}'}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}  "
            f"{row['images_per_s']:,.0f} img/s  {seconds:.1f}s{'  *' if improved and cfg.keep != 'last' else ''}"
            + (f"  cooldown (lr down to {row['lr']:.2g})" if cooled else "")
        )
        if dist.is_main():
            commits.after_epoch(
                result,
                model,
                shipped,
                opt,
                ema,
                improved,
                {
                    "epoch": epoch + 1,
                    "bad_epochs": bad_epochs,
                    "best_epoch": result.best_epoch,
                    "best_val_acc": result.best_val_acc,
                    "best_val_loss": result.best_val_loss,
                    "train_seconds": result.train_seconds,
                    "stopped_early": result.stopped_early,
                    "has_best": has_best,
                    "plan": plan.state() if plan else None,
                },
                always=epoch + 1 == cfg.epochs or result.stopped_early or on_epoch is not None,
            )
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
        if result.stopped_early and plan is not None:
            console.print(f"training ends: {plan.why()}")
        elif result.stopped_early:
            console.print(f"early stopping: val accuracy has not improved for {bad_epochs} epochs")
    result.first_step_seconds = timer.first_step_seconds
    result.compile = choice.record
    if plan is not None:
        stages.epochs_run = len(result.history)
    result.stages = stages.record(model)
    if plan is not None:
        result.plan = {
            **plan.state(),
            "ended_by": plan.s.reason or "budget spent before training",
            "budget_s": cfg.time_budget,
        }
    return result


def _start(
    result: FitResult, baseline, resume: bool, state_path: Path, model, opt, ema, cfg: TrainConfig, console
) -> tuple[int, int, bool]:
    """Where the epochs start: at 0 with the baseline as the best so far, or where a resumed run's
    state file says (its best, history and seconds restored into `result`). Returns (first epoch,
    epochs without improvement, whether a best exists)."""
    start_epoch, bad_epochs = 0, 0
    has_best = baseline is not None
    if has_best:
        result.best_val_acc, result.best_val_loss = baseline
    if resume and state_path.exists():
        info = load_training_state(state_path, model, opt, ema.average if ema else None)
        start_epoch, bad_epochs = info["epoch"], info["bad_epochs"]
        result.best_epoch, result.best_val_acc = info["best_epoch"], info["best_val_acc"]
        has_best = info.get("has_best", start_epoch > 0)
        result.best_val_loss = info["best_val_loss"]
        result.train_seconds, result.stopped_early = info["train_seconds"], info["stopped_early"]
        result.history = read_history(state_path.parent / "history.csv")[:start_epoch]
        console.print(f"resuming from epoch {start_epoch} of {cfg.epochs} ({escape(str(state_path))})")
    return start_epoch, bad_epochs, has_best


def _judge(
    result: FitResult,
    row: dict,
    score_key: str,
    has_val: bool,
    has_best: bool,
    bad_epochs: int,
    epoch: int,
    cfg: TrainConfig,
) -> tuple[bool, int]:
    """Is this epoch the best so far (then it is recorded in `result`), and should training stop
    early (`result.stopped_early`)? Returns (improved, epochs without improvement)."""
    acc, loss = (row[score_key], row["val_loss"]) if has_val else (row["train_acc"], row["train_loss"])
    # Accuracy first; on a tie (common on small val sets) the lower loss is the better model. keep=last:
    # every epoch's weights replace the last (a validation split too small to rank them, training.budget).
    improved = (
        cfg.keep == "last"
        or not has_best
        or acc > result.best_val_acc
        or (acc == result.best_val_acc and loss < result.best_val_loss)
    )
    if improved:
        result.best_epoch, result.best_val_acc, result.best_val_loss, bad_epochs = epoch + 1, acc, loss, 0
    else:
        bad_epochs += 1
    # Never in the first half: one-cycle's rate peaks at a quarter of the run, and validation dips
    # there before the annealed second half recovers it (CIFAR-10 with 22-540 images a class,
    # fine-tuned from a probe, stopped at epoch 5 of 14 in the dip; the run that went on gained
    # 4 points of validation accuracy in its second half).
    result.stopped_early = (
        bad_epochs >= cfg.patience and has_val and 2 * (epoch + 1) >= cfg.epochs and epoch + 1 < cfg.epochs
    )
    return improved, bad_epochs


def _step_module(model, feats: FeatureCache | None, device, compile_on: bool, console):
    """What a training step runs forward: the network (compiled when `compile_on`), or its upper
    layers over the stored maps; under DDP wrapped, so that its backward averages the gradients."""
    if feats is None:
        return compiled(dist.wrap(model, device), console) if compile_on else dist.wrap(model, device)
    return dist.wrap(feats.upper_module(), device) if dist.active() else feats.upper


def compiled(model: torch.nn.Module, console):
    """`torch.compile(model)`: the training step runs it; weights are shared with `model`, which
    validation and checkpoints use directly. When it pays is training.timing.CompileChoice's call.
    The compiled graph is cached on disk (TORCHINDUCTOR_CACHE_DIR under imgclf's cache), so re-runs
    skip most of the compiling."""
    from imgclf.data.cache import default_cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_cache_dir() / "inductor"))
    console.print("  torch.compile: on (the first compiled step includes compilation)")
    return torch.compile(model)


def _decide_compile(
    choice: CompileChoice, last: dict, timer, epoch: int, start_epoch: int, spe: int, bs: int, cfg, plan
):
    """CompileChoice's decision from the epoch just timed; rank 0's under DDP, so every rank steps alike."""
    steps = max(1, round(last["images_per_s"] * last["seconds"] / (bs * dist.world_size())))
    first_s = timer.first_step_seconds if epoch - 1 == start_epoch else 0.0
    deadline = plan.deadline if plan is not None else None
    left = None if deadline is None else deadline - time.monotonic()
    choice.decide(last["seconds"], first_s, steps, (cfg.epochs - epoch) * spe, left, epoch)
    if dist.active():
        choice.on = choice.record["on"] = dist.broadcast(choice.on if dist.is_main() else None)
        choice.record["from_epoch"] = epoch + 1 if choice.on else None


def _validate(
    model, data: SplitData, device, amp, cfg: TrainConfig, batch_size: int, feats: FeatureCache | None = None
) -> dict:
    if len(data.val) == 0:
        return {"val_loss": float("nan"), "val_acc": float("nan"), "val_balanced_acc": float("nan")}
    if feats is not None and feats.val is not None:  # the frozen layers' stored output: upper layers only
        with autocast(device, amp):
            logits = torch.from_numpy(feats.val_logits(model, batch_size, cfg.channels_last))
    else:
        logits = torch.from_numpy(
            predict_logits(
                model, data.images[np.sort(data.val)], data.mean, data.std, device, batch_size, amp, cfg.channels_last
            )
        )
    y = data.labels[np.sort(data.val)]
    right = logits.argmax(1).numpy() == y
    return {
        "val_loss": F.cross_entropy(logits, torch.from_numpy(y)).item(),
        "val_acc": float(right.mean()),
        "val_balanced_acc": balanced_accuracy(right, y),
    }

"""One epoch of optimizer steps: batches from the resident images or the stored maps, augmentation,
forward, loss, backward, the step (and the weight average), with a live progress bar."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from imgclf.data.augment import AugmentPolicy, alternate_flips, augment
from imgclf.models.forward import autocast, normalize
from imgclf.settings.config import TrainConfig
from imgclf.training import distributed as dist
from imgclf.training.batches import TrainImages
from imgclf.training.featcache import FeatureCache
from imgclf.training.finetune import Stages
from imgclf.training.optim import set_lr


@dataclass
class EpochKit:
    """What one epoch's steps use and no step changes (the optimizer is replaced between stages)."""

    model: torch.nn.Module
    step_model: torch.nn.Module  # `model` (compiled, DDP-wrapped), or the upper layers over stored maps
    train: TrainImages
    feats: FeatureCache | None
    cfg: TrainConfig
    policy: AugmentPolicy
    stages: Stages
    scaler: object
    ema: object
    weights: torch.Tensor | None
    device: torch.device
    amp: torch.dtype | None
    mean: torch.Tensor
    std: torch.Tensor
    first_flips: torch.Tensor
    bs: int
    steps: int
    plan: object = None  # training.budget.Plan: may end an epoch early (its cooldown is over)


def train_epoch(k: EpochKit, opt, perm: torch.Tensor, epoch: int, first: bool, aug_gen, crop_gen, timer, console):
    """One epoch's optimizer steps in `perm` order, with a live progress bar on a terminal. Returns the
    summed loss and correct answers (device tensors, read once at the end) and the images seen."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn()]
    timer.start()
    if k.plan is not None:
        k.plan.epoch_starts()
    loss_sum = torch.zeros((), device=k.device)
    correct = torch.zeros((), device=k.device)
    seen = 0
    with Progress(
        *columns, console=console, transient=True, disable=not (dist.is_main() and console.is_terminal)
    ) as bar:
        task = bar.add_task(f"epoch {epoch + 1}" + ("" if k.plan else f"/{k.cfg.epochs}"), total=k.steps, stats="")
        for s, (xb, yb, rows) in enumerate((k.feats or k.train).batches(perm, k.bs, k.steps)):
            set_lr(opt, k.stages.lr(epoch, s, k.steps))
            flips = alternate_flips(k.first_flips[rows], epoch) if k.policy.alternate_flip else None
            if k.feats:
                xb = k.feats.batch(rows, flips, k.policy, crop_gen, k.cfg.channels_last)
            else:
                xb = normalize(augment(xb, k.policy, aug_gen, flips), k.mean, k.std, k.cfg.channels_last)
            logits, loss = optimizer_step(
                k.step_model,
                k.model,
                xb,
                yb,
                opt,
                k.scaler,
                k.ema,
                k.cfg,
                k.weights,
                k.device,
                k.amp,
            )
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            if s == 0 and first:
                timer.first_step_done()
            # Under DDP the clock is rank 0's, consulted between epochs only: every rank steps alike.
            if k.plan is not None and not k.stages.head_only(epoch):
                if k.plan.step_done(epoch, s, check_time=not dist.active()):
                    break
            if bar.live.is_started and (s % 10 == 0 or s == k.steps - 1):  # .item() syncs the GPU
                rate = seen / max(1e-9, timer.elapsed())
                bar.update(
                    task,
                    completed=s + 1,
                    stats=f"loss {loss_sum.item() / seen:.3f} acc {correct.item() / seen:.3f} {rate:,.0f} img/s",
                )
    return loss_sum, correct, seen


def optimizer_step(forward, model, xb, yb, opt, scaler, ema, cfg: TrainConfig, weights, device, amp):
    """One optimizer step on a batch: forward, loss, backward (scaled for fp16), clip, step, EMA.
    `forward` is the (compiled) model, or the upper layers over stored maps. Returns (logits, loss)."""
    with autocast(device, amp):
        logits = forward(xb)
        loss = F.cross_entropy(logits.float(), yb, weight=weights, label_smoothing=cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    if scaler:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if scaler:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    if ema:
        ema.update(model)
    return logits, loss

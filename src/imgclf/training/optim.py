"""Optimizers and learning-rate schedules.

The schedule is a pure function of the step, set by hand each step: resuming a run then only
needs the step number, never a pickled scheduler object.
"""
from __future__ import annotations

import math

import torch

from ..errors import UserError


def make_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters: decaying them only hurts (standard practice).
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = {"foreach": True}
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), **fused)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, **fused)
    raise UserError(f"unknown optimizer '{name}'; use adamw or sgd")


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the peak learning rate at `step` (0-based) of `total` steps."""
    if schedule == "onecycle":
        # Linear up for 25% of the run from 1/25 of the peak, then linear down to ~0 (airbench-like).
        peak = max(1, int(0.25 * total))
        if step < peak:
            return 0.04 + 0.96 * step / peak
        return max(0.0, (total - step) / max(1, total - peak))
    if schedule == "cosine":
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    raise UserError(f"unknown schedule '{schedule}'; use onecycle or cosine")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr

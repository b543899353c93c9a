"""Optimizers and learning-rate schedules.

The schedule is a pure function of the step, set by hand each step: resuming a run then only
needs the step number, never a pickled scheduler object.
"""

from __future__ import annotations

import math

import torch

from imgclf.core.errors import UserError


def make_optimizer(
    model: torch.nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    groups: list[dict] | None = None,
) -> torch.optim.Optimizer:
    """`groups`: parameter groups made elsewhere (layer-wise learning rates: each may carry an
    `lr_scale` that set_lr applies); by default decay and no-decay groups of the trainable parameters."""
    if groups is None:
        # No weight decay on biases and norm parameters: decaying them only hurts (standard practice).
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # One fused kernel per step on CUDA (many tiny launches otherwise); multi-tensor foreach on CPU.
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    if name == "adamw":
        cls, kw = torch.optim.AdamW, {"betas": (0.9, 0.99)}
    elif name == "sgd":
        cls, kw = torch.optim.SGD, {"momentum": momentum, "nesterov": True}
    else:
        raise UserError(f"unknown optimizer '{name}'; use adamw or sgd")
    if on_cuda:
        try:
            return cls(groups, lr=lr, fused=True, **kw)
        except (TypeError, RuntimeError):  # fused SGD arrived in torch 2.3
            pass
    return cls(groups, lr=lr, foreach=True, **kw)


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
    """Set the schedule's learning rate; a group's `lr_scale` (layer-wise decay) scales it."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)

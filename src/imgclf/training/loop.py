"""The training loop: readable top to bottom (nanoGPT spirit).

Data stays put (airbench spirit): the decoded uint8 training set is one tensor on the training
device when it fits, so an epoch is slicing plus batched tensor augmentation — no decoding and no
per-sample Python. Larger sets are gathered batch by batch from the memory-mapped cache.
Every epoch ends with an atomic checkpoint, so a killed run resumes at the last finished epoch
with the same random stream (each epoch's randomness is seeded by (seed, epoch)).
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..data.augment import AugmentPolicy, augment
from ..device import amp_dtype
from ..fsutil import write_text
from ..inference import autocast, normalize, predict_logits
from . import distributed as dist
from .checkpoint import load_training_state, save_training_state, save_weights
from .optim import lr_factor, make_optimizer, set_lr

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"]
STATE_FILE = "train_state.safetensors"


@dataclass
class SplitData:
    images: np.ndarray            # (N, H, W, 3) uint8, memory-mapped cache
    train: np.ndarray             # row indices into images
    val: np.ndarray
    labels: np.ndarray            # (N,) int64
    mean: list[float]
    std: list[float]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    train_seconds: float = 0.0


class TrainImages:
    """Training images resident on the device when they fit, else gathered from the memmap."""

    def __init__(self, images: np.ndarray, idx: np.ndarray, labels: np.ndarray, device: torch.device):
        self.device = device
        self.labels = torch.from_numpy(labels[idx]).to(device)
        nbytes = len(idx) * int(np.prod(images.shape[1:]))
        self.resident = nbytes <= _memory_budget(device)
        if self.resident:
            self.x = torch.from_numpy(np.ascontiguousarray(images[idx])).to(device)
        else:
            self.images, self.idx = images, idx

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B,3,H,W) and labels for local rows. NHWC storage permuted = channels_last for free."""
        if self.resident:
            return self.x[rows.to(self.device)].permute(0, 3, 1, 2), self.labels[rows.to(self.device)]
        order = np.sort(rows.numpy())       # sorted reads are sequential on disk
        xb = torch.from_numpy(np.ascontiguousarray(self.images[self.idx[order]]))
        if self.device.type == "cuda":
            xb = xb.pin_memory()
        return xb.to(self.device, non_blocking=True).permute(0, 3, 1, 2), self.labels[torch.from_numpy(order).to(self.device)]


def _memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.4)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * 0.25)


def fit(model: torch.nn.Module, cfg: TrainConfig, data: SplitData, policy: AugmentPolicy, run_dir: Path,
        device: torch.device, console, resume: bool = False) -> FitResult:
    torch.manual_seed(cfg.seed)
    amp = amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    train = TrainImages(data.images, data.train, data.labels, device)
    opt = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)

    n_local = len(dist.shard(np.arange(len(train))))
    bs = min(cfg.batch_size, n_local)
    steps_per_epoch = max(1, n_local // bs)       # drop the ragged last batch: BatchNorm dislikes tiny ones
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    result, start_epoch, bad_epochs = FitResult(), 0, 0
    state_path = run_dir / STATE_FILE
    if resume and state_path.exists():
        info = load_training_state(state_path, model, opt)
        start_epoch, bad_epochs = info["epoch"], info["bad_epochs"]
        result.best_epoch, result.best_val_acc = info["best_epoch"], info["best_val_acc"]
        result.best_val_loss = info["best_val_loss"]
        result.train_seconds, result.stopped_early = info["train_seconds"], info["stopped_early"]
        result.history = read_history(run_dir / "history.csv")[:start_epoch]
        console.print(f"resuming from epoch {start_epoch} of {cfg.epochs} ({state_path})")

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn()]
    for epoch in range(start_epoch, cfg.epochs):
        if result.stopped_early:
            break
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        aug_gen = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.from_numpy(dist.shard(torch.randperm(len(train), generator=g).numpy()))
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        with Progress(*columns, console=console, transient=True,
                      disable=not (dist.is_main() and console.is_terminal)) as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, stats="")
            for s in range(steps_per_epoch):
                step = epoch * steps_per_epoch + s
                set_lr(opt, cfg.lr * lr_factor(step, total_steps, cfg.schedule, warmup))
                xb, yb = train.batch(perm[s * bs:(s + 1) * bs])
                xb = normalize(augment(xb, policy, aug_gen), mean, std, cfg.channels_last)
                with autocast(device, amp):
                    logits = model(xb)
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
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
                loss_sum += loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
                seen += len(yb)
                if s % 10 == 0 or s == steps_per_epoch - 1:   # .item() syncs the GPU: not every step
                    rate = seen / max(1e-9, time.perf_counter() - t0)
                    bar.update(task, completed=s + 1, stats=f"loss {loss_sum.item() / seen:.3f} "
                               f"acc {correct.item() / seen:.3f} {rate:,.0f} img/s")
        seconds = time.perf_counter() - t0
        result.train_seconds += seconds
        row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
               "lr": opt.param_groups[0]["lr"], "seconds": seconds, "images_per_s": seen / seconds}
        row.update(_validate(model, data, device, amp, cfg, 2 * bs))
        result.history.append(row)
        has_val = not math.isnan(row["val_acc"])
        acc, loss = (row["val_acc"], row["val_loss"]) if has_val else (row["train_acc"], row["train_loss"])
        # Accuracy first; on a tie (common on small val sets) the lower loss is the better model.
        improved = (result.best_epoch == 0 or acc > result.best_val_acc
                    or (acc == result.best_val_acc and loss < result.best_val_loss))
        if improved:
            result.best_epoch, result.best_val_acc, result.best_val_loss, bad_epochs = epoch + 1, acc, loss, 0
        else:
            bad_epochs += 1
        result.stopped_early = bad_epochs >= cfg.patience and len(data.val) > 0 and epoch + 1 < cfg.epochs
        console.print(f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  "
                      f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}  "
                      f"{row['images_per_s']:,.0f} img/s  {seconds:.1f}s{'  *' if improved else ''}")
        if dist.is_main():
            write_history(run_dir / "history.csv", result.history)
            if improved:
                save_weights(run_dir / "model.safetensors", model.state_dict())
            save_weights(run_dir / "last.safetensors", model.state_dict())
            # The state file is written last: it is the commit point a resume trusts.
            save_training_state(state_path, model, opt, {
                "epoch": epoch + 1, "bad_epochs": bad_epochs, "best_epoch": result.best_epoch,
                "best_val_acc": result.best_val_acc, "best_val_loss": result.best_val_loss, "train_seconds": result.train_seconds,
                "stopped_early": result.stopped_early})
        if result.stopped_early:
            console.print(f"early stopping: val accuracy has not improved for {bad_epochs} epochs")
    return result


def _validate(model, data: SplitData, device, amp, cfg: TrainConfig, batch_size: int) -> dict:
    if len(data.val) == 0:
        return {"val_loss": float("nan"), "val_acc": float("nan")}
    logits = torch.from_numpy(predict_logits(model, data.images[np.sort(data.val)], data.mean, data.std, device,
                                             batch_size, amp, cfg.channels_last))
    y = torch.from_numpy(data.labels[np.sort(data.val)])
    return {"val_loss": F.cross_entropy(logits, y).item(), "val_acc": (logits.argmax(1) == y).float().mean().item()}


def write_history(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in HISTORY_FIELDS})
    write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]

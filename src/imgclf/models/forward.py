"""Batched forward passes over uint8 images: shared by validation, evaluation and prediction,
so a model sees exactly the same preprocessing everywhere."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from imgclf.models.arrays import cpu_batch, softmax  # noqa: F401 - imported from here too
from imgclf.settings.checks import TTA_MODES


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float, standardised. mean/std are (1,3,1,1) on x's device, in [0,1] units."""
    # One new tensor, then in place: each temporary of a batch is tens of MB of fresh pages (the
    # same arithmetic in the same order, so the same floats as out-of-place).
    x = x.to(torch.float32, copy=True).div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def tta_logits(model: torch.nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits of a normalised batch averaged over test-time views (airbench's multi-crop TTA).

    "flip" averages the image and its mirror; "crop" averages the image (weight 1/2) with copies
    shifted diagonally by +-s px, s = side/32 (1/4 each), reflection-filled; "flip-crop" does both
    (6 forward passes). Averaging logits over views the model was trained to be invariant to
    cancels part of its view-specific error, for free in training time.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {tta!r}; use one of {', '.join(TTA_MODES)}")
    flip = tta in ("flip", "flip-crop")

    def views(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v) + model(v.flip(-1))) if flip else model(v)

    logits = views(x)
    if tta in ("crop", "flip-crop"):
        s = max(1, round(x.shape[-1] / 32))
        padded = F.pad(x, (s, s, s, s), mode="reflect")
        h, w = x.shape[-2:]
        shifted = 0.5 * (views(padded[..., :h, :w]) + views(padded[..., 2 * s :, 2 * s :]))
        logits = 0.5 * logits + 0.5 * shifted
    return logits


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    mean,
    std,
    device: torch.device,
    batch_size: int = 256,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
    tta: str = "none",
) -> np.ndarray:
    """Logits (N, C) as float32 numpy for uint8 images shaped (N, H, W, 3), optionally with
    test-time augmentation (see `tta_logits`)."""
    model.eval()
    if device.type == "cpu" and len(images):
        batch_size = min(batch_size, cpu_batch(images.shape[1] * images.shape[2]))
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        # np.require copies read-only memmap slices: torch refuses to wrap non-writable arrays.
        xb = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.require(chunk, requirements=["C", "W"]))
        xb = xb.to(device, non_blocking=True).permute(0, 3, 1, 2)
        with autocast(device, amp):
            logits = tta_logits(model, normalize(xb, mean_t, std_t, channels_last), tta)
        out.append(logits.float().cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()

"""The torch-free half of a forward pass, for a network run outside torch (ONNX Runtime): batch sizes
on a CPU, the standardisation and test-time views of models.forward in numpy, softmax, and the greedy
NMS after a detector. `imgclf predict` on an exported run uses these alone and never imports torch;
`imgclf scan` no longer imports torchvision for its NMS (2.5 s of a one-photo scan: torchvision.ops
imports torch._dynamo)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from imgclf.settings.checks import TTA_MODES

# On a CPU a forward pass is fastest on batches whose activations stay in the caches (2 cores,
# channels-last, images/s by batch 16 / 64 / 256): Lite0 at 128 px 188 / 121 / 116, resnet_fast at
# 32 px 586 / 628 / 463, at 96 px 52 / 47 / 49. So about 2**18 pixels a batch, 16 to 64 images.
CPU_BATCH_PIXELS, CPU_BATCH_RANGE = 2**18, (16, 64)


def cpu_batch(pixels: int) -> int:
    """Images a forward batch holds on a CPU, for images of `pixels` pixels each."""
    low, high = CPU_BATCH_RANGE
    return max(low, min(high, CPU_BATCH_PIXELS // max(1, pixels)))


def softmax(logits: np.ndarray) -> np.ndarray:
    # float64: in float32 a top probability rounds to exactly 1.0 once its logit margin exceeds ~17,
    # common after a sharpening temperature, and confidence thresholds could no longer rank images.
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logits_of(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mean, std, tta: str = "none") -> np.ndarray:
    """models.forward.predict_logits for a network that takes and returns numpy: `run` maps a float32
    NCHW batch to logits. uint8 (N, H, W, 3) images -> float32 logits (N, C), in CPU-sized batches,
    with the same standardisation and test-time views (the same floats to rounding)."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {tta!r}; use one of {', '.join(TTA_MODES)}")
    if not len(images):
        return np.zeros((0, 0), dtype=np.float32)
    size = cpu_batch(images.shape[1] * images.shape[2])
    out = [_views(run, standardised(images[i : i + size], mean, std), tta) for i in range(0, len(images), size)]
    return np.concatenate(out).astype(np.float32, copy=False)


def standardised(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) (x / 255 - mean) / std, as the graphs take it. uint8 has
    256 values: each channel's floats are looked up, not computed; the same float32 arithmetic, so the
    same floats, in a third of the time (a batch of 32 at 128 px: 2.6 against 8.4 ms on one core, a
    sixth of int8 Lite0's forward pass)."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    table = (levels[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    x = np.empty((len(images), 3, *images.shape[1:3]), np.float32)
    for c in range(3):
        np.take(table[c], images[..., c], out=x[:, c])
    return x


def _views(run, x: np.ndarray, tta: str) -> np.ndarray:
    """models.forward.tta_logits in numpy (see there for the views and their weights)."""

    def views(v: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(v)
        return 0.5 * (run(v) + run(np.ascontiguousarray(v[..., ::-1]))) if "flip" in tta else run(v)

    logits = views(x)
    if tta in ("crop", "flip-crop"):
        s = max(1, round(x.shape[-1] / 32))
        padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), mode="reflect")
        h, w = x.shape[-2:]
        shifted = 0.5 * (views(padded[..., :h, :w]) + views(padded[..., 2 * s :, 2 * s :]))
        logits = 0.5 * logits + 0.5 * shifted
    return logits


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression as torchvision.ops.nms computes it: boxes (n, 4) x1 y1 x2 y2, the
    best first (a stable sort, so equal scores keep their order), dropping every later box whose IoU with
    a kept one exceeds `iou`; the kept indices, best first. float32 arithmetic in torchvision's order,
    so the same boxes survive."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    zero = np.float32(0)
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        order = rest[~(inter / (areas[i] + areas[rest] - inter) > iou)]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """nms within each label (a box never suppresses one of another class); the kept indices, best first."""
    scores = np.asarray(scores, np.float32)
    keep = [np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou)] for c in np.unique(labels)]
    keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return keep[np.argsort(-scores[keep], kind="stable")]

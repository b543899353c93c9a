"""The answer every detector gives for a photo (`answer`, `box_record`) and the exported graphs'
post-processing settings (NMS at IoU 0.6, 100 boxes; detector.Detector runs it). The anchors and box
coder are the network's: models.person.anchors.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

NMS_IOU = 0.6  # the exported graphs' NMS
MAX_BOXES = 100
# A box lying this much inside a better box of its class is part of that object, not another one: a
# tile's box (detection.tiles: a person cut by the tile's edge) past TILE_INSIDE; any box past
# PART_INSIDE that scores under PART_SHARE of it. The second: with the mirror image averaged in, a
# half-body box seen one way only kept half its score (0.13 on a portrait whose person scores 0.99) and
# counted a second person; on bench/presence.py's photos dropping such boxes cost AP@0.5 at the
# threshold 0.006 (street) and 0 (pasted), and left presence as it was.
TILE_INSIDE, PART_INSIDE, PART_SHARE = 0.7, 0.9, 0.3


def drop_parts(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, keep: np.ndarray, tiled=None) -> np.ndarray:
    """`keep` (the boxes after NMS, best first; `boxes`, `scores`, `labels` are theirs) without the
    boxes that lie inside a better box of their class as a part of it (TILE_INSIDE, PART_INSIDE)."""
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    lt, rb = np.maximum(boxes[:, None, :2], boxes[None, :, :2]), np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inside = np.clip(rb - lt, 0, None).prod(2) / np.maximum(area[:, None], 1e-9)  # [i, j]: share of i inside j
    same = labels[:, None] == labels[None, :]
    part = same & (inside >= PART_INSIDE) & (scores[:, None] < PART_SHARE * scores[None, :])
    if tiled is not None:
        part |= tiled[:, None] & same & (inside > TILE_INSIDE) & (scores[None, :] > scores[:, None])
    return keep[~part.any(1)]


def box_record(x1: float, y1: float, x2: float, y2: float, score: float, label: str) -> dict:
    """One box as every detector answers it: pixels to 0.1, the score to 6 places."""
    return {
        "x1": round(float(x1), 1),
        "y1": round(float(y1), 1),
        "x2": round(float(x2), 1),
        "y2": round(float(y2), 1),
        "score": round(float(score), 6),
        "label": label,
    }


def answer(
    detector, size, found: list[dict], top: float, seconds: float, blank: bool = False, threshold: float | None = None
) -> dict:
    """A detector's answer for one photo of `size` (width, height): the same keys from every detector
    (scan.json, the service's /scan, video events read them). `top`: the best positive box's score;
    `threshold`: the one this photo was answered at (an enlarged photo's is higher), else the detector's."""
    width, height = size
    threshold = detector.threshold if threshold is None else threshold
    return {
        "width": width,
        "height": height,
        "present": top >= threshold,
        "count": sum(f["label"] == detector.positive for f in found),
        "score": round(top, 6),
        "threshold": threshold,
        "positive": detector.positive,
        "boxes": found,
        "blank": bool(blank),
        "seconds": round(seconds, 4),
    }


def logit(p: float, eps: float = 1e-6) -> float:
    """The log-odds of a score, clipped `eps` from 0 and 1."""
    p = min(max(float(p), eps), 1 - eps)
    return math.log(p) - math.log1p(-p)


def on_even_terms(found: dict, threshold: float) -> float:
    """The answer's score moved so that the threshold it was answered at lands on `threshold` (its
    log-odds shifted): one scale for photos answered at different thresholds (a video's frames, where
    FrameModel holds one threshold)."""
    if found["threshold"] == threshold:
        return found["score"]
    return 1 / (1 + math.exp(-(logit(found["score"]) - logit(found["threshold"]) + logit(threshold))))


def at_threshold(found: dict, threshold: float) -> dict:
    """An answer given at a lower threshold, as the detector answers at `threshold` (`answer` again, on
    its boxes scoring at least that: NMS ran on the same candidates, those over 0.01, at either)."""
    boxes = [b for b in found["boxes"] if b["score"] >= threshold]
    asked = SimpleNamespace(threshold=threshold, positive=found["positive"])
    size = (found["width"], found["height"])
    return answer(asked, size, boxes, found["score"], found["seconds"], found["blank"])

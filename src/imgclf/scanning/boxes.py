"""Box arithmetic for the scanner: scores as reported, voting firing windows together, letterboxing
crops, and the training crops' margin around the object."""

from __future__ import annotations

import numpy as np
import torch

from imgclf.data.images import PAD_GREY

VOTE_IOU = 0.5  # hits this close to a window vote for its box (0.3 placed boxes worse)
VOTE_CHUNK = 1024


def reported_score(p) -> float:
    p = float(p)
    return float(f"{p:.6g}") if p < 0.5 else 1 - float(f"{1 - p:.6g}")


def pixels_of(img) -> torch.Tensor:
    """An RGB PIL image as a uint8 (1, 3, H, W) tensor (a copy: torch wants writable memory)."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]


def vote_boxes(objects: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each hit's box moved to the score-weighted mean of the hits overlapping it by >= VOTE_IOU
    (itself included), before NMS picks among them, as HOG's detectMultiScale groups its hits: one
    window is off by up to half a stride and half a scale step, its neighbours err the other way,
    and their mean sits closer to the object. Voting before NMS, not after, keeps NMS the last
    word: boxes voted after it drifted into each other (0.82 extra boxes per found person on the
    mining half of bench/scan.py, 0.06 this way, AP@0.5 0.068 -> 0.078)."""
    from torchvision.ops import box_iou

    t = torch.as_tensor(objects, dtype=torch.float64)
    out = np.empty_like(objects, dtype=float)
    for i in range(0, len(t), VOTE_CHUNK):  # rows of the n x n overlap matrix at a time
        near = (box_iou(t[i : i + VOTE_CHUNK], t) >= VOTE_IOU).numpy() * scores[None, :]
        out[i : i + VOTE_CHUNK] = near @ objects / near.sum(1, keepdims=True)
    return out


def letterbox(crops: np.ndarray, size: int) -> np.ndarray:
    """Grey bars around (n, ch, cw, 3) crops to (n, size, size, 3), centred as `resize(mode='pad')` does."""
    n, ch, cw, _ = crops.shape
    out = np.full((n, size, size, 3), PAD_GREY, dtype=np.uint8)
    top, left = (size - ch) // 2, (size - cw) // 2
    out[:, top : top + ch, left : left + cw] = crops
    return out


def shrink_by_margin(boxes: np.ndarray, margin: tuple[float, float, float, float]) -> np.ndarray:
    """Window boxes -> object boxes: the training crops frame the object with a margin of context
    (INRIA's 96x160 crops hold a 64x128 person), and a box should enclose the object, not the window."""
    left, top, right, bottom = margin
    if not any(margin):
        return boxes.astype(float)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack(
        [boxes[:, 0] + left * w, boxes[:, 1] + top * h, boxes[:, 2] - right * w, boxes[:, 3] - bottom * h], 1
    )

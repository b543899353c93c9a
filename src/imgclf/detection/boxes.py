"""SSD's anchors and box coder, and the post-processing the TF Object Detection API exports with
its graphs (sigmoid scores, per-class NMS, clip to the image), in NumPy + torchvision's NMS.

Boxes inside the detector are normalised (ymin, xmin, ymax, xmax) as TensorFlow has them; they
become image pixels (x1, y1, x2, y2) only when a detector answers.
"""

from __future__ import annotations

import math

import numpy as np

# ssd_anchor_generator of ssdlite_mobilenet_v2_coco's pipeline config
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECTS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
GRIDS = (19, 10, 5, 3, 2, 1)  # feature map sides at a 300x300 input
SCALE_XY, SCALE_WH = 10.0, 5.0  # faster_rcnn_box_coder's scale factors
NMS_IOU = 0.6
MAX_BOXES = 100


def anchors(grids=GRIDS) -> np.ndarray:
    """(sum of grid^2 * anchors, 4) normalised (ymin, xmin, ymax, xmax), in the heads' output order
    (feature map, row, column, anchor). The lowest map has three boxes per place (0.1 at 1:1, the
    first scale at 2:1 and 1:2); the others each aspect ratio plus one at the geometric mean of
    their scale and the next."""
    n = len(grids)
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for layer, grid in enumerate(grids):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], a) for a in ASPECTS] + [(math.sqrt(scales[layer] * scales[layer + 1]), 1.0)]
        sizes = np.array([[s / math.sqrt(a), s * math.sqrt(a)] for s, a in specs], dtype=np.float32)  # (h, w)
        centres = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        cy, cx = cy[:, :, None], cx[:, :, None]
        h, w = sizes[:, 0], sizes[:, 1]
        boxes = np.stack(np.broadcast_arrays(cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2), -1)
        out.append(boxes.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode(encodings: np.ndarray, anchor_boxes: np.ndarray) -> np.ndarray:
    """(..., A, 4) encodings (ty, tx, th, tw) against the anchors -> (..., A, 4) (ymin, xmin, ymax, xmax)."""
    ah = anchor_boxes[:, 2] - anchor_boxes[:, 0]
    aw = anchor_boxes[:, 3] - anchor_boxes[:, 1]
    acy = anchor_boxes[:, 0] + ah / 2
    acx = anchor_boxes[:, 1] + aw / 2
    ty, tx, th, tw = (encodings[..., i] for i in range(4))
    h = np.exp(th / SCALE_WH) * ah
    w = np.exp(tw / SCALE_WH) * aw
    cy = ty / SCALE_XY * ah + acy
    cx = tx / SCALE_XY * aw + acx
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1)


def encode(boxes: np.ndarray, anchor_boxes: np.ndarray) -> np.ndarray:
    """decode's inverse: the regression targets of `boxes` (A, 4) matched to `anchor_boxes` (A, 4)."""
    ah = anchor_boxes[:, 2] - anchor_boxes[:, 0]
    aw = anchor_boxes[:, 3] - anchor_boxes[:, 1]
    h = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-8)
    w = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-8)
    cy = boxes[:, 0] + h / 2 - (anchor_boxes[:, 0] + ah / 2)
    cx = boxes[:, 1] + w / 2 - (anchor_boxes[:, 1] + aw / 2)
    return np.stack([cy / ah * SCALE_XY, cx / aw * SCALE_XY, np.log(h / ah) * SCALE_WH, np.log(w / aw) * SCALE_WH], -1)


def postprocess(encodings: np.ndarray, logits: np.ndarray, anchor_boxes: np.ndarray, min_score: float = 1e-8):
    """One image's raw outputs -> [(class index from 0, score, (ymin, xmin, ymax, xmax))], best first:
    sigmoid scores (the background column dropped), NMS per class at IoU 0.6, at most 100 boxes,
    each clipped to the image (a box left with no area is dropped), as the exported graphs do."""
    import torch
    from torchvision.ops import nms

    boxes = decode(encodings, anchor_boxes)
    scores = 1.0 / (1.0 + np.exp(-logits[:, 1:]))
    found = []
    for c in range(scores.shape[1]):
        keep = np.flatnonzero(scores[:, c] > min_score)
        if keep.size == 0:
            continue
        kept = nms(torch.from_numpy(boxes[keep]).float(), torch.from_numpy(scores[keep, c]).float(), NMS_IOU)
        for i in keep[kept.numpy()[:MAX_BOXES]]:
            found.append((c, float(scores[i, c]), boxes[i]))
    found.sort(key=lambda f: -f[1])
    out = []
    for c, s, b in found[:MAX_BOXES]:
        b = np.clip(b, 0.0, 1.0)
        if b[2] > b[0] and b[3] > b[1]:
            out.append((c, s, b))
    return out

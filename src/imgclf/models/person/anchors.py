"""SSDLite's anchors and box coder, as the TF Object Detection API's ssdlite_mobilenet_v2 config has
them, and the network with its box decoding (DecodedSSD): what the person detector (imgclf.detection)
runs and what a run that kept the person detector's features (models.person.classifier) reads.

Anchors are normalised (ymin, xmin, ymax, xmax) as TensorFlow has them; decoded boxes come out as
normalised (x1, y1, x2, y2), and become image pixels only when a detector answers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from imgclf.models.person import GRIDS
from imgclf.models.person.ssdlite import SSDLite

# ssd_anchor_generator of ssdlite_mobilenet_v2_coco's pipeline config
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECTS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
SCALE_XY, SCALE_WH = 10.0, 5.0  # faster_rcnn_box_coder's scale factors


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


def decode(enc, anchor_boxes):
    """(..., A, 4) torch encodings (ty, tx, th, tw) on the anchors (A, 4 ymin xmin ymax xmax) ->
    (..., A, 4) boxes as (x1, y1, x2, y2), normalised: the order imgclf reports boxes in."""
    import torch

    a = anchor_boxes
    ah, aw = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cy = enc[..., 0] / SCALE_XY * ah + a[:, 0] + ah / 2
    cx = enc[..., 1] / SCALE_XY * aw + a[:, 1] + aw / 2
    h = torch.exp(enc[..., 2] / SCALE_WH) * ah
    w = torch.exp(enc[..., 3] / SCALE_WH) * aw
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def encode(gt, anchor_boxes):
    """decode's inverse for training targets: boxes `gt` (A, 4 ymin xmin ymax xmax, torch) on their
    anchors -> (ty, tx, th, tw)."""
    import torch

    a = anchor_boxes
    ah, aw = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    h = (gt[:, 2] - gt[:, 0]).clamp(min=1e-6)
    w = (gt[:, 3] - gt[:, 1]).clamp(min=1e-6)
    ty = (gt[:, 0] + h / 2 - a[:, 0] - ah / 2) / ah * SCALE_XY
    tx = (gt[:, 1] + w / 2 - a[:, 1] - aw / 2) / aw * SCALE_XY
    return torch.stack([ty, tx, torch.log(h / ah) * SCALE_WH, torch.log(w / aw) * SCALE_WH], -1)


class DecodedSSD(torch.nn.Module):
    """SSDLite with its box decoding: uint8-range RGB (N, 3, 300, 300) -> boxes (N, A, 4) normalised
    (x1, y1, x2, y2) and per-class scores (N, A, classes). What the ONNX export holds, so any ONNX
    runtime gets usable boxes with one NMS of its own."""

    def __init__(self, net: SSDLite):
        super().__init__()
        self.net = net
        self.register_buffer("anchors", torch.from_numpy(anchors()), persistent=False)

    def forward(self, x):
        enc, logits = self.net(x / 127.5 - 1.0)
        boxes = decode(enc, self.anchors)
        return boxes, torch.sigmoid(logits[..., 1:])

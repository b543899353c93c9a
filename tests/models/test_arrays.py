"""models.arrays' NMS against torchvision's, which it replaced after a detector (the same boxes kept,
in the same order, ties included)."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms

from imgclf.models.arrays import batched_nms, nms


def _boxes(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    wh = rng.uniform(0.01, 0.5, (n, 2)).astype(np.float32)
    return np.concatenate([xy, xy + wh], 1), rng.uniform(0, 1, n).astype(np.float32)


def test_nms_keeps_torchvisions_boxes_in_its_order():
    rng = np.random.default_rng(0)
    for trial in range(60):
        boxes, scores = _boxes(rng, int(rng.integers(0, 300)))
        if trial % 2:
            scores = np.round(scores, 1).astype(np.float32)  # many equal scores: the stable order decides
        for iou in (0.3, 0.6):
            expected = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
            np.testing.assert_array_equal(nms(boxes, scores, iou), expected)
    assert len(nms(np.zeros((0, 4)), np.zeros(0), 0.5)) == 0


def test_batched_nms_suppresses_within_a_class_only():
    rng = np.random.default_rng(1)
    for _ in range(30):
        boxes, scores = _boxes(rng, int(rng.integers(1, 300)))
        labels = rng.integers(0, 3, len(boxes))
        got = batched_nms(boxes, scores, labels, 0.5)
        expected = tv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5)
        assert sorted(got) == sorted(expected.numpy()) and np.all(np.diff(scores[got]) <= 0)
    # Two identical boxes of different classes both stay; of one class, the better one alone.
    same = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.float32)
    assert list(batched_nms(same, np.array([0.9, 0.8]), np.array([0, 1]), 0.5)) == [0, 1]
    assert list(batched_nms(same, np.array([0.8, 0.9]), np.array([0, 0]), 0.5)) == [1]

"""models.arrays' NMS against torchvision's, which it replaced after a detector (the same boxes kept,
in the same order, ties included), and its standardisation against PyTorch's forward pass."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms

from imgclf.models.arrays import batched_nms, logits_of, nms
from imgclf.models.forward import predict_logits


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


def test_standardised_batches_are_pytorchs_floats():
    """logits_of looks the standardised floats up by pixel value: the same floats as PyTorch's forward
    pass computes, in every test-time view, and over batches of any size (the last one ragged)."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (70, 12, 12, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # unequal per channel: a swap would show
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.Flatten())  # keeps each pixel's place
    torch.nn.init.normal_(net[0].weight)

    def run(x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape[1:] == (3, 12, 12)
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    for tta in ("none", "flip", "flip-crop"):
        expected = predict_logits(net, images, mean, std, torch.device("cpu"), tta=tta)
        np.testing.assert_allclose(logits_of(run, images, mean, std, tta), expected, rtol=0, atol=1e-5)

"""Open-set rejection: a confidence threshold chosen on validation, 'unknown' for what is none of the classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_shapes_dataset
from PIL import Image

import imgclf
from imgclf.core.errors import UserError
from imgclf.evaluation.rejection import check_targets, choose_threshold, rejection_metrics, selective_curve


def _scores(rng, n, classes=5):
    """Softmax rows whose top probability predicts correctness, as a calibrated model's does."""
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), labels] += rng.gamma(2.0, 1.5, n)  # a margin of varying size
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), labels


def test_targets_hold_on_fresh_data_and_curve_is_consistent():
    rng = np.random.default_rng(0)
    (pv, yv), (pt, yt) = _scores(rng, 4000), _scores(rng, 4000)
    t, rule = choose_threshold(pv, yv, target_accuracy=0.95)
    assert "accuracy >= 0.95" in rule
    m = rejection_metrics(pt, yt, t)
    assert abs(m["accuracy_accepted"] - 0.95) < 0.015 and 0.2 < m["coverage"] < 0.95
    t2, _ = choose_threshold(pv, yv, target_coverage=0.8)
    assert abs(rejection_metrics(pt, yt, t2)["coverage"] - 0.8) < 0.02
    assert rejection_metrics(pv, yv, choose_threshold(pv, yv, target_coverage=1.0)[0])["coverage"] == 1.0

    curve = selective_curve(pt, yt)
    assert len(curve["coverage"]) == 100 and curve["coverage"][-1] == 1.0
    assert curve["accuracy"][-1] == pytest.approx((pt.argmax(1) == yt).mean())
    assert curve["accuracy"][0] > curve["accuracy"][-1] and np.all(np.diff(curve["threshold"]) <= 0)
    assert 0 < curve["aurc"] < 1 - curve["accuracy"][-1]  # ranking by confidence beats chance


def test_unreachable_accuracy_rejects_everything_and_bad_targets_are_refused():
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]])
    t, rule = choose_threshold(probs, np.array([1, 2]), target_accuracy=0.9)
    assert "unreachable" in rule and rejection_metrics(probs, np.array([1, 2]), t)["coverage"] == 0
    with pytest.raises(UserError, match="not both"):
        check_targets(["a", "b", "c"], 0.9, 0.9)
    with pytest.raises(UserError, match="fraction"):
        check_targets(["a", "b", "c"], 99, None)
    with pytest.raises(UserError, match="--target-recall"):
        check_targets(["cat", "dog"], 0.9, None)


def _add_crosses(root, n=30, size=24, seed=1):
    """A kind of image the model never saw: a red cross on the same noisy background."""
    rng = np.random.default_rng(seed)
    (root / "cross").mkdir(parents=True)
    for i in range(n):
        img = rng.integers(60, 120, size=(size, size, 3)).astype(np.uint8)
        cx, cy = rng.integers(7, size - 7, 2)
        img[cy - 1 : cy + 2, cx - 6 : cx + 6] = img[cy - 6 : cy + 6, cx - 1 : cx + 2] = [220, 30, 30]
        Image.fromarray(img).save(root / "cross" / f"cross_{i:03d}.png")
    return root / "cross"


@pytest.mark.slow
def test_unknown_kind_of_image_is_rejected_known_ones_answered(tmp_path):
    # 210 images: a validation split of 21, enough to fit the temperature the threshold is read on
    shapes = make_shapes_dataset(tmp_path / "shapes", per_class=70)
    # On the CPU wherever it runs: a GPU's batch of 128 gives 8 epochs of 189 images 16 steps, too few
    # for a model whose confidence separates a kind it never saw (0 of 30 crosses rejected on an H100).
    run = imgclf.train(shapes, out=tmp_path / "run", epochs=8, target_accuracy=0.99, device="cpu", verbose=False)
    meta = json.loads((run.path / "model.json").read_text())
    rej = meta["rejection"]
    assert 0 < rej["threshold"] < 1 and "accuracy >= 0.99" in rej["rule"]
    m = run.metrics
    assert m["rejection"]["coverage"] >= 0.7 and m["rejection"]["accuracy_accepted"] >= 0.95
    assert m["selective"]["coverage"][-1] == 1.0 and (run.path / "coverage.png").is_file()

    model = imgclf.load(run.path)
    unknown = model.predict(_add_crosses(tmp_path / "other"))
    assert np.mean([r["label"] == "unknown" for r in unknown]) >= 0.7
    assert all(0 < r["confidence"] < rej["threshold"] for r in unknown if r["label"] == "unknown")
    assert all(r["top_k"][0][0] in meta["classes"] for r in unknown)  # the best guess is still reported
    known = model.predict(shapes / "disc")
    assert np.mean([r["label"] == "disc" for r in known]) >= 0.8


@pytest.mark.slow
def test_without_targets_curve_only(shapes, tmp_path):
    run = imgclf.train(shapes, out=tmp_path / "run", model="simple_cnn", epochs=2, verbose=False)
    assert "rejection" not in json.loads((run.path / "model.json").read_text())
    assert "rejection" not in run.metrics and len(run.metrics["selective"]["accuracy"]) == run.metrics["n"]
    assert {r["label"] for r in imgclf.load(run.path).predict(shapes / "disc")} <= {"disc", "square", "stripes"}

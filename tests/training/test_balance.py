"""Class weights for imbalanced data: chosen automatically, recorded, and used by training."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from helpers import cli

from imgclf.core.errors import UserError
from imgclf.training.balance import balanced_accuracy, class_weights, resolve_class_weight


def test_auto_weighs_classes_only_when_they_are_far_apart():
    skewed = np.repeat([0, 1, 2], [60, 40, 6])
    mode, why = resolve_class_weight("auto", skewed, 3)
    assert mode == "sqrt" and "6 to 60 images" in why
    assert resolve_class_weight("auto", np.repeat([0, 1, 2], [30, 30, 20]), 3) == ("none", None)
    assert resolve_class_weight("balanced", skewed, 3) == ("balanced", None)
    with pytest.raises(UserError, match="choose one of auto, none, sqrt, balanced"):
        resolve_class_weight("heavy", skewed, 3)


def test_weights_keep_the_average_image_at_one():
    labels = np.repeat([0, 1, 2], [100, 25, 4])
    for mode, ratio in (("sqrt", 5.0), ("balanced", 25.0)):
        w = class_weights(mode, labels, 4)  # class 3 has no training image: weight 0
        assert w[labels].mean() == pytest.approx(1.0)
        assert w[2] / w[0] == pytest.approx(ratio) and w[3] == 0
    assert class_weights("none", labels, 3) is None


def test_balanced_accuracy_is_the_mean_recall():
    y = np.array([0] * 8 + [1] * 2)
    right = np.array([True] * 8 + [False, True])  # 90 % of the images, but half of class 1
    assert balanced_accuracy(right, y) == pytest.approx(0.75)


@pytest.mark.slow
def test_imbalanced_folder_trains_weighted_and_records_it(shapes, tmp_path):
    for f in sorted((shapes / "stripes").iterdir())[8:]:  # 30 / 30 / 8 images
        f.unlink()
    # (--keep best: its 7 validation images would ship the last epoch, keep=last)
    p = cli("train", shapes, "--model", "simple_cnn", "--epochs", "2", "--keep", "best", "--out", tmp_path / "run")
    assert "default: class_weight=sqrt" in p.stdout
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["class_weight"] == "sqrt"
    # Weighted training keeps the epoch with the best balanced accuracy, and says so.
    assert "best val balanced accuracy" in p.stdout
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["training"]["criterion"] == "balanced accuracy"
    history = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    best = history[meta["training"]["best_epoch"] - 1]
    assert float(best["val_balanced_acc"]) == pytest.approx(meta["training"]["best_val_acc"], abs=1e-5)
    p = cli("train", shapes, "--class-weight", "heavy", "--out", tmp_path / "bad", check=False)
    assert p.returncode == 2 and "unknown --class-weight 'heavy'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "bad").exists()

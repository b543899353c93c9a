"""Class weights for imbalanced data: chosen automatically, recorded, and used by training."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from imgclf.errors import UserError
from imgclf.training.balance import class_weights, resolve_class_weight

from test_end_to_end import cli


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
        w = class_weights(mode, labels, 4)       # class 3 has no training image: weight 0
        assert w[labels].mean() == pytest.approx(1.0)
        assert w[2] / w[0] == pytest.approx(ratio) and w[3] == 0
    assert class_weights("none", labels, 3) is None


def test_imbalanced_folder_trains_weighted_and_records_it(shapes, tmp_path):
    for f in sorted((shapes / "stripes").iterdir())[8:]:      # 30 / 30 / 8 images
        f.unlink()
    p = cli("train", shapes, "--model", "simple_cnn", "--epochs", "2", "--out", tmp_path / "run")
    assert "default: class_weight=sqrt" in p.stdout
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["class_weight"] == "sqrt"
    p = cli("train", shapes, "--class-weight", "heavy", "--out", tmp_path / "bad", check=False)
    assert p.returncode == 2 and "unknown class_weight 'heavy'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "bad").exists()

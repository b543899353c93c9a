"""Class weights for imbalanced data: how much each training image of a class counts in the loss.

With classes of 24 and 600 images, plain cross-entropy spends 25x the effort on the big class and
the small ones are where the mistakes go (macro F1 well below accuracy). Weighting each class by
1/sqrt(its count) ("sqrt") is the middle road: it lifts the small classes without treating one
image of a rare class as worth 25 of a common one, which ("balanced", 1/count) overfits the rare
images and costs accuracy when the test has the training set's proportions. The linear probe
(training.probe) and fine-tuning (training.loop) use the same weights.
"""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError
from imgclf.settings.checks import CLASS_WEIGHT_MODES

MODES = CLASS_WEIGHT_MODES
AUTO_RATIO = 3.0  # auto weighs classes when the largest has this many times the images of the smallest


def resolve_class_weight(mode: str, train_labels: np.ndarray, n_classes: int) -> tuple[str, str | None]:
    """The mode `auto` stands for on these labels, and the line that says why (None when not auto)."""
    if mode not in MODES:
        raise UserError(f"unknown class_weight {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "auto":
        return mode, None
    counts = np.bincount(train_labels, minlength=n_classes)
    counts = counts[counts > 0]
    lo, hi = int(counts.min()), int(counts.max())
    if hi >= AUTO_RATIO * lo:
        return "sqrt", (
            f"class_weight=sqrt: training classes hold {lo} to {hi} images (>= {AUTO_RATIO:g}x apart); "
            "each class weighs 1/sqrt(its count) in the loss"
        )
    return "none", None


def class_weights(mode: str, train_labels: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-class loss weights (mean 1 over the training images), or None for plain cross-entropy."""
    if mode in ("none", "auto"):
        return None
    counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    seen = counts > 0
    w[seen] = counts[seen] ** (-0.5 if mode == "sqrt" else -1.0)
    # Scaled so the average image still weighs 1: the learning rate means what it meant unweighted.
    return w * counts.sum() / (w * counts).sum()


def balanced_accuracy(right: np.ndarray, y: np.ndarray) -> float:
    """The mean over classes of the share of each class's images answered right (mean recall): what
    training judges validation by when classes are weighted."""
    return float(np.mean([right[y == k].mean() for k in np.unique(y)]))

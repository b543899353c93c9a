"""Operating threshold for two-class tasks ("is a person present?"), chosen on the validation split.

Argmax means a threshold of 0.5, which is rarely what a user wants: a safety camera wants high
recall of "person", a door-opener high precision. The rule is one of: a target recall, a target
precision, or (default) the best F1; the threshold then applies to every prediction.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from imgclf.core.errors import UserError

# The default rule (best F1) picks a threshold from the validation split only when it holds this many
# images of each class; below, argmax. `python bench/decision.py` (a calibrated model's simulated
# scores, F1 on new images, 300 draws): with balanced classes a threshold chosen on 5 images a class
# scored 0.753 against argmax's 0.797 (its worst tenth 0.665), on 10 a class 0.775, on 100 a class
# level; with 10-20 % positives it gains from about 10 positives on (+2 to +6 points). A validation
# split of 5 daisies and 5 sunflowers chose 0.80 and named 2 of 5 test sunflowers daisies, argmax
# none. An explicit --target-recall or --target-precision is the user's rule and always followed.
MIN_DECISION_PER_CLASS = 10

# Names that usually mean "the thing is absent": the other class is then the positive one.
_NEGATIVE = re.compile(
    r"^(no|non|not|neg|negative|without|background|bg|none|other|empty|absent|clean|normal)"
    r"([\s_-].*)?$|^(no|non)[a-z]",
    re.IGNORECASE,
)


def positive_class(classes: list[str], chosen: str | None = None) -> int:
    """Index of the positive class: the user's choice, else the one not named like a negative
    ("no-person", "non-human", "background"), else the second class in sorted order."""
    if chosen is not None:
        if chosen not in classes:
            raise UserError(f"positive class '{chosen}' is not one of the classes: {', '.join(classes)}")
        return classes.index(chosen)
    negative = [bool(_NEGATIVE.match(c)) for c in classes]
    if negative.count(True) == 1:
        return negative.index(False)
    return 1


def choose_threshold(
    p_pos: np.ndarray, is_pos: np.ndarray, target_recall: float | None = None, target_precision: float | None = None
) -> tuple[float, str]:
    """(threshold on the positive-class probability, the rule that chose it)."""
    if target_recall is not None and target_precision is not None:
        raise UserError("give either a target recall or a target precision, not both")
    if is_pos.all() or not is_pos.any():
        return 0.5, "argmax (validation split has one class only)"
    fewest = int(min(is_pos.sum(), (~is_pos).sum()))
    if target_recall is None and target_precision is None and fewest < MIN_DECISION_PER_CLASS:
        return 0.5, (
            f"argmax: {fewest} validation images of a class are too few to choose a threshold on "
            f"(it takes {MIN_DECISION_PER_CLASS} of each)"
        )
    precision, recall, thresholds = precision_recall_curve(is_pos, p_pos)
    precision, recall = precision[:-1], recall[:-1]  # align with thresholds
    if target_recall is not None:
        ok = np.flatnonzero(recall >= target_recall)
        return float(thresholds[ok].max()), f"highest threshold with validation recall >= {target_recall}"
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision)
        if len(ok) == 0:
            return float(
                thresholds.max()
            ), f"precision {target_precision} unreachable on validation; strictest threshold"
        return float(thresholds[ok].min()), f"lowest threshold with validation precision >= {target_precision}"
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return _middle(p_pos, float(thresholds[int(np.argmax(f1))])), "best validation F1"


def _middle(p_pos: np.ndarray, chosen: float) -> float:
    """The middle, in log-odds, of the gap below `chosen` (the lowest positive score that achieves
    the best F1): every threshold in it answers the validation images alike, and the lowest one sits on
    a validation photo's own score. A cleanly separated validation split (negatives at 1e-7, positives
    from 0.99999997) put the threshold at 0.99999997, and a new photo of the positive class at
    0.99999996 was answered negative."""
    below = p_pos[p_pos < chosen]
    low = float(below.max()) if len(below) else 0.0
    eps = 1e-12
    logit = lambda p: np.log(max(p, eps) / max(1 - p, eps))  # noqa: E731
    return float(1 / (1 + np.exp(-(logit(low) + logit(chosen)) / 2)))


def decision_metrics(p_pos: np.ndarray, is_pos: np.ndarray, threshold: float) -> dict:
    pred = p_pos >= threshold
    tp, fp, fn = int((pred & is_pos).sum()), int((pred & ~is_pos).sum()), int((~pred & is_pos).sum())
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    out = {
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(1e-12, precision + recall),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": int((~pred & ~is_pos).sum()),
    }
    if is_pos.any() and not is_pos.all():
        out["roc_auc"] = float(roc_auc_score(is_pos, p_pos))
        out["pr_auc"] = float(average_precision_score(is_pos, p_pos))
    return out

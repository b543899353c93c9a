"""Binary operating thresholds chosen for a target recall / precision / best F1."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.core.errors import UserError
from imgclf.evaluation.decision import choose_threshold, decision_metrics, positive_class


def test_positive_class_from_names():
    assert positive_class(["human", "non-human"]) == 0
    assert positive_class(["no-person", "person"]) == 1
    assert positive_class(["background", "car"]) == 1
    assert positive_class(["cat", "dog"]) == 1
    assert positive_class(["cat", "dog"], "cat") == 0
    with pytest.raises(UserError, match="not one of the classes"):
        positive_class(["cat", "dog"], "cow")


def test_target_recall_and_precision_hold_on_fresh_data():
    rng = np.random.default_rng(0)

    def sample(n):
        is_pos = rng.random(n) < 0.4
        score = np.clip(rng.normal(np.where(is_pos, 0.65, 0.35), 0.15), 0, 1)
        return score, is_pos

    val, test = sample(4000), sample(4000)
    t, rule = choose_threshold(*val, target_recall=0.95)
    assert "recall >= 0.95" in rule
    m = decision_metrics(*test, t)
    assert abs(m["recall"] - 0.95) < 0.02 and 0.5 < m["roc_auc"] <= 1
    t2, _ = choose_threshold(*val, target_precision=0.9)
    assert abs(decision_metrics(*test, t2)["precision"] - 0.9) < 0.03
    t3, rule3 = choose_threshold(*val)
    assert rule3 == "best validation F1" and t2 > t3 > t


def test_a_handful_of_validation_images_keeps_argmax_unless_a_target_is_asked():
    """5 images a class put the best-F1 threshold anywhere between them (bench/decision.py: 4 points of
    F1 below argmax on new images); a stated target is the user's rule and is still followed."""
    from imgclf.evaluation.decision import MIN_DECISION_PER_CLASS

    p_pos = np.array([0.1, 0.3, 0.45, 0.55, 0.7, 0.2, 0.6, 0.75, 0.85, 0.95])
    is_pos = np.array([False] * 5 + [True] * 5)
    t, rule = choose_threshold(p_pos, is_pos)
    assert t == 0.5 and "too few" in rule and f"it takes {MIN_DECISION_PER_CLASS} of each" in rule
    assert choose_threshold(p_pos, is_pos, target_recall=1.0)[0] == 0.2  # every positive, as asked
    more = np.tile(p_pos, MIN_DECISION_PER_CLASS), np.tile(is_pos, MIN_DECISION_PER_CLASS)
    assert choose_threshold(*more)[1] == "best validation F1"

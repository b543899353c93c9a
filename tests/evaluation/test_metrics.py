"""The test split's numbers as printed: the accuracy comes with its 95 % interval, so a perfect score
on a handful of photos reads as the wide guess it is."""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.metrics import compute_metrics, summary_line, weak_classes, wilson


def test_the_summary_line_gives_the_accuracy_with_its_interval():
    probs = np.tile([[0.9, 0.1], [0.2, 0.8]], (9, 1))
    m = compute_metrics(np.tile([0, 1], 9), probs, ["cat", "dog"])
    line = summary_line(m)
    assert line.startswith("accuracy 1.0000  macro F1 1.0000  log-loss 0.1643")
    assert line.endswith("(n=18; accuracy's 95% interval 0.824-1.000)")
    # Wider on fewer photos; narrower on many; within [0, 1] at the ends.
    assert wilson(18, 18)[0] < wilson(180, 180)[0] and wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0
    lo, hi = wilson(819, 1000)
    assert lo < 0.819 < hi and round(hi - lo, 3) == 0.048


def test_the_classes_a_model_fails_are_named_with_what_would_help():
    # 10 cats and 10 dogs right; 8 of 10 birds called cats; the one fish (a class of 4 training photos)
    # missed: the worst first
    y = np.array([0] * 10 + [1] * 10 + [2] * 10 + [3])
    pred = np.array([0] * 10 + [1] * 10 + [0] * 8 + [2] * 2 + [1])
    m = compute_metrics(y, np.eye(4)[pred], ["cat", "dog", "bird", "fish"])
    trained = {"cat": 90, "dog": 80, "bird": 85, "fish": 4}
    line = weak_classes(m, trained)
    assert line == (
        "fish 0 of 1 test image right (trained on 4 images against the median class's 82.5: add photos of it); "
        "bird 2 of 10 test images right"
    )
    # A class of ordinary size on a handful of test images is not named on one miss: too few to tell
    y, pred = np.array([0] * 10 + [1] * 2), np.array([0] * 10 + [0, 1])
    assert weak_classes(compute_metrics(y, np.eye(2)[pred], ["a", "b"]), {"a": 50, "b": 50}) == ""
    # Nothing is named when every class does about as well as the whole
    assert weak_classes(compute_metrics(np.arange(4), np.eye(4), list("abcd")), dict.fromkeys("abcd", 9)) == ""

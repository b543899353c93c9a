"""The test split's numbers as printed: the accuracy comes with its 95 % interval, so a perfect score
on a handful of photos reads as the wide guess it is."""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.metrics import compute_metrics, summary_line, wilson


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

"""Temperature scaling recovers a known over-confidence; ECE measures it."""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.calibration import expected_calibration_error, fit_temperature, nll
from imgclf.models.forward import softmax


def _sample(n=4000, classes=5, true_t=2.5, seed=0):
    """Logits whose labels really follow softmax(logits / true_t): the model is over-confident by true_t."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, classes))
    p = softmax(logits / true_t)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def test_fit_temperature_recovers_the_true_scale():
    logits, labels = _sample()
    t = fit_temperature(logits, labels)
    assert abs(t - 2.5) < 0.25
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)


def test_ece_drops_after_scaling_and_is_small_when_calibrated():
    logits, labels = _sample(seed=1)
    t = fit_temperature(*_sample(seed=2))  # fitted on other data, as on a val split
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits / t), labels)
    assert before > 0.1 and after < 0.04 and after < before / 3


def test_empty_validation_keeps_identity():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0

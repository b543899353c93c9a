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


def test_a_run_fits_no_temperature_on_too_few_or_all_right_validation_images():
    """A few validation images, or any number all named right, would sharpen the model to T's floor
    and ruin its log-loss on new images: then the temperature stays 1, and the run says so."""
    from imgclf.evaluation.scoring import MIN_CALIBRATION_IMAGES, calibrate

    class Spec:  # the split calibrate reads: every image is a validation image
        def __init__(self, labels):
            self.labels = labels

        def indices(self, split):
            return np.arange(len(self.labels)) if split == "val" else np.arange(0)

    class Identity:  # its "images" are already logits
        def predict_logits(self, x):
            return x

    said = []
    console = type("Console", (), {"print": staticmethod(said.append)})
    logits, labels = _sample(n=4000)
    few = MIN_CALIBRATION_IMAGES - 1
    small = calibrate(Identity(), logits[:few], Spec(labels[:few]), console)
    assert small.temperature == 1.0 and small.n == few and "too few" in said[-1]
    full = calibrate(Identity(), logits, Spec(labels), console)
    assert abs(full.temperature - 2.5) < 0.25 and "fitted on 4000" in said[-1]
    # Every validation image right: the fit would sharpen to T's floor (0.2), so none is fitted.
    right = logits.argmax(1)
    assert fit_temperature(logits, right) < 0.21
    perfect = calibrate(Identity(), logits, Spec(right), console)
    assert perfect.temperature == 1.0 and "names all 4000 validation images right" in said[-1]


def test_calibration_and_the_operating_point_share_one_pass_over_the_validation_split():
    """With test-time augmentation a pass over a large validation split costs seconds: the logits
    the caller already has are used, and give the same temperature and threshold as a new pass."""
    from types import SimpleNamespace

    from imgclf.evaluation.scoring import calibrate, choose_decision
    from imgclf.settings.config import TrainConfig

    logits, labels = _sample(n=2000, classes=2, seed=3)
    spec = SimpleNamespace(
        labels=labels, classes=["cat", "dog"], indices=lambda s: np.arange(2000 if s == "val" else 0)
    )

    class Counting:  # its "images" are already logits
        calls, temperature = 0, 1.0

        def predict_logits(self, x):
            self.calls += 1
            return x

        def predict_proba(self, x):
            return softmax(self.predict_logits(x) / self.temperature)

    console = type("Console", (), {"print": staticmethod(lambda *a: None)})
    fresh, shared = Counting(), Counting()
    fresh.temperature = calibrate(fresh, logits, spec, console).temperature
    want = choose_decision(fresh, logits, spec, TrainConfig(data="x"), console)
    shared.temperature = calibrate(shared, logits, spec, console, logits).temperature
    got = choose_decision(shared, logits, spec, TrainConfig(data="x"), console, logits)
    assert fresh.calls == 2 and shared.calls == 0
    assert shared.temperature == fresh.temperature != 1.0 and got.threshold == want.threshold


def test_one_wrong_answer_on_a_small_split_does_not_sharpen_to_the_floor():
    """48 validation images, one wrong: the plain fit sharpens until that one alone pays (T at its
    floor); the prior on log T keeps it near 1, and on thousands of images the data still decides."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 48)
    logits = np.zeros((48, 2))
    logits[np.arange(48), labels] = rng.uniform(1.0, 2.0, 48)  # right, fairly sure
    logits[0] = 0.0
    logits[0, 1 - labels[0]] = 0.05  # one wrong, barely
    assert fit_temperature(logits, labels, prior_sd=None) < 0.21
    assert 0.3 < fit_temperature(logits, labels) < 1.0
    many, truth = _sample(n=4000, true_t=2.5)
    assert abs(fit_temperature(many, truth) - fit_temperature(many, truth, prior_sd=None)) < 0.05

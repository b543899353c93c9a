"""Open-set rejection for multi-class models ("which of our 40 employees is this face?").

A closed-set classifier always names one of its classes, even for a face that is none of them.
Selective classification answers `unknown` when the calibrated top probability is below a
threshold: fewer answers (coverage) in exchange for fewer wrong ones (selective accuracy). The
threshold is chosen on the validation split for a target accuracy or a target coverage.
"""

from __future__ import annotations

import numpy as np

from imgclf.settings.checks import UNKNOWN, check_targets  # noqa: F401  (re-exported: the rejection's rules)

CURVE_POINTS = 100  # the stored curve is sampled at coverage 1%, 2%, ... 100%: small JSON for any n


def _ranked(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top probabilities sorted from most to least confident, and whether each argmax was right."""
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    return conf[order], (probs.argmax(1) == labels)[order]


def selective_curve(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Coverage–accuracy curve: for the k most confident images (k = 1% ... 100% of n), the
    accuracy on them and the confidence threshold that keeps them; plus the area under the
    risk–coverage curve (AURC: mean error rate over all coverages, lower is better)."""
    conf, correct = _ranked(probs, labels)
    n = len(conf)
    if n == 0:
        return {"coverage": [], "accuracy": [], "threshold": [], "aurc": None, "n": 0}
    acc = np.cumsum(correct) / np.arange(1, n + 1)
    ks = np.unique(
        np.clip(np.ceil(np.linspace(1, CURVE_POINTS, min(n, CURVE_POINTS)) / CURVE_POINTS * n), 1, n).astype(int)
    )
    return {
        "coverage": (ks / n).tolist(),
        "accuracy": acc[ks - 1].tolist(),
        "threshold": conf[ks - 1].astype(float).tolist(),
        "aurc": float(np.mean(1 - acc)),
        "n": int(n),
    }


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, target_accuracy: float | None = None, target_coverage: float | None = None
) -> tuple[float, str]:
    """(threshold on the calibrated top probability, the rule that chose it) from validation data.

    target_accuracy A: the lowest threshold (highest coverage) whose selective accuracy is >= A.
    target_coverage C: the threshold that keeps the fraction C of the images.
    """
    conf, correct = _ranked(probs, labels)
    n = len(conf)
    if n == 0:
        return 0.0, "no validation images; nothing rejected"
    # Only cut between distinct confidences: a threshold accepts every image tied with it.
    ends = np.flatnonzero(np.append(conf[1:] < conf[:-1], True))
    if target_coverage is not None:
        want = int(np.ceil(target_coverage * n - 1e-9))  # 0.8 * 35 is 28.000000000000004
        k = ends[np.searchsorted(ends, want - 1)]
        return float(conf[k]), f"keeps {target_coverage:g} of validation images"
    acc = np.cumsum(correct) / np.arange(1, n + 1)
    ok = ends[acc[ends] >= target_accuracy]
    if len(ok) == 0:
        return float(
            np.nextafter(conf[0], np.inf)
        ), f"accuracy {target_accuracy:g} unreachable on validation; rejects all"
    return float(conf[ok.max()]), f"highest validation coverage with accuracy >= {target_accuracy:g}"


def rejection_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Coverage and accuracy on the images accepted at `threshold`."""
    accepted = probs.max(1) >= threshold
    correct = probs.argmax(1) == labels
    n_acc = int(accepted.sum())
    return {
        "threshold": float(threshold),
        "coverage": n_acc / max(1, len(labels)),
        "accuracy_accepted": float(correct[accepted].mean()) if n_acc else None,
        "accepted": n_acc,
        "rejected": int(len(labels) - n_acc),
        "errors_accepted": int((accepted & ~correct).sum()),
    }


def resolution_warning(n_accepted: int, target_accuracy: float | None) -> str | None:
    """With fewer accepted validation images than 1 / (1 - A), a single error is more than the
    whole error budget: the split cannot tell accuracy A from 100 %, so the threshold it gives is
    only the least confident image that happened to be right. Say so rather than imply precision."""
    if target_accuracy is None or n_accepted * (1 - target_accuracy) >= 1:
        return None
    return (
        f"only {n_accepted} accepted validation images: one error among them would be "
        f"{1 / max(1, n_accepted):.1%}, so accuracy {target_accuracy:g} cannot be measured; a larger "
        "validation split (--val-frac) makes the threshold trustworthy"
    )

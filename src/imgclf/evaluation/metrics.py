"""Test-set metrics with scikit-learn: everything a user needs to judge a model, as plain JSON."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, log_loss, top_k_accuracy_score


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str], top_k: tuple[int, ...] = (3, 5)) -> dict:
    """Accuracy, top-k, per-class precision/recall/F1/support, macro and weighted averages,
    confusion matrix (rows = true class, columns = predicted) and log-loss."""
    labels = np.arange(len(classes))
    y_pred = probs.argmax(1)
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    per_class = {c: {k: report[c][k] for k in ("precision", "recall", "f1-score", "support")} for c in classes}
    out = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top_k_accuracy": {},
        "log_loss": float(log_loss(y_true, _clipped(probs), labels=labels)),
        "macro_avg": _macro(report, classes, y_pred),
        "weighted_avg": {k: float(v) for k, v in report["weighted avg"].items()},
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }
    for k in top_k:
        if k < len(classes):
            out["top_k_accuracy"][str(k)] = float(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
    return out


def _clipped(probs: np.ndarray) -> np.ndarray:
    """Probabilities kept off 0 (log-loss stays finite) and re-normalised: scikit-learn checks that
    float64 rows sum to one within ~1e-8 and warns otherwise."""
    p = np.clip(probs, 1e-7, 1)
    return p / p.sum(1, keepdims=True)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n: honest for small n and for k near 0 or n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def summary_line(m: dict) -> str:
    """One line of the test numbers; the accuracy's 95 % interval with the count, so that 1.000 on
    18 photos reads as what it is (0.82-1.00)."""
    lo, hi = wilson(round(m["accuracy"] * m["n"]), m["n"])
    parts = [
        f"accuracy {m['accuracy']:.4f}",  # after "held-out test split:" or the folder scored
        f"macro F1 {m['macro_avg']['f1-score']:.4f}",
        f"log-loss {m['log_loss']:.4f}",
        *(f"top-{k} {v:.4f}" for k, v in m["top_k_accuracy"].items()),
        f"(n={m['n']}; accuracy's 95% interval {lo:.3f}-{hi:.3f})",
    ]
    return "  ".join(parts)


PER_CLASS_LINES = 15  # more classes than this: the lowest F1s only (all of them are in metrics.json)


def per_class_lines(m: dict) -> list[str]:
    """Recall, precision, F1 and images of each class that has test images, as a small table; with
    many classes only the PER_CLASS_LINES lowest F1s, worst first."""
    rows = [(c, r) for c, r in m["per_class"].items() if r["support"] > 0]
    if len(rows) > PER_CLASS_LINES:
        rows = sorted(rows, key=lambda cr: cr[1]["f1-score"])[:PER_CLASS_LINES]
        title = f"  the {PER_CLASS_LINES} classes of lowest F1 (of {len(m['per_class'])}; all in metrics.json):"
    else:
        title = "  per class:"
    width = max([len(c) for c, _ in rows] + [5])
    out = [title, f"    {'class':<{width}}  recall  precision     F1  images"]
    for c, r in rows:
        out.append(
            f"    {c:<{width}}  {r['recall']:6.3f}  {r['precision']:9.3f}  {r['f1-score']:5.3f}  {int(r['support']):6,}"
        )
    return out


WEAK_GAP = 0.25  # a class whose test recall is this far below the accuracy is named after the test line


def weak_classes(m: dict, train_counts: dict[str, int], most: int = 3) -> str:
    """The classes the test split says the model fails ("" when none): recall WEAK_GAP or more below
    the accuracy, on 5 test images or more, or on any number when the class is starved of training
    images (under half the median class's, as the data doctor calls a class starved: what a new class added with a few photos is, and then the
    fix is more photos of it, not more training). The worst `most`, with what would help. Macro F1
    far below accuracy says that some class fails; this says which."""
    from imgclf.data.doctor_classes import SMALL_CLASS_SHARE  # the data doctor's starved class

    median = float(np.median(list(train_counts.values()))) if train_counts else 0.0

    def starved(c: str) -> bool:
        return train_counts.get(c, 0) < SMALL_CLASS_SHARE * median

    weak = [
        (c, r)
        for c, r in m["per_class"].items()
        if r["support"] > 0 and r["recall"] <= m["accuracy"] - WEAK_GAP and (r["support"] >= 5 or starved(c))
    ]
    weak = sorted(weak, key=lambda cr: cr[1]["recall"])[:most]
    parts = []
    for c, r in weak:
        n = int(r["support"])
        part = f"{c} {round(r['recall'] * n)} of {n} test image{'s' * (n != 1)} right"
        if starved(c):
            part += f" (trained on {train_counts.get(c, 0):,} images against the median class's {median:g}: add photos of it)"
        parts.append(part)
    return "; ".join(parts)


def _macro(report: dict, classes: list[str], y_pred: np.ndarray) -> dict:
    """Macro averages over the classes the test split holds or the model predicted: a class with
    neither (a small split of many classes) has no precision, recall or F1 to average, and counting
    it as 0 pulled a perfect split's macro F1 down (ORL, 39 test photos of 40 people: 0.975)."""
    seen = [c for i, c in enumerate(classes) if report[c]["support"] > 0 or (y_pred == i).any()]
    out = {k: float(v) for k, v in report["macro avg"].items()}
    for k in ("precision", "recall", "f1-score"):
        out[k] = float(np.mean([report[c][k] for c in seen])) if seen else 0.0
    return out

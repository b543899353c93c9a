"""After training: calibration, the operating point (two-class threshold or 'unknown' rejection),
chosen on the validation split, and scoring on held-out images with metrics and plots. Scoring on
labelled images from elsewhere (`imgclf evaluate RUN DATA`, compare): evaluation.elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.markup import escape  # class names and the data folder are the user's text

from imgclf.core.errors import UserError
from imgclf.core.files import write_json
from imgclf.models.arrays import softmax
from imgclf.settings.config import TrainConfig
from imgclf.store.run_meta import Calibration, Decision, Rejection

# Fewer validation images than this fit a temperature to noise: 3 images, all named right, gave
# T=0.28 and raised the test log-loss from 1.5 to 5.4 on a 45-photo set.
MIN_CALIBRATION_IMAGES = 20


def calibrate(model, images: np.ndarray, spec, console, logits: np.ndarray | None = None) -> Calibration:
    """Fit the softmax temperature on the validation split. Identity when it has too few images, or
    when the model names every one of them right: then the log-loss only falls as T falls, so the
    fit would sharpen to T's floor and a wrong answer on a new photo would come back near-certain.
    `logits`: the model's logits of the validation images (sorted rows), when the caller has them."""
    from imgclf.evaluation.calibration import fit_temperature

    val = np.sort(spec.indices("val"))
    why = f"{len(val)} validation images are too few to fit one (it takes {MIN_CALIBRATION_IMAGES})"
    t = 1.0
    if len(val) >= MIN_CALIBRATION_IMAGES:
        logits = _val_logits(model, images, val, logits)
        why = f"the model names all {len(val)} validation images right, so none shows how sure a wrong answer should be"
        if (logits.argmax(1) != spec.labels[val]).any():
            t = fit_temperature(logits, spec.labels[val])
            why = ""
    console.print(
        f"  calibration: temperature {t:.3f} fitted on {len(val)} validation images"
        if not why
        else f"  calibration: none (temperature 1): {why}"
    )
    return Calibration(method="temperature", temperature=t, fitted_on="val", n=int(len(val)), skipped=why or None)


def choose_decision(model, images: np.ndarray, spec, cfg: TrainConfig, console, logits=None) -> Decision:
    """Two classes: the positive class and its probability threshold, from the validation split
    (`logits`: as calibrate takes them)."""
    from imgclf.evaluation.decision import choose_threshold, decision_metrics, positive_class

    pos = positive_class(spec.classes, cfg.positive_class)
    val = np.sort(spec.indices("val"))
    p_pos = _val_probs(model, images, val, logits)[:, pos]
    threshold, rule = choose_threshold(p_pos, spec.labels[val] == pos, cfg.target_recall, cfg.target_precision)
    m = decision_metrics(p_pos, spec.labels[val] == pos, threshold)
    console.print(
        f"  decision: '{escape(spec.classes[pos])}' when p >= {threshold:.3f} ({rule}; validation precision "
        f"{m['precision']:.3f}, recall {m['recall']:.3f})"
    )
    return Decision(
        positive_class=spec.classes[pos],
        threshold=threshold,
        rule=rule,
        validation={k: m[k] for k in ("precision", "recall", "f1")},
    )


def choose_rejection(model, images: np.ndarray, spec, cfg: TrainConfig, console, logits=None) -> Rejection:
    """Three or more classes: the calibrated-confidence threshold below which predict answers
    'unknown', from the validation split (`logits`: as calibrate takes them)."""
    from imgclf.evaluation.rejection import choose_threshold, rejection_metrics, resolution_warning

    val = np.sort(spec.indices("val"))
    probs = _val_probs(model, images, val, logits)
    threshold, rule = choose_threshold(probs, spec.labels[val], cfg.target_accuracy, cfg.target_coverage)
    m = rejection_metrics(probs, spec.labels[val], threshold)
    acc = "n/a" if m["accuracy_accepted"] is None else f"{m['accuracy_accepted']:.3f}"
    console.print(
        f"  rejection: 'unknown' when confidence < {threshold:.4g} ({rule}; validation coverage "
        f"{m['coverage']:.3f}, accuracy on accepted {acc}, n={len(val)})"
    )
    if warning := resolution_warning(m["accepted"], cfg.target_accuracy):
        console.print(f"[yellow]warning[/]: rejection: {warning}")
    return Rejection(
        threshold=threshold,
        rule=rule,
        label="unknown",
        validation={"n": int(len(val)), **{k: m[k] for k in ("coverage", "accuracy_accepted", "accepted")}},
    )


def _val_logits(model, images: np.ndarray, val: np.ndarray, logits: np.ndarray | None) -> np.ndarray:
    # With test-time augmentation a pass over a large validation split costs seconds (CIFAR-10's
    # 5,000 images: 15 s on 2 cores): calibration and the operating point share one.
    return logits if _given(logits, val) else model.predict_logits(images[val])


def _val_probs(model, images: np.ndarray, val: np.ndarray, logits: np.ndarray | None) -> np.ndarray:
    if _given(logits, val):
        return softmax(logits / model.temperature)
    return model.predict_proba(images[val])  # an ensemble's: the average of its members' calibrated ones


def _given(logits: np.ndarray | None, val: np.ndarray) -> bool:
    return logits is not None and len(logits) == len(val)


def score(
    model, images: np.ndarray, labels: np.ndarray, out_dir: Path | None, console, where: str, figures: bool = True
) -> dict:
    """The metrics of `model` on the images, printed; written to out_dir/metrics.json with their
    figures (confusion matrix, reliability, coverage) unless `figures` is False."""
    from imgclf.evaluation.calibration import expected_calibration_error, nll, reliability
    from imgclf.evaluation.metrics import compute_metrics, summary_line
    from imgclf.evaluation.plots import plot_confusion, plot_reliability

    if len(labels) == 0:
        raise UserError(f"no usable images to evaluate in {'the ' if where.endswith('split') else ''}{where}")
    logits = model.predict_logits(images)
    t = model.temperature
    probs = model.last_probs = softmax(logits / t)
    metrics = compute_metrics(labels, probs, model.classes)
    metrics["evaluated_on"] = where
    metrics["calibration"] = {
        "temperature": t,
        "ece_before": expected_calibration_error(softmax(logits), labels),
        "ece_after": expected_calibration_error(probs, labels),
        "log_loss_before": nll(logits, labels),
        "log_loss_after": nll(logits, labels, t),
        "reliability": reliability(probs, labels),
    }
    decision, rejection = model.meta.decision, model.meta.rejection
    if decision:
        from imgclf.evaluation.decision import decision_metrics

        pos = model.classes.index(decision.positive_class)
        d = decision_metrics(probs[:, pos], labels == pos, decision.threshold)
        metrics["decision"] = {"positive_class": decision.positive_class, "rule": decision.rule, **d}
        ranks = (
            f"ROC-AUC {d['roc_auc']:.4f}  PR-AUC {d['pr_auc']:.4f}"
            if "roc_auc" in d
            else "ROC-AUC and PR-AUC n/a (the images hold one class)"
        )
        console.print(
            f"  at threshold {d['threshold']:.3f} for '{escape(decision.positive_class)}': precision "
            f"{d['precision']:.4f}  recall {d['recall']:.4f}  {ranks}"
        )
    from imgclf.evaluation.rejection import rejection_metrics, selective_curve

    metrics["selective"] = selective_curve(probs, labels)
    if rejection:
        r = rejection_metrics(probs, labels, rejection.threshold)
        metrics["rejection"] = {"rule": rejection.rule, **r}
        acc = "n/a" if r["accuracy_accepted"] is None else f"{r['accuracy_accepted']:.4f}"
        console.print(
            f"  rejection at confidence {r['threshold']:.3f}: coverage {r['coverage']:.4f} "
            f"({r['rejected']} answered 'unknown'), accuracy on accepted {acc}"
        )
    if out_dir is not None:
        write_json(out_dir / "metrics.json", metrics)
    if out_dir is not None and figures:
        from imgclf.evaluation.plots import plot_coverage

        plot_coverage(metrics["selective"], metrics.get("rejection"), out_dir / "coverage.png")
        plot_confusion(metrics["confusion_matrix"], model.classes, out_dir / "confusion_matrix.png")
        plot_reliability(metrics["calibration"]["reliability"], out_dir / "reliability.png")
    c = metrics["calibration"]
    console.print(f"{escape(where)}: {summary_line(metrics)}")
    # T == 1: none was fitted (too few validation images, or all of them right), so before and after
    # are the same numbers.
    if t == 1.0:
        console.print(f"  calibration: none; ECE {c['ece_before']:.4f}, log-loss {c['log_loss_before']:.4f}")
    else:
        console.print(
            f"  calibration (T={t:.2f}): ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}, "
            f"log-loss {c['log_loss_before']:.4f} -> {c['log_loss_after']:.4f}"
        )
    return metrics

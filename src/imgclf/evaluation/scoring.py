"""After training: calibration, the operating point (two-class threshold or 'unknown' rejection),
chosen on the validation split, and scoring on held-out images with metrics and plots."""

from __future__ import annotations

from collections import Counter
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
    return Calibration(method="temperature", temperature=t, fitted_on="val", n=int(len(val)))


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
        raise UserError(f"no usable images to evaluate in the {where}")
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


def evaluate_model(
    model, data: str | Path | None = None, verbose: bool = True, *, data_root: str | Path | None = None
) -> dict:
    """Metrics of a loaded model (inference.model.Model or an ensemble) on its run's held-out test
    split, or on DATA (its `test/` split when it has one, else all its images); see imgclf.evaluate."""
    return scored_evaluation(model, data, verbose, data_root=data_root)[0]


def scored_evaluation(
    model, data: str | Path | None = None, verbose: bool = True, *, data_root: str | Path | None = None
) -> tuple[dict, list[str], np.ndarray, np.ndarray]:
    """evaluate_model's metrics, and what they were computed from: the scored images' paths, their
    true class indices and the calibrated probabilities (for an evaluation's report and predictions)."""
    from imgclf.core.console import console_for
    from imgclf.data.cache import build_cache
    from imgclf.data.images import skip_warning
    from imgclf.store.runs import test_split

    console = console_for(verbose)
    if data is not None and data_root is not None:
        raise UserError(
            "give DATA (other labeled images to evaluate on) or --data (where the run's own data "
            "moved to, for its test split), not both"
        )
    if data is None:
        paths, labels = test_split(model, data_root=data_root)
        where, out_dir = "held-out test split", model.path
    else:
        left: dict[str, int] = {}
        paths, labels, renamed = labelled(data, list(model.classes), leave_out=left)
        if renamed:
            console.print(escape(f"  classes matched by name: {', '.join(renamed)}"))
        if left:  # the model cannot name them: scored, every one would count as its mistake
            console.print(
                escape(
                    f"  left out {sum(left.values()):,} images of classes the model does not know: "
                    + ", ".join(f"{c} ({n:,})" for c, n in left.items())
                    + f"; scored on the {len(paths):,} images of its own classes"
                )
            )
        where, out_dir = str(data), None
    cache = build_cache(paths, model.img_size, model.resize_mode, progress=verbose)
    keep = np.array([i for i in range(len(paths)) if i not in cache.bad], dtype=np.int64)
    for i, reason in cache.bad.items():
        console.print(skip_warning(paths[i], reason))
    own, near = own_images(model, paths, cache.images, cache.bad) if data is not None else ({}, {})
    held = "the accuracy here is not a held-out one (imgclf evaluate RUN scores the run's own test split)"
    if said := seen_warning(own, len(paths), held, near=near):
        console.print(f"[yellow]warning[/]: {escape(said)}")
    metrics = score(model, cache.images[keep], labels[keep], out_dir, console, where)
    metrics = {**metrics, **({"own_images": own} if own else {}), **({"near_copies": near} if near else {})}
    return metrics, [paths[i] for i in keep], labels[keep], model.last_probs


def own_images(model, paths: list[str], images: np.ndarray, bad=()) -> tuple[dict[str, int], dict[str, int]]:
    """How many of `paths` (decoded as `images`, the model's input; `bad`: the rows that could not
    be) are the run's own images, by split ({"train": 3455, "val": 431}): the files themselves or
    byte-identical copies (own_splits), and the near-copies among the rest (near_own_images). Scored
    as "other data", training images inflate the accuracy without a word: evaluating a run on its own
    folder gave 0.938 where its test split gives 0.833."""
    splits = own_splits(model.path, paths)
    usable = np.array([s is None and i not in bad for i, s in enumerate(splits)], bool)
    return dict(Counter(s for s in splits if s)), near_own_images(model, paths, images, usable)


def near_own_images(model, paths: list[str], images: np.ndarray, usable: np.ndarray) -> dict[str, int]:
    """How many of the `usable` `paths` (decoded as the model's input: `images`) are near-copies of
    the run's training or validation images, by split: resized, re-encoded, cropped a little or
    mirrored (data.copies). {} when the run kept no prints (trained before 2026-11-30)."""
    from imgclf.data.cache import build_cache
    from imgclf.data.copies import PRINTS_FILE, near_copies, read_kept
    from imgclf.data.groups import cache_prints
    from imgclf.data.images import UnusableImage, load_resized
    from imgclf.store.runs import read_splits

    kept = read_kept(Path(model.path) / PRINTS_FILE) if model.path is not None else None
    rows = read_splits(model.path) if kept is not None else []
    if kept is None or len(rows) != len(kept.hashes) or not usable.any():
        return {}
    seen = np.array([i for i, r in enumerate(rows) if r["split"] in ("train", "val")], dtype=np.int64)
    if (kept.size, kept.resize) != (model.img_size, model.resize_mode):  # hashed as the run's images were
        images = build_cache(paths, kept.size, kept.resize, progress=False).images

    def decode(row: int) -> np.ndarray | None:
        try:
            return load_resized(rows[row]["path"], kept.size, kept.resize)
        except (UnusableImage, OSError):  # moved or gone since training: not counted
            return None

    found = near_copies(kept, seen, cache_prints(images, usable), decode)
    return dict(Counter(rows[row]["split"] for row in found.values()))


def own_splits(run: Path | None, paths: list[str]) -> list[str | None]:
    """The run's split of each of `paths` that is one of its own images, else None: the same file,
    or a byte-identical copy of one (the same name and size, then the same SHA-256)."""
    import os

    from imgclf.data.manifest import file_sha256
    from imgclf.store.runs import read_splits

    rows = read_splits(run) if run is not None else []
    same_file, same_name = {}, {}
    for r in rows:
        try:
            size = os.stat(r["path"]).st_size
        except OSError:  # the run's data moved or is gone: only copies by path can match then
            continue
        same_file[os.path.realpath(r["path"])] = r["split"]
        same_name.setdefault((os.path.basename(r["path"]), size), []).append(r)
    splits: list[str | None] = []
    for p in paths:
        split = same_file.get(os.path.realpath(p))
        if split is None:
            try:
                like = same_name.get((os.path.basename(p), os.stat(p).st_size), [])
            except OSError:
                like = []
            digest = file_sha256(p) if like else None
            split = next((r["split"] for r in like if file_sha256(r["path"]) == digest), None)
        splits.append(split)
    return splits


def seen_warning(
    own: dict[str, int], total: int, so: str, whose: str = "the run's", of: str = "these", near: dict | None = None
) -> str:
    """The line that says how many of `total` images a model trained or chose its epoch on (`own`:
    the files themselves, `near`: near-copies of them), and `so` what follows; "" when none (its own
    test images are held out)."""
    near = near or {}
    seen = {split: own.get(key, 0) + near.get(key, 0) for split, key in (("training", "train"), ("validation", "val"))}
    if not any(seen.values()):
        return ""
    parts = " and ".join(f"{n:,} {split}" for split, n in seen.items() if n) + " images"
    if copies := near.get("train", 0) + near.get("val", 0):
        parts += f"; {copies:,} of them resized, re-encoded, cropped or mirrored copies"
    return f"{sum(seen.values()):,} of {of} {total:,} images are {whose} own ({parts}): {so}"


def labelled(
    data,
    classes: list[str],
    unknown_to: str = "the model does not know",
    known_as: str = "the model's classes",
    leave_out: dict | None = None,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Other labelled images to score `classes` on (evaluate, compare): DATA's test split when it has
    one, else all its images, in any layout training reads and of one class or more (a folder of new
    daisies is a fair test); their labels as indices into `classes`, class folders matched by name
    (match_classes); and the matches that renamed a folder ("Daisy -> daisy"). Folders matching no
    class are a UserError, unless `leave_out` (a dict) is given: their images are then left out and
    counted in it by folder, and only a DATA none of whose folders match is an error."""
    from imgclf.data.discover import find

    spec = find(data)
    sel = spec.indices("test") if (spec.splits == "test").any() else np.arange(len(spec.paths))
    named, unknown = match_classes(spec.classes, classes)
    if unknown and (leave_out is None or not named):
        raise UserError(
            f"{data} has classes {unknown_to}: {listed(unknown)} ({known_as}: {listed(classes)}); "
            "give a folder of those classes' images"
        )
    if unknown:
        folder = [spec.classes[spec.labels[i]] for i in sel]
        leave_out.update(Counter(f for f in folder if f not in named))
        sel = np.array([i for i, f in zip(sel, folder) if f in named], dtype=np.int64)
    paths = [spec.paths[i] for i in sel]
    labels = np.array([classes.index(named[spec.classes[spec.labels[i]]]) for i in sel], dtype=np.int64)
    return paths, labels, [f"{a} -> {b}" for a, b in named.items() if a != b]


def match_classes(given: list[str], known: list[str]) -> tuple[dict[str, str], list[str]]:
    """({class folder of labelled images: the model's class}, the folders matching none): the same
    name, else the one name that differs only in case, spaces, '_' or '-' (a test folder's `Daisy/`
    for the model's `daisy`, `sea lion` for `sea_lion`)."""
    from imgclf.data.spec import name_key

    keys: dict[str, list[str]] = {}
    for k in known:
        keys.setdefault(name_key(k), []).append(k)
    out, unknown = {}, []
    for g in given:
        alike = [g] if g in known else keys.get(name_key(g), [])
        if len(alike) == 1:
            out[g] = alike[0]
        else:
            unknown.append(g)
    return out, unknown


def listed(names: list[str], most: int = 20) -> str:
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")

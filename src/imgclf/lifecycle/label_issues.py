"""Label issues: images whose given label is probably wrong, found from out-of-fold predictions.

    imgclf check photos/ --labels            # or imgclf.check("photos/", labels=True)

k-fold cross-validation, stratified and seeded: each fold is a whole, short `imgclf.train` run
on the other folds (preset fast with a fraction of its epochs, at most 32 px on CPU), so it gets
the same recipe, calibration and decode cache as a user's training; it predicts calibrated
probabilities for the images it never saw. Confident learning (Northcutt et al., 2021, through
the cleanlab library) then flags the images whose held-out probability for their given label is
below what that class's correctly labelled images typically get, pruned to the estimated number
of label errors, lowest probability of the given label first.

A short training run is a feature here, not only a saving: a network stopped early has learnt
the patterns most images agree on, but not yet memorised the few that contradict them.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import write_text

FOLDS = 5
PRESET = "fast"
# Of the fast preset's epochs (which already scale with the set's size), at least MIN_EPOCHS.
EPOCH_SHARE = 0.3
MIN_EPOCHS = 8
# On CPU the folds train at most at 32 px: the fast preset runs ~900 images/s there at 32 px on
# 2 cores, about 4x what it does at 64 px, and a flipped label is contradicted by an image's gist
# (shape, colour, layout) more than by its fine detail. Measured on flowers5 (128 px photos) with
# 5 % of labels flipped: 12 epochs at 32 px put 60 % of the flipped images among the top-N
# suspects (N = number flipped) and 78 % among the top 2N, in 5.6 min on 2 cores; 20 epochs, or
# 40 px, cost 20-30 % more time for the same top N (58-60 %) and 82-83 % in the top 2N.
CPU_MAX_SIDE = 32
VAL_FRAC = 0.1  # of each fold's training part, to fit its calibration temperature
SHOWN = 20  # suspects in the terminal table; the JSON holds them all
METHOD = (
    "confident learning (cleanlab.filter.find_label_issues, prune_by_noise_rate) on out-of-fold "
    "calibrated probabilities, ranked by self-confidence (the probability of the given label)"
)


def find_label_issues(
    spec,
    folds: int = FOLDS,
    seed: int = 0,
    device: str = "auto",
    workers: int | None = None,
    console=None,
    progress: bool = True,
    groups: np.ndarray | None = None,
) -> dict:
    """Suspect labels of every readable image in `spec` (a DatasetSpec; its splits are ignored:
    a wrong label hurts in any split). Returns a JSON-ready dict whose `suspects` list, most
    suspicious first, holds index, path, given and suggested label, and `score`: the held-out
    probability of the given label. `groups` (an id per image: near-duplicates, one source photo)
    keeps each group in one fold."""
    from imgclf.core.device import pick_device
    from imgclf.data.cache import build_cache
    from imgclf.training.defaults import typical_side
    from imgclf.training.presets import preset_settings

    started = time.perf_counter()
    # Absolute, as the fold manifests hold them: every fold's `train` then finds this same cache.
    paths = [str(Path(os.path.abspath(p))) for p in spec.paths]
    dev = pick_device(device)
    n_train = int(len(paths) * (folds - 1) / folds * (1 - VAL_FRAC))
    side = typical_side(paths, seed=seed)
    if dev.type == "cpu":
        side = min(side or CPU_MAX_SIDE, CPU_MAX_SIDE)
    recipe, _ = preset_settings(PRESET, dev, n_train, side)
    size = recipe["img_size"]
    epochs = min(recipe["epochs"], max(MIN_EPOCHS, round(recipe["epochs"] * EPOCH_SHARE)))
    cache = build_cache(paths, size, "squash", workers=workers, progress=progress)
    readable = np.array([i for i in range(len(paths)) if i not in cache.bad], dtype=np.int64)
    fold_of = _assign_folds(spec, readable, folds, seed, groups)
    if console:
        console.print(
            f"label check: {folds}-fold cross-validation over {len(readable):,} images, each fold "
            f"{recipe['model']} {recipe['model_kwargs']['widths']} at {size} px for {epochs} epochs "
            f"(preset {PRESET}, shortened) on {dev}"
        )

    probs = _out_of_fold(spec, paths, fold_of, folds, cache, size, epochs, seed, dev, workers, console)
    suspects = rank_suspects(spec, readable, probs)
    oof = probs[readable].argmax(1) == spec.labels[readable]
    return {
        "method": METHOD,
        "folds": folds,
        "seed": seed,
        "recipe": {
            "preset": PRESET,
            "img_size": size,
            "epochs": epochs,
            "device": str(dev),
            "model": recipe["model"],
            "widths": recipe["model_kwargs"]["widths"],
        },
        "images": int(len(readable)),
        "unreadable": len(cache.bad),
        "out_of_fold_accuracy": round(float(oof.mean()), 4),
        "per_class": {
            c: {"images": int((spec.labels[readable] == y).sum()), "suspects": sum(s["given"] == c for s in suspects)}
            for y, c in enumerate(spec.classes)
        },
        "suspects": suspects,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _out_of_fold(spec, paths, fold_of, folds, cache, size, epochs, seed, dev, workers, console) -> np.ndarray:
    """Each image's class probabilities from the fold's model that never saw it."""
    from imgclf.workflows import load, train  # each fold is a whole training run, as a user would make it

    names = [spec.classes[y] for y in spec.labels]
    probs = np.zeros((len(paths), len(spec.classes)))
    with tempfile.TemporaryDirectory(prefix="imgclf-labels-") as tmp:
        for k in range(folds):
            t0 = time.perf_counter()
            held = np.flatnonzero(fold_of == k)
            manifest = Path(tmp) / f"fold-{k + 1}.csv"
            # Unreadable files stay in the manifest (train skips them): the path list, and so the cache, is shared.
            _write_manifest(manifest, paths, names, np.where(fold_of == k, "test", "train"))
            run = train(
                manifest,
                preset=PRESET,
                img_size=size,
                epochs=epochs,
                val_frac=VAL_FRAC,
                seed=seed,
                device=str(dev),
                workers=workers,
                out=str(Path(tmp) / f"fold-{k + 1}"),
                verbose=False,
                write_report=False,  # the fold's run is deleted with its folder: its report and
                figures=False,  # figures would be unread
            )
            probs[held] = _held_out(run, [paths[i] for i in held], cache.images[held], dev, load)
            if console:
                acc = float((probs[held].argmax(1) == spec.labels[held]).mean())
                console.print(
                    f"  fold {k + 1}/{folds}: accuracy {acc:.3f} on its {len(held):,} held-out images "
                    f"(against the given labels); {time.perf_counter() - t0:.0f}s, of which training "
                    f"{_train_seconds(run.path):.0f}s"
                )
    return probs


def _held_out(run, held_paths: list[str], images: np.ndarray, dev, load) -> np.ndarray:
    """The fold model's probabilities for its held-out images: the fold's test split, already scored by
    the evaluation after training (predicting them again cost as much, in eager PyTorch, as that
    evaluation in ONNX Runtime); predicted here only if that scoring is missing or not these images."""
    scored = dict(zip(*run.scored_test)) if run.scored_test else {}
    if all(p in scored for p in held_paths):
        return np.stack([scored[p] for p in held_paths])
    return load(run.path, str(dev)).predict_proba(images)


def _train_seconds(run_path: Path) -> float:
    from imgclf.store.run_meta import load_run_meta

    return load_run_meta(run_path, loadable=False).training_record.train_seconds


def rank_suspects(spec, rows: np.ndarray, probs: np.ndarray) -> list[dict]:
    """Confident learning over `probs[rows]` (out-of-fold, calibrated): the flagged rows, most
    suspicious first. The suggested label is the likeliest class other than the given one."""
    from cleanlab.filter import find_label_issues as confident_learning

    given = spec.labels[rows]
    # n_jobs=1: a process pool costs more than the few class-wise sums it would parallelise.
    ranked = confident_learning(given, probs[rows], return_indices_ranked_by="self_confidence", n_jobs=1)
    suspects = []
    for r in ranked:
        i, p = int(rows[r]), probs[rows[r]]
        other = np.where(np.arange(len(p)) == spec.labels[i], -1.0, p)
        suggested = int(other.argmax())
        suspects.append(
            {
                "index": i,
                "path": spec.paths[i],
                "given": spec.classes[spec.labels[i]],
                "suggested": spec.classes[suggested],
                "score": round(float(p[spec.labels[i]]), 6),
                "suggested_score": round(float(p[suggested]), 6),
            }
        )
    return suspects


def _assign_folds(spec, readable: np.ndarray, folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold number per image (-1: unreadable), stratified by class so each fold sees every class.
    With `groups`, each group stays in one fold: a near-copy in the training folds would vouch for
    its twin's label (right or wrong), and a flipped label could hide behind its copy."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    counts = np.bincount(spec.labels[readable], minlength=len(spec.classes))
    if counts.min() < folds:
        few = spec.classes[int(counts.argmin())]
        raise UserError(
            f"class '{few}' has {counts.min()} readable image(s); the label check needs at least one per "
            f"fold ({folds}): lower --folds or add images"
        )
    fold_of = np.full(len(spec.paths), -1, dtype=np.int64)
    ids = None if groups is None else np.asarray(groups)[readable]
    if ids is not None and len(np.unique(ids)) < len(ids):
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            readable, spec.labels[readable], ids
        )
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(readable, spec.labels[readable])
    for k, (_, held) in enumerate(splits):
        fold_of[readable[held]] = k
    return fold_of


def _write_manifest(path: Path, paths: list[str], labels: list[str], splits: np.ndarray) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "split"])
    w.writerows(zip(paths, labels, splits))
    write_text(path, buf.getvalue())


def print_label_issues(found: dict, console, root: str | None = None) -> None:
    """The suspects as one terminal table, most suspicious first (the JSON holds all of them)."""
    from rich.markup import escape  # paths and class names are the user's text, not markup
    from rich.table import Table

    from imgclf.data.doctor import short_path

    suspects = found["suspects"]
    console.print(
        f"label check: {len(suspects):,} suspect label(s) among {found['images']:,} images "
        f"(out-of-fold accuracy {found['out_of_fold_accuracy']:.3f}, {found['folds']} folds, "
        f"{found['seconds']:.0f}s)"
    )
    if not suspects:
        return
    table = Table("#", "path", "given", "suggested", "p(given)", "p(suggested)")
    table.columns[1].overflow = "fold"
    for col in (0, 4, 5):
        table.columns[col].justify = "right"
    for n, s in enumerate(suspects[:SHOWN], 1):
        table.add_row(
            str(n),
            escape(short_path(s["path"], root)),
            escape(s["given"]),
            escape(s["suggested"]),
            f"{s['score']:.3f}",
            f"{s['suggested_score']:.3f}",
        )
    console.print(table)
    if len(suspects) > SHOWN:
        console.print(f"  … and {len(suspects) - SHOWN:,} more (--json writes them all)")

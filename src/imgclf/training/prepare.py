"""Before training: decode the images once, group and deduplicate the split, pick the
normalisation and the augmentation policy, and summarise the data. The choices are training.resolve's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape  # paths and reasons are the user's text, not markup

from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig


@dataclass
class Prepared:
    """The settings resolved and the data decoded, split and summarised: what a network trains on."""

    cfg: TrainConfig
    spec: Any  # data.spec.DatasetSpec, splits final
    images: np.ndarray  # (N, size, size, 3) uint8, the decode cache
    device: Any  # torch.device
    mean: list[float]
    std: list[float]
    pretrained: bool  # normalised as the pretrained backbone's weights expect
    policy: Any  # data.augment.AugmentPolicy
    skipped: list[dict]  # unreadable files
    removed: list[str]  # duplicates taken out (--dedupe)
    grouping: dict | None  # how near-duplicates were kept on one side of the split
    candidates: Any = None  # training.candidates.Candidate's fitted before the epochs (the face embedding, the texture)
    prints: Any = None  # data.phash.Prints of the images (spec order): kept in the run (data.copies)
    choices: dict | None = None  # the settings given, and why each default was chosen (choices.json; None on resume)
    grey: dict | None = None  # greyscale by class in the training photos (class_warnings), for data_report.json

    def split_data(self):
        from imgclf.training.loop import SplitData

        spec = self.spec
        train, val = (np.sort(spec.indices(s)) for s in ("train", "val"))
        return SplitData(self.images, train, val, spec.labels, self.mean, self.std, len(spec.indices("test")))


def headline(cfg: TrainConfig, spec, device, console) -> None:
    """A training run's first lines: the version, the data and the device; how a CSV was read."""
    from imgclf.core.version import __version__

    console.print(
        f"imgclf {__version__}  data {escape(str(cfg.data))} ({spec.layout}, {len(spec.classes)} classes, "
        f"{len(spec.paths)} images)  device {device}"
    )
    if spec.note:
        console.print(f"  data: {escape(spec.note)}")


def duplicates(spec, cfg: TrainConfig, console) -> list[str]:
    """The data doctor's quick part: identical files with conflicting labels or across splits are
    warned about; with `dedupe` they are taken out (see data.doctor.dedupe), and each class must
    still have a training image. Returns the removed paths."""
    from imgclf.data.doctor import dedupe, duplicate_warnings, quick_check

    found = quick_check(spec, cfg.workers)
    for line in duplicate_warnings(found):
        console.print(f"[yellow]warning[/]: {escape(line if not cfg.dedupe else line.split('; --dedupe')[0])}")
    drop = dedupe(spec, found) if cfg.dedupe else []
    if cfg.dedupe:
        spec.splits[drop] = "deduplicated"
        console.print(
            f"  dedupe: removed {len(drop)} duplicate file(s) (kept one copy per set of identical "
            "files; dropped sets with conflicting labels)"
        )
    require_training_images(spec)  # also after the grouped split moved images
    return [spec.paths[i] for i in drop]


def decode(spec, cfg: TrainConfig, console):
    """Decode every image once into the cache; drop unusable files with one warning line each."""
    from imgclf.data.cache import build_cache
    from imgclf.data.discover import undecodable
    from imgclf.data.images import skip_warning

    if why := undecodable(spec.ignored):  # left out, not skipped: said before the long decode
        console.print(f"[yellow]warning[/]: left out {escape(why)}")
    require_validation_images(spec, cfg)  # before the decoding it would otherwise wait for
    cache = build_cache(spec.paths, cfg.img_size, cfg.resize, workers=cfg.workers)
    console.print(f"  cache: {escape(str(cache.path))} ({'reused' if cache.hit else f'built in {cache.seconds:.1f}s'})")
    skipped = [{"path": spec.paths[i], "reason": r} for i, r in sorted(cache.bad.items())]
    for s in skipped:
        console.print(skip_warning(s["path"], s["reason"]))
    # Unusable rows stay in the memmap (zeros) but leave every split: no copy of a big cache.
    spec.splits[list(cache.bad)] = "skipped"
    require_training_images(spec)
    return cache.images, spec, skipped


def require_training_images(spec) -> None:
    counts = np.bincount(spec.labels[spec.splits == "train"], minlength=len(spec.classes))
    empty = [c for c, n in zip(spec.classes, counts) if n == 0]
    if empty:
        raise UserError(
            f"class(es) {', '.join(map(repr, empty))} have no usable training images "
            "(see the warnings above): add readable images"
        )


def require_validation_images(spec, cfg: TrainConfig) -> None:
    """A val_frac that rounds to no image at all would leave early stopping and the kept epoch judged
    on nothing; only val_frac 0 asks for that."""
    if cfg.val_frac > 0 and not (spec.splits == "val").any():
        left = int((spec.splits != "test").sum())
        raise UserError(
            f"val_frac {cfg.val_frac:g} gives no validation image: each class has too few of the {left} "
            f"images left after test_frac {cfg.test_frac:g}; lower test_frac, raise val_frac or add images"
        )


def class_warnings(spec, found, console) -> dict | None:
    """Warnings about the classes as training will see them: greyscale gathered in some (from the
    images' prints, data.phash: `colourless` is their decoded pixels', so grey photos stored as RGB
    count), and classes the test split holds no image of. Returns the greyscale shares
    (data.doctor_classes.grey_by_class) for data_report.json."""
    grey = None
    if found is not None and (spec.splits == "train").any():
        from imgclf.data.doctor_classes import grey_by_class, greyest

        rows = np.sort(spec.indices("train"))
        grey = grey_by_class(spec.classes, spec.labels[rows], found.colourless[rows])
        if grey["greyer"]:
            shares = ", ".join(f"{c} {v:.0%}" for c, v in greyest(grey))
            console.print(
                f"[yellow]warning[/]: greyscale photos gather in some classes ({escape(shares)} of their training "
                "photos): the network can learn grey against colour instead of the classes; unless that is "
                f"what tells them apart, add colour photos of {escape(', '.join(grey['greyer'][:3]))}"
            )
    untested(spec, console)
    return grey


def untested(spec, console) -> None:
    """A warning for classes the test split holds no image of (a class of one or two photos): the
    run trains on them, and its test numbers say nothing of them."""
    if not (spec.splits == "test").any():
        return
    counts = np.bincount(spec.labels[spec.splits == "test"], minlength=len(spec.classes))
    missing = [c for c, n in zip(spec.classes, counts) if n == 0]
    if missing:
        shown = ", ".join(map(repr, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        them = "it" if len(missing) == 1 else "them"
        given = spec.given is not None and (spec.given == "test").any()
        fix = (
            "add photos of it to the test split you gave"
            if given
            else "add photos (3 or more a class give one to test)"
        )
        console.print(
            f"[yellow]warning[/]: no test image of {escape(shown)}: the model learns {them}, but the test "
            f"numbers say nothing of {them}; {fix}"
        )


def group_split(spec, cfg: TrainConfig, images: np.ndarray, console):
    """Keep near-duplicates (or files named alike) in one split (see data.groups). Returns the
    grouping's summary for data_report.json (its "by" is what group_by resolves to) or None, and the
    images' prints, which the run keeps (data.copies) whether or not they grouped anything."""

    from imgclf.data.groups import group_for_training, summary_line, usable_prints

    found = usable_prints(spec, images)
    info = group_for_training(spec, cfg.group_by, images, cfg.val_frac, cfg.test_frac, cfg.seed, found)
    if info is None:
        return None, found
    console.print(escape(f"  split: {summary_line(info)} (--group-by {cfg.group_by})"))
    if info["straddling"]:
        ex = info["straddling_examples"][0]
        names = escape(" = ".join(Path(f).name for f in ex["files"][:2]))
        console.print(
            f"[yellow]warning[/]: {info['straddling']} group(s) sit in more than one of the splits you "
            f"gave, e.g. {names} ({', '.join(ex['splits'])}): test accuracy is inflated; move each "
            "group into one split"
        )
    return info, found


def normalization(cfg: TrainConfig, images: np.ndarray, spec) -> tuple[list[float], list[float], bool]:
    """(mean, std, fine-tuning?): pretrained weights' own statistics, else the training images'."""
    from imgclf.models.pretrained import normalization as pretrained_normalization
    from imgclf.models.pretrained import parent_run
    from imgclf.training.finetune import is_finetune

    if is_finetune(cfg):
        return (*pretrained_normalization(cfg.model[len("timm/") :]), True)
    if not cfg.model.startswith("timm/") and (parent := parent_run(cfg.weights)) is not None:
        # In-house weights from an earlier run: learnt on inputs standardised by that run's statistics.
        from imgclf.training.warmstart import parent_normalization

        return (*parent_normalization(parent), False)
    return (*channel_stats(images, spec.indices("train")), False)


def channel_stats(images: np.ndarray, idx: np.ndarray, sample: int = 5000) -> tuple[list[float], list[float]]:
    pick = np.sort(np.random.default_rng(0).choice(idx, size=min(sample, len(idx)), replace=False))
    x = images[pick].reshape(-1, 3).astype(np.float64) / 255.0
    return [round(float(v), 4) for v in x.mean(0)], [round(float(max(v, 1e-3)), 4) for v in x.std(0)]


def augment_policy(cfg: TrainConfig, n_train: int):
    from imgclf.data.augment import AugmentPolicy, default_policy

    if isinstance(cfg.augment, dict):
        return AugmentPolicy.from_dict(cfg.augment)
    if cfg.augment == "none":
        return AugmentPolicy(flip=False)
    if cfg.augment != "auto":
        raise UserError(f"augment must be auto, none or a mapping of policy fields, not {cfg.augment!r}")
    return default_policy(cfg.img_size, n_train, allow_flip=cfg.flip)


def write_data_records(run_dir: Path, prep) -> str | None:
    """What a run records of its data as it starts: splits.csv, each image's pHash (data.copies:
    for finding copies of its images in what it is later evaluated on) and data_report.json.
    Returns the data root splits.csv's paths are relative to (both can move)."""
    from imgclf.core.files import write_json
    from imgclf.data.copies import PRINTS_FILE, write_kept
    from imgclf.data.paths import data_root
    from imgclf.store.runs import write_splits

    spec = prep.spec
    root = data_root(spec.root, spec.layout, spec.paths)
    write_splits(run_dir / "splits.csv", spec.paths, spec.labels, spec.splits, spec.classes, root)
    write_kept(run_dir / PRINTS_FILE, prep.prints, prep.cfg.img_size, prep.cfg.resize)
    report = {**data_report(spec, prep.skipped), "deduplicated": prep.removed, "groups": prep.grouping}
    report["greyscale_by_class"] = prep.grey
    write_json(run_dir / "data_report.json", report)
    return root


def data_report(spec, skipped: list[dict]) -> dict:
    counts = {}
    for split in ("train", "val", "test"):
        sel = spec.labels[spec.splits == split]
        counts[split] = {c: int(n) for c, n in zip(spec.classes, np.bincount(sel, minlength=len(spec.classes)))}
    return {
        "root": spec.root,
        "layout": spec.layout,
        **({"read_as": spec.note} if spec.note else {}),
        "classes": spec.classes,
        "counts": counts,
        "totals": {s: sum(v.values()) for s, v in counts.items()},
        "skipped": skipped,
        "ignored_non_images": spec.ignored,
        "left_out_names_not_utf8": spec.unnamable,
    }


def recorded_split(spec, splits_csv: Path) -> None:
    """On resume: the run's own split (its splits.csv), not a fresh one of the data as it is now. Images
    added since the run started would otherwise be split anew (a test photo of the first epochs could
    land in training), and a new class folder would shift the class indices under the saved weights.
    Images added since are left out, images gone are missed; what changed goes into the data note."""
    import csv
    import os

    from imgclf.data.paths import data_root, resolve

    if not splits_csv.is_file():  # interrupted before its first files: nothing recorded to keep
        return
    root = data_root(spec.root, spec.layout, spec.paths)
    with open(splits_csv, newline="", encoding="utf-8") as f:
        rows = {resolve(r["path"], root): (r["label"], r["split"]) for r in csv.DictReader(f)}
    now = [os.path.normpath(os.path.abspath(p)) for p in spec.paths]
    classes = [c for c in spec.classes if c in {label for label, _ in rows.values()}]
    gone = sorted({label for label, _ in rows.values()} - set(classes))
    if gone:
        raise UserError(
            f"cannot resume: class {gone[0]!r} of this run is no longer in {spec.root}; put its images back, "
            "or train a new run on the data as it is now"
        )
    keep = np.array([p in rows and rows[p][0] == spec.classes[y] for p, y in zip(now, spec.labels)], bool)
    missing = len(rows) - int(keep.sum())
    index = {c: i for i, c in enumerate(classes)}
    spec.paths = [p for p, k in zip(spec.paths, keep) if k]
    spec.labels = np.array([index[rows[p][0]] for p, k in zip(now, keep) if k], np.int64)
    spec.splits = np.array([rows[p][1] for p, k in zip(now, keep) if k], dtype=spec.splits.dtype)
    spec.given, spec.classes = spec.splits.copy(), classes
    added = int((~keep).sum())
    if added or missing:
        said = (
            f"resume keeps the run's own split: {added:,} image(s) added to the data since it started are "
            f"left out (a new run, or imgclf update, learns from them); {missing:,} recorded image(s) are gone"
        )
        spec.note = "; ".join(filter(None, [spec.note, said]))

"""A run scored on labelled images from elsewhere (`imgclf evaluate RUN DATA`, `imgclf compare`), or
on its own test split again: DATA's classes matched to the model's by name, the images of classes
it does not know left out of the scores (what it answers for them is told), and the run's own
training images among DATA found and said, as they inflate the accuracy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from rich.markup import escape  # class names and the data folder are the user's text

from imgclf.core.errors import UserError
from imgclf.data.spec import near_names
from imgclf.evaluation.scoring import score

MOST_OTHER_CLASSES = 10  # folders of classes the model does not know, printed one by one


def evaluate_model(
    model, data: str | Path | None = None, verbose: bool = True, *, data_root: str | Path | None = None
) -> dict:
    """Metrics of a loaded model (inference.model.Model or an ensemble) on its run's held-out test
    split, or on DATA (its `test/` split when it has one, else all its images); see imgclf.evaluate."""
    return scored_evaluation(model, data, verbose, data_root=data_root)[0]


def scored_evaluation(
    model, data: str | Path | None = None, verbose: bool = True, *, data_root: str | Path | None = None
) -> tuple[dict, list[str], np.ndarray, np.ndarray, list[tuple[str, str, str, float]]]:
    """evaluate_model's metrics, and what they were computed from: the scored images' paths, their
    true class indices and the calibrated probabilities (for an evaluation's report and predictions);
    and the answers to DATA's images of classes the model does not know (answers_to_other_classes)."""
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
        left: dict[str, list[str]] = {}
        aliases = getattr(model, "class_aliases", None)  # a detector's: non-human/ is its 'no person'
        paths, labels, renamed = labelled(data, list(model.classes), leave_out=left, aliases=aliases)
        if renamed:
            console.print(escape(f"  classes matched by name: {', '.join(renamed)}"))
        if left:  # the model cannot name them: scored, every one would count as its mistake
            counts = {c: len(n) for c, n in left.items()}
            console.print(
                escape(
                    left_out_line(counts, "the model does not know")
                    + f"; scored on the {len(paths):,} images of its own classes"
                )
            )
            if close := near_names(list(left), list(model.classes)):
                what = (
                    "folders to score their images as those classes"
                    if len(close) > 1
                    else "folder to score its images as that class"
                )
                console.print(escape(f"  hint: {', '.join(close)}: rename the {what}"))
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
    probs = model.last_probs
    metrics = {**metrics, **({"own_images": own} if own else {}), **({"near_copies": near} if near else {})}
    others: list[tuple[str, str, str, float]] = []
    if data is not None and left:
        metrics["other_classes"], others = answers_to_other_classes(model, left, console, verbose)
    return metrics, [paths[i] for i in keep], labels[keep], probs, others


def left_out_line(counts: dict[str, int], who: str) -> str:
    """'  left out 16 images of classes WHO: rose (8), tulip (8)': evaluate's and compare's words."""
    return f"  left out {sum(counts.values()):,} images of classes {who}: " + ", ".join(
        f"{c} ({n:,})" for c, n in counts.items()
    )


def answers_to_other_classes(
    model, left: dict[str, list[str]], console, verbose: bool = True
) -> tuple[dict, list[tuple[str, str, str, float]]]:
    """What the model answers for images of classes it does not know: ({folder: {"images", "answers":
    {answer: count}, "median_confidence"}}, printed one line a folder; and a (path, folder, answer,
    confidence) row an image, for predictions.csv). Left out of the scores, they
    still say how it meets the world: a model that names every rose "daisy" at 0.9 will do so in
    production; one with a rejection threshold may answer "unknown" (evaluation.operating_point)."""
    from imgclf.data.cache import build_cache
    from imgclf.data.images import skip_warning
    from imgclf.evaluation.operating_point import OperatingPoint
    from imgclf.models.arrays import softmax

    paths = [p for ps in left.values() for p in ps]
    folder = [f for f, ps in left.items() for _ in ps]
    cache = build_cache(paths, model.img_size, model.resize_mode, progress=verbose)
    for i, reason in cache.bad.items():
        console.print(skip_warning(paths[i], reason))
    keep = [i for i in range(len(paths)) if i not in cache.bad]
    probs = softmax(model.predict_logits(cache.images[keep]) / model.temperature) if keep else np.zeros((0, 1))
    op, classes = OperatingPoint.of(model.meta), list(model.classes)
    out: dict[str, dict] = {}
    rows = []
    for p, i in zip(probs, keep):
        a = op.decide(p, classes)
        answer, confidence = classes[a] if a >= 0 else op.label, float(p[a] if a >= 0 else p.max())
        rows.append((paths[i], folder[i], answer, confidence))
        row = out.setdefault(folder[i], {"images": 0, "answers": Counter(), "confidence": []})
        row["images"] += 1
        row["answers"][answer] += 1
        row["confidence"].append(confidence)
    for name, row in out.items():
        row["answers"] = dict(row["answers"].most_common())
        row["median_confidence"] = float(np.median(row.pop("confidence")))
    lines = [
        f"{name} ({row['images']:,}): "
        + ", ".join(f"{a} {n:,}" for a, n in row["answers"].items())
        + f" (median confidence {row['median_confidence']:.2f})"
        for name, row in out.items()
    ]
    shown = lines[:MOST_OTHER_CLASSES] + (
        [f"... {len(lines) - MOST_OTHER_CLASSES} more"] if len(lines) > MOST_OTHER_CLASSES else []
    )
    console.print(escape("  answered for the classes it does not know: " + "; ".join(shown)))
    return out, rows


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


def accuracy_drop(m: dict, own: dict | None, run, data) -> str:
    """A line when the accuracy on these images is below the run's own test split's (`own`, its
    metrics.json) by more than chance: their 95 % intervals (metrics.wilson) do not overlap. The
    usual cause is photos unlike the ones it learnt from, and `imgclf update` learns from them."""
    from imgclf.evaluation.metrics import wilson

    if not own or not own.get("n") or not m.get("n"):
        return ""
    own_low, _ = wilson(round(own["accuracy"] * own["n"]), own["n"])
    _, here_high = wilson(round(m["accuracy"] * m["n"]), m["n"])
    if here_high >= own_low:
        return ""
    return (
        f"accuracy {m['accuracy']:.3f} here against {own['accuracy']:.3f} on its own held-out test split "
        f"({own['n']:,} images), more than chance explains (the 95 % intervals do not overlap): these images "
        f"differ from the ones it learnt from (another camera, place or season). To learn from them: "
        f"imgclf update {run} {data}"
    )


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
    aliases: dict[str, tuple] | None = None,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Other labelled images to score `classes` on (evaluate, compare): DATA's test split when it has
    one, else all its images, in any layout training reads and of one class or more (a folder of new
    daisies is a fair test); their labels as indices into `classes`, class folders matched by name
    (match_classes); and the matches that renamed a folder ("Daisy -> daisy"). Folders matching no
    class are a UserError, unless `leave_out` (a dict) is given: their images are then left out and
    listed in it by folder ({folder: [paths]}), and only a DATA none of whose folders match is an error.
    `aliases`: other names of each class (match_classes)."""
    from imgclf.data.discover import find

    spec = find(data)
    if not spec.classes:  # a folder of loose images: their class is not guessed
        name = Path(str(data)).name
        hint = (
            f", or give the folder above it ({Path(str(data)).resolve().parent}), where {name}/ names the class"
            if match_classes([name], classes, aliases)[0]
            else ""
        )
        raise UserError(
            f"{data} has no class folders: each image's class must be known to score it; put the images in a "
            f"sub-folder named after their class (DATA/<class>/<image>){hint}"
        )
    sel = spec.indices("test") if (spec.splits == "test").any() else np.arange(len(spec.paths))
    named, unknown = match_classes(spec.classes, classes, aliases)
    if unknown and (leave_out is None or not named):
        close = near_names(unknown, classes)
        raise UserError(
            f"{data} has classes {unknown_to}: {listed(unknown)} ({known_as}: {listed(classes)}); "
            + (
                f"rename the folders that are near misses ({', '.join(close)})"
                if close
                else "give a folder of those classes' images"
            )
        )
    if unknown:
        folder = [spec.classes[spec.labels[i]] for i in sel]
        for i, f in zip(sel, folder):
            if f not in named:
                leave_out.setdefault(f, []).append(spec.paths[i])
        sel = np.array([i for i, f in zip(sel, folder) if f in named], dtype=np.int64)
    paths = [spec.paths[i] for i in sel]
    labels = np.array([classes.index(named[spec.classes[spec.labels[i]]]) for i in sel], dtype=np.int64)
    return paths, labels, [f"{a} -> {b}" for a, b in named.items() if a != b]


def match_classes(
    given: list[str], known: list[str], aliases: dict[str, tuple] | None = None
) -> tuple[dict[str, str], list[str]]:
    """({class folder of labelled images: the model's class}, the folders matching none): the same
    name, else the one name that differs only in case, spaces, '_' or '-' (a test folder's `Daisy/`
    for the model's `daisy`, `sea lion` for `sea_lion`), else the one class whose `aliases` name it
    (a detector's: `non-human/` for 'no person')."""
    from imgclf.data.spec import name_key

    keys: dict[str, list[str]] = {}
    for k in known:
        keys.setdefault(name_key(k), []).append(k)
    also = {k: {name_key(w) for w in words} for k, words in (aliases or {}).items()}
    out, unknown = {}, []
    for g in given:
        alike = [g] if g in known else keys.get(name_key(g), [])
        alike = alike or [k for k, words in also.items() if name_key(g) in words]
        if len(alike) == 1:
            out[g] = alike[0]
        else:
            unknown.append(g)
    return out, unknown


def listed(names: list[str], most: int = 20) -> str:
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")

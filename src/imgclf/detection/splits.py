"""Which annotated photos train, validate and test a detector: the split the user's files give, the
rest carved from the training photos (seeded, 70/15/15 of all photos).

    train/ valid/ test/                         Roboflow's exports (YOLO or COCO): kept as they are
    images/train/ images/val/                   Ultralytics: val is the test split; val carved from train
    train2017/ val2017/ + instances_*.json      COCO: as the folders say
    ImageSets/Main/{train,val,trainval,test}.txt  Pascal VOC's lists
    data.yaml  train: / val: / test:            a folder or a list file (.txt of image paths) each

A given split is kept because the peers a user compares with (Ultralytics, the TF Object Detection
API) report on it, and because photos cut from one video or one scene belong together: a split made
here photo by photo would put neighbouring frames in training and test. A val split given without a
test split is the test split (the one Ultralytics reports on, scored once); validation, which picks
the epoch, is carved from train, as for classification (imgclf.data.split.val_as_test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from imgclf.core.errors import UserError
from imgclf.data.spec import split_of

SPLITS = ("train", "val", "test")
SHARES = (0.7, 0.15, 0.15)
MIN_PHOTOS = 8
VOC_LISTS = {"test": "test", "val": "val", "train": "train", "trainval": "train"}  # the first that lists a photo wins


def mark_given(photos: list, root: Path, files: list[Path], yaml_file: Path | None = None) -> None:
    """Set each photo's `split` to what the user's files say (data.yaml's lists first, then VOC's
    ImageSets lists, then a split-named folder on its path), or leave it None."""
    by_path = {str(Path(p.path).resolve()): p for p in photos}
    listed = _from_yaml(yaml_file, root) if yaml_file else {}
    for path, split in listed.items():
        if path in by_path:
            by_path[path].split = split
    by_stem = _from_voc_lists(files)
    for p in photos:
        if p.split is None:
            p.split = by_stem.get(Path(p.path).stem) or _from_folders(Path(p.path), root)


def split(photos: list, seed: int) -> tuple[dict[str, list], str]:
    """({train, val, test: photos}, how the split was made). Splits the user gave stay whole; the
    photos without one are the training pool, from which a missing val or test is carved."""
    if len(photos) < MIN_PHOTOS:
        raise UserError(f"only {len(photos)} annotated photos: fine-tuning a detector needs at least 8 (better 50+)")
    given = {k: [p for p in photos if p.split == k] for k in ("val", "test")}
    val_tests = bool(given["val"]) and not given["test"] and len(given["val"]) < len(photos)
    if val_tests:
        given = {"val": [], "test": given["val"]}
    pool = [p for p in photos if p.split not in given]  # given train/ and photos in no split folder
    order = np.random.default_rng(seed).permutation(len(pool))
    n_val = 0 if given["val"] else max(2, round(SHARES[1] * len(photos)))
    n_test = 0 if given["test"] else max(2, round(SHARES[2] * len(photos)))
    if len(pool) - n_val - n_test < 1:
        raise UserError(
            f"no photos left to train on: {len(given['val'])} in your val split and {len(given['test'])} in "
            f"test, {len(pool)} in train; put most photos in train/"
        )
    parts = {
        "val": given["val"] + [pool[i] for i in order[:n_val]],
        "test": given["test"] + [pool[i] for i in order[n_val : n_val + n_test]],
        "train": [pool[i] for i in order[n_val + n_test :]],
    }
    return parts, _how(given, seed, val_tests)


def _how(given: dict, seed: int, val_tests: bool) -> str:
    if val_tests:
        return f"your val split is the test split (no test split given); val carved from train, seed {seed}"
    kept = [k for k in ("val", "test") if given[k]]
    if not kept:
        return f"{'/'.join(str(round(100 * s)) for s in SHARES)}, seed {seed}"
    carved = [k for k in ("val", "test") if not given[k]]
    said = f"your {' and '.join(kept)} split{'s' if len(kept) > 1 else ''} kept"
    return said + (f"; {carved[0]} carved from train, seed {seed}" if carved else "")


def _from_folders(path: Path, root: Path) -> str | None:
    """The split named by the folder nearest the photo (images/train/a.jpg, valid/images/a.jpg, val2017/a.jpg)."""
    try:
        folders = path.relative_to(root).parts[:-1]
    except ValueError:
        return None
    return next((s for part in reversed(folders) if (s := split_of(part))), None)


def _from_voc_lists(files: list[Path]) -> dict[str, str]:
    """Photo id -> split from Pascal VOC's ImageSets/Main/{test,val,train,trainval}.txt."""
    lists = {p.stem.lower(): p for p in files if p.suffix.lower() == ".txt" and p.parent.name == "Main"}
    found: dict[str, str] = {}
    for name, split in VOC_LISTS.items():
        if name in lists:
            for line in _lines(lists[name]):
                found.setdefault(line.split()[0], split)
    return found


def _from_yaml(yaml_file: Path, root: Path) -> dict[str, str]:
    """Resolved image path -> split from data.yaml's train/val/test entries (folders or .txt lists, relative
    to its `path:`, to itself or to the data folder). Entries that do not resolve here (written on another
    machine) are passed over; a photo listed in two splits (`val:` pointing at the training images, as
    some tutorials do) is in neither, so it cannot validate what it trained."""
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    base = Path(str(data.get("path") or ""))
    bases = [b for b in (yaml_file.parent / base, yaml_file.parent, root) if b.is_dir()]
    found: dict[str, set[str]] = {}
    for split in SPLITS:
        entries = data.get(split)
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, str) and entry.strip():
                for path in _entry_images(entry.strip(), bases):
                    found.setdefault(path, set()).add(split)
    return {path: splits.pop() for path, splits in found.items() if len(splits) == 1}


def _entry_images(entry: str, bases: list[Path]) -> list[str]:
    target = next((t for t in (b / entry for b in bases) if t.exists()), None)
    if target is None:
        return []
    if target.is_dir():
        return [str(p.resolve()) for p in target.rglob("*") if p.is_file()]
    if target.suffix.lower() != ".txt":
        return []
    found = []
    for line in _lines(target):  # Ultralytics' list files: ./relative/to/the/list, or relative to `path:`
        hit = next((t for t in (target.parent / line, *(b / line for b in bases)) if t.is_file()), None)
        if hit is not None:
            found.append(str(hit.resolve()))
    return found


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    return [s.strip() for s in text.splitlines() if s.strip()]

"""What a dataset is once found (data.discover, data.labels_csv): its classes, files, labels and
splits; and the rules both finders share for split names, image files and walking folders."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import is_regular
from imgclf.data.formats import CAMERA_RAW, IMAGE_EXTENSIONS
from imgclf.data.images import UnusableImage, opened

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}

# Words that may sit beside a split's name in a folder's name, as Kaggle's sets write them:
# training_set, seg_train, "Test Images", valid_data.
SPLIT_WORDS = {"set", "sets", "data", "dataset", "images", "imgs", "split", "seg"}


def name_key(name: str) -> str:
    """A name as people vary it, made one: case, spaces, '_' and '-' (a CSV's "File Name" is file_name;
    a test folder's `Sea-Lion/` is the model's `sea_lion`)."""
    return re.sub(r"[\s_-]+", "_", name.strip().casefold())


def is_submission(path: Path) -> bool:
    """Kaggle's template of answers to fill in (sample_submission.csv, sampleSubmission.csv): beside a
    set's labels or archives, never its labels (its label column, where it has one, holds dummies)."""
    return path.suffix.lower() == ".csv" and "submission" in name_key(path.stem)


def _plural_forms(key: str) -> set[str]:
    """A name_key and what it is without an English plural ending: daisies/daisy, boxes/box, roses/rose."""
    return {
        key,
        key[:-3] + "y" if key.endswith("ies") else key,
        key[:-2] if key.endswith("es") else key,
        key.rstrip("s"),
    }


def near_names(folders: list[str], classes: list[str]) -> list[str]:
    """['roses -> rose']: folders whose names are a near miss of one of `classes` (a plural, a typo)
    that name_key does not join. Numbered names (s1, s10) differ in their number, not by a slip."""
    import difflib

    keys = {name_key(c): c for c in classes}
    pairs = []
    for folder in folders:
        key = name_key(folder)
        match = [k for k in keys if _plural_forms(k) & _plural_forms(key)] or [
            k
            for k in difflib.get_close_matches(key, list(keys), n=1, cutoff=0.8)
            if re.sub(r"\d", "", k) != re.sub(r"\d", "", key)
        ]
        pairs += [f"{folder} -> {keys[match[0]]}"] if match else []
    return pairs


def alike_classes(classes: list[str]) -> str:
    """A note where two classes differ only as a plural (rose/ and roses/, merged from two sources):
    likely one class split in two, which every image of either would be confused over; '' if none."""
    pairs = [
        f"{a}/{b}"
        for i, a in enumerate(classes)
        for b in classes[i + 1 :]
        if _plural_forms(name_key(a)) & _plural_forms(name_key(b))
    ]
    return (
        f"classes {', '.join(pairs)} differ only as a plural: if each pair is one class, merge its folders"
        if pairs
        else ""
    )


def split_of(name: str) -> str | None:
    """The split a folder's name says (train, val or test), or None."""
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    named = {SPLIT_NAMES[w] for w in words if w in SPLIT_NAMES}
    if len(named) == 1 and all(w in SPLIT_NAMES or w in SPLIT_WORDS for w in words):
        return named.pop()
    return None


@dataclass
class DatasetSpec:
    root: str
    layout: str  # folders | split-folders | manifest
    classes: list[str]
    paths: list[str]
    labels: np.ndarray  # int64, index into classes
    splits: np.ndarray  # "train" | "val" | "test"
    ignored: list[str] = field(default_factory=list)  # non-image files, for the data report
    unnamable: list[str] = field(default_factory=list)  # images left out: names not valid UTF-8
    given: np.ndarray | None = None  # the splits before discover filled the missing ones (groups.regroup redoes it)
    note: str = ""  # how a CSV was read (which file, which columns): printed and recorded like a default

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def sample(self, split: str, n: int) -> list[str]:
        """n of the split's paths, spread evenly over them in index order (what a cheap check looks at)."""
        paths = [self.paths[i] for i in self.indices(split)]
        return [paths[i] for i in np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int)]


# Files that are never images, so no header is read to find out (a folder of notes stays cheap).
NOT_IMAGES = frozenset(
    {".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml", ".yml", ".ini", ".cfg"}
    | {".html", ".htm", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".db", ".sqlite", ".log", ".py", ".sh"}
    | {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".npy", ".npz", ".pkl", ".mat", ".h5"}
    | {".mp4", ".mov", ".avi", ".mkv", ".webm", ".mp3", ".wav", ".svg", ".eps", ".psd"}
    | {".safetensors", ".onnx", ".pt", ".pth", ".heic", ".heif", ".avif"}
    | CAMERA_RAW
)


def is_image(path: Path) -> bool:
    """An image by its extension; or, with an extension that says nothing (none at all, a scraper's
    `.jpg_large`, wget's `photo.jpg.1`), by a header Pillow recognises. Hidden files never."""
    suffix = path.suffix.lower()
    if path.name.startswith("."):
        return False
    if suffix in IMAGE_EXTENSIONS:
        return True
    return suffix not in NOT_IMAGES and is_regular(path) and has_image_header(path)


def has_image_header(path: str | os.PathLike) -> bool:
    """Whether Pillow recognises the file's header (nothing is decoded; a phone photo without its
    plugin is no image here)."""
    try:
        with opened(path, scalable=True):
            return True
    except UnusableImage:  # any file Pillow cannot place is no image to it
        return False


def is_run_folder(folder: Path) -> bool:
    """An imgclf run folder (a classifier's or a detector's, finished or not): its plots are not photos."""
    return (folder / "splits.csv").is_file() and any(
        (folder / f).is_file() for f in ("data_report.json", "model.json", "detector-training.json")
    )


def made_by_imgclf(folder: Path) -> bool:
    """A run folder or an ensemble bundle, the --out of `imgclf scan` or `imgclf faces identify` (its
    annotated/ copies of the photos), of `imgclf explain` (heatmaps) or of `imgclf monitor` (its
    to_label/ copies of live images), a face gallery (its --keep-photos crops): folders whose images
    are imgclf's, never photos to train or predict on."""
    marks = ("explain.json", "monitor.json", "gallery.safetensors")
    if is_run_folder(folder) or any((folder / f).is_file() for f in marks):
        return True
    if (folder / "model.json").is_file() and (folder / "members").is_dir():
        return True
    return (folder / "annotated").is_dir() and any((folder / f).is_file() for f in ("scan.json", "faces.json"))


def imgclf_output(folder: Path, depth: int = 4) -> bool:
    """Whether `folder` is imgclf's own output rather than the user's photos: a run folder, a model
    registry, a feedback inbox, a prediction log (`imgclf serve --log-predictions`: its kept uploads),
    a tune (tune.json, before its first trial finishes too), or a folder holding such folders and no
    image of its own (runs/, tunes/). `imgclf train .` run twice inside the photos' folder would
    otherwise read ./runs/ as a class of confusion matrices and learning curves, and `imgclf tune .`
    its own new tunes/ as an empty class."""
    return _whose(folder, depth) == "imgclf"


def _whose(folder: Path, depth: int) -> str:
    """'imgclf' (its output), 'user' (an image of the user's below it) or '' (neither: no image at
    all, as in a run folder still being made, which holds only the tune's tuning.json)."""
    if made_by_imgclf(folder) or any(
        (folder / f).is_file() for f in ("feedback.jsonl", "predictions.jsonl", "tune.json")
    ):
        return "imgclf"
    if (folder / "aliases.json").is_file() and (folder / "versions").is_dir():
        return "imgclf"
    found = ""
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    if depth > 1:
                        whose = _whose(Path(e.path), depth - 1)
                    else:  # too deep to tell: not empty is the user's
                        whose = "user" if any(True for _ in os.scandir(e.path)) else ""
                    if whose == "user":
                        return whose
                    found = found or whose
                elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                    return "user"
    except OSError:  # unreadable: the user's to fix, and reading it as data says so where it fails
        return "user"
    return found


def files_under(folder: Path) -> list[Path]:
    """Every non-hidden regular file below `folder`, sorted, following symlinked folders (a dataset
    assembled from links is common; Path.rglob does not follow them before Python 3.13) but
    never the same real folder twice, so a link loop cannot recurse forever. FIFOs, devices and
    sockets are left out (core.files.is_regular): reading one would hang or never end; a broken link
    named as an image is kept, to be reported unreadable. imgclf's own
    run folders and scan outputs are left out too (made_by_imgclf): their images are not the user's photos."""
    seen, found = set(), []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not made_by_imgclf(Path(top) / d)]
        found += [Path(top) / f for f in files if not f.startswith(".") and _listed(os.path.join(top, f))]
    return sorted(found)


def _listed(path: str) -> bool:
    # A broken link named as an image is listed too: a photo whose original moved is then skipped and
    # said, not lost unsaid.
    if is_regular(path):
        return True
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS and os.path.islink(path) and not os.path.exists(path)


def check_classes(classes: list[str], where: Path) -> None:
    if len(classes) < 2:
        raise UserError(
            f"found {len(classes)} class(es) in {where}; need at least 2. "
            "Put each class's images in its own sub-folder (DATA/<class>/<image>), or give a CSV of labels "
            "(path,label)"
        )


def printable(path: str) -> str:
    """`path` with bytes that are not UTF-8 (os.walk's surrogate escapes: a name from an old Windows
    zip) written as \\udcXX, so that a CSV, JSON or report file can hold it."""
    return path.encode("utf-8", "backslashreplace").decode()

"""Find the images, their classes and their train/val/test split from what the user has.

Three layouts are understood:
  root/<class>/...                  split here: stratified, seeded (default 80/10/10)
  root/{train,val,test}/<class>/... the user's split; a missing val is carved from train
  a CSV of labels: path,label[,split], or the columns as Kaggle-style sets name them (id,breed);
                                    a folder holding one CSV and no class folders is read from it
Class names are the sorted folder names (any unicode, spaces allowed).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import is_regular
from imgclf.data.images import IMAGE_EXTENSIONS, NEEDS_DECODER
from imgclf.data.split import fill_missing_splits

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
    given: np.ndarray | None = None  # the splits before discover filled the missing ones (groups.regroup redoes it)
    note: str = ""  # how a CSV was read (which file, which columns): printed and recorded like a default

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def to_predict(path: Path) -> bool:
    """A file of a folder given to predict: an image, or a photo this install cannot decode (a .heic
    without pillow-heif), which is then answered with what to install rather than passed over."""
    return is_image(path) or (path.suffix.lower() in NEEDS_DECODER and not path.name.startswith("."))


def undecodable(ignored: list[str]) -> str | None:
    """What the left-out files that are photos Pillow cannot decode here need (HEIC without its
    plugin, data.images.NEEDS_DECODER), in one phrase; None when there are none."""
    exts: dict[str, int] = {}
    for p in ignored:
        ext = Path(p).suffix.lower()
        if ext in NEEDS_DECODER:
            exts[ext] = exts.get(ext, 0) + 1
    if not exts:
        return None
    found = ", ".join(f"{n:,} {ext}" for ext, n in sorted(exts.items()))
    fixes = " and ".join(sorted({NEEDS_DECODER[e] for e in exts}))
    return f"{found} file(s), which need {fixes}"


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.startswith("__")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)


def files_under(folder: Path) -> list[Path]:
    """Every non-hidden regular file below `folder`, sorted, following symlinked folders (a dataset
    assembled from links is common; Path.rglob does not follow them before Python 3.13) but
    never the same real folder twice, so a link loop cannot recurse forever. FIFOs, devices and
    sockets are left out (core.files.is_regular): reading one would hang or never end."""
    seen, found = set(), []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top) / f for f in files if not f.startswith(".") and is_regular(os.path.join(top, f))]
    return sorted(found)


def _images_under(folder: Path, ignored: list[str]) -> list[Path]:
    """Image files anywhere below `folder` (hidden ones skipped); other files go to `ignored`."""
    found = []
    for p in files_under(folder):
        if is_image(p):
            found.append(p)
        else:
            ignored.append(str(p))
    return found


def discover(source: str | Path, val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0) -> DatasetSpec:
    source = Path(source).expanduser()
    if not source.exists():
        raise UserError(f"data not found: {source} (give a folder with one sub-folder per class, or a CSV manifest)")
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise UserError(f"{source} is a file; give a folder of class sub-folders or a CSV manifest (path,label)")
        spec = _from_manifest(source)
    else:
        source, unwrapped = _unwrap(source)
        split_dirs = {split_of(p.name): _unwrap(p)[0] for p in _class_dirs(source) if split_of(p.name)}
        folders = _class_dirs(split_dirs["train"]) if "train" in split_dirs else _class_dirs(source)
        csvs = [p for p in source.iterdir() if p.suffix.lower() == ".csv" and p.is_file() and _visible(p)]
        if len(folders) < 2 and len(csvs) == 1:
            # Kaggle's layout: images in one folder (train/, images/), their labels in a CSV beside it.
            spec = _from_manifest(csvs[0])
        elif "train" in split_dirs:
            spec = _from_split_folders(source, split_dirs)
        else:
            spec = _from_class_folders(source)
        spec.note = "; ".join(filter(None, [unwrapped, spec.note]))
    spec.given = spec.splits.copy()
    fill_missing_splits(spec, val_frac, test_frac, seed)
    return spec


def _unwrap(folder: Path) -> tuple[Path, str]:
    """A zip's extra level (photos/photos/<class>/..., Kaggle's archive/flowers/<class>/...): a
    folder holding one sub-folder, no image and no CSV (a README or __MACOSX aside) is read from
    inside, when that sub-folder holds folders itself. Returns the folder and what was done."""
    start = folder
    while True:
        subs = _class_dirs(folder)
        files = [p for p in folder.iterdir() if p.is_file() and _visible(p)]
        if (
            len(subs) != 1
            or split_of(subs[0].name) != split_of(folder.name)  # DATA/train/: a split, not a wrapper
            or any(is_image(p) or p.suffix.lower() == ".csv" for p in files)
            or not _class_dirs(subs[0])
        ):
            break
        folder = subs[0]
    if folder == start:
        return folder, ""
    return folder, f"read from {folder.relative_to(start).as_posix()}/, the one folder inside {start.name}/"


def _from_class_folders(root: Path) -> DatasetSpec:
    ignored = [str(p) for p in root.iterdir() if p.is_file() and _visible(p)]
    classes, paths, labels = [], [], []
    for d in _class_dirs(root):
        before = len(ignored)
        files = _images_under(d, ignored)
        if not files:
            if why := undecodable(ignored[before:]):
                raise UserError(f"class folder '{d.name}' holds only photos this install cannot read: {why}")
            raise UserError(
                f"class folder '{d.name}' has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}): "
                f"add images to it or remove it from {root}"
            )
        labels += [len(classes)] * len(files)
        classes.append(d.name)
        paths += [str(p) for p in files]
    _check_classes(classes, root)
    return DatasetSpec(
        str(root),
        "folders",
        classes,
        paths,
        np.array(labels, dtype=np.int64),
        np.array([""] * len(paths), dtype=object),
        ignored,
    )


def _from_split_folders(root: Path, split_dirs: dict[str, Path]) -> DatasetSpec:
    ignored = [str(p) for p in root.iterdir() if p.is_file() and _visible(p)]
    classes = sorted({d.name for sd in split_dirs.values() for d in _class_dirs(sd)})
    _check_classes(classes, root)
    paths, labels, splits = [], [], []
    for split, sd in split_dirs.items():
        for d in _class_dirs(sd):
            files = _images_under(d, ignored)
            paths += [str(p) for p in files]
            labels += [classes.index(d.name)] * len(files)
            splits += [split] * len(files)
    labels = np.array(labels, dtype=np.int64)
    splits = np.array(splits, dtype=object)
    train_counts = np.bincount(labels[splits == "train"], minlength=len(classes))
    empty = [c for c, n in zip(classes, train_counts) if n == 0]
    if empty:
        fix = f"found {why}" if (why := undecodable(ignored)) else "add images or remove the class folders"
        raise UserError(
            f"class(es) {', '.join(map(repr, empty))} have no training images in {split_dirs['train']}: {fix}"
        )
    return DatasetSpec(str(root), "split-folders", classes, paths, labels, splits, ignored)


# Column names CSVs of labels use for the image and its class, tried in this order (any case).
PATH_COLUMNS = (
    "path",
    "filepath",
    "file_path",
    "image_path",
    "filename",
    "file_name",
    "file",
    "image",
    "image_name",
    "img",
    "image_id",
    "id",
    "name",
)
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "category", "target", "y")


def _from_manifest(csv_path: Path) -> DatasetSpec:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = [c for c in reader.fieldnames or [] if c is not None]
    path_col, label_col, split_col = _manifest_columns(columns, csv_path)
    unlabelled = [r for r in rows if not (r.get(label_col) or "").strip()]
    rows = [r for r in rows if (r.get(label_col) or "").strip() and (r.get(path_col) or "").strip()]
    classes = sorted({r[label_col].strip() for r in rows})
    _check_classes(classes, csv_path)
    find = _finder(_manifest_base(csv_path))
    paths = [find(r[path_col].strip()) for r in rows]
    found = sum(os.path.isfile(p) for p in paths)
    if not found:
        raise UserError(
            f"none of the {len(paths):,} images named in column '{path_col}' of {csv_path} were found "
            f"(e.g. '{rows[0][path_col].strip()}' under {_manifest_base(csv_path)}); "
            "give paths relative to the CSV's folder, or file names found below it"
        )
    labels = np.array([classes.index(r[label_col].strip()) for r in rows], dtype=np.int64)
    splits = []
    for r in rows:
        s = ((r.get(split_col) if split_col else "") or "").strip().lower()
        if s and s not in SPLIT_NAMES:
            raise UserError(f"manifest {csv_path}: unknown split '{s}' (use train, val or test)")
        splits.append(SPLIT_NAMES.get(s, ""))
    note = ""
    if (path_col, label_col) != ("path", "label"):
        note = f"{csv_path.name}: images from column '{path_col}', classes from column '{label_col}'"
    if len(paths) - found:
        note += f"{'; ' if note else f'{csv_path.name}: '}{len(paths) - found:,} listed image(s) not found"
    if unlabelled:
        note += f"{'; ' if note else f'{csv_path.name}: '}{len(unlabelled):,} row(s) without a label left out"
    return DatasetSpec(str(csv_path), "manifest", classes, paths, labels, np.array(splits, dtype=object), note=note)


def _manifest_columns(columns: list[str], csv_path: Path) -> tuple[str, str, str | None]:
    """(image column, label column, split column or None): the names `path,label[,split]`, else the
    names such CSVs use; a CSV of just two other columns is read as image, then label."""
    by_name = {c.strip().lower(): c for c in columns}
    split_col = by_name.get("split")
    path_col = next((by_name[n] for n in PATH_COLUMNS if n in by_name), None)
    label_col = next((by_name[n] for n in LABEL_COLUMNS if n in by_name and by_name[n] != path_col), None)
    rest = [c for c in columns if c not in (split_col, path_col, label_col)]
    if path_col is None and label_col is None and len(rest) == 2:
        path_col, label_col = rest
    elif path_col is None and len(rest) == 1:
        path_col = rest[0]
    elif label_col is None and len(rest) == 1:
        label_col = rest[0]
    if path_col is None or label_col is None:
        raise UserError(
            f"manifest {csv_path}: cannot tell which column names the image and which its class among "
            f"{', '.join(map(repr, columns)) or 'no columns'}; name them 'path' and 'label' (optional 'split')"
        )
    return path_col, label_col, split_col


def _finder(base: Path):
    """Where a CSV's image cell points: the path as given (relative to `base`), else the one image
    below `base` with that relative path, file name or, for bare ids, stem (Kaggle CSVs list
    `id` and keep the files in train/). Ambiguous and unknown names stay as given: the decoder
    reports them as not found."""
    index: dict[str, str | None] = {}
    built = []

    def build() -> None:
        built.append(True)
        for p in files_under(base):
            if not is_image(p):
                continue
            rel = p.relative_to(base)
            for key in {rel.as_posix(), p.name, p.stem, rel.with_suffix("").as_posix()}:
                index[key] = None if key in index and index[key] != str(p) else str(p)

    def find(cell: str) -> str:
        given = Path(cell) if Path(cell).is_absolute() else base / cell
        if given.is_file():
            return str(given)
        if not built and base.is_dir():
            build()
        return index.get(Path(cell).as_posix().removeprefix("./")) or str(given)

    return find


def _manifest_base(csv_path: Path) -> Path:
    """What a manifest's relative paths are relative to: its own folder, except a run's splits.csv,
    whose paths are relative to the data root its model.json records (so a run's split can be
    trained on again, as bench/transfer.py does for its peers)."""
    run_meta = csv_path.parent / "model.json"
    if csv_path.name == "splits.csv" and run_meta.is_file():
        from imgclf.core.files import read_json

        try:
            root = (read_json(run_meta).get("data") or {}).get("root")
        except (OSError, ValueError, AttributeError):
            root = None
        if isinstance(root, str) and Path(root).is_absolute():
            return Path(root)
    return csv_path.parent


def _check_classes(classes: list[str], where: Path) -> None:
    if len(classes) < 2:
        raise UserError(
            f"found {len(classes)} class(es) in {where}; need at least 2. "
            "Put each class's images in its own sub-folder: DATA/<class>/<image>"
        )

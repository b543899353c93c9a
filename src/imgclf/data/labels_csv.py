"""A CSV of labels: `path,label[,split]`, or the columns as such CSVs name them (Kaggle's
`id,breed`, `filename,class`), with cells that may be bare file names or ids found below the CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.data.archive import is_archive
from imgclf.data.spec import SPLIT_NAMES, DatasetSpec, files_under, is_image, is_submission, name_key

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


def labels_among(csvs: list[Path], folder: Path) -> tuple[Path | None, str]:
    """The CSV of labels among a folder's CSVs (it has no class folders; None: only submission
    templates), and a note naming the rest. Kaggle's folder holds labels.csv or train.csv beside
    sample_submission.csv (a template of answers to fill in, often with a label column of dummies) and
    sometimes test.csv (the photos to answer): a template is never the labels; of the others, a name
    with "train", then one with "label" is."""
    kept = [p for p in csvs if not is_submission(p)]
    for word in ("train", "label"):
        if len(kept) > 1:
            kept = [p for p in kept if word in name_key(p.stem)] or kept
    if len(kept) > 1:
        names = ", ".join(sorted(p.name for p in csvs))
        raise UserError(
            f"{folder} holds {len(csvs)} CSV files ({names}) and no class folders: give the one with the "
            f"labels, e.g. imgclf train {folder / sorted(p.name for p in kept)[0]}"
        )
    left = sorted(p.name for p in csvs if p not in kept)
    return (kept[0] if kept else None), (f"{', '.join(left)} left out (not the labels)" if left else "")


def from_manifest(csv_path: Path) -> DatasetSpec:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
        text = f.read()
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text.split("\n", 1)[0]))
    rows = list(reader)
    columns = [c for c in reader.fieldnames or [] if c is not None]
    several = 0
    if hot := _one_hot_columns(columns, rows):
        path_col, split_col, class_cols = hot
        label_col = ONE_HOT  # a key no CSV column has: the row's one class, "" for none or several
        for r in rows:
            on = [c for c in class_cols if (r.get(c) or "").strip() in _ONES]
            r[ONE_HOT] = on[0] if len(on) == 1 else ""
            several += len(on) > 1
    else:
        path_col, label_col, split_col = _manifest_columns(columns, csv_path)
    unlabelled = [r for r in rows if not (r.get(label_col) or "").strip()]
    rows = [r for r in rows if (r.get(label_col) or "").strip() and (r.get(path_col) or "").strip()]
    classes = sorted({r[label_col].strip() for r in rows})
    find = _finder(_manifest_base(csv_path))
    paths = [find(r[path_col].strip()) for r in rows]
    found = sum(os.path.isfile(p) for p in paths)
    if rows and not found:
        packed = sorted(p.name for p in _manifest_base(csv_path).iterdir() if is_archive(p))  # Kaggle's train.zip
        raise UserError(
            f"none of the {len(paths):,} images named in column '{path_col}' of {csv_path} were found "
            f"(e.g. '{rows[0][path_col].strip()}' under {_manifest_base(csv_path)}); "
            + (
                f"{', '.join(packed)} beside it: unpack it there first"
                if packed
                else "give paths relative to the CSV's folder, or file names found below it"
            )
        )
    labels = np.array([classes.index(r[label_col].strip()) for r in rows], dtype=np.int64)
    splits = []
    for r in rows:
        s = ((r.get(split_col) if split_col else "") or "").strip().lower()
        if s and s not in SPLIT_NAMES:
            raise UserError(f"manifest {csv_path}: unknown split '{s}' (use train, val or test)")
        splits.append(SPLIT_NAMES.get(s, ""))
    note = ""
    if hot:
        note = f"{csv_path.name}: images from column '{path_col}', classes from the one-hot columns " + ", ".join(
            map(repr, hot[2])
        )
        if several:
            note += f"; {several:,} row(s) with several classes left out (imgclf trains one class an image)"
    elif (path_col, label_col) != ("path", "label"):
        note = f"{csv_path.name}: images from column '{path_col}', classes from column '{label_col}'"
    if len(paths) - found:
        note += f"{'; ' if note else f'{csv_path.name}: '}{len(paths) - found:,} listed image(s) not found"
    if len(unlabelled) > several:
        note += f"{'; ' if note else f'{csv_path.name}: '}{len(unlabelled) - several:,} row(s) without a label left out"
    return DatasetSpec(str(csv_path), "manifest", classes, paths, labels, np.array(splits, dtype=object), note=note)


def _delimiter(header: str) -> str:
    """The header line's delimiter: a comma, else the semicolon a European Excel saves with (its
    decimal comma takes the comma), a tab or a bar, whichever the header holds."""
    if "," in header:
        return ","
    return next((d for d in ";\t|" if d in header), ",")


ONE_HOT = "\0one-hot class"
_ONES = {"1", "1.0", "1.", "True", "true"}
_ZEROS = {"0", "0.0", "0.", "False", "false", ""}


def _one_hot_columns(columns: list[str], rows: list[dict]) -> tuple[str, str | None, list[str]] | None:
    """(image column, split column or None, class columns) for a CSV whose classes are one-hot columns
    (Kaggle's `image_id,healthy,multiple_diseases,rust,scab`: a 1 under the image's class, 0 under the
    others); None for any other CSV. Every class cell must read as 0 or 1."""
    by_name = {name_key(c): c for c in columns}
    split_col = by_name.get("split")
    path_col = next((by_name[n] for n in PATH_COLUMNS if n in by_name), columns[0] if columns else None)
    class_cols = [c for c in columns if c not in (path_col, split_col)]
    if len(class_cols) < 2 or not rows or any(by_name.get(n) in class_cols for n in LABEL_COLUMNS):
        return None
    cells = {(r.get(c) or "").strip() for r in rows for c in class_cols}
    if not cells <= _ONES | _ZEROS or not cells & _ONES:
        return None
    return path_col, split_col, class_cols


def _manifest_columns(columns: list[str], csv_path: Path) -> tuple[str, str, str | None]:
    """(image column, label column, split column or None): the names `path,label[,split]`, else the
    names such CSVs use; a CSV of just two other columns is read as image, then label."""
    by_name = {name_key(c): c for c in columns}  # "File Name" is file_name
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
        if "\\" in cell and not Path(cell).is_absolute():  # a CSV written on Windows: img\cat.jpg
            cell = cell.replace("\\", "/")
            if (base / cell).is_file():
                return str(base / cell)
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

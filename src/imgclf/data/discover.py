"""Find the images, their classes and their train/val/test split in the layouts datasets come in:
  root/<class>/...                  split here: stratified, seeded (default 80/10/10)
  root/{train,val,test}/<class>/... the user's split; a missing val is carved from train (a val/
                                    with no test/ is the test split: data.split.val_as_test). Split
                                    folders as Kaggle names them too (training_set/, seg_test/), and
                                    root/<class>/ beside root/test/<class>/
  a CSV of labels (data.labels_csv), or a folder of images and CSVs (Kaggle's labels.csv, sample_submission.csv)
  a flat folder of <class>_<number>.jpg (Oxford pets' Abyssinian_12.jpg)
  any of these in a .zip or .tar (data.archive; Kaggle's train.zip beside test1.zip), or in one wrapping folder
Class names are the sorted folder names (any unicode, spaces allowed). `find` reads what is there;
`discover` also wants two classes and puts every image in a split. A layout read in a way worth
saying leaves a line in DatasetSpec.note, which training and `check` print.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.data.archive import archive_within, is_archive, unpacked
from imgclf.data.formats import IMAGE_EXTENSIONS, NEEDS_DECODER
from imgclf.data.images import is_web_url
from imgclf.data.labels_csv import from_manifest, labels_among
from imgclf.data.spec import (
    DatasetSpec,
    alike_classes,
    check_classes,
    files_under,
    imgclf_output,
    is_image,
    is_run_folder,
    printable,
    split_of,
)
from imgclf.data.split import fill_missing_splits, val_as_test


def to_predict(path: Path) -> bool:
    """A file of a folder given to predict: an image, or a photo this install cannot decode (a .heic
    without pillow-heif), which is then answered with what to install rather than passed over."""
    return is_image(path) or (path.suffix.lower() in NEEDS_DECODER and not path.name.startswith("."))


# A list of images to predict (`predict RUN todo.txt`, as with --ray): never an image itself.
LIST_SUFFIXES = (".txt", ".csv")


def files_to_predict(path: Path) -> list[Path | str] | None:
    """The files predict takes from a folder (recursively), an archive (.zip, .tar.gz: unpacked once
    into the cache, as train does) or a list file (.txt, .csv: list_entries; relative paths beside
    the list, web addresses as they are); None for anything else (a file named directly is taken as it is)."""
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        try:
            entries = list_entries(path.read_text(encoding="utf-8-sig"), path.suffix.lower())
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the list {path}: {e}") from None
        return [e if is_web_url(e) else path.parent / Path(e).expanduser() for e in entries]
    if path.is_file() and is_archive(path):
        path = unpacked(path)[0]
    return [f for f in files_under(path) if to_predict(f)] if path.is_dir() else None


def no_images(given: list) -> UserError:
    """The one line for inputs that named folders, archives or lists and came to no image at all
    (`imgclf predict RUN empty/` printed an empty table and exited 0)."""
    shown = ", ".join(str(g) for g in given[:3]) + (", ..." if len(given) > 3 else "")
    return UserError(f"no images in {shown}: no file there, nor in the folders below, is an image (.jpg, .png, ...)")


def list_entries(text: str, suffix: str) -> list[str]:
    """The image paths or addresses a list file names: .txt one a line (blank lines and # comments
    skipped); .csv its `path` column, else its first, whose first cell is a header unless it names an
    image. Shared by local predict and the cluster's sources (cluster.files)."""
    if suffix == ".txt":
        lines = (line.strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith("#")]
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    if "path" in header:
        col = header.index("path")
        return [row[col].strip() for row in rows[1:] if len(row) > col and row[col].strip()]
    first = rows[0][0].strip()
    body = rows if Path(first).suffix.lower() in IMAGE_EXTENSIONS else rows[1:]
    return [row[0].strip() for row in body]


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
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p) and not imgclf_output(p)), key=str)


def _outputs_note(folder: Path) -> str:
    """What `_class_dirs` passed over as imgclf's own output (runs/ made by training here before)."""
    outs = sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p) and imgclf_output(p))
    return f"{', '.join(f'{n}/' for n in outs)}: imgclf's own output, not read as data" if outs else ""


def _images_under(folder: Path, ignored: list[str]) -> list[Path]:
    """Image files anywhere below `folder` (hidden ones skipped); other files go to `ignored`."""
    files = [(p, is_image(p)) for p in files_under(folder)]  # is_image may read a header: once a file
    ignored += [str(p) for p, image in files if not image]
    return [p for p, image in files if image]


def discover(source: str | Path, val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0) -> DatasetSpec:
    """The dataset at `source` (find), with at least two classes and every image in a split."""
    spec = find(source)
    check_classes(spec.classes, Path(spec.root))
    spec.note = "; ".join(filter(None, [spec.note, val_as_test(spec), alike_classes(spec.classes)]))
    spec.given = spec.splits.copy()
    fill_missing_splits(spec, val_frac, test_frac, seed)
    return spec


def existing(source: str | Path) -> Path:
    """`source` as a path that exists, else one line saying so (torch-free); "" is refused, not read as "."."""
    if not str(source).strip():
        raise UserError("data is empty: give a folder with one sub-folder per class, or a CSV manifest")
    source = Path(source).expanduser()
    if not source.exists():
        raise UserError(f"data not found: {source} (give a folder with one sub-folder per class, or a CSV manifest)")
    return source


def find(source: str | Path) -> DatasetSpec:
    """The images and labels at `source` in any layout this module reads (see the module's doc),
    with the splits the data gives ("" elsewhere); one class is enough (imgclf update's new data)."""
    source = existing(source)
    refuse_run_folder(source)
    archive, left = archive_within(source) if source.is_dir() else (None, "")  # Kaggle's train.zip, test1.zip
    packed = ""
    if archive or (source.is_file() and is_archive(source)):
        source, packed = unpacked(archive or source)
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise UserError(
                f"{source} is a file; give a folder of class sub-folders, a CSV of labels (path,label) or a .zip of them"
            )
        spec = from_manifest(source)
    else:
        spec = _from_folder(source, "; ".join(filter(None, [packed, left])))
    _leave_out_unnamable(spec)
    return spec


def refuse_run_folder(source: str | Path) -> None:
    """One line for an imgclf run folder given as data (its data_report.json would otherwise be
    read as COCO annotations, its images as a class)."""
    source = Path(source)
    if source.is_dir() and is_run_folder(source):
        raise UserError(
            f"{source} is an imgclf run folder, not data: give the data it was trained on, or continue "
            f"an interrupted run with: imgclf train --resume {source}"
        )


def _leave_out_unnamable(spec: DatasetSpec) -> None:
    """Names that are not valid UTF-8 (a zip made on an old Windows, unpacked by `unzip`) cannot
    be written to splits.csv, the report or a terminal: such files are left out and said; a class
    folder named so is an error to fix."""
    if bad := [c for c in spec.classes if not _utf8(c)]:
        raise UserError(f"class folder {ascii(bad[0])} has a name that is not valid UTF-8: rename it")
    spec.ignored = [printable(p) for p in spec.ignored]  # data_report.json lists them
    keep = np.array([_utf8(p) for p in spec.paths], bool)
    if keep.all():
        return
    left = [p for p, k in zip(spec.paths, keep) if not k]
    spec.unnamable = [printable(p) for p in left]
    spec.paths = [p for p, k in zip(spec.paths, keep) if k]
    spec.labels, spec.splits = spec.labels[keep], spec.splits[keep]
    said = f"{len(left):,} file(s) left out: their names are not valid UTF-8, e.g. {ascii(Path(left[0]).name)}; rename them"
    spec.note = "; ".join(filter(None, [spec.note, said]))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.walk's surrogate escapes for undecodable bytes
        return False


def _from_folder(source: Path, packed: str) -> DatasetSpec:
    """A folder in any of the layouts; its note says how it was read where that was not plain."""
    given, (source, inner, left) = source, _unwrap(source)
    notes = [packed, _outputs_note(source)]
    if left:  # Oxford pets as unpacked: images/ beside annotations/
        notes.append(f"read from {inner}/; {', '.join(f'{n}/' for n in left)} beside it left out (annotations)")
    elif inner:  # inside an unpacked archive, the folder's name is the cache's: not worth saying
        notes.append(
            f"read from {inner}/ inside it"
            if packed
            else f"read from {inner}/, the one folder inside {given.resolve().name}/"
        )
    split_dirs = {split_of(p.name): _unwrap(p)[0] for p in _class_dirs(source) if split_of(p.name)}
    if "train" in split_dirs and not _class_dirs(split_dirs["train"]):
        if any(not split_of(d.name) for d in _class_dirs(source)):  # bus/, car/, train/: a class named train
            split_dirs = {}
    unlabelled = []
    for split, d in list(split_dirs.items()):
        if split != "train" and not _class_dirs(d):
            del split_dirs[split]
            name = d.relative_to(source).as_posix()
            if "train" in split_dirs:  # Kaggle's train/<class>/ and a test/ of unlabelled photos
                unlabelled.append(d)
                notes.append(f"{name}/ holds no class folders: left out as unlabelled")
            elif split == "test":  # control/ and test/: maybe a class, maybe photos to predict; say which
                notes.append(f"{name}/ is read as a class; if it holds unlabelled photos, move it out of the data")
    if split_dirs and "train" not in split_dirs and len(_class_dirs(source)) - len(split_dirs) >= 2:
        split_dirs["train"] = source  # DATA/<class>/ beside DATA/test/<class>/: the classes are training images
    folders = _class_dirs(split_dirs["train"]) if "train" in split_dirs else _class_dirs(source)
    csvs = [p for p in source.iterdir() if p.suffix.lower() == ".csv" and p.is_file() and _visible(p)]
    # Kaggle's layout: images in one folder (train/, images/), their labels in a CSV beside it.
    chosen, left = labels_among(csvs, source) if len(folders) < 2 and csvs else (None, "")
    notes.append(left)
    if chosen:
        spec = from_manifest(chosen)
    elif not folders and (named := _from_file_names(source, split_dirs)):
        spec = named
    elif "train" in split_dirs:
        spec = _from_split_folders(source, split_dirs)
    else:
        spec = _from_class_folders(source, skip=unlabelled)
    spec.note = "; ".join(filter(None, [*notes, spec.note]))
    return spec


# Folders of a dataset's annotations (masks, boxes, lists) beside its folder of images, not classes.
ANNOTATION_DIRS = {"annotations", "annotation", "labels", "masks", "trimaps", "segmentations", "xmls"}


def _unwrap(folder: Path) -> tuple[Path, str, list[str]]:
    """A zip's extra level (photos/photos/<class>/..., Kaggle's archive/flowers/<class>/...): a
    folder holding one sub-folder, no image and no CSV (a README or __MACOSX aside) is read from
    inside, when that sub-folder holds folders itself, or images whose names give their classes (a
    zip of Oxford pets' images/Abyssinian_12.jpg ...: read as one class, "images", before).
    ANNOTATION_DIRS beside the sub-folder do not count (Oxford pets as unpacked: images/ beside
    annotations/, read as two classes, "annotations" and "images", before). Returns the folder, its
    path below `folder` ("" when it is `folder`) and the annotation folders left out."""
    start, left = folder, []
    while True:
        subs = _class_dirs(folder)
        beside = [d.name for d in subs if d.name.lower() in ANNOTATION_DIRS]
        subs = [d for d in subs if d.name.lower() not in ANNOTATION_DIRS]
        files = [p for p in folder.iterdir() if p.is_file() and _visible(p)]
        if (
            len(subs) != 1
            or split_of(subs[0].name) != split_of(folder.name)  # DATA/train/: a split, not a wrapper
            or any(is_image(p) or p.suffix.lower() == ".csv" for p in files)
            or not (_class_dirs(subs[0]) or _from_file_names(subs[0], {}) is not None)
        ):
            break
        folder, left = subs[0], left + beside
    return folder, folder.relative_to(start).as_posix() if folder != start else "", left


# A class name, then a number: Abyssinian_12, cat.0, great_pyrenees_3, "rose (2)".
NAMED = re.compile(r"^(.*?[^\W\d_].*?)[\s._-]*\(?\d+\)?$")


def _from_file_names(root: Path, split_dirs: dict[str, Path]) -> DatasetSpec | None:
    """Flat folders of images named class-then-number (Oxford pets' `Abyssinian_12.jpg`, Kaggle's
    `train/cat.0.jpg`): the class is the name before the number. None unless most images are
    named so and the names repeat (two images a class or more), so a folder of IMG_0001.jpg or of
    uniquely named photos is not read as classes."""
    ignored: list[str] = []
    found = [(split, p) for split, d in (split_dirs or {"": root}).items() for p in _images_under(d, ignored)]
    named = [(split, p, m.group(1)) for split, p in found if (m := NAMED.match(p.stem))]
    labelled = {split for split, *_ in named}  # a folder with no class in any name (test1/1.jpg) is unlabelled
    classes = sorted({c for *_, c in named})
    in_labelled = sum(split in labelled for split, _ in found)
    if len(classes) < 2 or len(named) < 0.8 * in_labelled or len(named) < 2 * len(classes):
        return None
    named_paths = {p for _, p, _ in named}
    ignored += [str(p) for _, p in found if p not in named_paths]
    example = named[0][1]
    return DatasetSpec(
        str(root),
        "file-names",
        classes,
        [str(p) for _, p, _ in named],
        np.array([classes.index(c) for *_, c in named], dtype=np.int64),
        np.array([s for s, *_ in named], dtype=object),
        ignored,
        note=f"classes from file names, the name before the number ({example.name}: {named[0][2]})",
    )


def _from_class_folders(root: Path, skip: list[Path] | tuple = ()) -> DatasetSpec:
    ignored = [str(p) for p in root.iterdir() if p.is_file() and _visible(p)]
    classes, paths, labels, inner = [], [], [], {}
    for d in (d for d in _class_dirs(root) if d not in skip):
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
        inner[d.name] = {p.parent.relative_to(d).parts[:1] for p in files}  # () for an image of d itself
    splits = _inner_splits(root, classes, paths, labels, inner)
    spec = DatasetSpec(
        str(root),
        "folders" if splits is None else "split-folders",
        classes,
        paths,
        np.array(labels, dtype=np.int64),
        np.array([""] * len(paths), dtype=object) if splits is None else splits,
        ignored,
    )
    spec.note = (
        _nested_note(inner) if splits is None else "the split from the folders inside each class (<class>/train/)"
    )
    return spec


def _inner_splits(root: Path, classes, paths, labels, inner: dict[str, set[tuple]]) -> np.ndarray | None:
    """The split of each image where every class folder keeps its images in split-named folders of its
    own (daisy/train/, daisy/test/: the split folders inside the classes, as some downloads are), else None.
    Every class then needs training images, as with train/<class>/."""
    named = {s: split_of(s) for subs in inner.values() for part in subs for s in part}
    if not inner or () in set().union(*inner.values()) or None in named.values() or "train" not in named.values():
        return None
    splits = np.array([named[Path(p).relative_to(root / classes[y]).parts[0]] for p, y in zip(paths, labels)], object)
    trained = set(np.asarray(labels)[splits == "train"].tolist())
    if empty := [c for i, c in enumerate(classes) if i not in trained]:
        raise UserError(
            f"class(es) {', '.join(map(repr, empty))} have no training images: the other classes keep theirs in "
            f"<class>/train/; add a {empty[0]}/train/ folder of images"
        )
    return splits


def _nested_note(inner: dict[str, set[tuple]]) -> str:
    """Said when every class folder keeps its images in folders of its own, two or more in one class
    at least (animals/mammals/{cat,dog}/ beside animals/birds/owl/, photos/cat/{2023,2024}/): the
    classes are the top folders, and a user who meant the inner ones as classes learns it before
    training. One folder in each class (cat/images/) is a download's plain layout: nothing said."""
    if not inner or any(() in subs for subs in inner.values()) or all(len(subs) < 2 for subs in inner.values()):
        return ""
    names = [s for subs in inner.values() for (s,) in sorted(subs)]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return (
        f"the {len(inner)} classes are the top folders; the {len(names)} folders inside them ({shown}) are read as "
        "part of their class (to train on those instead, put them side by side in one folder)"
    )


def _from_split_folders(root: Path, split_dirs: dict[str, Path]) -> DatasetSpec:
    ignored = [str(p) for p in root.iterdir() if p.is_file() and _visible(p)]
    splits_here = set(split_dirs.values())  # the root as train: its split folders are no classes
    classes = sorted({d.name for sd in split_dirs.values() for d in _class_dirs(sd) if d not in splits_here})
    paths, labels, splits = [], [], []
    for split, sd in split_dirs.items():
        for d in (d for d in _class_dirs(sd) if d not in splits_here):
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

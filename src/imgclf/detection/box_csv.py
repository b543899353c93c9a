"""Boxes in a CSV file, one row a box, as spreadsheets, Kaggle sets and the TF Object Detection API's
tutorials keep them:

    image,x1,y1,x2,y2                      pixels (the shared street scenes' person_boxes.csv)
    filename,width,height,class,xmin,ymin,xmax,ymax   labelImg's xml_to_csv, for the TF OD API
    image_id,bbox                          a COCO [x, y, width, height] in one column (Kaggle's wheat)
    ImageID,XMin,XMax,YMin,YMax,LabelName  Open Images: coordinates in 0..1

Columns are known by their names (any case; spaces, dashes and underscores ignored). Coordinates are
pixels of the upright photo, unless every one in the file lies in 0..1. Without a class column the one
class is named after the file (person_boxes.csv: person; boxes.csv: object). Every photo under the
folder that no row names holds nothing: the person-free photos beside the annotated ones. A row with
empty coordinates names a photo with nothing in it.
"""

from __future__ import annotations

import ast
import csv
import io
import re
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.data.spec import is_image
from imgclf.detection.boxfile import (
    NORM_TOL,
    PIXEL_TOL,
    by_file_name,
    clip_box,
    locate,
    make_photo,
    number,
    read_text,
    relative,
    upright_size,
)

IMAGE = {"image", "imagename", "imagepath", "img", "file", "filename", "filepath", "path", "imageid"}
CORNERS = (
    {"x1", "xmin", "left", "x0"},
    {"y1", "ymin", "top", "y0"},
    {"x2", "xmax", "right"},
    {"y2", "ymax", "bottom"},
)
XYWH = ({"x"}, {"y"}, {"w", "width", "boxwidth"}, {"h", "height", "boxheight"})  # only without corners
BBOX = {"bbox", "box", "boundingbox"}
CLASS = {"label", "class", "classname", "category", "categoryname", "labelname", "name", "object"}
BOX_WORDS = {"box", "boxes", "bbox", "bboxes", "annotation", "annotations", "label", "labels", "train", "val", "test"}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.strip().lower())


def _columns(header: list[str]) -> dict | None:
    """Column indexes of the image, the box (corners, x y w h or one bbox column) and the class; None if
    the header names no image column or no box."""
    keys = [_key(h) for h in header]

    def find(names):
        return next((i for i, k in enumerate(keys) if k in names), None)

    cols = {"image": find(IMAGE), "class": find(CLASS)}
    corners = [find(n) for n in CORNERS]
    xywh = [find(n) for n in XYWH]
    if None not in corners:
        cols["corners"] = corners
    elif None not in xywh:
        cols["xywh"] = xywh
    elif (bbox := find(BBOX)) is not None:
        cols["bbox"] = bbox
    else:
        return None
    return cols if cols["image"] is not None else None


def box_csvs(root: Path) -> list[Path]:
    """CSV files in `root` or a folder below it whose header names an image column and a box."""
    return [p for p in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")) if is_box_csv(p)]


def is_box_csv(path: Path) -> bool:
    """Whether the file's header names an image column and a box (a CSV of boxes, not of labels)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return _columns(header) is not None


def read_csv_boxes(root: Path, files: list[Path], skipped: list):
    """(photos, classes) from every box CSV under `root`, and every image under it as a photo."""
    images = [p for p in files if is_image(p)]
    by_name = by_file_name(images)
    for p in images:
        by_name.setdefault(p.stem, []).append(p)  # Kaggle's image_id: the name without its extension
    rows: dict[Path, list] = {}  # image -> [(where, edges in the file's units, class)]
    classes: list[str] = []
    scale = {}  # image -> True where its file's coordinates are normalised
    for path in box_csvs(root):
        rel, table = relative(path, root), list(csv.reader(io.StringIO(read_text(path, root))))
        cols = _columns(table[0])
        default = "_".join(w for w in re.split(r"[\s_\-]+", path.stem.lower()) if w not in BOX_WORDS) or "object"
        read = []
        for n, row in enumerate(table[1:], 2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{rel} row {n}"
            name = row[cols["image"]].strip() if cols["image"] < len(row) else ""
            image = locate(name, (path.parent, root), by_name)
            if image is None or not is_image(image):
                raise UserError(f"{where}: image {name!r} is missing: add it or delete the row")
            edges = _edges(row, cols, where)
            label = row[cols["class"]].strip() if cols["class"] is not None and cols["class"] < len(row) else default
            if edges is not None and not label:
                raise UserError(f"{where}: no class: name it or delete the row")
            read.append((image, where, edges, label))
        values = [v for _, _, e, _ in read if e is not None for v in e]
        normalised = bool(values) and min(values) >= 0 and max(values) <= 1.0
        for image, where, edges, label in read:
            rows.setdefault(image, [])
            scale[image] = normalised
            if edges is not None:
                rows[image].append((where, edges, label))
                if label not in classes:
                    classes.append(label)
    photos = []
    for image in images:
        if (size := upright_size(image, skipped)) is None:
            continue
        boxes, labels = [], []
        for where, edges, label in rows.get(image, []):
            w, h = (1, 1) if scale[image] else size
            tol = NORM_TOL if scale[image] else PIXEL_TOL
            box = clip_box(edges, w, h, tol, ("x1", "y1", "x2", "y2"), where, "row")
            boxes.append(np.multiply(box, size * 2) if scale[image] else box)
            labels.append(label)
        photos.append(make_photo(image, size, boxes, labels))
    return photos, sorted(classes)


def _edges(row: list[str], cols: dict, where: str) -> list[float] | None:
    """x1, y1, x2, y2 in the file's units; None where the row's box is empty (a photo with nothing)."""

    def cell(i):
        return row[i].strip() if i < len(row) else ""

    if "bbox" in cols:
        text = cell(cols["bbox"])
        if not text:
            return None
        try:
            x, y, w, h = (float(v) for v in ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError):
            raise UserError(f"{where}: bbox {text!r} is not [x, y, width, height]: fix the row") from None
        return [x, y, x + w, y + h]
    idx = cols.get("corners") or cols["xywh"]
    texts = [cell(i) for i in idx]
    if not any(texts):
        return None
    names = ("x1", "y1", "x2", "y2") if "corners" in cols else ("x", "y", "width", "height")
    v = [number(t or None, where, n) for t, n in zip(texts, names)]
    return v if "corners" in cols else [v[0], v[1], v[0] + v[2], v[1] + v[3]]

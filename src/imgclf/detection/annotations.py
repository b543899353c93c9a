"""Read a folder of photos with box annotations (YOLO, Pascal VOC, COCO or a CSV) into one structure.

    box_set = read_boxes("people/")   # photos (path, size, boxes x1 y1 x2 y2 in pixels, labels), classes
    ground_truth = to_coco(box_set)   # what pycocotools evaluates detections against

A malformed annotation is a UserError of one line: the file, its line (YOLO) or object index (VOC,
COCO), the problem and the fix. An unreadable image is not: it is skipped and listed in `skipped`.
Sizes are upright (EXIF orientation applied): read_rgb gives training the upright pixels, and labelling
tools (Ultralytics, CVAT, Roboflow) annotate the photo as a viewer shows it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # stdlib: defusedxml is no dependency, and expat expands no external entities
from pathlib import Path

import numpy as np
import yaml

from imgclf.core.errors import UserError
from imgclf.data.spec import files_under, is_image, made_by_imgclf
from imgclf.detection.box_csv import box_csvs, read_csv_boxes
from imgclf.detection.boxfile import (
    NORM_TOL,
    PIXEL_TOL,
    BoxSet,
    Photo,
    by_file_name,
    clip_box,
    head_bytes,
    locate,
    make_photo,
    mirror_path,
    number,
    pick,
    read_text,
    relative,
    shallowest,
    upright_size,
)
from imgclf.detection.splits import mark_given
from imgclf.settings.config import yaml_problem

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
NAME_FILES = ("classes.txt", "obj.names")  # one class a line: labelImg / Label Studio, CVAT's YOLO export
NOT_LABELS = ("train.txt", "val.txt", "valid.txt", "test.txt", "readme")  # split lists and read-mes, not boxes
COCO_NAMES = ("annotation", "instances", "coco")  # annotations.json, instances_val2017.json, _annotations.coco.json


def detect_format(folder) -> str | None:
    """Which layout `folder` holds: "yolo", "voc", "coco" or "csv"; None for none (a classification folder)."""
    root = Path(folder).expanduser()
    return _detect(root, files_under(root)) if root.is_dir() else None


def read_boxes(folder) -> BoxSet:
    """Every photo under `folder` with its boxes (COCO: every photo its jsons list); raises UserError."""
    root = Path(folder).expanduser().absolute()
    if not root.is_dir():
        raise UserError(f"box data not found: {root} is not a folder")
    files = files_under(root)
    if (fmt := _detect(root, files)) is None:
        raise UserError(
            f"no box annotations in {root}: expected YOLO (images/ + labels/*.txt, data.yaml), "
            "Pascal VOC (Annotations/*.xml), COCO (a .json with images, annotations, categories) or a CSV "
            "(image,x1,y1,x2,y2[,label])"
        )
    box_set = BoxSet([], [], fmt, str(root))
    read = {"yolo": _read_yolo, "voc": _read_voc, "coco": _read_coco, "csv": read_csv_boxes}[fmt]
    box_set.photos, box_set.classes = read(root, files, box_set.skipped)
    box_set.photos.sort(key=lambda p: p.path)
    mark_given(box_set.photos, root, files, shallowest(files, YAML_NAMES) if fmt == "yolo" else None)
    if not any(len(p.boxes) for p in box_set.photos):
        raise UserError(
            f"no boxes in {root}: {len(box_set.photos)} photo(s) read as {fmt}, {len(box_set.skipped)} unreadable, "
            "none with a box: annotate some, or put the annotation files where the format expects them"
        )
    return box_set


def to_coco(box_set: BoxSet, photos: list[Photo] | None = None) -> dict:
    """COCO ground truth of `photos` (default: all of box_set's): image ids 1..N in that order, category
    ids 1..K in box_set.classes order; detections given to pycocotools must use the same ids."""
    photos = box_set.photos if photos is None else photos
    category = {c: i for i, c in enumerate(box_set.classes, 1)}
    images, annotations = [], []
    for image_id, p in enumerate(photos, 1):
        images.append(
            {"id": image_id, "file_name": relative(p.path, box_set.root), "width": p.width, "height": p.height}
        )
        for (x1, y1, x2, y2), label in zip(p.boxes.tolist(), p.labels):
            w, h = x2 - x1, y2 - y1
            ann = {"image_id": image_id, "category_id": category[label], "bbox": [x1, y1, w, h], "area": w * h}
            annotations.append({"id": len(annotations) + 1, **ann, "iscrowd": 0})
    categories = [{"id": i, "name": c, "supercategory": ""} for c, i in category.items()]
    # Some pycocotools versions' loadRes copy "info" and "licenses": give them, empty.
    return {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def _detect(root: Path, files: list[Path]) -> str | None:
    if shallowest(files, YAML_NAMES):
        return "yolo"
    if _coco_files(root):
        return "coco"
    if any(p.suffix.lower() == ".xml" and b"<annotation" in head_bytes(p, 4096) for p in files):
        return "voc"
    texts = {p for p in files if p.suffix.lower() == ".txt"}
    if any(_yolo_pair(p, root, texts) for p in files if is_image(p)):
        return "yolo"
    return "csv" if box_csvs(root) else None


def _coco_files(root: Path) -> list[Path]:
    """COCO jsons in `root` or a folder below (annotations/instances_*.json, Roboflow's train/, valid/), known
    by name or by an "images"/"annotations" key near the start (cheap even on a 400 MB file)."""
    # A run folder trained with --out inside the photos' folder holds JSONs of its own (data_report.json).
    found = sorted(root.glob("*.json")) + [p for p in sorted(root.glob("*/*.json")) if not made_by_imgclf(p.parent)]
    keys = (b'"images"', b'"annotations"')
    return [
        p for p in found if any(n in p.name.lower() for n in COCO_NAMES) or any(k in head_bytes(p, 65536) for k in keys)
    ]


def _yolo_pair(image: Path, root: Path, texts: set[Path]) -> Path | None:
    """The label file of `image`: beside it, or in the labels/ folder mirroring its images/ folder."""
    mirrored = mirror_path(image, root, "images", "labels")
    return next((t.with_suffix(".txt") for t in (image, mirrored) if t and t.with_suffix(".txt") in texts), None)


def _names_file(path: Path, root: Path) -> dict[int, str]:
    """Class names by id from a data.yaml (`names:` a list or {id: name}) or a one-name-a-line file."""
    rel, text = relative(path, root), read_text(path, root)
    names = dict(enumerate(s.strip() for s in text.splitlines() if s.strip()))
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
            names = data.get("names") if isinstance(data, dict) else None
            names = {int(k): str(v) for k, v in (enumerate(names) if isinstance(names, list) else names.items())}
        except (yaml.YAMLError, AttributeError, TypeError, ValueError) as e:
            why = (
                f"not valid YAML: {yaml_problem(e)}"
                if isinstance(e, yaml.YAMLError)
                else "no `names:` list or {id: name}"
            )
            raise UserError(f"{rel}: {why}: give the classes as `names: [class0, class1, ...]`") from None
    twice = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if not names or twice:
        problem = f"class name {twice[0]!r} appears twice" if twice else "no class names"
        raise UserError(f"{rel}: {problem}: list each class once")
    return dict(sorted(names.items()))


def _read_yolo(root: Path, files: list[Path], skipped: list):
    names_path = shallowest(files, YAML_NAMES) or shallowest(files, NAME_FILES)
    if names_path is None:
        raise UserError(f"YOLO labels in {root} but no class names: add data.yaml (names: [...]) or classes.txt")
    names = _names_file(names_path, root)
    texts = {p for p in files if p.suffix.lower() == ".txt" and p.name.lower() not in NAME_FILES}
    images = [p for p in files if is_image(p)]
    pairs = {image: _yolo_pair(image, root, texts) for image in images}
    # A label file in labels/ or among images that nothing pairs with lost its image (split lists aside).
    image_dirs, used = {p.parent for p in images}, set(pairs.values())
    for txt in sorted(texts - used):
        in_labels = "labels" in (part.lower() for part in txt.relative_to(root).parts[:-1])
        if (in_labels or txt.parent in image_dirs) and not any(n in txt.name.lower() for n in NOT_LABELS):
            where = f"{relative(txt, root)}: no image {txt.stem}.jpg, .png, ... beside it or in the matching images/"
            raise UserError(f"{where}: add the image or delete the label file")
    photos = []
    for image, txt in pairs.items():
        boxes, labels = _yolo_lines(txt, root, names, relative(names_path, root)) if txt else ([], [])
        size = upright_size(image, skipped)
        if size is not None:  # normalised -> pixels of the upright photo
            photos.append(make_photo(image, size, [np.multiply(b, size * 2) for b in boxes], labels))
    return photos, list(names.values())


def _yolo_lines(txt: Path, root: Path, names: dict[int, str], names_rel: str):
    boxes, labels = [], []
    for n, line in enumerate(read_text(txt, root).splitlines(), 1):
        fields, where = line.split(), f"{relative(txt, root)} line {n}"
        if not fields:
            continue  # blank lines: harmless, editors add them
        if len(fields) != 5:
            raise UserError(f"{where}: {len(fields)} fields, expected 5 'class cx cy w h': fix or delete the line")
        cls = number(fields[0], where, "class id")
        if not cls.is_integer() or int(cls) not in names:
            ids = ", ".join(map(str, names))
            raise UserError(f"{where}: unknown class {fields[0]} ({names_rel} has {ids}): fix it or add the class")
        cx, cy, w, h = (number(f, where, what) for f, what in zip(fields[1:], ("cx", "cy", "w", "h")))
        edges = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        boxes.append(clip_box(edges, 1, 1, NORM_TOL, ("x1", "y1", "x2", "y2"), where, "line"))
        labels.append(names[int(cls)])
    return boxes, labels


def _read_voc(root: Path, files: list[Path], skipped: list):
    names_path = shallowest(files, ("classes.txt",))  # optional: declares the classes and their order
    declared = list(_names_file(names_path, root).values()) if names_path else None
    images = [p for p in files if is_image(p)]
    by_name, by_stem = {}, {}
    for p in images:
        by_name.setdefault(p.name, []).append(p)
        by_stem.setdefault(p.stem, []).append(p)
    photos = {}  # image -> Photo, None when unreadable
    for xml in (p for p in files if p.suffix.lower() == ".xml"):
        rel = relative(xml, root)
        try:
            doc = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as e:
            raise UserError(f"{rel}: unreadable XML ({e}): fix or re-export the file") from None
        if doc.tag != "annotation":
            raise UserError(f"{rel}: not Pascal VOC (<{doc.tag}>, not <annotation>): re-export it or remove it")
        # <filename> first, else the xml's own name; in its folder, the mirrored JPEGImages/ or anywhere (if unique).
        filename = Path((doc.findtext("filename") or "").strip() or xml.stem).name
        near = [xml.parent] + [
            m.parent for f in ("JPEGImages", "images") if (m := mirror_path(xml, root, "annotations", f))
        ]
        image = pick(by_name.get(filename, []), near) or pick(by_stem.get(xml.stem, []), near)
        if image is None or image in photos:
            problem = (
                f"its image {filename} is missing" if image is None else f"{relative(image, root)} is annotated twice"
            )
            raise UserError(f"{rel}: {problem}: add the image or delete the file")
        size = upright_size(image, skipped)
        photos[image] = size and make_photo(image, size, *_voc_objects(doc, rel, size, declared))
    # An image without xml is a photo with nothing in it, where it sits among annotated ones (not, say, in the
    # devkit's SegmentationClass/ masks).
    folders = {image.parent for image in photos}
    for image in images:
        if image not in photos and image.parent in folders:
            photos[image] = (size := upright_size(image, skipped)) and make_photo(image, size, [], [])
    classes = declared if declared is not None else sorted({n for p in photos.values() if p for n in p.labels})
    return [p for p in photos.values() if p], classes


def _voc_objects(doc, rel: str, size, declared: list[str] | None):
    boxes, labels = [], []
    for i, obj in enumerate(doc.findall("object"), 1):
        where, name = f"{rel} object {i}", (obj.findtext("name") or "").strip()
        if not name or (declared is not None and name not in declared):
            problem = f"unknown class {name!r}, not in classes.txt" if name else "no <name>"
            raise UserError(f"{where}: {problem}: fix the name or add it to classes.txt")
        corners = [number(obj.findtext(f"bndbox/{k}"), where, f"<{k}>") for k in ("xmin", "ymin", "xmax", "ymax")]
        # VOC counts pixels from 1, and xmax is the last pixel inside: as 0-based pixel edges the box runs from
        # xmin - 1 to xmax (xmin = xmax is one pixel). A tool writing 0-based xmin lands in PIXEL_TOL, clipped to 0.
        edges = [corners[0] - 1, corners[1] - 1, corners[2], corners[3]]
        boxes.append(clip_box(edges, *size, PIXEL_TOL, ("xmin - 1", "ymin - 1", "xmax", "ymax"), where, "object"))
        labels.append(name)
    return boxes, labels


def _read_coco(root: Path, files: list[Path], skipped: list):
    by_name = by_file_name(files)
    names, photos = {}, {}  # category id -> name; image path -> Photo
    for jp in _coco_files(root):
        rel = relative(jp, root)
        try:
            data = json.loads(jp.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UserError(f"{rel}: unreadable JSON ({e}): fix or re-export the file") from None
        keys = ("images", "annotations", "categories")
        missing = [k for k in keys if not isinstance(data, dict) or not isinstance(data.get(k), list)]
        if missing:
            raise UserError(
                f"{rel}: not COCO, no {' or '.join(missing)} list: re-export it as COCO ({', '.join(keys)})"
            )
        _coco_categories(data, rel, names)
        sizes = {}  # image id -> (path, upright size or None: unreadable)
        for i, entry in enumerate(data["images"]):
            name = str(entry.get("file_name") or "") if isinstance(entry, dict) else ""
            if not name or "id" not in entry:
                raise UserError(f"{rel} images[{i}]: needs an 'id' and a 'file_name': fix the entry")
            if not (path := locate(name, (jp.parent, jp.parent / "images", root, root / "images"), by_name)):
                raise UserError(f"{rel} images[{i}]: image {name} is missing: add it or remove the entry")
            if size := upright_size(path, skipped):
                photos.setdefault(str(path), make_photo(path, size, [], []))
            sizes[entry["id"]] = (str(path), size)
        for i, a in enumerate(data["annotations"]):
            where = f"{rel} annotations[{i}]"
            if not isinstance(a, dict) or a.get("iscrowd"):
                continue  # a crowd region boxes a group as one, no single object (COCOeval ignores them too)
            if a.get("image_id") not in sizes:
                raise UserError(f"{where}: image_id {a.get('image_id')!r} is not in 'images': fix it or add the image")
            if a.get("category_id") not in names:
                raise UserError(f"{where}: unknown class, category_id {a.get('category_id')!r}: fix it or declare it")
            bbox = a.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise UserError(f"{where}: bbox {bbox!r} is not [x, y, width, height]: fix the annotation")
            x, y, w, h = (number(v, where, f"bbox {k}") for v, k in zip(bbox, ("x", "y", "width", "height")))
            path, size = sizes[a["image_id"]]
            if size is not None:  # else the image is unreadable, skipped
                names4 = ("x", "y", "x + width", "y + height")
                box = clip_box([x, y, x + w, y + h], *size, PIXEL_TOL, names4, where, "annotation")
                photo = photos[path]
                photo.boxes = np.concatenate([photo.boxes, np.asarray([box], dtype=np.float32)])
                photo.labels.append(names[a["category_id"]])
    return list(photos.values()), [names[k] for k in sorted(names)]


def _coco_categories(data: dict, rel: str, names: dict) -> None:
    """Add the json's categories to `names` (id -> name): one id a name, the same in every json."""
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    supers = {c.get("supercategory") for c in data["categories"] if isinstance(c, dict)}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise UserError(f"{rel} categories[{i}]: needs an 'id' and a 'name': fix the entry")
        cid, name = c["id"], str(c["name"])
        if name in supers and cid not in used:
            continue  # Roboflow declares the dataset as a category, the others' supercategory: it is no class
        if names.get(cid, name) != name or (name in names.values() and cid not in names):
            raise UserError(f"{rel} categories[{i}]: id {cid} {name!r} clashes with another category: one id a name")
        names[cid] = name

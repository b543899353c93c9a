"""Box annotations in YOLO, Pascal VOC and COCO read into one BoxSet: the same photos give the same boxes in
every format, and each malformed file is refused with one line naming the file and the problem."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from imgclf.core.errors import UserError
from imgclf.detection.annotations import detect_format, read_boxes, to_coco

CLASSES = ["bike", "person"]
# name -> ((width, height), [(class, (x1, y1, x2, y2) in 0-based pixel edges)]); c.png has nobody in it
PHOTOS = {
    "a.png": ((64, 48), [("person", (10, 5, 30, 40)), ("bike", (0, 0, 64, 48))]),
    "b.jpg": ((80, 60), [("person", (20, 10, 70, 55))]),
    "c.png": ((50, 40), []),
}


def _image(path: Path, size, exif=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path, **({"exif": exif} if exif else {}))


def _yolo_line(cls: str, box, size) -> str:
    (x1, y1, x2, y2), (w, h) = box, size
    return f"{CLASSES.index(cls)} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"


def write_yolo(root: Path, split: bool = False) -> Path:
    """images/ + labels/ (with train/ and val/ below both when `split`), names in data.yaml."""
    for i, (name, (size, boxes)) in enumerate(PHOTOS.items()):
        sub = ("train" if i < 2 else "val") if split else ""
        _image(root / "images" / sub / name, size)
        label = root / "labels" / sub / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(_yolo_line(c, b, size) for c, b in boxes))  # c.txt: empty, no boxes
    names = dict(enumerate(CLASSES)) if split else CLASSES
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": names}))
    return root


def _voc_object(cls: str, box) -> str:
    x1, y1, x2, y2 = box  # VOC is 1-based: the first pixel inside is x1 + 1, the last x2
    coords = f"<xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
    return f"<object><name>{cls}</name><difficult>0</difficult><bndbox>{coords}</bndbox></object>"


def write_voc(root: Path) -> Path:
    """JPEGImages/ + Annotations/*.xml; c.png has no xml."""
    (root / "Annotations").mkdir(parents=True)
    for name, (size, boxes) in PHOTOS.items():
        _image(root / "JPEGImages" / name, size)
        if boxes:
            head = f"<filename>{name}</filename><size><width>{size[0]}</width><height>{size[1]}</height></size>"
            body = "".join(_voc_object(c, b) for c, b in boxes)
            (root / "Annotations" / f"{Path(name).stem}.xml").write_text(f"<annotation>{head}{body}</annotation>")
    return root


def write_coco(root: Path) -> Path:
    """annotations.json beside images/ (file_name relative to images/), one crowd box that must be ignored."""
    images, annotations = [], []
    for image_id, (name, (size, boxes)) in enumerate(PHOTOS.items(), 1):
        _image(root / "images" / name, size)
        images.append({"id": image_id, "file_name": name, "width": size[0], "height": size[1]})
        for cls, (x1, y1, x2, y2) in boxes + [("person", (1, 1, 9, 9))] * (image_id == 2):
            bbox = [x1, y1, x2 - x1, y2 - y1]
            ann = {"image_id": image_id, "category_id": CLASSES.index(cls) + 1, "bbox": bbox, "area": bbox[2] * bbox[3]}
            annotations.append({"id": len(annotations) + 1, **ann, "iscrowd": int((x1, y1) == (1, 1))})
    categories = [{"id": i, "name": c, "supercategory": "vehicles"} for i, c in enumerate(CLASSES, 1)]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def summary(box_set) -> dict:
    """name -> (width, height, sorted (label, box)): what must agree between formats."""
    out = {}
    for p in box_set.photos:
        boxes = sorted(zip(p.labels, np.round(p.boxes, 3).tolist()))
        out[Path(p.path).name] = (p.width, p.height, boxes)
    return out


EXPECTED = {
    name: (*size, sorted((c, [float(v) for v in b]) for c, b in boxes)) for name, (size, boxes) in PHOTOS.items()
}
WRITERS = {"yolo": write_yolo, "voc": write_voc, "coco": write_coco}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_each_format_reads_to_the_same_boxes(tmp_path, fmt):
    root = WRITERS[fmt](tmp_path / fmt)
    assert detect_format(root) == fmt
    box_set = read_boxes(root)
    assert (box_set.format, box_set.classes, box_set.root, box_set.skipped) == (fmt, CLASSES, str(root), [])
    assert summary(box_set) == EXPECTED
    photo = box_set.photos[0]
    assert Path(photo.path).is_absolute() and photo.boxes.dtype == np.float32 and photo.boxes.shape == (2, 4)
    assert box_set.photos[2].boxes.shape == (0, 4) and box_set.photos[2].labels == []  # c.png: nobody in it


def test_yolo_split_folders_and_dict_names(tmp_path):
    box_set = read_boxes(write_yolo(tmp_path, split=True))
    assert box_set.classes == CLASSES and summary(box_set) == EXPECTED


def test_yolo_side_by_side_with_classes_txt_and_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x20, shown turned by 90 degrees: 20 wide, 40 high
    _image(tmp_path / "p.jpg", (40, 20), exif=exif.tobytes())
    (tmp_path / "p.txt").write_text("1 0.5 0.5 0.5 0.25\n\n")
    (tmp_path / "classes.txt").write_text("bike\nperson\n")
    (tmp_path / "README.txt").write_text("exported by hand")  # not a label file
    box_set = read_boxes(tmp_path)
    assert box_set.classes == CLASSES and box_set.format == "yolo"
    (photo,) = box_set.photos
    assert (photo.width, photo.height, photo.labels) == (20, 40, ["person"])
    np.testing.assert_allclose(photo.boxes, [[5, 15, 15, 25]])


def test_rounding_within_tolerance_is_clipped(tmp_path):
    root = write_yolo(tmp_path)
    (root / "labels" / "c.txt").write_text("1 0.5 0.5 1.0016 0.5\n")  # x2 = 1.0008, inside the 0.001 slack
    photo = read_boxes(root).photos[2]
    np.testing.assert_allclose(photo.boxes, [[0, 10, 50, 30]], atol=1e-4)


def test_broken_image_is_skipped_and_reported(tmp_path):
    root = write_yolo(tmp_path)
    (root / "images" / "d.jpg").write_bytes(b"not an image at all")
    box_set = read_boxes(root)
    assert summary(box_set) == EXPECTED
    ((path, reason),) = box_set.skipped
    assert path == str(root / "images" / "d.jpg") and "not an image" in reason


def test_voc_classes_are_the_names_seen_unless_declared(tmp_path):
    root = write_voc(tmp_path)
    xml = root / "Annotations" / "b.xml"
    xml.write_text(xml.read_text().replace("person", "car"))
    assert read_boxes(root).classes == ["bike", "car", "person"]
    (root / "classes.txt").write_text("person\nbike\n")
    with pytest.raises(UserError, match=r"Annotations/b\.xml object 1: unknown class 'car', not in classes\.txt"):
        read_boxes(root)


def test_roboflow_dataset_category_is_no_class(tmp_path):
    root = write_coco(tmp_path)
    data = json.loads((root / "annotations.json").read_text())
    data["categories"].insert(0, {"id": 0, "name": "vehicles", "supercategory": "none"})
    (root / "annotations.json").write_text(json.dumps(data))
    assert read_boxes(root).classes == CLASSES


def test_detect_format_none_for_a_classification_folder(tmp_path):
    for cls in ("cat", "dog"):
        _image(tmp_path / cls / "x.png", (8, 8))
    assert detect_format(tmp_path) is None and detect_format(tmp_path / "missing") is None
    with pytest.raises(UserError, match="no box annotations in"):
        read_boxes(tmp_path)
    # A run trained with --out inside the photos' folder: its data_report.json ("images": ...) is no
    # COCO file (the next `imgclf train` on the folder tried to train a detector on it and failed).
    run = tmp_path / "run1"
    run.mkdir()
    (run / "splits.csv").write_text("path,label,split\n")
    (run / "data_report.json").write_text(json.dumps({"images": 2, "classes": {"cat": 1, "dog": 1}}))
    assert detect_format(tmp_path) is None


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# case -> (format, file to edit, old text, new text); MESSAGES: what the refusal must say
YOLO_A, VOC_A, COCO_J = "labels/a.txt", "Annotations/a.xml", "annotations.json"
LINE2, BBOX = _yolo_line("bike", (0, 0, 64, 48), (64, 48)), '"bbox": [20, 10, 50, 45]'
EDITS = {
    "yolo outside": ("yolo", YOLO_A, LINE2, "0 0.9 0.5 0.4 0.2"),
    "yolo negative": ("yolo", YOLO_A, LINE2, "0 0.5 0.5 -0.1 0.2"),
    "yolo unknown class": ("yolo", YOLO_A, LINE2, "7 0.5 0.5 0.1 0.1"),
    "yolo bad number": ("yolo", YOLO_A, LINE2, "0 0.5 abc 0.1 0.1"),
    "yolo nan": ("yolo", YOLO_A, LINE2, "0 nan 0.5 0.1 0.1"),
    "yolo field count": ("yolo", YOLO_A, LINE2, "0 0.5 0.5 0.1"),
    "voc outside": ("voc", VOC_A, "<xmax>64</xmax>", "<xmax>70</xmax>"),
    "voc negative": ("voc", VOC_A, "<xmin>11</xmin>", "<xmin>40</xmin>"),
    "voc bad number": ("voc", VOC_A, "<ymin>6</ymin>", "<ymin>six</ymin>"),
    "voc bad xml": ("voc", VOC_A, "</annotation>", ""),
    "coco outside": ("coco", COCO_J, BBOX, '"bbox": [40, 10, 50, 45]'),
    "coco negative": ("coco", COCO_J, BBOX, '"bbox": [20, 10, 0, 45]'),
    "coco unknown class": ("coco", COCO_J, '"category_id": 2', '"category_id": 9'),
    "coco nan": ("coco", COCO_J, BBOX, '"bbox": [20, NaN, 50, 45]'),
    "coco missing image": ("coco", COCO_J, '"file_name": "c.png"', '"file_name": "zzz.png"'),
    "coco bad json": ("coco", COCO_J, '"categories"', "categories"),
    "coco missing keys": ("coco", COCO_J, '"categories"', '"kategorien"'),
}
MESSAGES = {
    "yolo outside": r"labels/a\.txt line 2: box outside the image \(x2 = 1\.1 > 1\)",
    "yolo negative": r"labels/a\.txt line 2: box has zero or negative size \(width = -0\.1",
    "yolo unknown class": r"labels/a\.txt line 2: unknown class 7 \(data\.yaml has 0, 1\)",
    "yolo bad number": r"labels/a\.txt line 2: cy 'abc' is not a number",
    "yolo nan": r"labels/a\.txt line 2: cx is nan, not a finite number",
    "yolo field count": r"labels/a\.txt line 2: 4 fields, expected 5",
    "voc outside": r"Annotations/a\.xml object 2: box outside the image \(xmax = 70 > 64\)",
    "voc negative": r"Annotations/a\.xml object 1: box has zero or negative size \(width = -9",  # 1-based: 30 - 40 + 1
    "voc bad number": r"Annotations/a\.xml object 1: <ymin> 'six' is not a number",
    "voc bad xml": r"Annotations/a\.xml: unreadable XML",
    "coco outside": r"annotations\.json annotations\[2\]: box outside the image \(x \+ width = 90 > 80\)",
    "coco negative": r"annotations\.json annotations\[2\]: box has zero or negative size \(width = 0",
    "coco unknown class": r"annotations\.json annotations\[0\]: unknown class, category_id 9",
    "coco nan": r"annotations\.json annotations\[2\]: bbox y is nan, not a finite number",
    "coco missing image": r"annotations\.json images\[2\]: image zzz\.png is missing",
    "coco bad json": r"annotations\.json: unreadable JSON",
    "coco missing keys": r"annotations\.json: not COCO, no categories list",
}


@pytest.mark.parametrize("case", list(EDITS))
def test_refusals_name_the_file_and_the_problem(tmp_path, case):
    fmt, rel, old, new = EDITS[case]
    root = WRITERS[fmt](tmp_path)
    _edit(root / rel, old, new)
    with pytest.raises(UserError, match=MESSAGES[case]) as e:
        read_boxes(root)
    assert "\n" not in str(e.value) and str(e.value).count(": ") >= 2  # one line: where: problem: fix


def test_label_or_annotation_without_its_image_is_refused(tmp_path):
    root = write_yolo(tmp_path)
    (root / "labels" / "zzz.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UserError, match=r"labels/zzz\.txt: no image zzz\.jpg"):
        read_boxes(root)
    root = write_voc(tmp_path / "voc")
    xml = (root / "Annotations" / "a.xml").read_text().replace("<filename>a.png", "<filename>zzz.png")
    (root / "Annotations" / "zzz.xml").write_text(xml)  # neither its <filename> nor its own name is an image
    with pytest.raises(UserError, match=r"Annotations/zzz\.xml: its image zzz\.png is missing"):
        read_boxes(root)


def test_voc_finds_a_renamed_image_by_the_xml_name(tmp_path):
    root = write_voc(tmp_path)
    _edit(root / "Annotations" / "a.xml", "<filename>a.png", "<filename>IMG_0001.png")
    assert summary(read_boxes(root)) == EXPECTED


def test_a_set_without_any_box_is_refused(tmp_path):
    root = write_yolo(tmp_path)
    for txt in (root / "labels").glob("*.txt"):
        txt.write_text("")
    with pytest.raises(UserError, match=r"no boxes in .*3 photo\(s\) read as yolo"):
        read_boxes(root)


def test_to_coco_round_trips_through_pycocotools(tmp_path):
    box_set = read_boxes(write_voc(tmp_path / "voc"))
    d = to_coco(box_set)
    coco = COCO()
    coco.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    assert coco.getImgIds() == [1, 2, 3] and len(coco.getAnnIds()) == 3
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    assert (ann["category_id"], ann["bbox"], ann["area"], ann["iscrowd"]) == (2, [20, 10, 50, 45], 2250, 0)
    # The ground truth given back as detections scores a perfect mAP.
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in d["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(detections), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    # ...and written as a json beside the same images, it reads back as the same set.
    shutil.copytree(tmp_path / "voc" / "JPEGImages", tmp_path / "coco" / "JPEGImages")
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(d))
    again = read_boxes(tmp_path / "coco")
    assert again.format == "coco" and again.classes == CLASSES and summary(again) == EXPECTED


def test_to_coco_of_some_photos(tmp_path):
    box_set = read_boxes(write_yolo(tmp_path))
    d = to_coco(box_set, box_set.photos[1:])
    assert [i["file_name"] for i in d["images"]] == ["images/b.jpg", "images/c.png"]
    assert [a["image_id"] for a in d["annotations"]] == [1]


def test_voc_devkit_masks_and_split_lists_are_no_photos(tmp_path):
    root = write_voc(tmp_path)
    _image(root / "SegmentationClass" / "a.png", (64, 48))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    assert summary(read_boxes(root)) == EXPECTED


def test_coco_split_files_are_merged(tmp_path):
    # Roboflow's export: train/ and valid/, each with its images and its _annotations.coco.json.
    whole = json.loads((write_coco(tmp_path / "one") / "annotations.json").read_text())
    for split, ids in (("train", {1, 2}), ("valid", {3})):
        images = [i for i in whole["images"] if i["id"] in ids]
        annotations = [a for a in whole["annotations"] if a["image_id"] in ids]
        (tmp_path / "two" / split).mkdir(parents=True)
        data = {**whole, "images": images, "annotations": annotations}
        (tmp_path / "two" / split / "_annotations.coco.json").write_text(json.dumps(data))
        for i in images:
            shutil.copy(tmp_path / "one" / "images" / i["file_name"], tmp_path / "two" / split)
    box_set = read_boxes(tmp_path / "two")
    assert box_set.format == "coco" and box_set.classes == CLASSES
    assert summary(box_set) == EXPECTED

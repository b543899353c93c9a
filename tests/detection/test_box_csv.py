"""Boxes in a CSV read like the other formats: the columns people name them by (pixels, labelImg's
TF OD API CSV, Open Images' 0..1, a COCO bbox column), the photos no row names as photos with
nothing in them, a one-line refusal of a bad row, and `--task` choosing between boxes and classes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import cli
from test_annotations import CLASSES, EXPECTED, PHOTOS, _image, summary

from imgclf.core.errors import UserError
from imgclf.detection.annotations import detect_format, read_boxes


def write_csv(root: Path, header: list[str], row, name: str = "boxes.csv") -> Path:
    """The PHOTOS under images/, one CSV row a box made by `row(name, size, cls, box)`; c.png, with nobody
    in it, is in no row."""
    rows = []
    for image, (size, boxes) in PHOTOS.items():
        _image(root / "images" / image, size)
        rows += [row(image, size, cls, box) for cls, box in boxes]
    with open(root / name, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return root


FORMATS = {
    "pixels": (["image", "x1", "y1", "x2", "y2", "label"], lambda n, s, c, b: [f"images/{n}", *b, c]),
    "labelimg": (
        ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"],
        lambda n, s, c, b: [n, *s, c, *b],  # a bare file name, found under images/
    ),
    "open-images": (
        ["ImageID", "Source", "LabelName", "XMin", "XMax", "YMin", "YMax"],
        lambda n, s, c, b: [Path(n).stem, "human", c, b[0] / s[0], b[2] / s[0], b[1] / s[1], b[3] / s[1]],
    ),
    "coco-bbox": (
        ["image_id", "bbox", "class"],
        lambda n, s, c, b: [n, str([b[0], b[1], b[2] - b[0], b[3] - b[1]]), c],
    ),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_csv_layout_reads_to_the_same_boxes(tmp_path, fmt):
    root = write_csv(tmp_path / fmt, *FORMATS[fmt])
    assert detect_format(root) == "csv"
    box_set = read_boxes(root)
    assert (box_set.format, box_set.classes, box_set.skipped) == ("csv", CLASSES, [])
    assert summary(box_set) == EXPECTED  # c.png: in no row, a photo with nothing in it


def test_without_a_class_column_the_file_names_the_class(tmp_path):
    header, row = ["image", "x1", "y1", "x2", "y2"], lambda n, s, c, b: [f"images/{n}", *b]
    assert read_boxes(write_csv(tmp_path / "a", header, row, "person_boxes.csv")).classes == ["person"]
    assert read_boxes(write_csv(tmp_path / "b", header, row, "boxes.csv")).classes == ["object"]


def test_a_bad_row_is_one_line_naming_it(tmp_path):
    header, row = FORMATS["pixels"]
    root = write_csv(tmp_path / "csv", header, row)
    with open(root / "boxes.csv", "a", newline="") as f:
        csv.writer(f).writerow(["images/b.jpg", 10, 10, 90, 20, "person"])  # b.jpg is 80 wide
    with pytest.raises(UserError, match=r"boxes.csv row 5: box outside the image \(x2 = 90 > 80\)"):
        read_boxes(root)
    with open(root / "boxes.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, ["images/gone.jpg", 1, 1, 5, 5, "person"]])
    with pytest.raises(
        UserError, match=r"boxes.csv row 2: image 'images/gone.jpg' is missing: add it or delete the row"
    ):
        read_boxes(root)


def test_task_chooses_between_classes_and_boxes(tmp_path):
    from imgclf.api.making import _detector_data

    # Class folders with a CSV of boxes beside them (the shared street scenes' layout).
    root = tmp_path / "street"
    for cls, n in (("person", 3), ("no-person", 3)):
        for i in range(n):
            _image(root / cls / f"{i}.png", (64, 48))
    with open(root / "person_boxes.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "x1", "y1", "x2", "y2"], ["person/0.png", 5, 5, 30, 40]])
    assert _detector_data(root, None) == root  # auto: the boxes win
    assert _detector_data(root, None, "classify") is None
    # The CSV itself as DATA: read as labels it failed on its columns ("cannot tell which column ...").
    p = cli("train", root / "person_boxes.csv", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    said = f"person_boxes.csv is a CSV of boxes, not of labels: give the folder that holds it and its photos ({root})"
    assert said in p.stderr
    # A labels CSV (Kaggle's id,label) is no box file; --task detect there is one line.
    (root / "person_boxes.csv").write_text("id,label\n0,person\n")
    assert detect_format(root) is None
    p = cli("train", root, "--task", "detect", check=False)
    assert p.returncode == 2 and "--task detect: no box annotations in" in p.stderr and "Traceback" not in p.stderr


def test_check_describes_a_box_folder_as_training_will_read_it(tmp_path):
    import json

    header, row = FORMATS["pixels"]
    root = write_csv(tmp_path / "csv", header, row)
    with open(root / "boxes.csv", "a", newline="") as f:
        csv.writer(f).writerow(["images/b.jpg", 40, 40, 42, 44, "person"])  # 4 px of b.jpg's 60: too small to frame
    p = cli("check", root, "--json", tmp_path / "found.json")
    assert "csv boxes" in p.stdout and "3 photos, 1 with nothing in them" in p.stdout and "Traceback" not in p.stderr
    found = json.loads((tmp_path / "found.json").read_text())
    assert found["classes"] == {
        "bike": {"photos": 1, "boxes": 1, "too_small": 0},
        "person": {"photos": 2, "boxes": 3, "too_small": 1},
    }
    assert "needs at least 8" in found["split"]["error"]  # 3 photos: what training would say
    p = cli("check", root, "--labels", check=False)
    assert p.returncode == 2 and "holds box annotations" in p.stderr and "Traceback" not in p.stderr

"""The rules a detector's fine-tuning follows, without training: its train/val/test split (the split
the user's files give is kept whole, only what is missing is carved from the training photos), the
presence threshold its validation photos choose, and which anchors learn from which boxes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_annotations import CLASSES, write_coco, write_voc, write_yolo

from imgclf.core.errors import UserError
from imgclf.detection.annotations import Photo, read_boxes
from imgclf.detection.splits import split


def splits_by_name(root: Path) -> dict[str, str | None]:
    return {Path(p.path).name: p.split for p in read_boxes(root).photos}


def test_yolo_folders_name_the_split(tmp_path):
    # Ultralytics' images/train + images/val (data.yaml lists train only: the folders still say val).
    assert splits_by_name(write_yolo(tmp_path / "u", split=True)) == {
        "a.png": "train",
        "b.jpg": "train",
        "c.png": "val",
    }
    # Roboflow's export: train/, valid/, test/, each with images/ and labels/.
    flat = write_yolo(tmp_path / "flat")
    rf = tmp_path / "rf"
    for name, folder in (("a", "train"), ("b", "valid"), ("c", "test")):
        image = next((flat / "images").glob(f"{name}.*"))
        for sub, src in (("images", image), ("labels", flat / "labels" / f"{name}.txt")):
            (rf / folder / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, rf / folder / sub)
    (rf / "data.yaml").write_text(yaml.safe_dump({"train": "../train/images", "names": CLASSES}))  # Roboflow's paths
    assert splits_by_name(rf) == {"a.png": "train", "b.jpg": "val", "c.png": "test"}


def test_yaml_lists_name_the_split_and_a_val_that_is_train_is_ignored(tmp_path):
    root = write_yolo(tmp_path / "y")
    (root / "train.txt").write_text("./images/a.png\n./images/b.jpg\n")
    (root / "val.txt").write_text("./images/c.png\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train.txt", "val": "val.txt", "names": CLASSES}))
    assert splits_by_name(root) == {"a.png": "train", "b.jpg": "train", "c.png": "val"}
    # A tutorial's data.yaml validating on the training images: no photo is in two splits.
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images", "val": "images", "names": CLASSES}))
    assert set(splits_by_name(root).values()) == {None}


def test_voc_lists_and_coco_folders_name_the_split(tmp_path):
    root = write_voc(tmp_path / "voc")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    (root / "ImageSets" / "Main" / "person_val.txt").write_text("b  1\n")  # a per-class list: not a split
    assert splits_by_name(root) == {"a.png": "train", "b.jpg": "val", "c.png": None}
    # COCO as downloaded: instances_*.json beside train2017/ and val2017/.
    coco = write_coco(tmp_path / "coco")
    whole = json.loads((coco / "annotations.json").read_text())
    (coco / "annotations.json").unlink()
    for folder, ids in (("train2017", {1, 2}), ("val2017", {3})):
        images = [i for i in whole["images"] if i["id"] in ids]
        (coco / folder).mkdir()
        for i in images:
            shutil.move(coco / "images" / i["file_name"], coco / folder)
        annotations = [a for a in whole["annotations"] if a["image_id"] in ids]
        data = {**whole, "images": images, "annotations": annotations}
        (coco / f"instances_{folder}.json").write_text(json.dumps(data))
    assert splits_by_name(coco) == {"a.png": "train", "b.jpg": "train", "c.png": "val"}


def photos(n: int, given: dict[int, str] | None = None) -> list[Photo]:
    given = given or {}
    return [Photo(f"/p/{i:03d}.jpg", 64, 48, np.zeros((0, 4), np.float32), [], given.get(i)) for i in range(n)]


def test_given_splits_stay_whole_and_only_what_is_missing_is_carved():
    # No split given: 70/15/15 of all, as before.
    parts, how = split(photos(40), seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [28, 6, 6] and how == "70/15/15, seed 0"
    # Val given without test (Ultralytics' images/val): it is the test split, scored once, where
    # Ultralytics reports; validation is carved from the training photos.
    given = {i: "val" for i in range(30, 40)} | {i: "train" for i in range(30)}
    parts, how = split(photos(40, given), seed=0)
    assert {p.path for p in parts["test"]} == {f"/p/{i:03d}.jpg" for i in range(30, 40)}
    assert len(parts["val"]) == 6 and all(p.split == "train" for p in parts["val"] + parts["train"])
    assert how == "your val split is the test split (no test split given); val carved from train, seed 0"
    # Every photo in val/: nothing is left to train on, which is said in one line.
    with pytest.raises(UserError, match="no photos left to train on"):
        split(photos(8, {i: "val" for i in range(8)}), seed=0)
    # Val and test given: nothing carved; the same photos whatever the seed.
    given = {i: "test" for i in range(5)} | {i: "val" for i in range(5, 9)}
    a, how = split(photos(40, given), seed=0)
    b, _ = split(photos(40, given), seed=1)
    assert [len(a[k]) for k in ("train", "val", "test")] == [31, 4, 5] and how == "your val and test splits kept"
    assert {k: [p.path for p in v] for k, v in a.items() if k != "train"} == {
        k: [p.path for p in v] for k, v in b.items() if k != "train"
    }


def test_a_split_that_leaves_nothing_to_train_on_is_one_line():
    with pytest.raises(UserError, match="no photos left to train on"):
        split(photos(10, {i: "val" if i < 5 else "test" for i in range(10)}), seed=0)
    with pytest.raises(UserError, match="needs at least 8"):
        split(photos(5), seed=0)


def test_presence_threshold_sits_between_photos_and_keeps_the_prior_without_evidence():
    from imgclf.detection.metrics import presence

    # Three photos with a person, three without: 0.3 and 0.5 tell them apart, the threshold is halfway.
    scores, present = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9], [0, 0, 0, 1, 1, 1]
    got = presence(scores, present)
    assert got["threshold"] == pytest.approx(0.4) and got["balanced_accuracy"] == 1.0
    # A prior the best beats by more than one photo moves; one it beats by one photo or less stays.
    assert presence(scores, present, prior=0.05)["threshold"] == pytest.approx(0.4)  # 0.5 of balanced accuracy short
    kept = presence(scores, present, prior=0.2)  # one person-free photo (0.3) over it: 1/6 short
    assert (
        kept["threshold"] == 0.2 and kept["kept_prior"] and kept["balanced_accuracy"] == pytest.approx(0.8333, abs=1e-4)
    )
    assert presence([0.2, 0.9], [1, 1], prior=0.2)["threshold"] is None  # one kind of photo: nothing to choose


def test_boxes_too_small_for_the_input_are_ignored_not_taught():
    """A person under ~10 % of the photo's height claims no anchor (it was forced onto one whose box it
    barely overlaps, and fine-tuning on the street scenes lost validation AP); the anchors holding it
    count neither as person nor as background, so the loss does not move with their scores."""
    import torch

    from imgclf.detection.finetune import IGNORE, loss, match
    from imgclf.models.person import anchors as A

    anchors = torch.from_numpy(A.anchors())
    big, tiny = [0.3, 0.2, 0.6, 0.9], [0.80, 0.50, 0.81, 0.53]  # normalised x1 y1 x2 y2; tiny: 3 x 9 px at 300
    cls, _ = match(torch.tensor([big, tiny]), torch.tensor([0, 0]), anchors)
    assert (cls == 1).sum() >= 1 and (cls == IGNORE).sum() >= 1
    ignored = cls == IGNORE
    alone, _ = match(torch.tensor([big]), torch.tensor([0]), anchors)
    assert torch.equal(cls[~ignored], alone[~ignored])  # the big person is matched as before
    logits = torch.zeros(1, len(anchors), 2)
    enc = torch.zeros(1, len(anchors), 4)
    before = loss(enc, logits, cls[None], torch.zeros(1, len(anchors), 4))[0]
    logits[0, ignored, 1] = 8.0  # the ignored anchors call it a person, confidently
    assert torch.isclose(loss(enc, logits, cls[None], torch.zeros(1, len(anchors), 4))[0], before)

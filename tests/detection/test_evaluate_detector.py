"""`imgclf evaluate person BOXES/`: the pretrained detector (or a detector run) scored on the user's
own photos with boxes, with no training: AP, presence and counts, and a folder to hand around."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import cli
from PIL import Image
from test_detector_int8 import PORTRAIT, SCENES, detector_run

import imgclf
from imgclf.detection.evaluate import evaluate_detector

pytestmark = pytest.mark.slow  # each runs the detector over six photos, three through the command line


def box_folder(root: Path, label: str = "person") -> Path:
    """6 photos: the portrait pasted at a known box into each of two scenes (4), the scenes alone (2);
    the boxes in `<label>_boxes.csv` (the shared street scenes' layout)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    face = Image.open(PORTRAIT).convert("RGB")
    rows = []
    for k in range(6):
        scene = Image.open(SCENES[k % 2]).convert("RGB")
        if k >= 2:
            h = int(rng.integers(220, 300))
            w = h * face.width // face.height
            x, y = int(rng.integers(0, 640 - w)), int(rng.integers(0, 427 - h))
            scene.paste(face.resize((w, h)), (x, y))
            rows.append(f"photo{k}.jpg,{x},{y},{x + w},{y + h}\n")
        scene.save(root / f"photo{k}.jpg", quality=92)
    (root / f"{label}_boxes.csv").write_text("image,x1,y1,x2,y2\n" + "".join(rows))
    return root


def test_the_pretrained_detector_on_the_users_boxes(tmp_path):
    data = box_folder(tmp_path / "door")
    p = cli("evaluate", "person", data, cwd=tmp_path)
    folder = tmp_path / "evaluations" / "person-on-door"
    assert p.stdout.strip().splitlines()[-1] == (
        f"report: {Path('evaluations/person-on-door/report.html')}  (every photo's answer: "
        f"{Path('evaluations/person-on-door/photos.csv')})"
    )
    m = json.loads((folder / "metrics.json").read_text())
    # A portrait a third of the photo high is what this detector finds best: every one, boxed right.
    assert m["photos"] == 6 and m["presence"]["with"] == 4 and m["presence"]["balanced_accuracy_at_threshold"] == 1.0
    assert m["ap50"] > 0.9 and m["ap50_at_threshold"] > 0.9 and m["count"]["right"] == 1.0
    rows = list(csv.DictReader(open(folder / "photos.csv", newline="")))
    assert [(r["labelled"], r["found"], r["answered_present"]) for r in rows] == [("0", "0", "0")] * 2 + [
        ("1", "1", "1")
    ] * 4
    scanned = {a["path"]: a for a in imgclf.scan(data, verbose=False)}  # the answers a scan gives
    assert [int(scanned[r["path"]]["present"]) for r in rows] == [int(r["answered_present"]) for r in rows]
    page = (folder / "report.html").read_text()
    assert "ssdlite-person on door</h1>" in page and page.count("<figure>") == 6
    assert "imgclf train " + str(data) in page  # the way on, when it is not good enough
    assert "told best at threshold" not in p.stdout  # the recorded threshold is as good as any here


def test_the_detector_on_folders_named_person_and_no_person_is_scored_for_presence(tmp_path):
    """Labelled photos with no boxes (person/, no-person/: what most users have for "is anyone there?")
    are scored as a classifier's evaluation is: accuracy, recall of each answer, ROC-AUC, a report;
    the answers are the scan's (present or not)."""
    boxes = box_folder(tmp_path / "boxes")
    data = tmp_path / "door"
    for k in range(6):
        (data / ("person" if k >= 2 else "No_Person")).mkdir(parents=True, exist_ok=True)
        (boxes / f"photo{k}.jpg").rename(data / ("person" if k >= 2 else "No_Person") / f"photo{k}.jpg")
    p = cli("evaluate", "person", data, cwd=tmp_path)
    folder = tmp_path / "evaluations" / "person-on-door"
    assert "classes matched by name: No_Person -> no person" in p.stdout
    m = json.loads((folder / "metrics.json").read_text())
    assert m["n"] == 6 and m["accuracy"] == 1.0 and m["per_class"]["person"]["recall"] == 1.0
    rows = list(csv.DictReader(open(folder / "predictions.csv", newline="")))
    scanned = {a["path"]: a["present"] for a in imgclf.scan(data, verbose=False)}
    assert sorted((Path(r["path"]).name, r["answer"] == "person") for r in rows) == sorted(
        (Path(path).name, present) for path, present in scanned.items()
    )
    assert "ssdlite-person on door</h1>" in (folder / "report.html").read_text()
    (data / "cats").mkdir()
    (data / "person").rename(data / "cats" / "person")  # no folder names an answer now
    (data / "No_Person").rename(data / "cats" / "No_Person")
    p = cli("evaluate", "person", data / "cats" / "person", check=False, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.endswith("a detector also takes photos with boxes (YOLO, VOC, COCO or CSV)\n"), p.stderr


def test_a_threshold_the_users_photos_suggest_is_named_when_better_by_more_than_one_photo():
    """Close-ups of other things can score 0.12-0.3 as one whole-frame person (19 % of flowers5's
    photos at 0.12): the user's own labelled photos say where their threshold lies; one photo's
    difference is noise, not a better threshold."""
    from imgclf.detection import metrics as M
    from imgclf.detection.report import better_threshold

    def said(scores, present):
        at = M.balanced_accuracy(scores, present, 0.12)
        return better_threshold(
            {"data": "cam/", "presence": {**M.presence(scores, present, 0.12), "balanced_accuracy_at_threshold": at}}
        )

    present = [True] * 10 + [False] * 10
    assert said([0.9] * 10 + [0.15] * 4 + [0.05] * 6, present) == (
        "on these photos presence is told best at threshold 0.525 (balanced accuracy 1.000 against 0.800), "
        "chosen on them, so optimistic: scan with --threshold 0.525, or fine-tune on them: imgclf train cam/"
    )
    assert said([0.9] * 10 + [0.15] + [0.05] * 9, present) == ""  # one false alarm of ten: the recorded one stays
    assert said([0.9] * 20, [True] * 20) == ""  # no photo without a person: nothing to tell apart


def test_a_detector_run_its_classes_by_name_and_mistakes(tmp_path):
    run = detector_run(tmp_path / "boxes-1")
    data = box_folder(tmp_path / "cam", label="Pedestrian")  # one class each side: scored as 'person', said
    m = imgclf.evaluate(run, data, verbose=False)
    assert m["report"] == str(run / "evaluations" / "cam" / "report.html") and m["threshold"] == 0.15
    assert m["presence"]["with"] == 4 and m["ap50"] > 0.9
    (data / "Pedestrian_boxes.csv").write_text(
        "image,x1,y1,x2,y2,label\n" + "".join(f"photo{k}.jpg,10,10,100,200,{c}\n" for k, c in ((2, "car"), (3, "dog")))
    )
    for args, said in (
        (["evaluate", "person", data], "error: the boxes are labelled car, dog; the detector finds person: fine-tune"),
        (
            ["evaluate", "person"],
            "error: a detector is evaluated on photos with boxes (YOLO, VOC, COCO or CSV): imgclf evaluate person BOXES/",
        ),
        (["evaluate", "person", data, "--tta", "flip"], "error: --tta is a classifier run's, not a detector's"),
        (["evaluate", run, tmp_path / "nowhere"], "error: box data not found"),
        # --device reaches the detector (it was left at auto): a misspelt one is said, not ignored
        (["evaluate", "person", data, "--device", "gpu"], "error: unknown device 'gpu'; use auto, cpu, cuda"),
    ):
        p = cli(*args, check=False, cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.startswith(said) and p.stderr.count("\n") == 1, p.stderr


def test_boxes_of_classes_the_detector_does_not_find_are_left_out_and_said(tmp_path, capsys):
    data = box_folder(tmp_path / "street")
    with open(data / "person_boxes.csv", "a") as f:  # a second class beside the people
        f.write("photo0.jpg,5,5,60,60\n")
    (data / "person_boxes.csv").rename(data / "boxes.csv")
    text = (data / "boxes.csv").read_text().splitlines()
    rows = [text[0] + ",label"] + [ln + (",bicycle" if ln.startswith("photo0") else ",person") for ln in text[1:]]
    (data / "boxes.csv").write_text("\n".join(rows) + "\n")
    m = evaluate_detector("person", data, out=tmp_path / "ev")
    assert "left out: boxes of bicycle (the detector finds person)" in capsys.readouterr().out
    assert m["presence"]["with"] == 4 and m["count"]["right"] == 1.0  # the bicycle is no missed person

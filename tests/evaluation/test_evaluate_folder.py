"""`imgclf evaluate RUN FOLDER`: a run scored on other labelled photos, whose class folders may be
named a little differently from the model's classes, or hold one class only."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, cli, make_shapes_dataset
from PIL import Image, ImageOps

import imgclf
from imgclf.core.errors import UserError
from imgclf.evaluation.elsewhere import match_classes


def test_class_folders_match_the_models_classes_by_name():
    known = ["daisy", "sea_lion", "Rose"]
    named = {"Daisy": "daisy", "sea lion": "sea_lion", "rose": "Rose", "daisy": "daisy"}
    assert match_classes(list(named), known) == (named, [])
    assert match_classes(["tulip", "daisy"], known) == ({"daisy": "daisy"}, ["tulip"])
    # Two of the model's classes that differ only in case: which one is meant is not guessed.
    assert match_classes(["CAT", "cat"], ["cat", "Cat"]) == ({"cat": "cat"}, ["CAT"])


def test_a_folder_named_near_a_class_gets_a_hint_to_rename_it():
    """A test folder `roses/` for the model's `rose`: left out as a class it does not know (a plural
    is not the same class to a program), with the rename that would score it."""
    from imgclf.data.spec import near_names

    classes = ["rose", "daisy", "sunflower", "no_person"]
    assert near_names(["roses", "Sunflowr", "nonperson", "tulip", "Daisies"], classes) == [
        "roses -> rose",
        "Sunflowr -> sunflower",
        "nonperson -> no_person",
        "Daisies -> daisy",
    ]
    assert near_names(["boxes", "glass"], ["box", "glasses"]) == ["boxes -> box", "glass -> glasses"]
    assert near_names(["tulip", "triangle", "dandelion", "s1"], [*classes, "s10"]) == []  # s1, s10: numbered


def test_a_drop_from_the_runs_own_accuracy_is_said_only_beyond_chance():
    """0.528 of 180 greyed, blurred flowers against the run's own 0.822 of 45: said, with the update
    that learns from them. 0.80 of 20 against 0.90 of 45 is within chance: nothing said."""
    from imgclf.evaluation.elsewhere import accuracy_drop

    said = accuracy_drop({"accuracy": 0.528, "n": 180}, {"accuracy": 0.822, "n": 45}, "runs/v1", "grey")
    assert said == (
        "accuracy 0.528 here against 0.822 on its own held-out test split (45 images), more than chance "
        "explains (the 95 % intervals do not overlap): these images differ from the ones it learnt from "
        "(another camera, place or season). To learn from them: imgclf update runs/v1 grey"
    )
    assert accuracy_drop({"accuracy": 0.80, "n": 20}, {"accuracy": 0.90, "n": 45}, "r", "d") == ""
    assert accuracy_drop({"accuracy": 0.95, "n": 500}, {"accuracy": 0.90, "n": 45}, "r", "d") == ""  # better
    assert accuracy_drop({"accuracy": 0.1, "n": 50}, None, "r", "d") == ""  # a run with no metrics.json


@pytest.mark.slow
def test_evaluate_on_a_folder_named_differently_or_of_one_class(tiny_run, tmp_path, capsys):
    shapes = tiny_run.parent / "shapes"
    for cls, renamed in (("disc", "Disc"), ("square", "SQUARE")):
        shutil.copytree(shapes / cls, tmp_path / "other" / renamed)
    both = imgclf.evaluate(tiny_run, tmp_path / "other", verbose=True, out=tmp_path / "ev1")
    out = capsys.readouterr().out
    assert "classes matched by name: Disc -> disc, SQUARE -> square" in out
    n = sum(1 for cls in ("disc", "square") for _ in (shapes / cls).iterdir())
    assert both["n"] == n and both["confusion_matrix"][2] == [0, 0, 0]  # no stripes among them
    shutil.rmtree(tmp_path / "other" / "SQUARE")
    one = imgclf.evaluate(
        tiny_run, tmp_path / "other", verbose=False, out=tmp_path / "ev2"
    )  # a folder of new discs: a fair test
    assert one["n"] == n // 2 and 0.0 <= one["accuracy"] <= 1.0
    (tmp_path / "other" / "triangle").mkdir()
    for i in range(2):
        shutil.copy(next((shapes / "disc").iterdir()), tmp_path / "other" / "triangle" / f"t{i}.png")
    capsys.readouterr()
    # A class the model never learned: it could only count as mistakes, so it is left out, and said.
    left = imgclf.evaluate(tiny_run, tmp_path / "other", verbose=True, out=tmp_path / "ev3")
    said = " ".join(capsys.readouterr().out.split())
    assert left["n"] == one["n"] and left["accuracy"] == one["accuracy"]
    assert f"left out 2 images of classes the model does not know: triangle (2); scored on the {n // 2} images" in said
    assert "hint:" not in said  # triangle is near none of disc, square, stripes
    # ...and what it answers for them is told: what predict will answer when such an image comes.
    triangles = sorted(str(p) for p in (tmp_path / "other" / "triangle").iterdir())
    answers = [a["label"] for a in imgclf.load(tiny_run).predict(triangles)]
    other = left["other_classes"]["triangle"]
    assert other["images"] == 2 and other["answers"] == dict(Counter(answers).most_common())
    assert "answered for the classes it does not know: triangle (2): " in said
    rows = list(csv.DictReader(open(tmp_path / "ev3" / "predictions.csv", newline="", encoding="utf-8")))
    assert len(rows) == left["n"] + 2 and sorted(r["path"] for r in rows if r["label"] == "triangle") == triangles
    assert {r["correct"] for r in rows if r["label"] == "triangle"} == {""}  # not scored: no right or wrong
    page = (tmp_path / "ev3" / "report.html").read_text()
    assert '<section id="other-classes"' in page and "<td>triangle</td>" in page
    # The class folder itself, its images loose in it: not guessed from the name, but the way out is said.
    with pytest.raises(
        UserError, match=rf"Disc has no class folders: .* give the folder above it \({tmp_path / 'other'}\)"
    ):
        imgclf.evaluate(tiny_run, tmp_path / "other" / "Disc", verbose=False, out=tmp_path / "ev5")
    shutil.rmtree(tmp_path / "other" / "Disc")
    with pytest.raises(UserError, match=r"does not know: triangle \(the model's classes: disc, square, stripes\)"):
        imgclf.evaluate(
            tiny_run, tmp_path / "other", verbose=False, out=tmp_path / "ev4"
        )  # nothing of its own to score


@pytest.mark.slow
def test_a_folder_holding_the_runs_own_images_is_said_not_held_out(tiny_run, tmp_path, capsys):
    """`imgclf evaluate RUN photos/` on the folder it trained on printed 0.94 as a test accuracy
    (its test split: 0.83), without a word; `imgclf compare A B` where B had trained on A's test
    photos (two runs split apart) favoured B the same way."""
    shapes = tiny_run.parent / "shapes"
    rows = list(csv.DictReader(open(tiny_run / "splits.csv", newline="")))
    by_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    whole = imgclf.evaluate(tiny_run, shapes, verbose=True, out=tmp_path / "ev5")
    said = " ".join(capsys.readouterr().out.split())
    assert whole["own_images"] == by_split
    n = by_split["train"] + by_split["val"]
    assert f"{n} of these {len(rows)} images are the run's own ({by_split['train']} training and" in said
    # Copies elsewhere are found by content; the run's own test images alone are a held-out test.
    for r in rows:
        if r["split"] in ("test", "train"):
            dest = tmp_path / r["split"] / r["label"] / Path(r["path"]).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shapes / r["path"], dest)
    held_out = imgclf.evaluate(tiny_run, tmp_path / "test", verbose=True, out=tmp_path / "ev6")
    assert held_out["own_images"] == {"test": by_split["test"]} and "warning" not in capsys.readouterr().out
    assert imgclf.evaluate(tiny_run, tmp_path / "train", verbose=False, out=tmp_path / "ev7")["own_images"] == {
        "train": by_split["train"]
    }

    b = Path(shutil.copytree(tiny_run, tmp_path / "b"))
    text = (b / "splits.csv").read_text().replace(",test\n", ",train\n")  # B trained on A's test photos
    (b / "splits.csv").write_text(text)
    notes = imgclf.compare(tiny_run, b, out=tmp_path / "c.json")["verdict"]["warnings"]
    assert any(f"the test split's {by_split['test']} images are the challenger (B)'s own" in w for w in notes), notes


def _photo(rng) -> Image.Image:
    """A smooth random picture (as tests/data/test_groups.py's): each one hashes apart from the others."""
    return Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).resize((64, 48), Image.BICUBIC)


@pytest.mark.slow
def test_resized_reencoded_and_mirrored_copies_of_training_photos_are_said(tmp_path, capsys):
    """A byte comparison misses a training photo saved again smaller as a JPEG, mirrored or trimmed:
    the run keeps each image's pHash (prints.safetensors) and evaluate confirms candidates by their
    thumbnails, so new photos of the same kind are not called copies."""
    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        for i in range(12):
            (tmp_path / "data" / cls).mkdir(parents=True, exist_ok=True)
            _photo(rng).save(tmp_path / "data" / cls / f"{cls}{i:02d}.png")
    run = imgclf.train(tmp_path / "data", out=tmp_path / "run", verbose=False, **{**TINY, "img_size": 32}).path
    assert (run / "prints.safetensors").is_file()
    rows = list(csv.DictReader(open(run / "splits.csv", newline="")))
    trained = [r for r in rows if r["split"] == "train"][:3]
    other = tmp_path / "other"
    for k, r in enumerate(trained):
        img = Image.open(tmp_path / "data" / r["path"])
        (other / r["label"]).mkdir(parents=True, exist_ok=True)
        if k == 0:
            img.resize((48, 36)).save(other / r["label"] / "smaller.jpg", quality=75)
        elif k == 1:
            ImageOps.mirror(img).save(other / r["label"] / "mirrored.png")
        else:
            img.crop((1, 1, 63, 47)).save(other / r["label"] / "trimmed.webp", quality=90)
    for i in range(6):  # new photos of the same kind
        _photo(rng).save(other / trained[0]["label"] / f"new{i}.png")
    out = imgclf.evaluate(run, other, verbose=True)
    said = " ".join(capsys.readouterr().out.split())
    assert out["near_copies"] == {"train": 3} and "own_images" not in out
    page = " ".join(Path(out["report"]).read_text().split())  # the report says it as the first thing
    assert '<p class="low">Warning: 3 of these 9 images are the run&#x27;s own' in page
    assert "3 of these 9 images are the run's own (3 training images; 3 of them resized, re-encoded, cropped" in said
    for name in ("smaller.jpg", "mirrored.png", "trimmed.webp"):
        next(other.rglob(name)).unlink()
    fresh = imgclf.evaluate(run, other, verbose=True)
    assert "near_copies" not in fresh and "warning" not in capsys.readouterr().out


@pytest.mark.slow
def test_an_evaluation_on_other_photos_is_a_report_to_hand_around(tiny_run, tmp_path):
    """`imgclf evaluate RUN new_photos/` printed two numbers and a JSON dump: which class failed, on
    which photos, and a page to show others were nowhere. Now: a per-class table, and a folder with
    the report's evaluation sections, metrics.json and every image's answer."""
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    other = make_shapes_dataset(tmp_path / "new_shapes", per_class=8, size=16, seed=7)  # not the run's own
    p = cli("evaluate", run, other)
    folder = run / "evaluations" / "new_shapes"
    lines = p.stdout.splitlines()
    assert lines[-1] == f"report: {folder / 'report.html'}  (every image's answer: {folder / 'predictions.csv'})"
    m = json.loads((folder / "metrics.json").read_text())
    table = lines[lines.index("  per class:") + 2 : -1]
    assert [ln.split()[0] for ln in table] == m["classes"]
    for ln in table:  # the printed numbers are the metrics'
        c, recall, precision, f1, n = ln.split()
        r = m["per_class"][c]
        assert (float(recall), float(precision), float(f1), int(n)) == pytest.approx(
            (r["recall"], r["precision"], r["f1-score"], r["support"]), abs=5e-4
        )
    rows = list(csv.DictReader(open(folder / "predictions.csv", newline="", encoding="utf-8")))
    assert len(rows) == m["n"] == 24 and {r["label"] for r in rows} == set(m["classes"])
    assert sum(int(r["correct"]) for r in rows) == round(m["accuracy"] * m["n"])
    answers = imgclf.load(run).predict([r["path"] for r in rows])  # the answers `predict` gives
    assert [r["answer"] for r in rows] == [a["label"] for a in answers]
    page = (folder / "report.html").read_text()
    for sid in ("metrics", "confusion", "roc-pr", "reliability", "thresholds", "predictions", "mistakes"):
        assert f'<section id="{sid}"' in page
    assert "run</h1>" not in page and "run on new_shapes</h1>" in page and page.count("<img") >= m["n"]
    # These are photos from elsewhere: the one "test split" is the run's own number in the header.
    assert "test image" not in page and "test prob" not in page and page.count("test split") == 1
    own = json.loads((run / "metrics.json").read_text())  # beside what it scored on its own test split
    assert f"on its own held-out test split: {own['accuracy']:.1%} of {own['n']}</p>" in page
    # Had it scored 1.000 of 10,000 on its own, anything short of that here is more than chance: said.
    (run / "metrics.json").write_text(json.dumps({**own, "accuracy": 1.0, "n": 10000}))
    if m["accuracy"] < 0.99:
        p = cli("evaluate", run, other)
        assert f"note: accuracy {m['accuracy']:.3f} here against 1.000" in p.stdout
        assert f"imgclf update {run} {other}" in " ".join(p.stdout.split())
        assert "more than chance explains" in (folder / "report.html").read_text()
    (run / "metrics.json").write_text(json.dumps(own))
    cli("evaluate", run, other)  # again: the same folder, replaced
    assert [d.name for d in (run / "evaluations").iterdir()] == ["new_shapes"]
    # --out elsewhere; mistakes in one line
    cli("evaluate", run, other, "--out", tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "report.html").is_file()
    for args, said in (
        (["--out", folder / "metrics.json"], f"error: --out {folder / 'metrics.json'} is a file; give a folder"),
        ([], "error: --out is for an evaluation on other data (imgclf evaluate RUN DATA --out DIR)"),
    ):
        p = cli("evaluate", run, *([other] if args else []), *(args or ["--out", tmp_path / "x"]), check=False)
        assert p.returncode == 2 and p.stderr.startswith(said) and p.stderr.count("\n") == 1, p.stderr
    # A run folder that cannot take the report costs the report, said, not the evaluation.
    shutil.rmtree(run / "evaluations")
    (run / "evaluations").write_text("not a folder")
    p = cli("evaluate", run, other)
    assert "warning: no evaluation report written: the run folder" in " ".join(p.stdout.split())
    assert "  per class:" in p.stdout and "report:" not in p.stdout

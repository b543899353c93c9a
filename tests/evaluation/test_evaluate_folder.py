"""`imgclf evaluate RUN FOLDER`: a run scored on other labelled photos, whose class folders may be
named a little differently from the model's classes, or hold one class only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import imgclf
from imgclf.core.errors import UserError
from imgclf.evaluation.scoring import match_classes


def test_class_folders_match_the_models_classes_by_name():
    known = ["daisy", "sea_lion", "Rose"]
    named = {"Daisy": "daisy", "sea lion": "sea_lion", "rose": "Rose", "daisy": "daisy"}
    assert match_classes(list(named), known) == (named, [])
    assert match_classes(["tulip", "daisy"], known) == ({"daisy": "daisy"}, ["tulip"])
    # Two of the model's classes that differ only in case: which one is meant is not guessed.
    assert match_classes(["CAT", "cat"], ["cat", "Cat"]) == ({"cat": "cat"}, ["CAT"])


@pytest.mark.slow
def test_evaluate_on_a_folder_named_differently_or_of_one_class(tiny_run, tmp_path, capsys):
    shapes = tiny_run.parent / "shapes"
    for cls, renamed in (("disc", "Disc"), ("square", "SQUARE")):
        shutil.copytree(shapes / cls, tmp_path / "other" / renamed)
    both = imgclf.evaluate(tiny_run, tmp_path / "other", verbose=True)
    out = capsys.readouterr().out
    assert "classes matched by name: Disc -> disc, SQUARE -> square" in out
    n = sum(1 for cls in ("disc", "square") for _ in (shapes / cls).iterdir())
    assert both["n"] == n and both["confusion_matrix"][2] == [0, 0, 0]  # no stripes among them
    shutil.rmtree(tmp_path / "other" / "SQUARE")
    one = imgclf.evaluate(tiny_run, tmp_path / "other", verbose=False)  # a folder of new discs: a fair test
    assert one["n"] == n // 2 and 0.0 <= one["accuracy"] <= 1.0
    (tmp_path / "other" / "triangle").mkdir()
    shutil.copy(next((shapes / "disc").iterdir()), tmp_path / "other" / "triangle" / "t.png")
    with pytest.raises(UserError, match=r"does not know: triangle \(the model's classes: disc, square, stripes\)"):
        imgclf.evaluate(tiny_run, tmp_path / "other", verbose=False)


@pytest.mark.slow
def test_a_folder_holding_the_runs_own_images_is_said_not_held_out(tiny_run, tmp_path, capsys):
    """`imgclf evaluate RUN photos/` on the folder it trained on printed 0.94 as a test accuracy
    (its test split: 0.83), without a word; `imgclf compare A B` where B had trained on A's test
    photos (two runs split apart) favoured B the same way."""
    import csv

    shapes = tiny_run.parent / "shapes"
    rows = list(csv.DictReader(open(tiny_run / "splits.csv", newline="")))
    by_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    whole = imgclf.evaluate(tiny_run, shapes, verbose=True)
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
    held_out = imgclf.evaluate(tiny_run, tmp_path / "test", verbose=True)
    assert held_out["own_images"] == {"test": by_split["test"]} and "warning" not in capsys.readouterr().out
    assert imgclf.evaluate(tiny_run, tmp_path / "train", verbose=False)["own_images"] == {"train": by_split["train"]}

    b = Path(shutil.copytree(tiny_run, tmp_path / "b"))
    text = (b / "splits.csv").read_text().replace(",test\n", ",train\n")  # B trained on A's test photos
    (b / "splits.csv").write_text(text)
    notes = imgclf.compare(tiny_run, b, out=tmp_path / "c.json")["verdict"]["warnings"]
    assert any(f"the test split's {by_split['test']} images are the challenger (B)'s own" in w for w in notes), notes

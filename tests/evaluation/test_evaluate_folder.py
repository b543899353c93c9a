"""`imgclf evaluate RUN FOLDER`: a run scored on other labelled photos, whose class folders may be
named a little differently from the model's classes, or hold one class only."""

from __future__ import annotations

import shutil

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

"""Label issues: `imgclf check DATA --labels` ranks deliberately mislabeled images first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY

import imgclf
from imgclf.core.errors import UserError
from imgclf.data.spec import DatasetSpec
from imgclf.lifecycle.label_issues import _assign_folds, rank_suspects

# file -> the class folder it is moved into: each is now labelled as something it plainly is not.
FLIPS = {
    "square/square_000.png": "disc",
    "disc/disc_000.png": "stripes",
    "stripes/stripes_000.png": "square",
    "square/square_001.png": "stripes",
}


@pytest.fixture
def mislabeled(shapes) -> Path:
    for rel, wrong in FLIPS.items():
        shutil.move(shapes / rel, shapes / wrong / Path(rel).name)
    return shapes


@pytest.mark.slow
@pytest.mark.report
def test_flipped_labels_rank_first_and_land_in_the_run_report(mislabeled, tmp_path):
    run = imgclf.train(mislabeled, out=tmp_path / "run", verbose=False, **TINY)  # any run: the folds train their own
    found = imgclf.check(mislabeled, labels=True, run=run.path, json_path=tmp_path / "check.json", verbose=False)
    issues = found["label_issues"]
    assert issues["folds"] == 5 and issues["images"] == 90 and issues["out_of_fold_accuracy"] > 0.85
    top = {Path(s["path"]).name: s for s in issues["suspects"][: len(FLIPS)]}
    assert set(top) == {Path(rel).name for rel in FLIPS}
    for rel, wrong in FLIPS.items():
        s = top[Path(rel).name]
        assert (s["given"], s["suggested"]) == (wrong, Path(rel).parent.name)
        assert s["score"] < 0.5 < s["suggested_score"]
    scores = [s["score"] for s in issues["suspects"]]
    assert scores == sorted(scores)  # most suspicious (lowest p of the given label) first

    assert json.loads((tmp_path / "check.json").read_text())["label_issues"] == issues
    assert json.loads((run.path / "label_issues.json").read_text()) == issues
    html = (run.path / "report.html").read_text(encoding="utf-8")
    assert "image(s) whose label looks wrong" in html and "square_000.png" in html


@pytest.mark.slow
def test_a_fold_run_writes_no_figures_and_still_loads(shapes, tmp_path):
    """What each fold is: a whole training run, without the report and figures nobody reads."""
    import imgclf.workflows

    run = imgclf.workflows.train(
        shapes, out=tmp_path / "fold", verbose=False, write_report=False, figures=False, **TINY
    )
    assert not list(run.path.glob("*.png")) and not (run.path / "report.html").exists()
    assert (run.path / "metrics.json").is_file() and run.metrics["accuracy"] >= 0
    # The held-out answers the check reads from the run: what predicting those images again gives.
    paths, probs = run.scored_test
    model = imgclf.load(run.path)
    assert len(paths) == len(probs) == run.metrics["n"] > 0
    for got, row in zip(model.predict(paths, top_k=3), probs):
        assert [p for _, p in got["top_k"]] == pytest.approx(
            [row[model.classes.index(c)] for c, _ in got["top_k"]], abs=1e-4
        )


def test_confident_learning_flags_the_contradicted_label():
    # 3 classes x 10 images, each predicted 0.9 for its own class; image 4 (labelled a) 0.95 for c.
    labels = np.repeat([0, 1, 2], 10)
    probs = np.full((30, 3), 0.05)
    probs[np.arange(30), labels] = 0.9
    probs[4] = [0.02, 0.03, 0.95]
    spec = DatasetSpec(
        "", "folders", ["a", "b", "c"], [f"{i}.png" for i in range(30)], labels, np.array(["train"] * 30)
    )
    suspects = rank_suspects(spec, np.arange(30), probs)
    assert [(s["path"], s["given"], s["suggested"]) for s in suspects] == [("4.png", "a", "c")]
    assert suspects[0]["score"] == pytest.approx(0.02) and suspects[0]["suggested_score"] == pytest.approx(0.95)


def test_folds_keep_near_duplicate_groups_whole():
    # 2 classes x 20 images in mirror pairs (0-1, 2-3, ...); image 39 unreadable.
    labels = np.repeat([0, 1], 20)
    spec = DatasetSpec("", "folders", ["a", "b"], [f"{i}.png" for i in range(40)], labels, np.array(["train"] * 40))
    readable = np.arange(39)
    fold_of = _assign_folds(spec, readable, 5, seed=0, groups=np.arange(40) // 2)
    assert fold_of[39] == -1 and set(fold_of[:39]) == set(range(5))
    assert all(fold_of[i] == fold_of[i + 1] for i in range(0, 38, 2))
    assert all(set(labels[readable][fold_of[readable] == k]) == {0, 1} for k in range(5))  # still stratified
    ungrouped = _assign_folds(spec, readable, 5, seed=0)
    assert any(ungrouped[i] != ungrouped[i + 1] for i in range(0, 38, 2))  # what the groups prevent


def test_user_mistakes_stop_before_any_training(mislabeled, tmp_path):
    with pytest.raises(UserError, match="add --labels"):
        imgclf.check(mislabeled, run=tmp_path, verbose=False)
    for option, value in (("device", "cuda:7"), ("folds", 3)):  # passed over in silence before
        with pytest.raises(UserError, match=f"^--{option} is an option of the label check: add --labels$"):
            imgclf.check(mislabeled, **{option: value}, verbose=False)
    with pytest.raises(UserError, match="not a finished run folder"):
        imgclf.check(mislabeled, labels=True, run=tmp_path, verbose=False)
    with pytest.raises(UserError, match="at least 2"):
        imgclf.check(mislabeled, labels=True, folds=1, verbose=False)
    with pytest.raises(UserError, match="lower --folds"):
        imgclf.check(mislabeled, labels=True, folds=40, verbose=False)
    env = {**os.environ, "PYTHONPATH": str(Path(imgclf.__file__).parents[1])}
    p = subprocess.run(
        [sys.executable, "-m", "imgclf.cli", "check", str(mislabeled), "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 2 and p.stderr.startswith("error: --run") and len(p.stderr.strip().splitlines()) == 1

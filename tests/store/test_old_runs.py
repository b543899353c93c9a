"""A run folder written by an earlier imgclf keeps working: fixtures/run-2026-11-26 holds the files
of a small run written on 2026-11-26 (model format 2: simple_cnn on 24 px shapes, 100 % test
accuracy), its 60 images and the probabilities it answered then. Whatever the run metadata becomes
(issue 36: typed, versioned, migrated), this folder must load, predict and evaluate the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli

import imgclf

FIXTURE = Path(__file__).parent / "fixtures" / "run-2026-11-26"


@pytest.fixture
def old(tmp_path) -> Path:
    """A copy: an ONNX backend writes model.onnx beside the weights, and evaluation writes metrics.json."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "old"))


def _answers(model, old: Path) -> tuple[dict, list]:
    expected = json.loads((old / "expected.json").read_text())
    return expected, model.predict([str(old / p) for p in expected], top_k=3)


@pytest.mark.parametrize("backend, tol", [("torch", 1e-5), ("onnx", 1e-4)])
def test_an_old_run_answers_what_it_answered_then(old, backend, tol):
    expected, got = _answers(imgclf.load(old / "run", device="cpu", backend=backend), old)
    for (path, want), answer in zip(expected.items(), got):
        assert dict(answer["top_k"]) == pytest.approx(want, abs=tol), path


def test_an_old_run_evaluates_on_its_moved_data_as_it_did(old):
    then = json.loads((FIXTURE / "run" / "metrics.json").read_text())
    now = imgclf.evaluate(old / "run", verbose=False, data_root=old / "shapes")
    assert now["accuracy"] == then["accuracy"] == 1.0 and now["n"] == then["n"]
    assert now["log_loss"] == pytest.approx(then["log_loss"], abs=1e-5)


@pytest.mark.slow
def test_an_old_run_predicts_from_the_command_line(old):
    out = cli("predict", old / "run", old / "shapes" / "disc", "--format", "json").stdout
    answers = json.loads(out)
    assert len(answers) == 20 and all(a["label"] == "disc" for a in answers)

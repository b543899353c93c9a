"""Streaming batch prediction into a CSV: every file once, unreadable ones as error rows, and an
interrupted run resumed without redoing finished files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError
from imgclf.inference.batch import COLUMNS, predict_folder

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """60 images of three classes in nested folders, a corrupt JPEG and a text file."""
    root = make_shapes_dataset(tmp_path_factory.mktemp("batch") / "images", per_class=20)
    (root / "disc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image, and not predicted")
    return root


@pytest.fixture(scope="module")
def model(tiny_run):
    """Any trained 3-class model will do: the tests compare the CSV with its own predictions."""
    return imgclf.load(tiny_run)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_predicts_every_image_once_like_model_predict(model, folder, tmp_path):
    out = tmp_path / "preds.csv"
    summary = predict_folder(model, folder, out, batch_size=7, top_k=2, progress=False)
    rows = read_rows(out)
    assert list(rows[0]) == COLUMNS
    assert summary["total"] == len(rows) == 61 and summary["predicted"] == 60 and summary["errors"] == 1
    assert summary["images_per_s"] > 0
    broken = [r for r in rows if r["error"]]
    assert [Path(r["path"]).name for r in broken] == ["broken.jpg"] and broken[0]["label"] == ""
    assert not any(r["path"].endswith("notes.txt") for r in rows)
    expected = {r["path"]: r for r in model.predict(str(folder), top_k=2)}
    assert set(expected) == {r["path"] for r in rows}
    for r in rows:
        if not r["error"]:
            assert r["label"] == expected[r["path"]]["label"]
            assert float(r["confidence"]) == pytest.approx(expected[r["path"]]["confidence"], abs=1e-4)
            assert len(r["top_k"].split(";")) == 2


def test_resumes_after_a_kill_without_redoing_or_duplicating(model, folder, tmp_path):
    full = tmp_path / "full.csv"
    predict_folder(model, folder, full, progress=False)
    lines = full.read_text().splitlines(keepends=True)
    # What a kill mid-write leaves: 25 finished rows and the first half of the next one.
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(lines[:26]) + lines[26][: len(lines[26]) // 2])
    summary = predict_folder(model, folder, cut, batch_size=16, progress=False)
    assert summary["skipped"] == 25 and summary["predicted"] + summary["errors"] == 61 - 25
    assert cut.read_text() == full.read_text()  # complete, same order, no duplicates

    again = predict_folder(model, [folder, folder / "disc"], cut, progress=False)  # nothing left to do
    assert again["skipped"] == 61 and again["predicted"] == again["errors"] == 0
    assert cut.read_text() == full.read_text()


def test_process_pool_and_no_resume_give_the_same_csv(model, folder, tmp_path):
    threads, procs = tmp_path / "t.csv", tmp_path / "p.csv"
    predict_folder(model, folder, threads, progress=False)
    procs.write_text(",".join(COLUMNS) + "\nstale,row,,,\n")
    predict_folder(model, folder, procs, workers=2, pool="process", resume=False, progress=False)
    assert procs.read_text() == threads.read_text()


def test_refuses_to_append_to_a_foreign_csv(model, folder, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not an imgclf predictions CSV"):
        predict_folder(model, folder, other, progress=False)
    with pytest.raises(UserError, match="no such file"):
        predict_folder(model, tmp_path / "missing", tmp_path / "x.csv", progress=False)


def test_rows_of_another_model_or_other_settings_are_not_taken_as_done(model, folder, tmp_path, tiny_run):
    import shutil

    out = tmp_path / "preds.csv"
    predict_folder(model, folder, out, progress=False)
    moved = imgclf.load(shutil.copytree(tiny_run, tmp_path / "moved"))  # the same weights, elsewhere
    assert predict_folder(moved, folder, out, progress=False)["skipped"] == 61
    with pytest.raises(UserError, match=r"holds 61 predictions made with another model or settings \(--top-k differ;"):
        predict_folder(model, folder, out, top_k=2, progress=False)
    moved.meta.weights_sha256 = "0" * 64  # as another run's
    with pytest.raises(UserError, match=rf"\(the weights differ; they came from {tiny_run}\): choose another --out"):
        predict_folder(moved, folder, out, progress=False)
    assert len(read_rows(out)) == 61  # untouched
    assert predict_folder(moved, folder, out, resume=False, progress=False)["predicted"] == 60  # afresh


def test_a_second_writer_of_the_same_csv_is_refused_until_the_first_ends(model, folder, tmp_path):
    """Two predicts into one --out would interleave rows and each resume from a file the other
    changes: the second is refused in one line; a writer killed hard leaves a lock file that binds no one."""
    from helpers import another_writer

    out = tmp_path / "preds.csv"
    lock = tmp_path / ".preds.csv.lock"
    with another_writer(lock, out):
        with pytest.raises(UserError, match=rf"another imgclf is writing {out} right now: .* or give another --out"):
            predict_folder(model, folder, out, progress=False)
        assert not out.exists()
        predict_folder(model, folder, tmp_path / "other.csv", progress=False)  # another file is free
    assert lock.exists()  # left by the killed writer
    assert predict_folder(model, folder, out, progress=False)["predicted"] == 60
    assert not lock.exists() and len(read_rows(out)) == 61


def test_cli_out_streams_and_resumes(model, folder, tmp_path):
    from typer.testing import CliRunner

    from imgclf.cli import app

    out = tmp_path / "cli.csv"
    first = str(folder / "disc" / "disc_000.png")
    out.write_text(",".join(COLUMNS) + f"\n{first},disc,0.9,disc:0.9,\n")  # as an interrupted run leaves it
    r = CliRunner().invoke(app, ["predict", str(model.path), str(folder), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 of 61 images already predicted" in r.stderr and r.stdout == ""
    rows = read_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == 61

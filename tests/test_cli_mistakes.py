"""Careless or hostile command lines end in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli, make_run, make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError, mask_secrets
from imgclf.store import registry


@pytest.fixture
def run(tiny_run):
    return tiny_run


def one_line_error(p, text: str) -> None:
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert text in p.stderr, p.stderr


@pytest.mark.slow
def test_predict_out_must_be_a_file(run, tmp_path):
    (tmp_path / "folder").mkdir()
    image = next((run.parent / "shapes").rglob("*.png"))
    one_line_error(
        cli("predict", run, image, "--out", tmp_path / "folder", check=False),
        f"--out {tmp_path / 'folder'} is a folder; give a file name",
    )


@pytest.mark.slow
def test_predict_without_the_run_or_without_images_says_which(run, tmp_path):
    """`imgclf predict photo.jpg`: the run is missing, and the newest one here is named."""
    image = next((run.parent / "shapes").rglob("*.png"))
    (tmp_path / "runs").mkdir()
    shutil.copytree(run, tmp_path / "runs" / "mine")
    one_line_error(
        cli("predict", image, check=False, cwd=tmp_path),
        f"give the run first, then the images: imgclf predict {Path('runs', 'mine')} {image} (the newest run here)",
    )
    one_line_error(cli("predict", run, check=False), f"give the images to predict after the run: imgclf predict {run}")


@pytest.mark.slow
def test_export_opset_outside_what_the_exporters_support(run, tmp_path):
    one_line_error(
        cli("export", run, "--opset", "1", "--out", tmp_path / "m.onnx", check=False),
        "--opset must be an integer from 7 to ",
    )
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_an_old_opset_is_honoured_not_silently_replaced(run, tmp_path):
    """--opset 13 gives opset 13 (torch.export, the fallback, keeps its own 18 when it cannot convert down)."""
    run = Path(shutil.copytree(run, tmp_path / "run"))  # the export records itself in the run folder
    assert imgclf.export(run, out=tmp_path / "m.onnx", opset=13, verbose=False)["opset"] == 13


def test_reserved_aliases_are_refused(tmp_path):
    version = make_run(tmp_path, "photos-1", 0.8, [])
    registry.add(version, tmp_path / "registry")
    for alias in ("versions", "inbox", "v2"):
        with pytest.raises(UserError, match=f"alias '{alias}' is reserved"):
            registry.promote(tmp_path / "registry", 1, alias=alias)
    one_line_error(
        cli("registry", "promote", "1", "--alias", "versions", "--registry", tmp_path / "registry", check=False),
        "alias 'versions' is reserved",
    )


def test_a_corrupt_aliases_file_is_one_line(tmp_path):
    registry.add(make_run(tmp_path, "photos-1", 0.8, []), tmp_path / "registry", alias="production")
    (tmp_path / "registry" / "aliases.json").write_text('{"aliases": {"production": 1')
    one_line_error(
        cli("registry", "list", "--registry", tmp_path / "registry", check=False), "aliases.json is not valid JSON"
    )
    (tmp_path / "registry" / "aliases.json").write_text(json.dumps({"aliases": ["production"], "previous": {}}))
    with pytest.raises(UserError, match="aliases.json must hold"):
        registry.resolve(tmp_path / "registry", "production")


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://ann:hunter2@db.example:5432/tune", "postgresql://ann:***@db.example:5432/tune"),
        ("mysql+pymysql://ann:p@ss@db/tune?password=hunter2", "mysql+pymysql://ann:***@db/tune?password=***"),
        ("sqlite:///tune.db", "sqlite:///tune.db"),
    ],
)
def test_passwords_are_masked(url, shown):
    assert mask_secrets(f"cannot open {url} (refused)") == f"cannot open {shown} (refused)"


def test_tune_storage_errors_do_not_print_the_password(tmp_path):
    from imgclf.tuning.study import open_storage

    with pytest.raises(UserError) as e:
        open_storage("postgresql://ann:hunter2@127.0.0.1:1/tune", tmp_path)
    assert "hunter2" not in str(e.value) and "postgresql://ann:***@127.0.0.1:1/tune" in str(e.value)


@pytest.mark.slow
def test_top_k_below_one_is_refused_not_read_as_one(run, tmp_path):
    image = next((run.parent / "shapes").rglob("*.png"))
    with pytest.raises(UserError, match="top_k must be an integer from 1 to 1000, not 0"):
        imgclf.load(run).predict([image], top_k=0)
    with pytest.raises(UserError, match="not -1"):
        imgclf.predict_folder(run, [image], tmp_path / "p.csv", top_k=-1, verbose=False)
    assert not (tmp_path / "p.csv").exists()


def test_the_predict_table_prints_brackets_in_paths_labels_and_reasons(capsys, monkeypatch):
    """Rich markup must not eat the user's text: a file "photo[1].jpg", a class "[misc]", a reason
    naming the install "pip install 'imgclf[heic]'"."""
    from imgclf.cli.render import predictions

    results = [
        {"path": "a/photo[1].jpg", "label": "[misc]", "confidence": 0.9, "top_k": [("[misc]", 0.9)]},
        {"path": "a/IMG_2.heic", "error": "a HEIC photo this install cannot decode: pip install 'imgclf[heic]'"},
    ]
    monkeypatch.setenv("COLUMNS", "300")  # no wrapped cells
    predictions(results, "table", top_k=1)
    out = capsys.readouterr().out
    assert "photo[1].jpg" in out and "[misc]" in out and "pip install 'imgclf[heic]'" in out


@pytest.mark.slow
def test_check_prints_brackets_in_class_folders_and_file_names(tmp_path, monkeypatch):
    """`imgclf check` names the user's folders and files as they are: a class "cat [tabby]" and a
    file "photo (8) [copy].jpeg" are not rich markup to drop."""
    data = make_shapes_dataset(tmp_path / "data", per_class=8)
    cat = (data / "square").rename(data / "cat [tabby]")
    for f in sorted(cat.glob("*.png"))[:3]:  # the smallest class: named in the imbalance row
        f.unlink()
    (cat / "photo (8) [copy].jpeg").write_bytes(b"")  # unreadable: listed by its path
    monkeypatch.setenv("COLUMNS", "300")  # no wrapped cells
    out = cli("check", data).stdout
    assert "cat [tabby]/photo (8) [copy].jpeg" in out, out
    assert "smallest cat [tabby] (5)" in out, out


@pytest.mark.slow
def test_images_none_of_which_can_be_read_end_in_an_error_line_after_their_rows(run, tmp_path):
    """`imgclf predict RUN photo.jpg && next-step` went on after a photo that was no image: its row
    said why, and the exit was 0. Now the rows still come, then one error line and exit 2; one
    unreadable file among readable ones stays a row (exit 0)."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    good = next((run.parent / "shapes").rglob("*.png"))
    for args in (["predict", run, bad], ["predict", run, bad, "--out", tmp_path / "p.csv"], ["scan", bad]):
        p = cli(*args, check=False)
        assert p.returncode == 2, p.stdout + p.stderr
        assert p.stderr.splitlines()[-1] == "error: none of the 1 image could be read (the reasons are above)"
        rows = (tmp_path / "p.csv").read_text() if "--out" in args else p.stdout + p.stderr
        assert "broken.jpg" in rows and "Traceback" not in p.stderr
    p = cli("predict", run, bad, good, "--format", "csv")
    assert "broken.jpg" in p.stdout and good.name in p.stdout
    cli("predict", run, good, "--out", tmp_path / "q.csv")
    cli("predict", run, good, bad, "--out", tmp_path / "q.csv")  # a rerun: the good one is done already


@pytest.mark.slow
def test_predict_on_folders_named_as_the_classes_points_to_evaluate(run, tmp_path):
    """A table of answers for labelled folders leaves the scoring to the reader: evaluate does it."""
    shapes = run.parent / "shapes"
    p = cli("predict", run, shapes)
    hint = (
        "these images sit in folders named as the model's classes (disc/, square/, stripes/): to score them "
        f"against those labels, with a report: imgclf evaluate {run} {shapes}"
    )
    assert " ".join(p.stderr.split()) == hint and "disc" in p.stdout
    assert cli("predict", run, shapes / "disc").stderr == ""  # no class folders in it: nothing to score
    assert cli("predict", run, shapes, "--format", "csv").stderr == ""  # a pipe's format: no hint beside it

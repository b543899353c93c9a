"""A run folder copied to another place, its data folder moved and renamed, used from a third working
folder: it predicts and serves as it is, and registry add, evaluate, monitor, update and report find
the data with --data (and say so in one line without it). Runs recorded before data roots keep working."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import helpers
import pytest
import yaml
from helpers import from_tests, make_shapes_dataset, serve_log

import imgclf
import imgclf.api
import imgclf.workflows
from imgclf.cli import main
from imgclf.core.errors import UserError
from imgclf.core.files import read_json, write_json
from imgclf.store import registry
from imgclf.store.runs import read_splits

FAST = {**helpers.FAST, "epochs": 3, "test_frac": 0.3, "verbose": False}


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Trained on machine A from its working folder (data given relatively, as users do); the run
    copied to machine B, the data moved there and renamed; tests run from a third folder."""
    top = tmp_path_factory.mktemp("movable")
    a, b, elsewhere = top / "machine-a", top / "machine-b" / "deep", top / "elsewhere"
    make_shapes_dataset(a / "shapes", per_class=14)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        mp.setattr(imgclf.workflows, "_report_after_training", lambda model, console: None)  # not needed here
        imgclf.train("shapes", out="runs/shapes-1", **FAST)
    shutil.copytree(a / "runs", b / "runs")
    shutil.move(a / "shapes", b / "photos")
    shutil.rmtree(a)
    elsewhere.mkdir()
    return {"run": b / "runs" / "shapes-1", "data": b / "photos", "old_root": str(a / "shapes"), "cwd": elsewhere}


@pytest.fixture
def at(moved, monkeypatch):
    monkeypatch.chdir(moved["cwd"])
    return moved


def cli(args, monkeypatch, capsys) -> tuple[int, str, str]:
    """`imgclf ARGS` as a user runs it (errors through main: one line, exit code 2)."""
    monkeypatch.setattr("sys.argv", ["imgclf", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(result: tuple[int, str, str], moved: dict) -> None:
    code, _, err = result
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert moved["old_root"] in err and "--data" in err, err


@pytest.mark.slow
def test_run_records_paths_relative_to_its_data_root(moved):
    meta = read_json(moved["run"] / "model.json")
    assert meta["format"] == 2 and meta["data"]["root"] == moved["old_root"]
    with open(moved["run"] / "splits.csv", newline="") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    assert paths and all(p.split("/")[0] in ("square", "disc", "stripes") for p in paths)
    rows = read_splits(moved["run"], moved["data"])
    assert all(Path(r["path"]).is_file() and r["path"].startswith(str(moved["data"])) for r in rows)


@pytest.mark.slow
def test_predicts_and_serves_without_its_data(at, monkeypatch, capsys):
    image = at["data"] / "disc" / "disc_000.png"
    code, out, err = cli(["predict", at["run"], image, "--format", "json"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out)[0]["label"] in ("square", "disc", "stripes")

    httpx = pytest.importorskip("httpx")
    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    model = imgclf.load(at["run"])
    with serving.BackgroundServer(serving.create_app(model, serving.ServeSettings(batching=False))) as url:
        r = httpx.post(f"{url}/predict", files={"file": ("disc.png", image.read_bytes(), "image/png")})
    assert r.status_code == 200 and r.json()["results"][0]["label"] in model.classes, r.text


@pytest.mark.slow
def test_registry_add_hashes_every_file_with_data(at, monkeypatch, capsys):
    reg = at["cwd"] / "reg-cli"
    refused(cli(["registry", "add", at["run"], "--registry", reg], monkeypatch, capsys), at)
    assert not (reg / "versions").exists() or not any((reg / "versions").iterdir())
    code, out, err = cli(["registry", "add", at["run"], "--registry", reg, "--data", at["data"]], monkeypatch, capsys)
    assert code == 0 and ", 0 missing)" in out, out + err
    info = registry.show(reg, 1)
    assert info["manifest"]["root"] == str(at["data"]) and info["manifest"]["missing"] == 0
    rows = registry.read_manifest(reg, 1)
    assert all(Path(r["path"]).is_file() for r in rows)


@pytest.mark.slow
def test_evaluate_and_report_with_data(at, monkeypatch, capsys):
    refused(cli(["evaluate", at["run"]], monkeypatch, capsys), at)
    code, out, err = cli(["evaluate", at["run"], "--data", at["data"]], monkeypatch, capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"metrics: {at['run'] / 'metrics.json'}"
    m = json.loads((at["run"] / "metrics.json").read_text())
    assert m["n"] == sum(r["split"] == "test" for r in read_splits(at["run"])) and 0 <= m["accuracy"] <= 1
    assert imgclf.evaluate(at["run"], data_root=at["data"], verbose=False)["n"] == m["n"]
    # --data-root, compare's name for it (where --data is new data), is the same option everywhere
    (at["run"] / "metrics.json").unlink()
    code, out, err = cli(["evaluate", at["run"], "--data-root", at["data"]], monkeypatch, capsys)
    assert code == 0 and json.loads((at["run"] / "metrics.json").read_text())["n"] == m["n"], err
    code, out, err = cli(["evaluate", at["run"], at["data"], "--data", at["data"]], monkeypatch, capsys)
    assert code == 2 and "not both" in err
    code, out, err = cli(["evaluate", at["run"], "--data", at["cwd"] / "nowhere"], monkeypatch, capsys)
    assert code == 2 and "is not a folder" in err and err.count("\n") == 1


@pytest.mark.slow
def test_monitor_with_data(at, tmp_path, monkeypatch, capsys):
    model = imgclf.load(at["run"])
    tests = [r["path"] for r in read_splits(at["run"], at["data"]) if r["split"] == "test"]
    log = serve_log(model, from_tests(tests, 30), tmp_path / "log")
    args = ["monitor", at["run"], "--log", log, "--out", tmp_path / "mon", "--top", "5"]
    refused(cli(args, monkeypatch, capsys), at)
    assert not (tmp_path / "mon").exists()  # no half-made monitor folder
    code, out, err = cli([*args, "--data", at["data"]], monkeypatch, capsys)
    assert code == 0, err
    r = read_json(tmp_path / "mon" / "monitor.json")
    assert r["n_reference"] == len(tests) and r["n_live"] == 30


@pytest.mark.slow
def test_update_with_data(at, tmp_path, monkeypatch, capsys):
    reg = tmp_path / "registry"
    registry.add(at["run"], reg, alias="production", data_root=at["data"])
    new = make_shapes_dataset(tmp_path / "new", per_class=6, seed=7)
    args = ["update", "production", new, "--registry", reg, "--out", tmp_path / "v2", "--epochs", "1"]
    # The data moved after registration too: the manifest's absolute paths are stale.
    shutil.move(at["data"], tmp_path / "photos-again")
    try:
        code, _, err = cli(args, monkeypatch, capsys)
        assert code == 2 and "--data" in err and err.count("\n") == 1, err
        code, out, err = cli([*args, "--data", tmp_path / "photos-again"], monkeypatch, capsys)
        assert code == 0, err
    finally:
        shutil.move(tmp_path / "photos-again", at["data"])
    done = read_json(tmp_path / "v2" / "update.json")
    assert done["recorded_data"]["missing"] == 0 and done["result"]["version"] == 2
    assert registry.show(reg, 2)["manifest"]["missing"] == 0


@pytest.mark.slow
def test_runs_recorded_before_data_roots_still_work(moved, tmp_path, monkeypatch):
    """A format-1 run: splits.csv relative to the folder it was trained in, no data root."""
    old = tmp_path / "work" / "runs" / "old"
    shutil.copytree(moved["run"], old)
    shutil.copytree(moved["data"], tmp_path / "work" / "shapes")
    with open(moved["run"] / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(old / "splits.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows([(f"shapes/{r['path']}", r["label"], r["split"]) for r in rows])
    meta = read_json(old / "model.json")
    meta["format"] = 1
    del meta["data"]
    write_json(old / "model.json", meta)
    assert yaml.safe_load((old / "config.yaml").read_text())["data"] == "shapes"

    monkeypatch.chdir(tmp_path / "work")  # where it was trained: as before, no --data needed
    assert imgclf.evaluate(old, verbose=False)["n"] > 0
    monkeypatch.chdir(moved["cwd"])
    with pytest.raises(UserError, match="relative to the folder it was trained in.*--data"):
        imgclf.evaluate(old, verbose=False)
    assert imgclf.evaluate(old, data_root=moved["data"], verbose=False)["n"] > 0
    v = registry.add(old, tmp_path / "reg", data_root=moved["data"])
    assert v["manifest"]["missing"] == 0


def test_a_damaged_data_root_is_named():
    from imgclf.store.run_schema import check_model_json

    with pytest.raises(UserError, match="data.root must be the absolute path"):
        check_model_json(
            {"format": 2, "classes": ["a", "b"], "data": {"root": "photos"}}, Path("r/model.json"), 2, loadable=False
        )


def test_path_arithmetic(tmp_path, monkeypatch):
    from imgclf.data.paths import data_root, rebase, relative_to, resolve

    monkeypatch.chdir(tmp_path)
    root = data_root("photos", "folders", ["photos/cat/1.jpg"])
    assert root == str(tmp_path / "photos")
    assert relative_to("photos/cat/1.jpg", root) == "cat/1.jpg"
    assert relative_to("other/1.jpg", root) == str(tmp_path / "other" / "1.jpg")  # outside: absolute
    assert relative_to("photos/../photos2/1.jpg", root) == str(tmp_path / "photos2" / "1.jpg")
    # A manifest lists files anywhere: the deepest folder they all share.
    assert data_root("lists/m.csv", "manifest", ["/d/a/x/1.jpg", "/d/a/y/2.jpg"]) == "/d/a"
    assert resolve("cat/1.jpg", "/old", None) == "/old/cat/1.jpg"
    assert resolve("cat/1.jpg", "/old", "/new") == "/new/cat/1.jpg"
    assert resolve("/old/cat/1.jpg", "/old", "/new") == "/new/cat/1.jpg"
    assert resolve("/elsewhere/1.jpg", "/old", "/new") == "/elsewhere/1.jpg"
    assert resolve("photos/cat/1.jpg", None, "/new") == "photos/cat/1.jpg"  # no root: the working folder's
    assert rebase("photos/cat/1.jpg", "photos", "/new") == "/new/cat/1.jpg"
    assert rebase("/old2/cat/1.jpg", "/old", "/new") == "/old2/cat/1.jpg"  # a prefix is not a parent

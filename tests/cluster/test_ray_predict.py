"""Batch prediction on a local Ray cluster: the shards hold, image for image, what `imgclf predict --out`
answers on one machine; broken files become error rows; a rerun writes nothing twice and redoes only
a missing shard; another job into the same folder is refused. And the paths a job is given: folders,
globs, list files, URIs. Without Ray, `--ray` says in one line what to install."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import CLI, cli, web_server
from PIL import Image

import imgclf
from imgclf.cluster.files import list_paths, source_name
from imgclf.cluster.shards import CSV_COLUMNS
from imgclf.core.errors import UserError

BROKEN = {"broken/truncated.jpg", "broken/notes.jpg", "broken/empty.png"}


@pytest.fixture(scope="module")
def photos(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's 30 images in class folders, and three files no decoder can use."""
    root = tmp_path_factory.mktemp("ray-predict") / "photos"
    shutil.copytree(tiny_run.parent / "shapes", root)
    (root / "broken").mkdir()
    jpeg = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(jpeg, "JPEG")
    (root / "broken" / "truncated.jpg").write_bytes(jpeg.getvalue()[:200])
    (root / "broken" / "notes.jpg").write_text("a text file, named like a photo")
    (root / "broken" / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def run(tiny_run, photos, tmp_path_factory) -> Path:
    """A copy of the tiny run (backend auto on CPU workers exports RUN/model.onnx into it) given a
    rejection threshold at its median top probability, so about half its answers are 'unknown'."""
    run = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("ray-run") / "run"))
    tops = [r["confidence"] for r in imgclf.load(run).predict(photos) if "error" not in r]
    meta = json.loads((run / "model.json").read_text())
    meta["rejection"] = {"threshold": float(np.median(tops)), "rule": "test", "label": "unknown"}
    (run / "model.json").write_text(json.dumps(meta))
    return run


@pytest.fixture(scope="module")
def predicted(ray_cluster, run, photos, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ray-out") / "preds"
    return out, imgclf.predict_on_ray(run, photos, out, shard_size=8, progress=False)


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


@pytest.mark.slow
def test_shards_hold_the_single_machine_answers_and_errors(predicted, run, photos, tmp_path):
    import pyarrow.parquet as pq

    out, summary = predicted
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json"] + [f"part-{k:05d}.parquet" for k in range(5)]
    assert summary | {"seconds": 0, "images_per_s": 0} == {
        "out": str(out),
        "shards": 5,  # 33 files, 8 a shard
        "skipped_shards": 0,
        "predicted": 30,
        "errors": 3,
        "seconds": 0,
        "images_per_s": 0,
        "workers": 2,
    }
    rows = pq.read_table(out).to_pylist()  # the folder reads as one table (the manifest's _ name is skipped)
    # The same backend on one machine: auto ran ONNX Runtime on the CPU workers.
    imgclf.predict_folder(run, photos, tmp_path / "single.csv", backend="onnx", verbose=False)
    single = read_csv(tmp_path / "single.csv")
    assert [r["path"] for r in rows] == sorted(single)
    for row in rows:
        expected = single[row["path"]]
        if Path(row["path"]).relative_to(photos).as_posix() in BROKEN:
            assert row["error"] == expected["error"] != ""
            assert row["label"] is row["confidence"] is row["top_k"] is row["decision"] is row["unknown"] is None
            continue
        assert row["error"] is None
        assert row["label"] == expected["label"]
        assert row["decision"] == "rejection"
        assert row["unknown"] == (expected["label"] == "unknown")
        assert row["confidence"] == pytest.approx(float(expected["confidence"]), abs=1e-3)
        assert row["top_k_probs"][0] == pytest.approx(row["confidence"])
        if not row["unknown"]:
            assert row["label"] == row["top_k"][0]
    unknown = sum(bool(r["unknown"]) for r in rows)
    assert 0 < unknown < 30  # the median threshold left answers on both sides
    manifest = json.loads((out / "_manifest.json").read_text())
    threshold = json.loads((run / "model.json").read_text())["rejection"]["threshold"]
    assert manifest["decision"] == {
        "rule": "rejection",
        "threshold": threshold,
        "label": "unknown",
        "chosen_by": "test",
    }


@pytest.mark.slow
def test_a_rerun_writes_nothing_and_redoes_only_a_missing_shard(predicted, run, photos):
    out, _ = predicted
    before = mtimes(out)
    again = imgclf.predict_on_ray(run, photos, out, shard_size=8, progress=False)
    assert (again["skipped_shards"], again["predicted"], again["errors"], again["workers"]) == (5, 0, 0, 0)
    assert mtimes(out) == before

    (out / "part-00002.parquet").unlink()
    redo = imgclf.predict_on_ray(run, photos, out, shard_size=8, progress=False)
    assert (redo["skipped_shards"], redo["predicted"] + redo["errors"], redo["workers"]) == (4, 8, 1)
    after = mtimes(out)
    assert {name for name in after if after[name] != before.get(name)} == {"part-00002.parquet"}


@pytest.mark.slow
def test_another_job_into_the_same_folder_is_refused(predicted, run, photos):
    out, _ = predicted
    before = mtimes(out)
    with pytest.raises(UserError, match="another job .* the images differ.*another --out"):
        imgclf.predict_on_ray(run, photos / "disc", out, shard_size=8, progress=False)
    with pytest.raises(UserError, match="shard_size differ"):
        imgclf.predict_on_ray(run, photos, out, shard_size=16, progress=False)
    # The run's threshold changed since: the rest would answer by another rule than the shards written.
    meta = (run / "model.json").read_text()
    changed = json.loads(meta)
    changed["rejection"]["threshold"] += 0.01
    (run / "model.json").write_text(json.dumps(changed))
    try:
        with pytest.raises(UserError, match="decision differ"):
            imgclf.predict_on_ray(run, photos, out, shard_size=8, progress=False)
    finally:
        (run / "model.json").write_text(meta)
    assert mtimes(out) == before


@pytest.mark.slow
def test_cli_predicts_on_ray_into_csv_shards(ray_cluster, run, photos, tmp_path, monkeypatch):
    # Bare --ray is "auto": RAY_ADDRESS, here the test session's cluster (no second cluster to start).
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.get_runtime_context().gcs_address)
    out = tmp_path / "csv-preds"
    p = cli(
        "predict", run, photos, "--ray", "--out", out, "--shard-size", "16", "--shard-format", "csv", "--top-k", "2"
    )
    assert "33 images" in p.stderr and "30 predicted, 3 unreadable" in p.stderr
    assert "core_worker.cc" not in p.stderr, p.stderr  # Ray's harmless "E" line for each actor it starts
    shards = sorted(out.glob("part-*.csv"))
    assert [s.name for s in shards] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    rows = {}
    for shard in shards:
        assert shard.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
        rows.update(read_csv(shard))
    assert len(rows) == 33
    assert sum(1 for r in rows.values() if r["error"]) == 3
    assert {(r["decision"], r["unknown"]) for r in rows.values() if r["error"]} == {("", "")}
    assert {r["unknown"] == "true" for r in rows.values() if not r["error"]} == {True, False}
    assert all(r["unknown"] == str(r["label"] == "unknown").lower() for r in rows.values() if not r["error"])
    assert all(len(r["top_k"].split(";")) == 2 for r in rows.values() if not r["error"])


@pytest.mark.slow
def test_urls_are_read_and_decoded_like_local_files(run, photos):
    from imgclf.cluster.shards import predict_paths

    model = imgclf.load(run)
    local = sorted(str(p) for p in (photos / "square").iterdir())[:3]
    uris = [Path(p).as_uri() for p in local] + [
        (photos / "missing.png").as_uri(),
        (photos / "broken" / "empty.png").as_uri(),
    ]
    by_path = predict_paths(model, local, 2)
    with web_server(photos) as site:  # web addresses too, from a real HTTP server
        web = [f"{site}/square/{Path(p).name}" for p in local] + [f"{site}/missing.png", f"{site}/broken/empty.png"]
        by_uri, by_web = predict_paths(model, uris, 2), predict_paths(model, web, 2)
    for got in (by_uri, by_web):
        assert [r["label"] for r in got[:3]] == [r["label"] for r in by_path]
        assert [r["top_k"] for r in got[:3]] == [r["top_k"] for r in by_path]
        assert got[4]["error"] == "empty file (0 bytes)"
    assert by_uri[3]["error"].startswith("cannot read file") and by_web[3]["error"].startswith("cannot fetch: HTTP 404")


# ---- the paths of a job (no Ray, no training) ------------------------------------------------------


@pytest.fixture
def tree(tmp_path) -> Path:
    for name in ("a/1.jpg", "a/2.png", "a/deep/3.jpeg", "b/4.jpg", "b/notes.txt", "a/.hidden.jpg", "c/phone.heic"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folders_and_globs_give_sorted_absolute_images(tree, monkeypatch):
    monkeypatch.chdir(tree)
    a = [str(tree / n) for n in ("a/1.jpg", "a/2.png", "a/deep/3.jpeg")]
    assert list_paths("a") == a
    assert list_paths(["b", "a", "a/1.jpg"]) == sorted([*a, str(tree / "b/4.jpg")])
    assert list_paths("**/*.jpg") == [str(tree / "a/1.jpg"), str(tree / "b/4.jpg")]  # no hidden file
    assert list_paths(tree / "b" / "*") == [str(tree / "b/4.jpg")]  # a glob selects images only
    # A phone photo is listed whether or not its decoder is installed: without it, its row says what to install.
    assert list_paths("c") == [str(tree / "c/phone.heic")]


def test_list_files_name_paths_beside_them(tree):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    (tree / "lists").mkdir()
    (tree / "lists" / "todo.txt").write_text("# new photos\n../a/1.jpg\n\n/elsewhere/x.jpg\ns3://bucket/y.jpg\n")
    assert list_paths(tree / "lists" / "todo.txt") == sorted(
        ["/elsewhere/x.jpg", str(tree / "a/1.jpg"), "s3://bucket/y.jpg"]
    )
    (tree / "with_header.csv").write_text("label,path\ncat,a/1.jpg\ndog,b/4.jpg\n")
    (tree / "no_header.csv").write_text("a/1.jpg,cat\nb/4.jpg,dog\n")
    expected = [str(tree / "a/1.jpg"), str(tree / "b/4.jpg")]
    assert list_paths(tree / "with_header.csv") == list_paths(tree / "no_header.csv") == expected
    pq.write_table(pa.table({"path": ["a/1.jpg", (tree / "b/4.jpg").as_uri()]}), tree / "list.parquet")
    assert list_paths(tree / "list.parquet") == [str(tree / "a/1.jpg"), (tree / "b/4.jpg").as_uri()]
    # A list read from a URI: its relative entries are URIs beside it.
    assert list_paths((tree / "lists" / "todo.txt").as_uri()) == [
        "file:///elsewhere/x.jpg",
        (tree / "a/1.jpg").as_uri(),
        "s3://bucket/y.jpg",
    ]


def test_folder_uris_are_searched_like_folders(tree):
    pytest.importorskip("pyarrow")
    assert list_paths((tree / "a").as_uri()) == [(tree / n).as_uri() for n in ("a/1.jpg", "a/2.png", "a/deep/3.jpeg")]


def test_web_addresses_are_images_or_lists_never_folders(tree):
    (tree / "todo.txt").write_text("a/1.jpg\nhttps://elsewhere.example/x.jpg\n")
    with web_server(tree) as site:
        assert list_paths([f"{site}/b/4.jpg?size=large", f"{site}/todo.txt"]) == [
            f"{site}/a/1.jpg",
            f"{site}/b/4.jpg?size=large",
            "https://elsewhere.example/x.jpg",
        ]
        with pytest.raises(UserError, match=r"cannot read the list .*/gone.txt: cannot fetch: HTTP 404"):
            list_paths(f"{site}/gone.txt")
        with pytest.raises(UserError, match=r"cannot list .*/a/: name its images' addresses, or a .txt/.csv list"):
            list_paths(f"{site}/a/")


def test_sources_and_options_a_user_gets_wrong_are_one_line(tree, tmp_path):
    with pytest.raises(UserError, match="no such file or folder: nowhere"):
        list_paths("nowhere")
    with pytest.raises(UserError, match="no files match"):
        list_paths(str(tree / "*.gif"))
    (tree / "empty").mkdir()
    with pytest.raises(UserError, match="no images in"):
        list_paths(tree / "empty")
    (tree / "photos.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    with pytest.raises(UserError, match="--ray does not read archives"):
        list_paths(tree / "photos.zip")
    for bad, message in (({"format": "json"}, "--shard-format 'json'"), ({"shard_size": 0}, "--shard-size")):
        with pytest.raises(UserError, match=message):
            imgclf.predict_on_ray(tmp_path, tree, tmp_path / "out", **bad)


def test_default_output_folder_is_named_after_the_source():
    assert source_name("photos/") == "photos"
    assert source_name("s3://bucket/batches/todo.txt") == "todo"
    assert source_name(["shots/2024/*.jpg", "more/"]) == "2024"


def test_without_ray_the_flag_says_what_to_install(tmp_path):
    # A `ray` package that cannot be imported, first on the path: as on a machine without the extra.
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    src = Path(imgclf.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{src}"}
    p = subprocess.run([*CLI, "predict", "RUN", "photos/", "--ray"], capture_output=True, text=True, env=env)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "pip install 'imgclf[ray]'" in p.stderr

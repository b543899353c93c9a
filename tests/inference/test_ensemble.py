"""Ensembles: a self-contained bundle that averages its members' calibrated probabilities."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from helpers import SMALL_CNN, cli, make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError
from imgclf.data.cache import build_cache

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture


def test_bundle_averages_members_and_stands_alone(shapes, tmp_path):
    a = imgclf.train(
        shapes,
        out=tmp_path / "a",
        epochs=4,
        tta="flip",
        verbose=False,
        model="simple_cnn",
        model_kwargs={"width": 16, "depth": 2},
    )
    b = imgclf.train(shapes, out=tmp_path / "b", epochs=4, tta="none", verbose=False, **SMALL_CNN)
    run = imgclf.ensemble([a.path, b.path], out=tmp_path / "ab", target_coverage=0.7, verbose=False)
    assert run.path == tmp_path / "ab" and run.metrics["n"] == 9

    bundle = tmp_path / "moved"
    shutil.move(tmp_path / "ab", bundle)  # self-contained: no link to the member runs
    shutil.rmtree(a.path), shutil.rmtree(b.path)
    files = {f.suffix for f in bundle.rglob("*") if f.is_file()}
    assert files <= {".json", ".safetensors", ".csv", ".png"}  # never a pickle
    assert (bundle / "prints.safetensors").is_file()  # evaluate finds resized copies of its images (data.copies)
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["kind"] == "ensemble" and meta["classes"] == ["disc", "square", "stripes"]
    assert [m["tta"] for m in meta["members"]] == ["flip", "none"]
    assert meta["rejection"]["validation"]["accepted"] == 7  # 70 % of the 9 shared validation images

    ens = imgclf.load(bundle)
    images = build_cache([str(p) for p in sorted((shapes / "square").glob("*.png"))], 32).images
    members = [imgclf.load(bundle / m["path"]) for m in meta["members"]]
    want = np.mean([m.predict_proba(images) for m in members], axis=0)
    assert np.allclose(ens.predict_proba(images), want, atol=1e-6)
    assert not np.allclose(want, members[0].predict_proba(images), atol=1e-3)  # the second member counts

    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["n"] == 9 and "selective" in metrics and len(metrics["members"]) == 2
    assert metrics["accuracy"] >= 0.7
    assert metrics["rejection"]["threshold"] == meta["rejection"]["threshold"]
    assert imgclf.evaluate(bundle, verbose=False)["accuracy"] == pytest.approx(metrics["accuracy"])
    # On other photos: a report, and each image's answer as the bundle's predict gives it ("unknown" too)
    other = make_shapes_dataset(tmp_path / "new", per_class=4, size=32, seed=5)
    ev = imgclf.evaluate(bundle, other, verbose=False)
    rows = list(csv.DictReader(open(bundle / "evaluations" / "new" / "predictions.csv", newline="")))
    assert [r["answer"] for r in rows] == [a["label"] for a in ens.predict([r["path"] for r in rows])]
    assert ev["report"] == str(bundle / "evaluations" / "new" / "report.html") and len(rows) == ev["n"] == 12
    out = ens.predict(shapes / "square" / "square_003.png", top_k=2)[0]
    assert out["label"] in [*meta["classes"], "unknown"] and len(out["top_k"]) == 2
    assert (out["label"] == "unknown") == (out["confidence"] < meta["rejection"]["threshold"])


def test_members_must_share_classes_and_splits(shapes, tmp_path):
    a = imgclf.train(shapes, out=tmp_path / "a", epochs=1, verbose=False, **SMALL_CNN)
    # Stand-ins for other trainings, made by editing copies: one on other classes, one on another split.
    other = shutil.copytree(a.path, tmp_path / "other")
    meta = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**meta, "classes": ["disc", "ring", "square"]}))
    with pytest.raises(UserError, match="different classes.*extra: ring.*missing: stripes"):
        imgclf.ensemble([a.path, other], out=tmp_path / "x", verbose=False)
    p = cli("ensemble", a.path, "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "at least two runs" in p.stderr and "Traceback" not in p.stderr
    with pytest.raises(UserError, match="is given twice; an ensemble's members are different runs"):
        imgclf.ensemble([a.path, a.path / "model.json"], out=tmp_path / "x", verbose=False)

    resplit = shutil.copytree(a.path, tmp_path / "resplit")
    rows = (resplit / "splits.csv").read_text().replace(",test", ",train", 1)
    (resplit / "splits.csv").write_text(rows.replace(",val", ",test", 1))
    run = imgclf.ensemble([a.path, resplit], out=tmp_path / "ab", target_coverage=0.9, verbose=False)
    assert run.metrics is None and not (run.path / "metrics.json").exists()  # no honest test split
    assert "rejection" not in json.loads((run.path / "model.json").read_text())  # nor validation split
    assert imgclf.load(run.path).predict(shapes / "disc" / "disc_000.png")[0]["label"] in meta["classes"]
    with pytest.raises(UserError, match="no test split"):
        imgclf.evaluate(run.path, verbose=False)


def test_bundle_report_lists_members(shapes, tmp_path):
    a = imgclf.train(shapes, epochs=2, seed=0, out=tmp_path / "a", verbose=False)
    b = imgclf.train(shapes, epochs=2, seed=1, model="simple_cnn", out=tmp_path / "b", verbose=False)
    bundle = imgclf.ensemble([a.path, b.path], out=tmp_path / "ab", verbose=False).path
    page = imgclf.report(bundle, verbose=False).read_text()
    assert "member 0" in page and "member 1" in page and "simple_cnn" in page

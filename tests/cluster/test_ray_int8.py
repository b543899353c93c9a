"""`predict --ray --backend onnx-int8`: the workers answer with the run's int8 model, as one machine does;
a run without one is refused in one line before any worker starts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from helpers import trained_run

import imgclf
from imgclf.core.errors import UserError

pytestmark = pytest.mark.slow  # trains (the shared serving run) and starts Ray workers


def test_ray_workers_predict_with_the_int8_model(ray_cluster, tmp_path_factory, tmp_path):
    trained, data = trained_run(tmp_path_factory)
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    with pytest.raises(UserError, match="has no int8 model; make one with: imgclf export"):
        imgclf.predict_on_ray(run, data, tmp_path / "none", backend="onnx-int8", progress=False)
    assert not (tmp_path / "none").exists()

    imgclf.export(run, int8=True, verbose=False)
    out = tmp_path / "preds"
    summary = imgclf.predict_on_ray(run, data, out, backend="onnx-int8", format="csv", shard_size=45, progress=False)
    assert summary["predicted"] == 90 and summary["errors"] == 0
    imgclf.predict_folder(run, data, tmp_path / "single.csv", backend="onnx-int8", verbose=False)
    with open(tmp_path / "single.csv", newline="", encoding="utf-8") as f:
        single = {r["path"]: r["label"] for r in csv.DictReader(f)}
    rows = []
    for part in sorted(out.glob("part-*.csv")):
        with open(part, newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    assert {r["path"]: r["label"] for r in rows} == single

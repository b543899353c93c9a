"""A detector batch job on a local Ray cluster: `imgclf predict person PHOTOS --ray` writes shards
whose rows are the single-machine scan's answers (present, count, score, boxes), broken files as
error rows."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.cbook
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
from imgclf.core.errors import UserError

pytestmark = pytest.mark.slow
PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_detector_shards_equal_the_scan(ray_cluster, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(PORTRAIT).save(photos / "portrait.jpg")
    for p in load_sample_images().filenames:
        Image.open(p).save(photos / Path(p).name)
    (photos / "broken.jpg").write_bytes(b"not a photo")
    summary = imgclf.predict_on_ray("person", photos, tmp_path / "out", address="auto", shard_size=2, progress=False)
    assert summary["shards"] == 2 and summary["errors"] == 1
    rows = [r for f in sorted((tmp_path / "out").glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 4
    single = {r["path"]: r for r in imgclf.scan(photos, verbose=False)}
    for r in rows:
        ref = single[r["path"]]
        if "error" in ref:
            assert r["error"] and r["present"] is None
            continue
        assert r["error"] is None and r["present"] == ref["present"] and r["count"] == ref["count"]
        assert r["score"] == pytest.approx(ref["score"], abs=1e-5)
        assert [b["label"] for b in json.loads(r["boxes"])] == [b["label"] for b in ref["boxes"]]
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["decision"]["detector"] == "ssdlite-person" and manifest["columns"][:2] == ["path", "present"]


def test_int8_detector_shards_equal_the_int8_scan(ray_cluster, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "detection"))
    from test_detector_int8 import calibration_photos, detector_run

    pq = pytest.importorskip("pyarrow.parquet")
    photos = calibration_photos(tmp_path / "photos")
    run = detector_run(tmp_path / "boxes-1")  # its own int8 graph, beside it: none yet
    names = sorted(photos.glob("*.jpg"))
    (run / "splits.csv").write_text("path,split\n" + "".join(f"{p},train\n" for p in names) + f"{names[2]},test\n")
    with pytest.raises(UserError, match=f"the detector {run} has no int8 model; make one with: imgclf export {run}"):
        imgclf.predict_on_ray(run, photos, tmp_path / "none", backend="onnx-int8", progress=False)
    assert not (tmp_path / "none").exists()

    imgclf.export(run, int8=True, verbose=False)
    out = tmp_path / "out"
    summary = imgclf.predict_on_ray(run, photos, out, backend="onnx-int8", shard_size=10, progress=False)
    assert summary["shards"] == 2 and summary["predicted"] == 20
    rows = [r for f in sorted(out.glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]
    single = {r["path"]: r for r in imgclf.scan(photos, detector=run, backend="onnx-int8", verbose=False)}
    assert len(rows) == 20
    for r in rows:
        ref = single[r["path"]]
        assert r["present"] == ref["present"] and r["count"] == ref["count"]
        assert r["score"] == pytest.approx(ref["score"], abs=1e-5)

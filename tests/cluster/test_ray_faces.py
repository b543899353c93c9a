"""A faces batch job on a local Ray cluster: `imgclf faces identify GALLERY PHOTOS --ray` writes shards
whose rows are the single-machine answers (count, the named faces as JSON), broken files as error rows."""

from __future__ import annotations

import json

import pytest
from helpers import cli

pytest.importorskip("dlib")
pytest.importorskip("skimage")
pytestmark = pytest.mark.slow

import imgclf  # noqa: E402
import imgclf.faces as F  # noqa: E402


def test_face_shards_equal_identify(ray_cluster, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "faces"))
    from test_faces import EILEEN, GRACE, variants

    pq = pytest.importorskip("pyarrow.parquet")
    known = tmp_path / "known"
    for name, img in (("Grace", GRACE), ("Eileen", EILEEN)):
        (known / name).mkdir(parents=True)
        for i, v in enumerate(variants(img)[:3]):
            v.save(known / name / f"{i}.jpg")
    F.enrol(known, tmp_path / "g", verbose=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    variants(GRACE)[3].save(photos / "grace.jpg")
    variants(EILEEN)[4].save(photos / "eileen.jpg")
    (photos / "broken.jpg").write_bytes(b"not a photo")
    summary = imgclf.predict_on_ray(
        tmp_path / "g", photos, tmp_path / "out", address="auto", shard_size=2, progress=False
    )
    assert summary["shards"] == 2 and summary["errors"] == 1
    rows = {
        r["path"]: r for f in sorted((tmp_path / "out").glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()
    }
    assert len(rows) == 3
    single = {r["path"]: r for r in F.identify(tmp_path / "g", photos, verbose=False)}
    for path, r in rows.items():
        if "error" in single[path]:
            assert r["error"] and r["faces"] is None
            continue
        faces = json.loads(r["faces"])
        assert r["count"] == 1 and [f["name"] for f in faces] == [f["name"] for f in single[path]["faces"]]
        assert faces[0]["similarity"] == pytest.approx(single[path]["faces"][0]["similarity"], abs=1e-3)


def test_int8_face_shards_equal_int8_identify(ray_cluster, tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "faces"))
    from test_embedder_int8 import EILEEN, GRACE, copies

    from imgclf.core.errors import UserError
    from imgclf.models import packaged

    pq = pytest.importorskip("pyarrow.parquet")
    faces = tmp_path / "faces"
    for name, img in (("Grace", GRACE), ("Eileen", EILEEN)):
        (faces / name).mkdir(parents=True)
        for i, v in enumerate(copies(img)):
            v.save(faces / name / f"{i}.jpg", quality=92)
    imgclf.export("faces", int8=True, calibration=faces, verbose=False)  # into the cache the workers share
    known, probes = tmp_path / "known", tmp_path / "probes"
    probes.mkdir()
    for name in ("Grace", "Eileen"):
        (known / name).mkdir(parents=True)
        for p in sorted((faces / name).glob("*.jpg"))[:3]:
            (known / name / p.name).write_bytes(p.read_bytes())
        for p in sorted((faces / name).glob("*.jpg"))[9:]:
            (probes / f"{name}-{p.name}").write_bytes(p.read_bytes())
    F.enrol(known, tmp_path / "g", verbose=False)
    out = tmp_path / "out"
    summary = imgclf.predict_on_ray(
        tmp_path / "g", probes, out, address="auto", backend="onnx-int8", shard_size=3, progress=False
    )
    assert summary["shards"] == 2 and summary["predicted"] == 6
    rows = {r["path"]: r for f in sorted(out.glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()}
    single = {r["path"]: r for r in F.identify(tmp_path / "g", probes, backend="onnx-int8", verbose=False)}
    assert rows.keys() == single.keys()
    for path, r in rows.items():
        faces_ = json.loads(r["faces"])
        assert [f["name"] for f in faces_] == [f["name"] for f in single[path]["faces"]]
        for a, b in zip(faces_, single[path]["faces"]):
            assert a["similarity"] == pytest.approx(b["similarity"], abs=1e-5)

    monkeypatch.setattr(packaged, "int8_file", lambda fp32: tmp_path / "no.int8.onnx")
    with pytest.raises(UserError, match="make one with: imgclf export faces --int8 --calibration PHOTOS/"):
        imgclf.predict_on_ray(tmp_path / "g", probes, tmp_path / "none", backend="onnx-int8", progress=False)


def test_threshold_is_refused_with_ray(tmp_path):
    p = cli("faces", "identify", tmp_path, "x.jpg", "--ray", "--threshold", "0.9", check=False)
    assert p.returncode == 2 and "--threshold is not taken with --ray" in p.stderr


@pytest.mark.slow
def test_a_face_embedding_run_predicts_on_ray_in_pytorch(ray_cluster, tmp_path, monkeypatch):
    """A run whose leaderboard kept the face embedding (training.faceprobe) has no ONNX graph: backend
    auto runs it in PyTorch on the CPU workers, and they name the people as one machine does."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from test_face_candidate import _people, photo

    from imgclf.training import candidates

    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    data, probes = tmp_path / "people", []
    for name, img in _people().items():
        (data / name).mkdir(parents=True)
        for i in range(12):
            photo(img, rng).save(data / name / f"{i:02d}.jpg", quality=90)
        for i in range(2):
            probes.append(tmp_path / f"{name}-{i}.jpg")
            photo(img, rng).save(probes[-1], quality=85)
    monkeypatch.setattr(candidates, "kept", lambda *a: True)
    run = imgclf.train(data, out=tmp_path / "run", verbose=False).path
    summary = imgclf.predict_on_ray(run, probes, tmp_path / "preds", shard_size=2, progress=False)
    assert summary["predicted"] == len(probes) and summary["errors"] == 0
    rows = {Path(r["path"]).name: r["label"] for r in pq.read_table(tmp_path / "preds").to_pylist()}
    assert rows == {p.name: p.name.split("-")[0] for p in probes}
    assert not (run / "model.onnx").exists()

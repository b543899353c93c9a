"""The face embedder at int8: made once from photos with faces (imgclf export faces --int8 --calibration),
then enrol and identify with backend onnx-int8 name the same people as fp32, with embeddings within
a hundredth; refusals are one line. Faces: matplotlib's Grace Hopper and scikit-image's Eileen Collins,
in reworked copies."""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook
import pytest
from helpers import cli
from PIL import Image, ImageEnhance, ImageOps

from imgclf.core.errors import UserError

pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")

import imgclf  # noqa: E402
import imgclf.faces as F  # noqa: E402
from imgclf.models import packaged  # noqa: E402
from imgclf.models.face import engine  # noqa: E402

GRACE = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
EILEEN = Image.fromarray(skimage_data.astronaut()).crop((90, 0, 330, 260))


def copies(img: Image.Image) -> list[Image.Image]:
    """Twelve new photos of the face: mirrored, darker, brighter, more contrast, rotated, smaller."""
    out = []
    for v in (img, ImageOps.mirror(img)):
        w, h = v.size
        out += [
            v,
            ImageEnhance.Brightness(v).enhance(0.6),
            ImageEnhance.Brightness(v).enhance(1.3),
            ImageEnhance.Contrast(v).enhance(1.4),
            v.rotate(10, expand=True),
            v.resize((w * 2 // 3, h * 2 // 3)),
        ]
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faces")
    for name, img in (("Grace", GRACE), ("Eileen", EILEEN)):
        (d / name).mkdir()
        for i, v in enumerate(copies(img)):
            v.save(d / name / f"{i}.jpg", quality=92)
    return d


@pytest.fixture(scope="module")
def exported(photos, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # the cache the tests' functions see (conftest's _isolated_cache)
        mp.setenv("IMGCLF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        return imgclf.export("faces", int8=True, calibration=photos, verbose=False)


def test_int8_embedder_names_the_people_fp32_names(exported, photos, tmp_path):
    assert Path(exported["path"]).is_file() and exported["n_faces"] >= 20 and exported["min_cosine"] > 0.99
    fp32, int8 = F.FaceModel("cpu"), F.FaceModel("cpu", backend="onnx-int8")
    assert "int8" in int8.describe() and "int8" not in fp32.describe()
    a, b = fp32.faces(GRACE)[0].embedding, int8.faces(GRACE)[0].embedding
    assert float(a @ b) > 0.99

    # a gallery enrolled in fp32 identifies with int8, and the other way round
    known = tmp_path / "known"
    for name in ("Grace", "Eileen"):
        (known / name).mkdir(parents=True)
        for p in sorted((photos / name).glob("*.jpg"))[:3]:
            (known / name / p.name).write_bytes(p.read_bytes())
    g32, g8 = tmp_path / "g32", tmp_path / "g8"
    F.enrol(known, g32, model=fp32, verbose=False)
    F.enrol(known, g8, backend="onnx-int8", verbose=False)
    probes = [photos / "Grace" / "10.jpg", photos / "Eileen" / "11.jpg"]
    for gallery in (g32, g8):
        want = F.identify(gallery, probes, model=fp32, verbose=False)
        got = F.identify(gallery, probes, backend="onnx-int8", verbose=False)
        assert [r["faces"][0]["name"] for r in got] == [r["faces"][0]["name"] for r in want] == ["Grace", "Eileen"]
        for x, y in zip(got, want):
            assert abs(x["faces"][0]["similarity"] - y["faces"][0]["similarity"]) < 0.01


def test_refusals_are_one_line(exported, photos, tmp_path):
    with pytest.raises(UserError, match="--calibration DIR"):
        imgclf.export("faces", int8=True)
    with pytest.raises(UserError, match="faces exports at int8 only"):
        imgclf.export("faces")
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((photos / "Grace").glob("*.jpg"))[:4]:
        (few / p.name).write_bytes(p.read_bytes())
    with pytest.raises(UserError, match="at least 20 faces"):
        imgclf.export("faces", int8=True, calibration=few)
    assert Path(exported["path"]).is_file()  # a refused export removes only what it was making

    fp32 = tmp_path / "net.onnx"
    fp32.write_bytes(b"the fp32 graph")
    with pytest.raises(UserError, match="make one with: imgclf export faces --int8 --calibration PHOTOS/"):
        engine.int8_path(fp32)
    packaged.int8_file(fp32).write_bytes(Path(exported["path"]).read_bytes())
    with pytest.raises(UserError, match="another face network"):
        engine.int8_path(fp32)
    with pytest.raises(UserError, match="unknown --backend 'openvino'; choose one of auto, onnx, onnx-int8, torch"):
        F.FaceModel("cpu", backend="openvino")  # its declared rule (settings.faces), before dlib loads


def test_service_identifies_with_the_int8_embedder(exported, photos, tmp_path, tmp_path_factory, monkeypatch):
    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    import httpx
    from helpers import trained_run

    run, _ = trained_run(tmp_path_factory)
    known = tmp_path / "known"
    for name in ("Grace", "Eileen"):
        (known / name).mkdir(parents=True)
        for p in sorted((photos / name).glob("*.jpg"))[:3]:
            (known / name / p.name).write_bytes(p.read_bytes())
    gallery = tmp_path / "gallery"
    F.enrol(known, gallery, verbose=False)
    model = imgclf.load(run)
    app = serving.create_app(model, serving.ServeSettings(faces=str(gallery), faces_backend="onnx-int8"))
    probe = photos / "Grace" / "10.jpg"
    with serving.BackgroundServer(app) as url:
        info = httpx.get(f"{url}/model").json()["faces"]
        headers = {"Content-Type": "image/jpeg"}
        got = httpx.post(f"{url}/faces/identify", content=probe.read_bytes(), headers=headers, timeout=60).json()
    assert info["backend"] == "onnx-int8" and info["precision"] == "int8" and info["people"] == 2
    want = F.identify(gallery, [probe], backend="onnx-int8", verbose=False)[0]
    assert [f["name"] for f in got["faces"]] == [f["name"] for f in want["faces"]] == ["Grace"]
    assert got["faces"][0]["similarity"] == pytest.approx(want["faces"][0]["similarity"], abs=1e-6)

    # no int8 model: the service does not start, and says how to make one
    monkeypatch.setattr(packaged, "int8_file", lambda fp32: tmp_path / "no.int8.onnx")
    with pytest.raises(UserError, match="make one with: imgclf export faces --int8 --calibration PHOTOS/"):
        serving.create_app(model, serving.ServeSettings(faces=str(gallery), faces_backend="onnx-int8"))
    with pytest.raises(UserError, match="--faces-backend must be one of auto, onnx, onnx-int8, torch"):
        serving.ServeSettings(faces=str(gallery), faces_backend="openvino")
    with pytest.raises(UserError, match="--faces-backend runs the face embedder of --faces GALLERY"):
        serving.ServeSettings(faces_backend="onnx-int8")  # no gallery: it would be ignored


def test_cli_backend_option(photos, tmp_path):
    p = cli("export", "faces", "--int8", check=False)
    assert p.returncode != 0 and "--calibration DIR" in p.stderr and "Traceback" not in p.stderr

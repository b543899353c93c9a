"""The pretrained person detector at int8: exported from photos a user gives (--calibration), loaded with
backend onnx-int8 (and OpenVINO), refused with one line when it cannot be made or kept. The photos are
real ones shipped with our dependencies: matplotlib's portrait pasted into scikit-learn's two photos
at seeded places and sizes (20 photos, people in most), and the two photos as they are."""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import replace
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from helpers import cli
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
from imgclf.core.errors import UserError
from imgclf.detection import engines as E
from imgclf.detection import int8 as I
from imgclf.models.packaged import int8_file

PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
SCENES = [Path(p) for p in load_sample_images().filenames]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    return calibration_photos(tmp_path_factory.mktemp("calibration"))


def calibration_photos(d: Path) -> Path:
    """20 photos in `d`: the portrait pasted into the two scenes (none in the first two)."""
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    face = Image.open(PORTRAIT).convert("RGB")
    for k in range(20):
        scene = Image.open(SCENES[k % 2]).convert("RGB")
        if k >= 2:  # the first two: no one in them
            h = int(rng.integers(100, 300))
            w = h * face.width // face.height
            scene.paste(face.resize((w, h)), (int(rng.integers(0, 640 - w)), int(rng.integers(0, 427 - h))))
        scene.save(d / f"photo{k:02d}.jpg", quality=90)
    return d


@pytest.fixture(scope="module")
def exported(calibration, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # the cache the tests' functions see (conftest's _isolated_cache)
        mp.setenv("IMGCLF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        return imgclf.export("person", int8=True, calibration=calibration, verbose=False)


def test_int8_detector_finds_the_person_fp32_finds(exported):
    assert Path(exported["path"]).is_file() and exported["n_calibration"] == 20
    assert exported["presence_agreement"] >= 0.95 and exported["checked_on"] == "the calibration photos"
    record = I.int8_record(imgclf.detection.load_detector().graph, None)
    assert record["path"] == exported["path"]

    fp32, int8 = imgclf.detection.load_detector(), imgclf.detection.load_detector(backend="onnx-int8")
    assert "int8" in int8.describe() and "int8" not in fp32.describe()
    img = Image.open(PORTRAIT).convert("RGB")
    a, b = fp32.detect(img), int8.detect(img)
    assert a["present"] and b["present"] and a["count"] == b["count"] == 1
    assert abs(a["score"] - b["score"]) < 0.1
    assert max(abs(a["boxes"][0][k] - b["boxes"][0][k]) for k in ("x1", "y1", "x2", "y2")) < 0.05 * img.width


def test_int8_weights_keep_to_7_bits_and_older_graphs_warn_where_the_cpu_lacks_vnni(
    exported, tmp_path, monkeypatch, capsys
):
    """x86 without VNNI (AVX2) multiplies uint8 by int8 with saturating 16-bit sums: full-range weights
    made the int8 detector call 5 of 20 of these photos unlike fp32 there. imgclf quantizes to 7 bits
    (marked in the graph) and warns on an unmarked int8 graph on such a CPU."""
    import onnx

    from imgclf.core import device as D
    from imgclf.inference.onnx_runtime import model_props, open_session

    proto = onnx.load(exported["path"])
    props = model_props(proto)
    assert props[D.WEIGHTS_PROP] == D.WEIGHTS_7BIT and props["precision"] == "int8" and "weights_sha256" in props
    del props[D.WEIGHTS_PROP]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, tmp_path / "old.int8.onnx")
    capsys.readouterr()
    for flags, warned in [
        ({"avx2"}, True),
        ({"avx2", "avx512_vnni"}, False),
        ({"avx2", "avx_vnni"}, False),
        (None, False),
    ]:
        monkeypatch.setattr(D, "cpu_flags", lambda f=flags: f)
        open_session(tmp_path / "old.int8.onnx")
        err = capsys.readouterr().err
        assert ("full-range int8 weights" in err) == warned and err.count("\n") == warned, (flags, err)
    monkeypatch.setattr(D, "cpu_flags", lambda: {"avx2"})
    open_session(exported["path"])  # marked: no warning
    open_session(imgclf.detection.load_detector().graph)  # fp32: no warning
    assert capsys.readouterr().err == ""


def test_each_backend_has_its_own_measured_cost(exported, monkeypatch):
    from imgclf.detection import cost

    calls = []
    monkeypatch.setattr(cost, "timed", lambda fn: calls.append(fn) or 0.02 * len(calls))
    fp32, int8 = imgclf.detection.load_detector(), imgclf.detection.load_detector(backend="onnx-int8")
    assert cost.seconds_per_photo(fp32) == 0.02 and cost.seconds_per_photo(int8) == 0.04
    assert cost.seconds_per_photo(fp32.with_options(threshold=0.5)) == 0.02 and len(calls) == 2
    # What runs the graph is what is measured (a detector in ONNX Runtime never builds its torch network):
    # another session on the same graph is measured again; the int8 session lent to another detector is not.
    from imgclf.inference.onnx_runtime import open_session

    assert cost.seconds_per_photo(replace(fp32, session=open_session(fp32.graph))) == 0.06
    assert cost.seconds_per_photo(replace(fp32, session=int8.session, backend="onnx-int8")) == 0.04
    assert len(calls) == 3 and not hasattr(fp32.model, "parameters")


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed")
def test_openvino_runs_the_fp32_graph(exported):
    img = Image.open(PORTRAIT).convert("RGB")
    onnx = imgclf.detection.load_detector().detect(img)
    vino = imgclf.detection.load_detector(backend="openvino")
    assert "OpenVINO" in vino.describe()
    got = vino.detect(img)
    assert got["count"] == onnx["count"] and abs(got["score"] - onnx["score"]) < 1e-3
    with pytest.raises(UserError, match="--backend must be one of"):  # 12x slower than fp32: not offered
        imgclf.detection.load_detector(backend="openvino-int8")


def test_cli_scan_with_the_int8_detector(exported, tmp_path):
    Image.open(PORTRAIT).save(tmp_path / "portrait.jpg")
    p = cli("scan", tmp_path / "portrait.jpg", "--backend", "onnx-int8")
    assert "ONNX Runtime, int8" in p.stdout and "portrait.jpg  present" in p.stdout
    bad = cli("scan", tmp_path / "portrait.jpg", "--backend", "tflite", check=False)
    assert (
        bad.returncode != 0
        and "unknown --backend 'tflite'; choose one of auto" in bad.stderr
        and "Traceback" not in bad.stderr
    )


def test_service_scans_with_the_int8_detector(exported, tmp_path_factory):
    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    import httpx
    from helpers import trained_run

    run, _ = trained_run(tmp_path_factory)  # a shapes model: /scan answers with the detector
    app = serving.create_app(imgclf.load(run), serving.ServeSettings(detector_backend="onnx-int8"))
    with serving.BackgroundServer(app) as url:
        info = httpx.get(f"{url}/model").json()
        headers = {"Content-Type": "image/jpeg"}
        got = httpx.post(f"{url}/scan", content=PORTRAIT.read_bytes(), headers=headers, timeout=60).json()
    assert info["detector"] == {
        "name": "person",
        "backend": "onnx-int8",
        "engine": "ONNX Runtime, int8",
        "precision": "int8",
    }
    want = imgclf.detection.load_detector(backend="onnx-int8").detect(Image.open(PORTRAIT).convert("RGB"))
    assert got["present"] and got["count"] == want["count"] == 1
    assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert got["boxes"][0]["x1"] == pytest.approx(want["boxes"][0]["x1"], abs=0.1)


# last of the tests that need the int8 model: a refused export removes it
def test_refusals_are_one_line_and_leave_no_int8_model(exported, calibration, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--calibration DIR"):
        imgclf.export("person", int8=True)
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(calibration.glob("*.jpg"))[:5]:
        (few / p.name).write_bytes(p.read_bytes())
    with pytest.raises(UserError, match="at least 20 readable photos"):
        imgclf.export("person", int8=True, calibration=few)
    with pytest.raises(UserError, match="--calibration is for a detector"):
        imgclf.export("runs/whatever", int8=True, calibration=few)

    # int8 that changes too many answers: refused, and the earlier int8 model goes too
    int8_file = Path(exported["path"])
    monkeypatch.setattr(I, "agreement", lambda *a: {"changed_percent": 50.0, "changed_photos": 10, "n_checked": 20})
    with pytest.raises(UserError, match="changes the present/absent answer on 10 of 20"):
        imgclf.export("person", int8=True, calibration=calibration)
    assert not int8_file.exists() and not int8_file.with_name(int8_file.name.replace(".onnx", ".json")).exists()
    with pytest.raises(UserError, match="make one with: imgclf export person --int8 --calibration PHOTOS/"):
        imgclf.detection.load_detector(backend="onnx-int8")
    with pytest.raises(UserError, match="--backend must be one of"):
        imgclf.detection.load_detector(backend="tensorrt")


def test_a_stale_int8_graph_is_refused(tmp_path):
    import onnx

    fp32 = tmp_path / "det.onnx"
    fp32.write_bytes(b"the fp32 graph")
    stale = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    onnx.helper.set_model_props(stale, {"precision": "int8", "weights_sha256": "0" * 64})
    onnx.save(stale, str(int8_file(fp32)))
    with pytest.raises(UserError, match="made from another graph"):
        E.int8_path(fp32, "runs/boxes-1")


def test_service_without_the_int8_detector_stops_in_one_line(tmp_path, tmp_path_factory):
    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    from helpers import trained_run

    run, _ = trained_run(tmp_path_factory)
    boxes = detector_run(tmp_path / "boxes-1")  # never exported at int8
    with pytest.raises(
        UserError, match=f"the detector {boxes} has no int8 model; make one with: imgclf export {boxes} --int8"
    ):
        serving.create_app(imgclf.load(run), serving.ServeSettings(detector=str(boxes), detector_backend="onnx-int8"))
    with socket.socket() as s:  # a port free now: a fixed one may be taken, and that error comes first
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    p = cli(
        "serve", run, "--detector", boxes, "--detector-backend", "onnx-int8", "--port", port, check=False, timeout=300
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert f"the detector {boxes} has no int8 model; make one with: imgclf export {boxes} --int8" in p.stderr
    bad = cli("serve", run, "--detector-backend", "openvino-int8", check=False, timeout=300)
    assert (
        bad.returncode != 0 and "--detector-backend must be one of auto, torch, onnx, onnx-int8, openvino" in bad.stderr
    )


def detector_run(run: Path) -> Path:
    """A detector run folder as imgclf train BOXES/ writes it, holding the pretrained weights."""
    import json
    import shutil

    from imgclf.models.person import weights

    run.mkdir()
    shutil.copy(weights.pretrained_weights(), run / "detector.safetensors")
    (run / "detector.json").write_text(json.dumps({"classes": ["person"], "threshold": 0.15, "positive": "person"}))
    return run


def test_cli_int8_detector_export_needs_photos():
    p = cli("export", "person", "--int8", check=False)
    assert p.returncode != 0 and "--calibration DIR" in p.stderr and "Traceback" not in p.stderr


def test_a_detector_run_calibrates_on_its_training_photos(calibration, tmp_path):
    import json

    run = detector_run(tmp_path / "boxes-1")
    photos = sorted(calibration.glob("*.jpg"))
    rows = [f"{p},train" for p in photos] + [f"{p},test" for p in photos[:6]]
    (run / "splits.csv").write_text("path,split\n" + "\n".join(rows) + "\n")
    r = imgclf.export(run, int8=True, verbose=False)
    assert r["path"] == str(run / "detector.int8.onnx") and r["calibration_from"] == "train split"
    assert r["checked_on"] == "test split" and r["n_checked"] == 6 and r["n_calibration"] == 20
    assert json.loads((run / "export_int8.json").read_text())["presence_agreement"] == r["presence_agreement"]
    det = imgclf.detection.load_detector(run, backend="onnx-int8")
    assert "int8" in det.describe() and det.detect(Image.open(PORTRAIT).convert("RGB"))["present"]

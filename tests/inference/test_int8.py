"""int8 export: the quantized model agrees with fp32 and records its accuracy; refusals leave fp32 alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, trained_run

import imgclf
from imgclf.core.errors import UserError
from imgclf.inference import quantize

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow  # the runs here are trained (the shared serving run, tiny_run)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(run, its data, the int8 export's result): a copy of the serving tests' run (90 shapes
    images, 63 for training), quantized once."""
    trained, data = trained_run(tmp_path_factory)
    run = Path(shutil.copytree(trained, tmp_path_factory.mktemp("int8") / "run"))
    return run, data, imgclf.export(run, int8=True, verbose=False)


def test_int8_export_agrees_with_fp32_and_records_accuracy(exported):
    run, data, result = exported
    assert result["path"] == str(run / "model.int8.onnx") and (run / "model.onnx").is_file()
    assert result["n_calibration"] >= quantize.MIN_CALIBRATION and result["n_test"] > 0
    assert set(result["calibration_per_class"]) == {"square", "disc", "stripes"}
    assert result["loss_points"] <= 1.0 and result["agreement"] >= 0.9
    record = json.loads((run / "export_int8.json").read_text())
    assert record["accuracy_int8"] == result["accuracy_int8"] and record["accuracy_fp32"] == result["accuracy_fp32"]

    import onnx

    proto = onnx.load(str(run / "model.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node)  # QDQ: really quantized
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["precision"] == "int8" and json.loads(props["classes"]) == ["disc", "square", "stripes"]

    int8, fp32 = imgclf.load(run, backend="onnx-int8"), imgclf.load(run, backend="onnx")
    a, b = int8.predict(data), fp32.predict(data)
    assert len(a) == 90 and np.mean([x["label"] == y["label"] for x, y in zip(a, b)]) >= 0.9

    from imgclf.serving.info import model_info

    info = model_info(int8)
    assert info["backend"] == "onnx-int8" and info["precision"] == "int8"
    assert info["int8"]["accuracy_int8"] == result["accuracy_int8"]
    assert model_info(fp32)["backend"] == "onnx" and model_info(fp32)["precision"] == "fp32"

    from types import SimpleNamespace

    from imgclf.reporting.card import _int8_line

    line = _int8_line(SimpleNamespace(path=run))  # the model card's line (its other facts are not read)
    assert "model.int8.onnx" in line and f"{result['accuracy_int8']:.1%}" in line


def test_loss_above_max_loss_is_refused_and_leaves_no_int8_model(exported, tmp_path, monkeypatch):
    run = Path(shutil.copytree(exported[0], tmp_path / "run"))  # with an earlier int8 model in it
    fp32 = (run / "model.onnx").read_bytes()

    def worse(*args):
        return {"accuracy_fp32": 0.9, "accuracy_int8": 0.85, "loss_points": 5.0, "n_test": 20}

    monkeypatch.setattr(quantize, "compare", worse)
    with pytest.raises(UserError, match=r"int8 loses 5\.0 accuracy points .* more than --max-loss 2") as e:
        imgclf.export(run, int8=True, max_loss=2, verbose=False)
    assert "\n" not in str(e.value)
    assert not (run / "model.int8.onnx").exists() and not (run / "export_int8.json").exists()
    assert (run / "model.onnx").read_bytes() == fp32
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    with pytest.raises(UserError, match="has no int8 model; make one with: imgclf export .* --int8"):
        imgclf.load(run, backend="onnx-int8")
    with pytest.raises(UserError, match="--max-loss must be a number"):
        imgclf.export(run, int8=True, max_loss=-1, verbose=False)


def test_too_few_calibration_images_get_one_line_and_fp32_stays(tiny_run, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # 30 images: fewer than 50 to train on
    imgclf.export(run, verbose=False)
    fp32 = (run / "model.onnx").read_bytes()
    p = cli("export", run, "--int8", check=False)
    assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("error: int8 calibration needs at least 50 training images"), p.stderr
    assert (run / "model.onnx").read_bytes() == fp32 and not (run / "model.int8.onnx").exists()


def test_stale_int8_model_is_refused_on_load(exported, tmp_path):
    import onnx

    run = Path(shutil.copytree(exported[0], tmp_path / "run"))

    proto = onnx.load(str(run / "model.int8.onnx"))
    onnx.helper.set_model_props(proto, {"weights_sha256": "0" * 64})
    onnx.save(proto, str(run / "model.int8.onnx"))
    with pytest.raises(UserError, match="made from other weights .* make it again with: imgclf export"):
        imgclf.load(run, backend="onnx-int8")


def test_openvino_backends_answer_like_onnx_runtime(exported):
    pytest.importorskip("openvino")
    from imgclf.serving.info import model_info

    run, data, _ = exported
    for ov_backend, ort_backend in (("openvino", "onnx"), ("openvino-int8", "onnx-int8")):
        model = imgclf.load(run, backend=ov_backend)
        a, b = model.predict(data), imgclf.load(run, backend=ort_backend).predict(data)
        assert np.mean([x["label"] == y["label"] for x, y in zip(a, b)]) >= 0.9, ov_backend
        assert model_info(model)["backend"] == ov_backend
    assert (
        max(
            abs(x["confidence"] - y["confidence"])
            for x, y in zip(*(imgclf.load(run, backend=k).predict(data) for k in ("openvino", "onnx")))
        )
        < 1e-3
    )  # fp32 in both engines (no bf16)
    assert model_info(model)["precision"] == "int8"
    with pytest.raises(UserError, match="runs on the CPU"):
        imgclf.load(run, backend="openvino", device="cuda")
    # Like ONNX Runtime's, OpenVINO's predictor never imports torch (the files exist: no export).
    code = (
        "import atexit, sys, imgclf; atexit.register(lambda: print('TORCH', 'torch' in sys.modules)); "
        f"print('LABEL', imgclf.load({str(run)!r}, backend='openvino-int8').predict({str(data)!r})[0]['label'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LABEL " in out.stdout and "TORCH False" in out.stdout, out.stdout + out.stderr


def test_openvino_backend_without_openvino_says_how_to_install(exported, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(UserError, match=r"needs OpenVINO: pip install 'imgclf\[openvino\]'"):
        imgclf.load(exported[0], backend="openvino-int8")


@pytest.mark.parametrize("backend", ["onnx-int8", "openvino-int8"])
def test_service_serves_the_int8_model_and_says_so(exported, backend):
    httpx = pytest.importorskip("httpx")
    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
    run, data, result = exported
    with serving.BackgroundServer(serving.create_app(imgclf.load(run, backend=backend))) as url:
        info = httpx.get(f"{url}/model").json()
        assert info["backend"] == backend and info["precision"] == "int8"
        assert info["int8"]["accuracy_fp32"] == result["accuracy_fp32"]
        png = (data / "disc" / "disc_000.png").read_bytes()
        r = httpx.post(f"{url}/predict", files={"file": ("disc.png", png, "image/png")})
        assert r.status_code == 200 and r.json()["results"][0]["label"] in ("disc", "square", "stripes"), r.text


def test_fp32_export_options_with_int8_are_one_line(exported):
    with pytest.raises(UserError, match="--opset and --no-check are for the fp32 export"):
        imgclf.export(exported[0], int8=True, opset=17, verbose=False)

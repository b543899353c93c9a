"""ONNX export: parity with PyTorch for each model family, the file's contract, and the onnx backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError
from imgclf.inference import onnx_export as exporting

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

MODELS = ["simple_cnn", "resnet_fast", "timm/resnet10t"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("export") / "shapes", per_class=12)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    """A run per model family. resnet_fast trains 1 epoch (so its stem is whitened from the data);
    the others reuse that run's folder with their own weights: random, BatchNorm statistics from the
    data, which is all an export needs and much faster than training."""
    import torch

    from imgclf.models import create_model
    from imgclf.store.checkpoint import save_weights
    from imgclf.store.run_meta import RunMeta, save_run_meta

    root = tmp_path_factory.mktemp("runs")
    trained = imgclf.train(data, model="resnet_fast", epochs=1, img_size=32, out=root / "resnet_fast", verbose=False)
    meta = json.loads((trained.path / "model.json").read_text())
    model = imgclf.load(trained.path)
    images = np.stack([model.preprocess(str(f)) for f in sorted(data.rglob("*.png"))])
    x = (
        torch.from_numpy(images).permute(0, 3, 1, 2) / 255
        - torch.tensor(meta["normalization"]["mean"]).view(1, 3, 1, 1)
    ) / torch.tensor(meta["normalization"]["std"]).view(1, 3, 1, 1)
    out = {"resnet_fast": trained.path}
    for name in ("simple_cnn", "timm/resnet10t"):
        torch.manual_seed(0)
        net = create_model(name, num_classes=3, in_chans=3, img_size=32).train()
        with torch.no_grad():
            net(x)  # BatchNorm running statistics of real images
        run = out[name] = Path(shutil.copytree(trained.path, root / name.replace("/", "_")))
        save_weights(run / "model.safetensors", net.state_dict())
        save_run_meta(  # with the hash of these weights
            run, RunMeta.from_dict({**meta, "architecture": {"name": name, "kwargs": {}, "in_chans": 3}})
        )
    return out


@pytest.fixture(scope="module")
def exports(runs, data) -> dict[str, dict]:
    return {m: imgclf.export(runs[m], data=data, verbose=False) for m in MODELS}


@pytest.mark.parametrize("model", MODELS)
def test_onnx_matches_pytorch_on_real_images(runs, exports, model):
    result = exports[model]
    assert result["path"] == str(runs[model] / "model.onnx") and Path(result["path"]).is_file()
    assert result["n_images"] == 36 and result["max_prob_diff"] <= 1e-4
    assert json.loads((runs[model] / "export.json").read_text())["max_prob_diff"] == result["max_prob_diff"]


def test_dynamic_batch_and_metadata_reproduce_predictions(runs, exports, data):
    """The README recipe: ONNX Runtime plus the file's metadata alone give imgclf's probabilities."""
    from PIL import Image

    run = runs["simple_cnn"]
    sess = ort.InferenceSession(str(run / "model.onnx"))
    m = sess.get_modelmeta().custom_metadata_map
    meta = json.loads((run / "model.json").read_text())
    assert json.loads(m["classes"]) == meta["classes"] and int(m["input_size"]) == meta["input"]["size"]
    assert json.loads(m["mean"]) == meta["normalization"]["mean"] and m["resize"] == "squash"
    assert float(m["temperature"]) == meta["calibration"]["temperature"] and m["channel_order"] == "RGB"

    files = sorted((data / "disc").iterdir())[:5]
    size = int(m["input_size"])
    x = np.stack(
        [
            (
                np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
                * float(m["value_scale"])
                - json.loads(m["mean"])
            )
            / json.loads(m["std"])
            for f in files
        ]
    )
    x = x.transpose(0, 3, 1, 2).astype(np.float32)
    logits = sess.run(None, {"input": x})[0]
    assert logits.shape == (5, 3) and sess.run(None, {"input": x[:1]})[0].shape == (1, 3)
    z = logits / float(m["temperature"])
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ours = imgclf.load(run, tta="none").predict([str(f) for f in files], top_k=3)
    assert np.abs(p.max(1) - [r["confidence"] for r in ours]).max() < 1e-4


def test_onnx_backend_predicts_like_torch_and_exports_when_stale(runs, data, tmp_path, capsys):
    run = Path(shutil.copytree(runs["resnet_fast"], tmp_path / "run"))
    (run / "model.onnx").unlink(missing_ok=True)
    onnx_model = imgclf.load(run, backend="onnx", tta="flip")  # exports on first use
    assert "exporting" in capsys.readouterr().err and (run / "model.onnx").is_file()
    a = imgclf.load(run, tta="flip", backend="torch").predict(data)
    b = onnx_model.predict(data)
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert max(abs(x["confidence"] - y["confidence"]) for x, y in zip(a, b)) < 1e-4

    shutil.copy(runs["simple_cnn"] / "model.onnx", run / "model.onnx")  # another run's export
    imgclf.load(run, backend="onnx")
    assert "other weights" in capsys.readouterr().err
    imgclf.load(run, backend="onnx")  # up to date: no export
    assert "exporting" not in capsys.readouterr().err

    (run / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(UserError, match="not an ONNX model"):
        imgclf.load(run, backend="onnx")
    with pytest.raises(UserError, match="unknown backend"):
        imgclf.load(run, backend="tensorrt")
    with pytest.raises(UserError, match="format"):
        imgclf.export(run, format="tflite")


def test_training_on_a_cpu_leaves_a_checked_model_onnx_that_backend_auto_runs(tiny_run, tmp_path):
    import onnx

    record = json.loads((tiny_run / "export.json").read_text())
    assert record["exporter"] == "torchscript" and record["images_from"] == "validation split"
    assert record["n_images"] > 0 and record["max_prob_diff"] <= exporting.TOLERANCE
    assert exporting.onnx_weights(tiny_run / "model.onnx") == exporting.weights_digest(tiny_run)
    files = sorted(str(f) for f in (tiny_run.parent / "shapes").rglob("*.png"))
    auto, torch_model = imgclf.load(tiny_run, backend="auto"), imgclf.load(tiny_run)
    assert auto.net.backend == "onnx" and not hasattr(torch_model.net, "backend")
    a, b = auto.predict(files), torch_model.predict(files)
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert max(abs(x["confidence"] - y["confidence"]) for x, y in zip(a, b)) < 1e-4

    # A file made from other weights (a resumed or retrained run): auto runs PyTorch, and exports nothing.
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    proto = onnx.load(str(run / "model.onnx"))
    onnx.helper.set_model_props(proto, {"weights_sha256": "0" * 64})
    onnx.save(proto, str(run / "model.onnx"))
    assert not hasattr(imgclf.load(run, backend="auto").net, "backend")
    assert exporting.onnx_weights(run / "model.onnx") == "0" * 64
    summary = imgclf.predict_folder(tiny_run, files, tmp_path / "p.csv", verbose=False)
    assert summary["backend"] == "onnx" and summary["predicted"] == len(files)

    # No validation images: the graph is checked on test images instead.
    data = make_shapes_dataset(tmp_path / "shapes", per_class=12)
    run = imgclf.train(
        data, out=tmp_path / "noval", model="resnet_fast", epochs=1, img_size=32, val_frac=0, verbose=False
    )
    record = json.loads((run.path / "export.json").read_text())
    assert record["images_from"] == "test split" and record["n_images"] > 0


@pytest.mark.slow
def test_an_exported_run_predicts_without_importing_torch(tiny_run, tmp_path):
    """Backend auto on an exported run is ONNX Runtime on numpy: `imgclf predict`, `imgclf evaluate`,
    `imgclf serve` (start-up and /predict) and imgclf.load never import torch (3-4 s of a Lite0 run's
    command), and every test-time view gives PyTorch's logits."""
    import subprocess
    import sys

    from imgclf.settings.checks import TTA_MODES

    files = sorted(str(f) for f in (tiny_run.parent / "shapes").rglob("*.png"))[:6]
    api = f"m = imgclf.load({str(tiny_run)!r}, backend='auto'); print('LABELS', [r['label'] for r in m.predict({files!r})])"
    cli = f"sys.argv = ['imgclf', 'predict', {str(tiny_run)!r}, {files[0]!r}]; from imgclf.cli import entry; entry()"
    run = shutil.copytree(tiny_run, tmp_path / "run")  # evaluate writes its figures into the run
    evaluate = f"sys.argv = ['imgclf', 'evaluate', {str(run)!r}]; from imgclf.cli import entry; entry()"
    other = tiny_run.parent / "shapes"  # and on a folder, with its report (the run's own photos: said, as ever)
    on_data = f"sys.argv = ['imgclf', 'evaluate', {str(run)!r}, {str(other)!r}]; from imgclf.cli import entry; entry()"
    # `imgclf serve` as typed, uvicorn's loop replaced by requests to the app it was given
    serve = (
        "import uvicorn\nfrom starlette.testclient import TestClient\ndef answer(self, **kw):\n"
        "    with TestClient(self.config.app, base_url='http://127.0.0.1:8000') as c:\n"
        f"        r = c.post('/predict', files={{'file': open({files[0]!r}, 'rb')}})\n"
        "        print('SERVED', r.status_code, r.json()['results'][0]['label'], c.get('/model').json()['backend'])\n"
        f"uvicorn.Server.run = answer; sys.argv = ['imgclf', 'serve', {str(tiny_run)!r}, '--no-batching']\n"
        "from imgclf.cli import entry; entry()"
    )
    for code in (api, cli, evaluate, on_data, serve):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import atexit, sys, imgclf; atexit.register(lambda: print('TORCH', 'torch' in sys.modules))\n{code}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and "TORCH False" in out.stdout, out.stdout + out.stderr
    assert (
        "SERVED 200" in out.stdout and "onnx on cpu" in out.stdout and out.stdout.rstrip().endswith("onnx\nTORCH False")
    )
    expected = [r["label"] for r in imgclf.load(tiny_run).predict(files)]
    assert (
        f"LABELS {expected}"
        in subprocess.run(
            [sys.executable, "-c", f"import imgclf; {api}"], capture_output=True, text=True, timeout=120
        ).stdout
    )
    for tta in TTA_MODES:
        onnx, torch_model = imgclf.load(tiny_run, backend="auto", tta=tta), imgclf.load(tiny_run, tta=tta)
        assert type(onnx).__name__ == "OnnxModel" and onnx.backend == "onnx"
        x = np.stack([onnx.preprocess(f) for f in files])
        np.testing.assert_allclose(onnx.predict_logits(x), torch_model.predict_logits(x), atol=1e-4)


def test_failed_check_installs_nothing_and_torch_export_fallback(runs, tmp_path, monkeypatch):
    """A network the tracer cannot take (or a torch without it) is exported by torch.export."""
    import torch

    real = torch.onnx.export

    def no_tracer(*args, dynamo=True, **kw):
        if not dynamo:
            raise RuntimeError("the TorchScript exporter was removed")
        return real(*args, dynamo=True, **kw)

    monkeypatch.setattr(torch.onnx, "export", no_tracer)
    out = tmp_path / "m.onnx"
    result = imgclf.export(runs["simple_cnn"], out=out, verbose=False)
    assert result["exporter"] == "dynamo" and result["max_prob_diff"] <= 1e-4
    assert ort.InferenceSession(str(out)).run(None, {"input": np.zeros((4, 3, 32, 32), np.float32)})[0].shape == (4, 3)
    monkeypatch.setattr(torch.onnx, "export", real)

    moved = Path(shutil.copytree(runs["simple_cnn"], tmp_path / "moved"))  # its images are gone
    (moved / "splits.csv").unlink()
    assert imgclf.export(moved, verbose=False)["images_from"].startswith("random noise")
    shutil.rmtree(moved)
    out.unlink()
    monkeypatch.setattr(exporting, "TOLERANCE", -1.0)
    with pytest.raises(UserError, match="does not match PyTorch"):
        imgclf.export(runs["simple_cnn"], out=out, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_prints_parity(runs, data, tmp_path):
    from typer.testing import CliRunner

    from imgclf.cli import app

    r = CliRunner().invoke(
        app, ["export", str(runs["resnet_fast"]), "--out", str(tmp_path / "x.onnx"), "--data", str(data)]
    )
    assert r.exit_code == 0, r.output
    assert "max probability difference" in r.output and (tmp_path / "x.onnx").is_file()

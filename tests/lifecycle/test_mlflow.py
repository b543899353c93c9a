"""MLflow tracking against a real `mlflow server` (sqlite backend, file artefacts): a trained run's
params, metrics, history and files; the registry mirrored as model versions with the same aliases
through add, promote and rollback; an unreachable server is a warning, never a failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import make_shapes_dataset, reporting

pytest.importorskip("mlflow")
from typer.testing import CliRunner  # noqa: E402

import imgclf  # noqa: E402
from imgclf.cli import app  # noqa: E402
from imgclf.core.errors import UserError  # noqa: E402
from imgclf.lifecycle import tracking  # noqa: E402

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

MLFLOW_BIN = Path(sys.executable).parent / "mlflow"
TINY = dict(model="simple_cnn", epochs=2, img_size=16, batch_size=16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real tracking server, started first so it boots while the first run trains."""
    if not MLFLOW_BIN.exists():
        pytest.skip("no mlflow command beside this Python")
    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(d / "server.log", "w")
    proc = subprocess.Popen(
        [
            str(MLFLOW_BIN),
            "server",
            "--backend-store-uri",
            f"sqlite:///{d / 'mlflow.db'}",
            "--default-artifact-root",
            (d / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=d,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield f"http://127.0.0.1:{port}", proc, d
    os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
    try:
        proc.wait(2)  # a throwaway database: no need to wait for a graceful shutdown
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _wait_healthy(server, timeout: float = 60) -> str:
    uri, proc, d = server
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {(d / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return uri
        except OSError:
            time.sleep(0.3)
    pytest.fail("mlflow server did not become healthy")


@pytest.fixture(scope="module")
def runs(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("work")
    data = make_shapes_dataset(root / "shapes", per_class=12, size=16)
    with reporting():
        first = imgclf.train(data, out=root / "runs" / "shapes-1", verbose=False, **TINY).path
    return root, data, first


def _cli(*args) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r.output


@pytest.mark.report
def test_train_and_registry_are_mirrored(server, runs, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root, data, first = runs
    uri = _wait_healthy(server)
    second = root / "runs" / "shapes-2"
    out = _cli(
        "train",
        data,
        "--out",
        second,
        "--mlflow",
        uri,
        "--seed",
        1,
        *sum(([f"--{k.replace('_', '-')}", v] for k, v in TINY.items()), []),
    )
    assert f"mlflow: run shapes-2 logged to {uri}" in out

    c = MlflowClient(uri)
    [run] = c.search_runs([c.get_experiment_by_name("imgclf").experiment_id], "attributes.run_name = 'shapes-2'")
    m, p = run.data.metrics, run.data.params
    assert 0 <= m["test_accuracy"] <= 1 and "test_macro_f1" in m and "test_ece" in m and "best_val_acc" in m
    assert p["model"] == "simple_cnn" and p["img_size"] == "16" and p["epochs"] == "2" and p["num_classes"] == "3"
    assert [x.step for x in c.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    files = {f.path for f in c.list_artifacts(run.info.run_id, "run")}
    assert {"run/report.html", "run/model.json", "run/config.yaml", "run/metrics.json"} <= files
    assert "run/model.safetensors" not in files  # weights only with --mlflow-weights

    reg = root / "registry"
    _cli("registry", "add", first, "--registry", reg, "--as", "production", "--mlflow", uri)
    _cli("registry", "add", second, "--registry", reg, "--as", "candidate", "--mlflow", uri)
    out = _cli("registry", "promote", "candidate", "--registry", reg, "--mlflow", uri)
    name = tracking.model_name(reg)
    assert name == f"imgclf-{root.name}" and f"registered model {name}" in out

    def production() -> str:
        return c.get_model_version_by_alias(name, "production").tags["imgclf_version"]

    assert production() == "2" and c.get_model_version_by_alias(name, "candidate").tags["imgclf_version"] == "2"
    mv2 = c.get_model_version_by_alias(name, "production")
    assert mv2.run_id == run.info.run_id  # the run train logged, not a second copy
    assert mv2.tags["imgclf.parent"] == "None" and mv2.tags["imgclf.run_path"] == str(second.resolve())
    _cli("registry", "rollback", "--registry", reg, "--mlflow", uri)
    assert production() == "1"
    history = c.get_registered_model(name).tags["imgclf.history"]
    assert '"action": "promote"' in history and '"action": "rollback"' in history
    # Run 1 was logged when first registered; no run appears twice.
    names = sorted(r.info.run_name for r in c.search_runs([run.info.experiment_id]))
    assert names == ["shapes-1", "shapes-2"]


def test_unreachable_server_is_a_warning(runs, capsys):
    _, _, first = runs
    t = time.time()
    assert tracking.log_run(first, f"http://127.0.0.1:{_free_port()}") is None
    assert "warning: mlflow: could not log run shapes-1" in capsys.readouterr().err
    assert time.time() - t < 15


def test_missing_package_and_no_uri(runs, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.require(None) is None and tracking.log_run(runs[2]) is None  # nothing asked, nothing done
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'imgclf\[mlflow\]'"):
        tracking.require("http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    with pytest.raises(UserError, match="unset MLFLOW_TRACKING_URI"):
        tracking.require(None)

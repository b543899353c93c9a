"""Hot swap: a service following registry/production swaps in each promoted version while 16
clients keep posting images, without a failed request, and rolls back the same way."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

import imgclf
import imgclf.api
from imgclf.core.errors import UserError
from imgclf.core.files import read_json, write_json
from imgclf.store import registry

httpx = pytest.importorskip("httpx")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
from imgclf.serving.hotswap import holder_for_registry  # noqa: E402

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

CLIENTS = 16
RENAMED = {"disc": "circle", "square": "block", "stripes": "lines"}


@pytest.fixture(scope="module")
def reg(tmp_path_factory, tiny_run):
    """registry/ with version 1 (a copy of the session's tiny run: classes disc, square, stripes) as
    production and version 2 (classes circle, block, lines, so each answer shows which model gave it)."""
    tmp = tmp_path_factory.mktemp("hotswap")
    one = tiny_run.parent / "shapes"
    runs = [Path(shutil.copytree(tiny_run, tmp / "runs" / "v1")), tmp / "runs" / "v2"]
    # Version 2: the same weights with the classes renamed in its model.json (cheaper than training again).
    shutil.copytree(runs[0], runs[1])
    meta = read_json(runs[1] / "model.json")
    write_json(runs[1] / "model.json", {**meta, "classes": [RENAMED[c] for c in meta["classes"]]})
    r = tmp / "registry"
    registry.add(runs[0], r, alias="production")
    registry.add(runs[1], r)
    return r, one


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_promote_and_rollback_under_load_drop_nothing(reg):
    r, data = reg
    holder = holder_for_registry(r, "production", imgclf.load, interval=0.1)
    app = serving.create_app(holder, serving.ServeSettings(max_wait_ms=2))
    image = (data / "disc" / "disc_000.png").read_bytes()
    answers, failures, stop = [], [], threading.Event()

    def client():
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    sent = time.monotonic()
                    res = c.post(f"{url}/predict", files={"file": ("d.png", image, "image/png")})
                    body = res.json()
                    if res.status_code != 200:
                        failures.append(res.text)
                    else:
                        answers.append((body["version"], body["results"][0]["label"], body["model"], sent))
                except Exception as e:  # noqa: BLE001 - a dropped connection is a failure too
                    failures.append(repr(e))

    def version() -> int:
        return httpx.get(f"{url}/model").json()["version"]

    with serving.BackgroundServer(app) as url:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            assert version() == 1 and wait_for(lambda: len(answers) > 20)
            registry.promote(r, 2)
            assert wait_for(lambda: version() == 2, 5), httpx.get(f"{url}/model").json()
            # Requests in flight at the swap finish on the old model; every request sent after the
            # service said version 2 is answered by version 2. (By send time, not by the order answers
            # arrive: on a busy CPU one client's old request can come back after many new ones.)
            swapped = time.monotonic()
            assert wait_for(lambda: sum(a[3] > swapped for a in answers) > 20)
            after_swap = [a for a in answers if a[3] > swapped]
            registry.rollback(r)
            assert wait_for(lambda: version() == 1, 5)
            rolled_back = time.monotonic()
            assert wait_for(lambda: sum(a[3] > rolled_back for a in answers) > 20)
            after_rollback = [a for a in answers if a[3] > rolled_back]
        finally:
            stop.set()
            for t in threads:
                t.join()
        info = httpx.get(f"{url}/model").json()
        metrics = httpx.get(f"{url}/metrics").text
    assert failures == []
    # Each answer is whole: the version, the classes and the run name all come from one model.
    first, second = {"disc", "square", "stripes"}, {"circle", "block", "lines"}
    for v, label, name, _ in answers:
        assert (label in first and name == "v1") if v == 1 else (v == 2 and label in second and name == "v2")
    assert {a[0] for a in after_swap} == {2} and {a[0] for a in after_rollback} == {1}
    assert info["version"] == 1 and info["alias"] == "production" and info["swaps"] == 2 and info["swap_error"] is None
    assert info["classes"] == ["disc", "square", "stripes"]
    assert 'imgclf_model_swaps_total{result="ok"} 2.0' in metrics and "imgclf_model_version 1.0" in metrics


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(reg, tmp_path):
    r, data = reg
    broken = tmp_path / "runs" / "broken"
    shutil.copytree(registry.resolve(r, 2), broken)
    n = registry.add(broken, r)["version"]
    (broken / "model.safetensors").write_bytes(b"not a model")
    holder = holder_for_registry(r, "production", imgclf.load, interval=0.1)
    app = serving.create_app(holder)
    with serving.BackgroundServer(app) as url:
        registry.promote(r, n)
        try:
            assert wait_for(lambda: httpx.get(f"{url}/model").json()["swap_error"] is not None, 5)
            info = httpx.get(f"{url}/model").json()
            res = httpx.post(
                f"{url}/predict",
                content=(data / "disc" / "disc_001.png").read_bytes(),
                headers={"Content-Type": "image/png"},
            )
            metrics = httpx.get(f"{url}/metrics").text
        finally:
            registry.rollback(r)
    assert info["version"] == 1 and f"version {n} did not load" in info["swap_error"]
    assert res.status_code == 200 and res.json()["version"] == 1
    assert 'imgclf_model_swaps_total{result="failed"} 1.0' in metrics


def test_serve_takes_a_run_or_a_registry_not_both(reg):
    # (neither: the pretrained person detector, tests/serving/test_serve_detector.py)
    with pytest.raises(UserError, match="not both"):
        imgclf.api.serve("runs/x", registry=reg[0])


def test_serve_wires_the_registry_the_inbox_and_the_log(reg, monkeypatch, tmp_path):
    """What `imgclf serve` hands the server, for --registry and for a pinned REGISTRY/ALIAS."""
    r, _ = reg
    calls = []
    monkeypatch.setattr(serving.server, "run_server", lambda served, config, *a, **k: calls.append((served, config)))
    imgclf.api.serve(registry=r, verbose=False, log_predictions=str(tmp_path / "log"))
    imgclf.api.serve(f"{r}/production", verbose=False)
    (followed, config), (pinned, pinned_config) = calls
    assert followed.version == 1 and followed.alias == "production" and followed.info["name"] == "v1"
    assert config.inbox == str(r / "inbox") and config.log_predictions == str(tmp_path / "log")
    assert pinned.version == 1 and pinned.alias is None and pinned_config.inbox == str(r / "inbox")

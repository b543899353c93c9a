"""imgclf monitor: a tiny real run, its predictions logged the way the service logs them, compared
with its test split — traffic like the test set is "no drift", darker or foreign images are drift."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import helpers
import numpy as np
import pytest
from helpers import from_tests, make_shapes_dataset, png, render, serve_log
from typer.testing import CliRunner

import imgclf
import imgclf.api
import imgclf.workflows
from imgclf.core.errors import UserError
from imgclf.evaluation import drift
from imgclf.lifecycle.monitor import monitor, read_log
from imgclf.store.runs import read_splits

FAST = {**helpers.FAST, "test_frac": 0.3, "epochs": 8, "verbose": False}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    data = make_shapes_dataset(root / "shapes", per_class=40)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(imgclf.workflows, "_report_after_training", lambda model, console: None)  # not needed here
        path = imgclf.train(data, out=root / "run", **FAST).path
    model = imgclf.load(path)
    tests = [r["path"] for r in read_splits(path) if r["split"] == "test"]
    return model, tests


def crosses(n: int, size: int = 24, seed: int = 1) -> list[bytes]:
    """A class the model never saw: a green cross on the same noisy background."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(60, 120, size=(size, size, 3)).astype(float)
        cx, cy = rng.integers(6, size - 6, size=2)
        img[cy - 5 : cy + 5, cx - 1 : cx + 2] = img[cy - 1 : cy + 2, cx - 5 : cx + 5] = [40, 200, 60]
        out.append(png(img))
    return out


class Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.ids.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))


def parse(html_path) -> Sections:
    p = Sections()
    p.feed(html_path.read_text(encoding="utf-8"))
    return p


@pytest.mark.slow
def test_traffic_like_the_test_set_is_no_drift(run, tmp_path):
    model, tests = run
    log = serve_log(model, from_tests(tests, 90), tmp_path / "log", spread_hours=3)
    out = tmp_path / "mon"
    from imgclf.cli import app

    p = CliRunner().invoke(app, ["monitor", str(model.path), "--log", str(log), "--out", str(out), "--top", "10"])
    assert p.exit_code == 0, p.output
    r = json.loads((out / "monitor.json").read_text())
    assert r["status"] == "no_drift", r["verdict"]
    assert r["verdict"].startswith("No drift: 90 logged predictions") and "No drift" in p.output
    s = r["statistics"]
    assert not any(v["shifted"] for v in s.values())
    assert s["brightness"]["psi"] < 0.1 and s["confidence"]["psi"] < 0.1
    assert r["n_reference"] == len(tests) and r["span"] is not None
    html = parse(out / "monitor.html")
    assert html.ids == ["verdict", "statistics", "plots", "time", "to-label"]  # 3 hours: a time series
    assert len(html.images) >= 4 + 10 and all(src.startswith("data:image/png;base64,") for src in html.images)
    # The reference is cached by the weights' hash: a second run reads it instead of predicting.
    ref = json.loads((out / "reference.json").read_text())
    assert ref["n"] == len(tests) and len(ref["brightness"]) == len(tests)
    # --since: only the last 1.5 of the 3 hours.
    since = (datetime.now(timezone.utc) - timedelta(hours=1.5)).strftime("%Y-%m-%dT%H:%M:%S")
    half = imgclf.monitor(model.path, log, out=out, since=since, verbose=False)
    assert 40 <= half["n_live"] <= 50 and half["left_out"]["before_since"] == 90 - half["n_live"]


@pytest.mark.slow
def test_darker_images_are_drift_and_least_confident_come_first(run, tmp_path):
    model, tests = run
    log = serve_log(model, from_tests(tests, 60, seed=2, scale=0.3), tmp_path / "log")
    r = imgclf.monitor(model.path, log, out=tmp_path / "mon", top=8, verbose=False)
    assert r["status"] == "drift"
    assert r["verdict"].startswith("Drift: the model sees darker images (mean brightness ")
    assert "imgclf update" in r["verdict"]
    b = r["statistics"]["brightness"]
    assert b["shifted"] and b["severity"] == "major" and b["live"]["mean"] < 0.5 * b["ref"]["mean"]

    picks = r["to_label"]
    records = read_log(log)[0]
    assert len(picks) == 8 and len({p["sha256"] for p in picks}) == 8
    assert picks[0]["confidence"] == min(rec["confidence"] for rec in records)
    assert [p["confidence"] for p in picks] == sorted(p["confidence"] for p in picks)
    out = tmp_path / "mon"
    rows = list(csv.DictReader(open(out / "to_label.csv")))
    assert [row["sha256"] for row in rows] == [p["sha256"] for p in picks]
    for row in rows:  # the copies are the logged bytes, named by their hash
        assert hashlib.sha256((out / row["image"]).read_bytes()).hexdigest() == row["sha256"]
    assert r["import_command"] == f"imgclf feedback import {out / 'to_label'}"

    # Images the user already sorted into to_label/<class>/ are not listed again; stale copies go.
    (out / "to_label" / "disc").mkdir()
    first = out / rows[0]["image"]
    first.rename(out / "to_label" / "disc" / first.name)
    again = imgclf.monitor(model.path, log, out=out, top=3, verbose=False)
    assert rows[0]["sha256"] not in {p["sha256"] for p in again["to_label"]}
    assert len(list((out / "to_label").glob("*.png"))) == 3


@pytest.mark.slow
def test_a_class_the_model_never_saw_is_drift(run, tmp_path):
    model, tests = run
    log = serve_log(model, crosses(60), tmp_path / "log")
    r = imgclf.monitor(model.path, log, out=tmp_path / "mon", top=5, verbose=False)
    assert r["status"] == "drift", r["verdict"]
    assert any(r["statistics"][k]["shifted"] for k in ("confidence", "predicted_class", "low_confidence"))
    assert r["to_label"][0]["confidence"] == min(rec["confidence"] for rec in read_log(log)[0])
    assert "Label these next" in (tmp_path / "mon" / "monitor.html").read_text()


@pytest.mark.slow
def test_log_written_by_the_real_service(run, tmp_path):
    """POST /predict to the service with --log-predictions --log-images hash, then monitor its log."""
    serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
    from fastapi.testclient import TestClient

    model, tests = run
    settings = serving.ServeSettings(log_predictions=str(tmp_path / "log"), log_images="hash")
    # base_url: the service answers only the Host names it serves (localhost, IPs), not "testserver".
    with TestClient(serving.create_app(model, settings), base_url="http://127.0.0.1") as client:
        for i in range(0, 40, 4):
            files = [("file", (f"{j}.png", data, "image/png")) for j, data in enumerate(from_tests(tests, 4, seed=i))]
            assert client.post("/predict", files=files).status_code == 200
    r = imgclf.monitor(model.path, tmp_path / "log", out=tmp_path / "mon", verbose=False)
    assert r["n_live"] == 40 and r["status"] == "no_drift", r["verdict"]
    assert r["to_label"] == [] and r["images_kept"] == 0
    assert "keeps no images" in (tmp_path / "mon" / "monitor.html").read_text()


@pytest.mark.slow
def test_too_few_predictions_say_so(run, tmp_path):
    from imgclf.store import registry

    model, tests = run
    log = serve_log(model, from_tests(tests, 12, scale=0.3), tmp_path / "log")
    registry.add(model.path, tmp_path / "reg", alias="production")  # monitored as a registry version
    r = imgclf.monitor(
        "production", log / "predictions.jsonl", registry=tmp_path / "reg", out=tmp_path / "mon", verbose=False
    )
    assert r["status"] == "too_few" and r["verdict"].startswith("Too few logged predictions to tell: 12")
    assert r["version"] == 1 and r["import_command"].endswith(f"--registry {tmp_path / 'reg'}")
    assert parse(tmp_path / "mon" / "monitor.html").ids[0] == "verdict"


@pytest.mark.slow
def test_log_of_another_model_or_missing_log_is_a_user_error(run, tmp_path):
    model, _ = run
    folder = tmp_path / "log"
    folder.mkdir()
    (folder / "predictions.jsonl").write_text(json.dumps({"model": "flowers-3", "confidence": 0.9}) + "\n{cut sho")
    with pytest.raises(UserError, match="predictions of flowers-3, none of run"):
        monitor(model.path, folder, out=tmp_path / "mon", verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no predictions"):
        monitor(model.path, tmp_path / "empty", out=tmp_path / "mon", verbose=False)
    with pytest.raises(UserError, match="no prediction log at"):
        monitor(model.path, tmp_path / "nowhere", out=tmp_path / "mon", verbose=False)
    assert not (tmp_path / "mon").exists()  # refused before writing anything


@pytest.mark.slow
def test_the_run_report_lists_its_monitoring(run, tmp_path):
    """The report is what users hand around: after a monitor it shows the verdict and links monitor.html."""
    import shutil

    model, tests = run
    copy = shutil.copytree(model.path, tmp_path / "runs" / model.path.name)  # the module's run stays report-less
    (copy / "monitoring.json").unlink(missing_ok=True)  # other tests monitored the module's run
    assert "Not monitored yet" in (imgclf.report(copy, verbose=False)).read_text()
    log = serve_log(model, from_tests(tests, 40), tmp_path / "log")
    imgclf.monitor(copy, log, out=tmp_path / "mon", verbose=False)
    html = (copy / "report.html").read_text()
    part = html[html.index('<section id="monitoring">') :]
    part = part[: part.index("</section>")]
    assert "No drift" in part and ">40<" in part and 'href="../../mon/monitor.html"' in part
    assert [c["status"] for c in json.loads((copy / "monitoring.json").read_text())["checks"]] == ["no_drift"]


def test_psi_and_tests_on_arrays():
    rng = np.random.default_rng(0)
    same = drift.compare_numeric(rng.normal(120, 20, 400), rng.normal(120, 20, 300))
    assert same["psi"] < 0.1 and not same["shifted"] and same["p_value"] > drift.ALPHA
    dark = drift.compare_numeric(rng.normal(120, 20, 400), rng.normal(50, 20, 300))
    assert dark["severity"] == "major" and dark["shifted"]
    # Out of the reference's range entirely (every test image 24x24): the outer bins catch it.
    bigger = drift.compare_numeric(np.full(50, 9.2), np.full(40, 12.0))
    assert bigger["psi"] > drift.PSI_MAJOR and bigger["shifted"]
    # Small samples: a noisy PSI alone is not a shift.
    noisy = drift.compare_categorical(["a"] * 5 + ["b"] * 5, ["a"] * 8 + ["b"] * 2)
    assert noisy["psi"] > 0.1 and not noisy["shifted"]
    rate = drift.compare_rate(1, 100, 40, 100)
    assert rate["shifted"] and rate["live"] == 0.4
    assert drift.psi([10, 0], [10, 0]) == 0.0


@pytest.mark.slow
@pytest.mark.browser
def test_monitor_page_renders_in_a_browser(run, tmp_path):
    model, tests = run
    log = serve_log(model, from_tests(tests, 40, seed=5, scale=0.5), tmp_path / "log", spread_hours=2)
    imgclf.monitor(model.path, log, out=tmp_path / "mon", top=6, verbose=False)
    facts, outside = render(tmp_path / "mon" / "monitor.html", tmp_path / "monitor.png")
    assert outside == [] and facts["broken"] == []
    assert all(facts["sections"].get(s, 0) > 0 for s in ("verdict", "statistics", "plots", "time", "to-label"))
    assert facts["images"] == 4 + 6  # class bars, 2 histograms, time series + the gallery

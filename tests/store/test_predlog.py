"""The prediction log (imgclf serve --log-predictions) and POST /feedback, over real HTTP; the log's
sampling, rotation and size bound on their own."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import trained_run

import imgclf
from imgclf.store.predlog import PredictionLog, read_log, record

httpx = pytest.importorskip("httpx")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(trained):
    return imgclf.load(trained[0])


def logged(folder: Path, n: int, timeout: float = 10) -> list[dict]:
    """The log's records once it has n (the writer thread is a moment behind the answers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and len(read_log(folder)) >= n:
            break
        time.sleep(0.05)
    return read_log(folder) if folder.is_dir() else []


def post(url: str, *paths: Path) -> dict:
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]
    r = httpx.post(f"{url}/predict", files=files)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_logged_predictions_and_feedback(model, trained, tmp_path):
    _, data = trained
    log, inbox = tmp_path / "predlog", tmp_path / "inbox"
    settings = serving.ServeSettings(log_predictions=str(log), inbox=str(inbox))
    images = [data / "disc" / "disc_000.png", data / "stripes" / "stripes_001.png"]
    with serving.BackgroundServer(serving.create_app(model, settings)) as url:
        answer = post(url, *images)
        records = logged(log, 2)
        # Feedback on a logged prediction needs only its id: the image and the answer come from the log.
        pid = answer["results"][0]["prediction_id"]
        by_id = httpx.post(f"{url}/feedback", data={"prediction_id": pid, "label": "square", "who": "ann"})
        # Or the image itself, with a label the model does not know: a proposed new class.
        upload = httpx.post(
            f"{url}/feedback",
            files={"file": ("x.png", images[1].read_bytes(), "image/png")},
            data={"label": " triangle ", "predicted": "stripes", "confidence": "0.8"},
        )
        bad = httpx.post(
            f"{url}/feedback", files={"file": ("x.png", images[1].read_bytes(), "image/png")}, data={"label": "../etc"}
        )
        unknown = httpx.post(f"{url}/feedback", data={"prediction_id": "0123456789abcdef-1", "label": "disc"})
        not_image = httpx.post(
            f"{url}/feedback", files={"file": ("x.png", b"hello", "image/png")}, data={"label": "disc"}
        )
    assert [r["id"] for r in records] == [r["prediction_id"] for r in answer["results"]]
    first = records[0]
    sha = hashlib.sha256(images[0].read_bytes()).hexdigest()
    assert first["sha256"] == sha and first["id"].startswith(sha[:16]) and first["model"] == "run"
    assert first["version"] is None and first["source"] == "predict" and first["decision"] == "argmax"
    assert (first["width"], first["height"], first["mode"]) == (24, 24, "RGB") and 0 <= first["brightness"] <= 255
    assert first["label"] == answer["results"][0]["label"] and first["confidence"] == pytest.approx(
        answer["results"][0]["confidence"], abs=1e-5
    )
    # Each of the three is rounded to 6 decimals on its own: the difference of the rounded two may be 1e-6 off.
    top_two = first["top_k"][0][1] - first["top_k"][1][1]
    assert len(first["top_k"]) == 3 and first["margin"] == pytest.approx(top_two, abs=1.5e-6)
    assert (
        first["image"] == f"images/{sha[:2]}/{sha}.png"
        and (log / first["image"]).read_bytes() == images[0].read_bytes()
    )
    assert first["time"].endswith("Z")

    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == {"sha256": sha, "label": "square", "known_class": True, "path": f"square/{sha}.png"}
    assert (inbox / "square" / f"{sha}.png").read_bytes() == images[0].read_bytes()
    assert upload.status_code == 200 and upload.json()["known_class"] is False and upload.json()["label"] == "triangle"
    history = [json.loads(line) for line in (inbox / "feedback.jsonl").read_text().splitlines()]
    assert history[0]["previous"] == {
        "label": first["label"],
        "confidence": first["confidence"],
        "model": "run",
        "version": None,
    }
    assert history[0]["prediction_id"] == pid and history[0]["who"] == "ann" and history[0]["source"] == "serve"
    assert history[1]["previous"]["label"] == "stripes" and history[1]["previous"]["confidence"] == 0.8
    assert bad.status_code == 422 and "label" in bad.json()["detail"]
    assert unknown.status_code == 404 and not_image.status_code == 422


@pytest.mark.slow
def test_hash_mode_keeps_no_image_and_sample_zero_logs_nothing(model, trained, tmp_path):
    _, data = trained
    image = data / "square" / "square_002.png"
    for images, sample in (("hash", 1.0), ("keep", 0.0)):
        log = tmp_path / f"{images}-{sample}"
        settings = serving.ServeSettings(log_predictions=str(log), log_images=images, log_sample=sample)
        with serving.BackgroundServer(serving.create_app(model, settings)) as url:
            answer = post(url, image)
            records = logged(log, 1, timeout=0.3 if sample == 0 else 10)
        if sample == 0:
            assert records == [] and "prediction_id" not in answer["results"][0]
        else:
            assert len(records) == 1 and records[0]["image"] is None and records[0]["width"] == 24
            assert not (log / "images").exists()


def test_sampling_is_per_image_and_about_the_asked_share():
    log = PredictionLog("unused", sample=0.3)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    picked = [log.sampled(s) for s in shas]
    assert picked == [log.sampled(s) for s in shas]  # the same image: the same decision
    assert 0.25 < sum(picked) / len(picked) < 0.35


def test_rotation_keeps_the_folder_under_its_bound(tmp_path):
    max_mb = 0.05  # 52 KB: rotate every ~5 KB, about 20 records
    log = PredictionLog(tmp_path / "log", max_mb=max_mb)
    log.start()
    rng = np.random.default_rng(0)
    for i in range(300):
        data = _png(rng)
        sha = hashlib.sha256(data).hexdigest()
        rec = record(
            sha256=sha,
            model="m",
            version=3,
            answer={"label": "a", "confidence": 0.7},
            probs=np.array([0.7, 0.2, 0.1]),
            classes=["a", "b", "c"],
            decision="argmax",
        )
        log.write(rec, data, np.full((8, 8, 3), i % 256, np.uint8))
        log.flush()  # the writer must keep up here; the queue bound is tested below
    log.close()
    size = sum(p.stat().st_size for p in (tmp_path / "log").rglob("*") if p.is_file())
    rotated = sorted((tmp_path / "log").glob("predictions-*.jsonl"))
    assert size <= max_mb * 2**20 and rotated
    records = read_log(tmp_path / "log")
    assert 20 < len(records) < 300 and records[-1]["version"] == 3  # the latest ones, in order
    assert [r["brightness"] for r in records] == [float(i % 256) for i in range(300 - len(records), 300)]


def test_ids_are_found_from_the_index_without_reading_the_log(tmp_path, monkeypatch):
    """POST /feedback with a prediction_id: an unknown id reads no file; a known one, older than the
    records kept in memory, reads its one line; after a restart the index is rebuilt from the files."""
    import builtins

    from imgclf.store import predlog

    monkeypatch.setattr(predlog, "RECENT", 5)  # most records reachable through the index only
    log = PredictionLog(tmp_path / "log", max_mb=0.05, keep_images=False)  # rotates every ~5 KB
    log.start()
    ids = []
    for i in range(200):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        rec = record(
            sha256=sha,
            model="m",
            version=i,
            answer={"label": "a", "confidence": 0.7},
            probs=np.array([0.7, 0.2, 0.1]),
            classes=["a", "b", "c"],
            decision="argmax",
        )
        log.write(rec)
        log.flush()
        ids.append(rec["id"])
    opened = []
    monkeypatch.setattr(predlog, "open", lambda *a, **k: opened.append(a[0]) or builtins.open(*a, **k), raising=False)
    kept = {r["id"]: r["version"] for r in read_log(tmp_path / "log")}
    assert 20 < len(kept) < 200 and len(list((tmp_path / "log").glob("predictions-*.jsonl"))) > 2
    opened.clear()
    start = time.perf_counter()
    for i in range(2000):
        assert log.find(f"{i:016x}-{1_700_000_000_000 + i}") is None
    assert opened == [] and time.perf_counter() - start < 1.0
    pruned = [pid for pid in ids if pid not in kept]
    assert pruned and all(log.find(pid) is None for pid in pruned) and opened == []
    oldest = next(pid for pid in ids if pid in kept)
    assert log.find(oldest)[0]["version"] == kept[oldest] and len(opened) == 1
    assert log.find(ids[-1])[0]["version"] == 199 and len(opened) == 1  # a recent one: from memory
    log.close()
    again = PredictionLog(tmp_path / "log", keep_images=False)
    again.start()
    assert all(again.find(pid)[0]["version"] == v for pid, v in kept.items())
    assert again.find("0123456789abcdef-1") is None
    again.close()


def test_a_full_queue_drops_instead_of_blocking(tmp_path):
    dropped = []
    log = PredictionLog(tmp_path / "log", queue_size=2, on_drop=lambda: dropped.append(1))
    rec = {"id": "x"}
    assert log.write(rec) and log.write(rec) and not log.write(rec)  # no writer started: the queue fills
    assert log.dropped == 1 and dropped == [1]


def _png(rng) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_a_kept_image_is_saved_under_an_extension_training_reads(tmp_path):
    """The log keeps each upload under the extension data.discover lists it by (one map for the log and
    the feedback inbox): a JPEG 2000 photo is kept as .jp2, not as an unread '.jpeg2000', a TGA as .tga;
    a format training does not list (an ICO or PCX the service decoded) is kept as a lossless PNG."""
    import io

    from PIL import Image, features

    from imgclf.data.discover import discover
    from imgclf.data.formats import IMAGE_EXTENSIONS

    formats = {"PNG": ".png", "TGA": ".tga", "ICO": ".png", "PCX": ".png"}
    if features.check_codec("jpg_2000"):
        formats["JPEG2000"] = ".jp2"
    log = PredictionLog(tmp_path / "log")
    log.start()
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    for fmt in formats:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt)
        data = buf.getvalue()
        rec = record(
            sha256=hashlib.sha256(data).hexdigest(),
            model="m",
            version=None,
            answer={"label": "a", "confidence": 0.7},
            probs=np.array([0.7, 0.3]),
            classes=["a", "b"],
            decision="argmax",
        )
        log.write(rec, data, None)
    log.flush()
    log.close()
    logged = read_log(tmp_path / "log")
    kept = [Path(r["image"]).suffix for r in logged]
    assert kept == list(formats.values()) and set(kept) <= IMAGE_EXTENSIONS
    for r in logged:  # every pixel as sent (all these formats are lossless)
        with Image.open(tmp_path / "log" / r["image"]) as img:
            assert np.array_equal(np.asarray(img.convert("RGB")), pixels), r["image"]
    # ...so that a folder of kept images, filed by hand into classes, trains: every one is found.
    files = [tmp_path / "log" / r["image"] for r in logged]
    for i, f in enumerate(files):
        cls = "ab"[i % 2]
        (tmp_path / "labelled" / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "labelled" / cls / f.name).write_bytes(f.read_bytes())
    assert len(discover(tmp_path / "labelled").paths) == len(formats)

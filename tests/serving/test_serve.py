"""The web service, driven over real HTTP: uvicorn on a free localhost port in a background thread,
serving a tiny run trained once for this module."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from helpers import png_header, trained_run

import imgclf
import imgclf.api

httpx = pytest.importorskip("httpx")
serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture

KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(trained):
    return imgclf.load(trained[0])


@pytest.fixture(scope="module")
def url(model):
    settings = serving.ServeSettings(api_key=KEY, max_upload_mb=1, max_pixels=1_000_000, max_images=4, max_wait_ms=5)
    with serving.BackgroundServer(serving.create_app(model, settings)) as u:
        yield u


def image(data: Path, cls: str, i: int = 0) -> bytes:
    return (data / cls / f"{cls}_{i:03d}.png").read_bytes()


def good(url: str, data: Path) -> None:
    r = httpx.post(f"{url}/predict", files={"file": ("disc.png", image(data, "disc"), "image/png")}, headers=AUTH)
    assert r.status_code == 200 and r.json()["results"][0]["label"] == "disc", r.text


def test_health_model_and_openapi(url, trained):
    run, _ = trained
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "model": "run"}  # no key needed
    assert httpx.get(f"{url}/model").status_code == 401
    r = httpx.get(f"{url}/model", headers={"Authorization": f"Bearer {KEY}"})
    info = r.json()
    assert info["classes"] == ["disc", "square", "stripes"] and info["input"]["size"] == 24
    assert info["architecture"]["name"] == "simple_cnn" and info["calibration"]["temperature"] > 0
    assert info["decision"] == {"rule": "argmax"} and 0 <= info["metrics"]["accuracy"] <= 1
    assert info["service"]["api_key_required"] is True and KEY not in r.text
    assert str(run.parent) not in r.text  # nothing about the server's disk but the run's name
    spec = httpx.get(f"{url}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= set(body)
    assert body["image/*"]["schema"]["minLength"] == 1  # an empty image is refused (400)
    for path, name in (("/explain", "target"), ("/scan", "positive")):  # a class name: the served model's
        (param,) = [p for p in spec["paths"][path]["post"]["parameters"] if p["name"] == name]
        assert param["schema"]["enum"] == info["classes"], path
    assert {"/health", "/model", "/metrics"} <= set(spec["paths"])


def test_predict_one_several_and_raw_images(url, trained):
    _, data = trained
    r = httpx.post(
        f"{url}/predict", files={"file": ("a/b/square.png", image(data, "square", 3), "image/png")}, headers=AUTH
    )
    [res] = r.json()["results"]
    assert r.status_code == 200 and res["label"] == "square" and res["filename"] == "square.png"
    assert [t["label"] for t in res["top_k"]][0] == "square" and len(res["top_k"]) == 3
    assert sum(t["p"] for t in res["top_k"]) == pytest.approx(1, abs=1e-6) and res["confidence"] == res["top_k"][0]["p"]
    assert res["decision"] == {"rule": "argmax"}

    classes = ["stripes", "disc", "square", "stripes"]
    files = [("file", (f"{c}.png", image(data, c, 5 + i), "image/png")) for i, c in enumerate(classes)]
    results = httpx.post(f"{url}/predict?top_k=1", files=files, headers=AUTH).json()["results"]
    assert [x["filename"] for x in results] == [f"{c}.png" for c in classes]
    assert sum(x["label"] == c for x, c in zip(results, classes)) >= 3 and all(len(x["top_k"]) == 1 for x in results)

    r = httpx.post(f"{url}/predict", content=image(data, "stripes", 7), headers={**AUTH, "Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["results"][0]["label"] == "stripes"
    assert "filename" not in r.json()["results"][0]

    # One bad image among good ones: 200, and an error entry in its place.
    files = [
        ("file", ("ok.png", image(data, "disc", 9), "image/png")),
        ("file", ("bad.png", b"not a png", "image/png")),
    ]
    ok, bad = httpx.post(f"{url}/predict", files=files, headers=AUTH).json()["results"]
    assert ok["label"] == "disc" and bad["status"] == 415 and "not an image" in bad["error"] and "label" not in bad


def bad_requests(data: Path) -> dict:
    """name -> (request keywords, expected status, a word of the message)."""
    png = image(data, "disc")
    return {
        "malformed multipart": (
            dict(
                content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
                headers={"Content-Type": "multipart/form-data; boundary=xyz"},
            ),
            400,
            "multipart",
        ),
        "multipart without boundary": (
            dict(content=b"abc", headers={"Content-Type": "multipart/form-data"}),
            400,
            "boundary",
        ),
        "no file part": (
            dict(
                content=b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--b--\r\n',
                headers={"Content-Type": "multipart/form-data; boundary=b"},
            ),
            400,
            "no image",
        ),
        "0-byte file": (dict(files={"file": ("empty.png", b"", "image/png")}), 400, "empty"),
        "empty raw body": (dict(content=b"", headers={"Content-Type": "image/png"}), 400, "empty"),
        # The spec's minLength: a request with an empty image is refused whole, beside usable ones too.
        "a 0-byte file beside an image": (
            dict(files=[("file", ("a.png", png, "image/png")), ("file", ("empty.png", b"", "image/png"))]),
            400,
            "image 2 of 2",
        ),
        "text file": (
            dict(files={"file": ("notes.txt", b"hello, not a picture\n", "text/plain")}),
            415,
            "not an image",
        ),
        "json body": (dict(content=b'{"image": 1}', headers={"Content-Type": "application/json"}), 415, "Content-Type"),
        "truncated png": (dict(files={"file": ("cut.png", png[: len(png) // 2], "image/png")}), 422, "unreadable"),
        "50,000 x 50,000 png header": (
            dict(files={"file": ("big.png", png_header(50_000, 50_000), "image/png")}),
            413,
            "2,500,000,000 pixels",
        ),
        "2,000 x 1,000 png header (over 1 MP)": (
            dict(content=png_header(2000, 1000), headers={"Content-Type": "image/png"}),
            413,
            "--max-pixels",
        ),
        "huge upload": (
            dict(content=b"\0" * (3 * 2**20), headers={"Content-Type": "image/png"}),
            413,
            "--max-upload-mb",
        ),
        "too many images": (
            dict(files=[("file", (f"{i}.png", png, "image/png")) for i in range(5)]),
            422,
            "--max-images",
        ),
        "bad top_k": (dict(files={"file": ("a.png", png, "image/png")}, params={"top_k": 0}), 422, "top_k"),
    }


def test_each_bad_request_gets_its_4xx_and_the_service_keeps_serving(url, trained):
    _, data = trained
    for name, (kw, status, word) in bad_requests(data).items():
        r = httpx.post(f"{url}/predict", headers={**AUTH, **kw.pop("headers", {})}, timeout=30, **kw)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        assert word in r.text, f"{name}: {r.text}"
        good(url, data)
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}, {"Authorization": "Bearer wrong"}):
        r = httpx.post(f"{url}/predict", content=image(data, "disc"), headers={"Content-Type": "image/png", **headers})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["detail"]
    assert httpx.get(f"{url}/metrics").status_code == 401
    r = httpx.post(
        f"{url}/predict",
        content=image(data, "disc"),
        headers={"Content-Type": "image/png", "Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200
    assert (
        "access-control-allow-origin"
        not in httpx.options(
            f"{url}/predict", headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
        ).headers
    )


def test_concurrent_clients_are_answered_in_micro_batches(url, trained):
    _, data = trained
    bodies = [image(data, c, i) for c in ("disc", "square", "stripes") for i in range(4)]
    statuses, stop = [], time.monotonic() + 3

    def client(i):
        with httpx.Client(headers={**AUTH, "Content-Type": "image/png"}, timeout=30) as c:
            while time.monotonic() < stop:
                statuses.append(c.post(f"{url}/predict", content=bodies[i % len(bodies)]).status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) > 64 and set(statuses) == {200}

    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    metric = lambda name: float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))  # noqa: E731
    assert metric('imgclf_requests_total{route="/predict",status="200"}') >= len(statuses)
    predicted = sum(metric(f'imgclf_predictions_total{{label="{c}"}}') for c in ("disc", "square", "stripes"))
    assert predicted >= len(statuses)
    batches, images = metric("imgclf_batch_size_count"), metric("imgclf_batch_size_sum")
    assert images / batches > 1.5, "no micro-batching under 32 concurrent clients"
    assert metric('imgclf_batch_size_bucket{le="1.0"}') < batches
    assert metric('imgclf_request_seconds_count{route="/predict"}') >= len(statuses)


def test_cors_only_for_the_origins_asked_for(model, trained):
    _, data = trained
    app = serving.create_app(model, serving.ServeSettings(cors=("https://app.example",), batching=False))
    with serving.BackgroundServer(app) as u:
        pre = httpx.options(
            f"{u}/predict", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        r = httpx.post(
            f"{u}/predict",
            content=image(data, "square"),  # no key needed on an open service
            headers={"Content-Type": "image/png", "Origin": "https://other.example"},
        )
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert r.json()["results"][0]["label"] == "square"
        text = httpx.get(f"{u}/metrics").text
        assert re.search(r"^imgclf_batch_size_count 1\.0$", text, re.M)  # no batching: one forward per request


def test_bad_settings_are_user_errors(trained, monkeypatch, capsys):
    from imgclf import cli

    monkeypatch.setattr("sys.argv", ["imgclf", "serve", str(trained[0]), "--max-images", "0"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--max-images must be an integer from 1" in err and "Traceback" not in err
    with pytest.raises(imgclf.core.errors.UserError, match="api-key"):
        serving.ServeSettings(api_key=" ")

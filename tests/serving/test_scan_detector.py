"""POST /scan with the pretrained person detector, on a real server: a served run with no class to
find (the shapes model) scans with the detector; the page's "Find people" draws its box over the
person in headless Chromium."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import matplotlib.cbook
import pytest
from helpers import PAGE_KEY as KEY
from helpers import chromium, open_page, trained_run
from PIL import Image

import imgclf

serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
pytestmark = pytest.mark.slow  # a trained run, served
PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # 512 x 600


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    run, _ = trained_run(tmp_path_factory)
    with serving.BackgroundServer(serving.create_app(imgclf.load(run), serving.ServeSettings(api_key=KEY))) as url:
        yield url


def post(url: str, query: str = "", data: bytes | None = None) -> httpx.Response:
    headers = {"Content-Type": "image/jpeg", "Authorization": f"Bearer {KEY}"}
    return httpx.post(f"{url}/scan{query}", content=data or PORTRAIT.read_bytes(), headers=headers, timeout=60)


def test_scan_answers_with_the_pretrained_detector(url):
    info = httpx.get(f"{url}/model", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["scan"] is True and info["scan_with"] == "detector person"
    assert info["detector"]["name"] == "person" and info["detector"]["precision"] == "fp32"
    assert info["detector"]["backend"] in ("onnx", "torch")  # auto: ONNX Runtime on a CPU, PyTorch on a GPU
    r = post(url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["detector"] == "person" and body["present"] and body["count"] == 1
    assert (body["width"], body["height"]) == (512, 600) and body["boxes"][0]["label"] == "person"
    assert body["boxes"][0]["x2"] - body["boxes"][0]["x1"] > 400  # she fills the portrait
    strict = post(url, "?threshold=0.999").json()
    assert not strict["present"] and strict["boxes"] == []
    bad = post(url, "?detector=car")
    assert bad.status_code == 422 and "detector" in bad.text
    broken = post(url, data=b"\xff\xd8\xff\xe0 broken")
    assert broken.status_code in (415, 422)
    tiled = post(url, "?tiles=2x2").json()  # the whole photo and 4 tiles: still one person, once
    assert tiled["present"] and tiled["count"] == 1 and tiled["boxes"][0]["x2"] - tiled["boxes"][0]["x1"] > 400
    assert post(url, "?tiles=9x9").status_code == 422
    # A phone-sized upload is decoded at a quarter scale, and answered in its own pixels.
    buf = io.BytesIO()
    Image.open(PORTRAIT).convert("RGB").resize((2048, 2400)).save(buf, "JPEG", quality=90)
    big = post(url, data=buf.getvalue()).json()
    assert (big["width"], big["height"]) == (2048, 2400) and big["count"] == 1
    assert big["boxes"][0]["x2"] - big["boxes"][0]["x1"] > 1600 and big["boxes"][0]["x2"] <= 2048


@pytest.mark.browser
def test_page_find_people_draws_the_box(url):
    with chromium() as browser:
        page = open_page(browser, url)
        page.set_input_files("#file", [str(PORTRAIT)])
        page.wait_for_selector(".card .tools .find")
        assert page.inner_text(".card .tools .find") == "Find people"
        page.click(".card .tools .find")
        page.wait_for_selector(".card .view svg rect")
        assert page.inner_text(".card .tools .note") == "person: 1 found (boxes drawn)."
        img = page.eval_on_selector(
            ".card img", "e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }"
        )
        box = page.eval_on_selector(
            ".card .view rect", "e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }"
        )
        # The box spans most of the shown portrait (512 x 600 px, shown with object-fit: contain).
        scale = min(img[0] / 512, img[1] / 600)
        assert box[0] > 0.8 * 512 * scale and box[1] > 0.8 * 600 * scale


def test_a_folder_that_is_no_detector_stops_the_start(tmp_path_factory, tmp_path):
    """`imgclf serve RUN --detector RUN` (a classifier run) served, then failed every POST /scan."""
    from imgclf.core.errors import UserError

    run, _ = trained_run(tmp_path_factory)
    model = imgclf.load(run)
    with pytest.raises(UserError, match=r"^--detector .*: not a detector run folder \(it has no detector.json\)"):
        serving.create_app(model, serving.ServeSettings(detector=str(run)))
    with pytest.raises(UserError, match=r"^--detector .*gone: no such folder; give person"):
        serving.create_app(model, serving.ServeSettings(detector=str(tmp_path / "gone")))

"""The service's browser page in headless Chromium: pick an image with the mouse or the keyboard and
see its class as bars, behind an API key; a phone-sized screen; the webcam mode on a fake camera."""

from __future__ import annotations

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, full_screenshot, open_page, trained_run
from helpers import PAGE_KEY as KEY

import imgclf

serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a trained run, served
# Chromium's stand-in camera (a moving test pattern) and an automatic yes to the permission prompt.
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    run, data = trained_run(tmp_path_factory)
    app = serving.create_app(imgclf.load(run), serving.ServeSettings(api_key=KEY))
    with serving.BackgroundServer(app) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + FAKE_CAMERA)
        try:
            yield url, data, browser
        finally:
            browser.close()


def answers(page) -> list[str]:
    return page.eval_on_selector_all(".card .answer", "els => els.map(e => e.firstChild.textContent.trim())")


def test_upload_shows_the_right_class_as_bars(served, tmp_path):
    url, data, browser = served
    page = open_page(browser, url)
    assert "disc, square, stripes" in page.inner_text("#model-classes")
    page.set_input_files("#file", [str(data / "stripes" / "stripes_003.png"), str(data / "disc" / "disc_004.png")])
    page.wait_for_function("document.querySelectorAll('.card .bar').length >= 6")
    assert sorted(answers(page)) == ["disc", "stripes"]
    bars = page.eval_on_selector_all(
        ".card:first-child .bar",
        "els => els.map(e => [e.getAttribute('aria-label'), "
        "parseFloat(e.getAttribute('aria-valuenow')), e.querySelector('.fill').offsetWidth])",
    )
    assert len(bars) == 3 and bars[0][1] >= bars[1][1] >= bars[2][1] and bars[0][2] > bars[2][2]
    assert "Classified 2 images" in page.inner_text("#status")
    full_screenshot(page, tmp_path / "page.png")
    assert (tmp_path / "page.png").stat().st_size > 10_000

    # A file that is no image: its card says so, the page goes on working.
    (tmp_path / "notes.png").write_text("not a picture")
    page.set_input_files("#file", str(tmp_path / "notes.png"))
    page.wait_for_selector(".card .err")
    assert "not an image" in page.inner_text(".card .err")
    page.close()


def test_photos_over_the_service_s_limits_are_sent_within_them(served, tmp_path_factory, tmp_path):
    """Ten phone photos of 4 MB were one request over --max-upload-mb, refused whole, and a 108 MP photo
    was over --max-pixels: the page now sends requests within the limits, shrinks a photo over them
    (its card says so, and shows what was sent), and a file still refused stops none of the others."""
    import numpy as np
    from PIL import Image

    _, data, browser = served
    run, _ = trained_run(tmp_path_factory)
    limits = serving.ServeSettings(api_key=KEY, max_upload_mb=0.1, max_pixels=40_000)  # 104,857 bytes a request
    rng = np.random.default_rng(0)
    small = [tmp_path / f"noise{i}.png" for i in range(6)]  # ~12 KB each: 74 KB in all
    for p in small:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(p)
    big = tmp_path / "big.png"  # ~190 KB and 62,500 pixels: over both limits on its own
    Image.fromarray(rng.integers(0, 256, (250, 250, 3), np.uint8)).save(big)
    junk = tmp_path / "junk.png"  # no image the browser can shrink: sent as it is, refused (413)
    junk.write_bytes(rng.integers(0, 256, 150_000, np.uint8).tobytes())
    pictures = [data / "stripes" / "stripes_003.png", *small, big, junk, data / "disc" / "disc_004.png"]
    with serving.BackgroundServer(serving.create_app(imgclf.load(run), limits)) as url:
        page = open_page(browser, url)
        page.set_input_files("#file", [str(p) for p in pictures])
        page.wait_for_function("document.querySelector('#status').textContent.includes('classified')")
        cards = page.eval_on_selector_all(
            "#results li.card",
            "els => els.map(e => [e.querySelector('.file').textContent, !!e.querySelector('.err'), "
            "e.querySelector('img').naturalWidth])",
        )
        status, said = page.inner_text("#status"), page.inner_text(".card .err")
        page.close()
    assert len(cards) == 10 and [name for name, err, _ in cards if err] == ["junk.png"], cards
    assert status.startswith("9 of 10 images classified; ") and "--max-upload-mb" in said, (status, said)
    shrunk = [(name, width) for name, err, width in cards if name.startswith("big.png")]
    assert shrunk == [("big.png (sent shrunk to 200 x 200, within the service's limits)", 200)], cards


def test_the_picker_works_from_the_keyboard(served):
    url, data, browser = served
    page = open_page(browser, url)
    page.focus("#mode-camera")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop"
    # Count the picker's openings (a click on the file input is what opens the system dialog): a
    # file-chooser event proved flaky on a loaded machine, the click it comes from is not.
    page.evaluate("window.opened = 0; document.getElementById('file').addEventListener('click', () => window.opened++)")
    page.keyboard.press("Enter")
    page.keyboard.press(" ")
    assert page.evaluate("window.opened") == 2
    page.set_input_files("#file", str(data / "square" / "square_007.png"))
    page.wait_for_function(
        "[...document.querySelectorAll('.card .answer')].some(e => e.textContent.startsWith('square'))"
    )
    page.close()


def test_phone_sized_screen_has_no_horizontal_scroll(served):
    url, data, browser = served
    page = open_page(browser, url, width=390, height=844)
    page.set_input_files("#file", str(data / "square" / "square_011.png"))
    page.wait_for_selector(".card .bar")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("document.querySelector('#drop').getBoundingClientRect().right") <= 390
    page.close()


def test_webcam_mode_classifies_the_live_camera(served):
    url, _, browser = served
    page = open_page(browser, url)
    page.click("#mode-camera")
    assert page.is_hidden("#images") and page.is_visible("#camera")
    page.click("#camera-toggle")
    page.wait_for_selector("#camera-result .bar", timeout=20_000)
    assert page.inner_text("#camera-result .answer").split()[0] in ("disc", "square", "stripes")
    page.wait_for_function("document.querySelector('#camera-rate').textContent.includes('frames/s')", timeout=10_000)
    assert page.inner_text("#camera-toggle") == "Stop camera"
    page.click("#camera-toggle")
    assert page.inner_text("#camera-toggle") == "Start camera"
    page.close()


def test_page_fetches_nothing_from_elsewhere(served):
    url, _, browser = served
    page = browser.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "blob:", "data:")) else None)
    page.goto(url, wait_until="networkidle")
    assert outside == [] and page.is_visible("#key")
    page.close()

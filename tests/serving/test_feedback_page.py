"""The page's "Wrong? Choose the right label" control in headless Chromium: correct an answer with
a known class (mouse) or a new one (keyboard only, on a phone-sized screen); the image lands in
the inbox under its sha256 name."""

from __future__ import annotations

import hashlib
import json

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, open_page, trained_run
from helpers import PAGE_KEY as KEY

import imgclf

serving = pytest.importorskip("imgclf.serving", reason="the web service needs fastapi and uvicorn")
pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a trained run, served


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    run, data = trained_run(tmp_path_factory)
    inbox = tmp_path_factory.mktemp("page-inbox")
    log = tmp_path_factory.mktemp("page-log")
    settings = serving.ServeSettings(api_key=KEY, inbox=str(inbox), log_predictions=str(log))
    with (
        serving.BackgroundServer(serving.create_app(imgclf.load(run), settings)) as url,
        sync_api.sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield url, data, browser, inbox
        finally:
            browser.close()


def feedback_records(inbox) -> list[dict]:
    return [json.loads(line) for line in (inbox / "feedback.jsonl").read_text().splitlines()]


def test_correcting_an_answer_saves_the_image_under_the_chosen_label(served):
    url, data, browser, inbox = served
    image = data / "disc" / "disc_005.png"
    page = open_page(browser, url)
    page.set_input_files("#file", [str(image)])
    page.wait_for_selector(".card .fix summary")
    page.click(".card .fix summary")
    options = page.eval_on_selector_all(".card .fix option", "els => els.map(e => e.textContent)")
    assert sorted(options[:3]) == ["disc", "square", "stripes"] and options[-1] == "other…"
    page.select_option(".card .fix select", "square")
    page.click(".card .fix button[type=submit]")
    page.wait_for_function("document.querySelector('.card .fix .thanks').textContent.includes('Thanks')")
    assert page.inner_text(".card .fix .thanks") == "Thanks — saved as square"
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    assert (inbox / "square" / f"{sha}.png").read_bytes() == image.read_bytes()
    rec = feedback_records(inbox)[-1]
    assert rec["source"] == "serve" and rec["prediction_id"] and rec["previous"]["model"] == "run"


def test_a_new_class_by_keyboard_on_a_phone(served):
    url, data, browser, inbox = served
    image = data / "stripes" / "stripes_007.png"
    page = open_page(browser, url, width=390, height=800)
    page.set_input_files("#file", [str(image)])
    page.wait_for_selector(".card .fix summary")
    page.focus(".card .fix summary")
    page.keyboard.press("Enter")  # opens the <details>
    page.keyboard.press("Tab")  # to the select
    assert page.evaluate("document.activeElement.tagName") == "SELECT"
    page.select_option(".card .fix select", "")  # "other…" shows the text box and focuses it
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "New class name"
    page.keyboard.type("zigzag")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_function("document.querySelector('.card .fix .thanks').textContent.includes('Thanks')")
    assert page.inner_text(".card .fix .thanks") == "Thanks — saved as zigzag (proposed as a new class)"
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    assert (inbox / "zigzag" / f"{sha}.png").is_file() and feedback_records(inbox)[-1]["known_class"] is False
    # Nothing spills past a phone's width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_show_where_it_looked_toggles_the_heatmap_overlay(served):
    url, data, browser, _ = served
    page = open_page(browser, url)
    page.set_input_files("#file", [str(data / "square" / "square_003.png")])
    page.wait_for_selector(".card .tools .look")
    assert page.get_attribute(".card img", "src").startswith("blob:")
    page.click(".card .tools .look")
    page.wait_for_function("document.querySelector('.card img').src.startsWith('data:image/png')")
    assert page.get_attribute(".card .tools .look", "aria-pressed") == "true"
    assert "Heat: the parts that raised" in page.inner_text(".card .tools .note")
    page.click(".card .tools .look")  # and back to the photo, without asking again
    assert page.get_attribute(".card img", "src").startswith("blob:")
    assert page.get_attribute(".card .tools .look", "aria-pressed") == "false"


def test_find_draws_the_scan_boxes_over_the_photo(served):
    """The page's side only: /model and /scan are answered here as a two-class person model would
    (the scan itself is tested in test_scan.py); the boxes must land on the photo's pixels."""
    url, data, browser, _ = served
    page = browser.new_page(viewport={"width": 1100, "height": 800}, bypass_csp=True)

    def model_with_scan(route):
        response = route.fetch()
        if response.status != 200:  # the first call, before the key is entered: 401 as it is
            return route.fulfill(response=response)
        route.fulfill(
            json={
                **response.json(),
                "scan": True,
                "scan_with": "crop model",
                "decision": {"rule": "threshold", "positive_class": "square", "threshold": 0.5},
            }
        )

    page.route("**/model", model_with_scan)
    page.route(
        "**/scan",
        lambda route: route.fulfill(
            json={
                "model": "run",
                "width": 24,
                "height": 24,
                "present": True,
                "score": 0.9,
                "threshold": 0.5,
                "positive": "square",
                "boxes": [{"x1": 6, "y1": 6, "x2": 18, "y2": 18, "score": 0.9}],
            }
        ),
    )
    page.goto(url)
    page.fill("#key-input", KEY)
    page.press("#key-input", "Enter")
    page.wait_for_function("document.querySelector('#model-classes').textContent.includes('3 classes')")
    page.set_input_files("#file", [str(data / "square" / "square_004.png")])
    page.wait_for_selector(".card .tools .find")
    assert page.inner_text(".card .tools .find") == "Find square"
    page.click(".card .tools .find")
    page.wait_for_selector(".card .view svg rect")
    assert page.inner_text(".card .tools .note") == "square: 1 found (boxes drawn)."
    img = page.eval_on_selector(
        ".card img", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"
    )
    box = page.eval_on_selector(
        ".card .view rect", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"
    )
    # The 24 x 24 photo is shown as a centred square (object-fit: contain): the box is its middle half.
    side = min(img[2], img[3])
    left, top = img[0] + (img[2] - side) / 2, img[1] + (img[3] - side) / 2
    assert box == pytest.approx([left + side / 4, top + side / 4, side / 2, side / 2], abs=2)

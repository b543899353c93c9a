"""Screenshot of the web service's page with the boxes of POST /scan drawn over photos, for the docs.

    python docs/scan_screenshot.py /tmp/scanbench/run2 docs/scan-page.png photo1.jpg photo2.jpg

Serves RUN (a crop model: /model says "scan": true) on a free localhost port, opens the page in
headless Chromium, picks the photos, presses each card's "Find ..." button, waits for the answers
and saves the page. Needs the Debian package `chromium` and playwright (the `test` extra).
"""
from __future__ import annotations

import sys
from pathlib import Path

from screenshot import CHROMIUM_ARGS


def screenshot(run: str, png: Path, photos: list[str], width: int = 1000) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    import imgclf
    from imgclf.serving import BackgroundServer, create_app

    with BackgroundServer(create_app(imgclf.load(run))) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 700})
        page.goto(url)
        page.wait_for_selector("text=classes:")
        page.set_input_files("#file", photos)
        page.wait_for_selector(f".card:nth-child({len(photos)}) .bar")
        for button in page.query_selector_all("button.find"):
            button.click()
        for i in range(1, len(photos) + 1):      # the page's CSP forbids eval: wait with selectors
            page.wait_for_selector(f".card:nth-child({i}) svg", state="attached", timeout=60000)
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    with Image.open(png) as shot:
        shot.convert("RGB").save(png, optimize=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    screenshot(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])

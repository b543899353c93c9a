"""Screenshot of the web service's page classifying photos, for the docs.

    python docs/serve_screenshot.py runs/flowers5-1 docs/serve-page.png photo1.jpg photo2.jpg ...

Serves RUN on a free localhost port (in this process), opens the page in headless Chromium, picks
the photos through its file input, waits for every answer and saves the page. Needs the Debian package `chromium` and playwright (the `test` extra).
"""
from __future__ import annotations

import sys
from pathlib import Path

from screenshot import CHROMIUM_ARGS


def screenshot(run: str, png: Path, photos: list[str], width: int = 1000) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    import imgclf
    from imgclf.serving import BackgroundServer, ServeSettings, create_app

    app = create_app(imgclf.load(run), ServeSettings(top_k=3))
    with BackgroundServer(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 700})
        page.goto(url)
        page.wait_for_selector("text=classes:")
        page.set_input_files("#file", photos)
        page.wait_for_selector(f".card:nth-child({len(photos)}) .bar")
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    with Image.open(png) as shot:
        shot.convert("RGB").save(png, optimize=True)      # photos band in 256 colours: keep them whole


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    screenshot(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])

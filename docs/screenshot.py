"""Full-page screenshot of a run's report.html in headless Chromium, for the docs.

    python docs/screenshot.py runs/orl-faces-1/report.html docs/report-40-classes.png

Needs the Debian package `chromium` and `pip install playwright` (the `test` extra). The PNG is
reduced to 256 colours: a page of text and plots loses nothing visible and a third of the bytes.
"""
from __future__ import annotations

import sys
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def screenshot(html: Path, png: Path, width: int = 1280) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(html.resolve().as_uri(), wait_until="load")
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    with Image.open(png) as shot:
        small = shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(png, optimize=True)


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(sys.argv[2])

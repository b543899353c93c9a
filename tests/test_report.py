"""report.html: written by train and by `imgclf report`, one self-contained page that a real
browser (headless Chromium) renders with every section present and every image loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_end_to_end import cli

import imgclf
from imgclf.reporting.report import SECTIONS

pytestmark = pytest.mark.report  # these tests read the report each training writes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What the page looks like to a reader: each section's height, and images that failed to decode.
PAGE_FACTS = """() => ({
  sections: Object.fromEntries([...document.querySelectorAll('section[id]')].map(s => [s.id, s.offsetHeight])),
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40)),
  height: document.body.scrollHeight,
})"""


def render(html: Path, screenshot: Path) -> tuple[dict, list[str]]:
    """Open `html` in headless Chromium, take a full-page screenshot; (page facts, requests
    that left the file: any URL other than file: or data:)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(html.as_uri(), wait_until="load")
            facts = page.evaluate(PAGE_FACTS)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return facts, outside


@pytest.mark.browser
def test_train_writes_a_report_that_renders_completely(shapes, tmp_path):
    run = imgclf.train(shapes, out=tmp_path / "run", epochs=4, verbose=False)
    html = run.path / "report.html"
    assert html.is_file()
    text = html.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch

    facts, outside = render(html, tmp_path / "report.png")
    assert outside == []
    for sid in SECTIONS:
        assert facts["sections"].get(sid, 0) > 0, f"section #{sid} missing or empty"
    assert facts["broken"] == [] and facts["images"] >= 30  # plots + sample grid + gallery thumbnails
    from PIL import Image

    with Image.open(tmp_path / "report.png") as shot:
        assert shot.width == 1280 and shot.height == facts["height"] > 4000

    # What a reader looks for is in the text: the classes, every setting, the metrics, the card.
    meta = json.loads((run.path / "model.json").read_text())
    for needle in [
        *meta["classes"],
        "label_smoothing",
        "FLOPs",
        "macro average",
        "Model card",
        "[EDIT:",
        "imgclf check DATA --labels",
        "Not configured",
    ]:
        assert needle in text, needle

    before = html.stat().st_mtime_ns
    html.unlink()
    p = cli("report", run.path)
    assert Path(p.stdout.strip().splitlines()[-1]) == html and html.is_file() and html.stat().st_mtime_ns >= before


@pytest.mark.browser
def test_two_class_report_shows_the_price_of_the_threshold(shapes, tmp_path):
    shutil.rmtree(shapes / "stripes")
    (shapes / "square").rename(shapes / "no-disc")
    run = imgclf.train(shapes, out=tmp_path / "run", epochs=3, target_recall=0.9, verbose=False)
    (run.path / "label_issues.json").write_text(
        json.dumps(
            {
                "suspects": [
                    {
                        "path": str(shapes / "disc" / "disc_001.png"),
                        "given": "disc",
                        "suggested": "no-disc",
                        "score": 0.02,
                    }
                ]
            }
        )
    )
    html = imgclf.report(run.path, verbose=False)
    text = html.read_text(encoding="utf-8")
    assert 'id="thresholds-decision"' in text and "false alarm" in text and "recall &gt;= 0.9" in text
    assert "1 image(s) whose label looks wrong" in text and "disc_001.png" in text
    facts, _ = render(html, tmp_path / "report.png")
    assert facts["broken"] == [] and facts["sections"]["label-issues"] > 100


def test_a_failing_report_does_not_cost_the_run(shapes, tmp_path, monkeypatch, capsys):
    import imgclf.reporting.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("no plotting today")

    monkeypatch.setattr(report, "write_report", broken)
    run = imgclf.train(shapes, out=tmp_path / "run", epochs=1)
    assert (run.path / "metrics.json").is_file() and not (run.path / "report.html").exists()
    out = capsys.readouterr().out
    assert "could not write report.html (RuntimeError: no plotting today)" in out and "imgclf report" in out

"""report.html: written by train and by `imgclf report`, one self-contained page that a real
browser (headless Chromium) renders with every section present and every image loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import cli, render

import imgclf
from imgclf.reporting.report import SECTIONS

pytestmark = [pytest.mark.report, pytest.mark.slow]  # these tests train and read the report


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
        "<code>epochs</code> (given)",  # what the user set, and why each default was chosen (choices.json)
        "How the defaults were chosen</h3><ul><li>model=resnet_fast from scratch: median image side 24px",
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

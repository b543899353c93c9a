"""Each training setting is declared once (settings.config), and each scan setting (settings.scan): the
command line's options, their help, the checks and the docs' reference are made from the declaration,
so they cannot drift apart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from imgclf.cli import app
from imgclf.settings import reference
from imgclf.settings.config import RULES, TrainConfig
from imgclf.settings.declare import declared
from imgclf.settings.scan import RULES as SCAN_RULES
from imgclf.settings.scan import ScanSettings

ROOT = Path(__file__).resolve().parents[2]
STRUCTURED = {"group_by", "augment", "model_kwargs"}  # checked as a whole in settings.checks


def _options(command: str) -> dict:
    click = typer.main.get_command(app).commands[command]
    return {p.name: p for p in click.params}


def _help_is_declared(command: str, cls, own: set) -> int:
    """Each of `command`'s options made from `cls`'s declarations has the declaration's help, and the
    command's other options are exactly `own`; the number of declared options."""
    options = _options(command)
    on_cli = [f for f, _ in declared(cls) if f.metadata["cli"]]
    for f in on_cli:
        assert options[f.name].help == f.metadata["help"], f.name
    assert set(options) - {f.name for f in on_cli} == own
    return len(on_cli)


def test_train_help_is_each_declarations_help():
    # The options train has of its own, beside the settings.
    own = {"data", "config", "resume", "mlflow", "mlflow_weights", "workers", "ray"}
    assert _help_is_declared("train", TrainConfig, own) >= 35
    text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    for flag in (
        "--no-flip",
        "--dedupe",
        "--pretrained",
        "--probe / --no-probe",
        "--freeze-depthwise / --train-depthwise",
    ):
        assert flag in text


def test_lr_find_takes_its_settings_from_the_same_declarations():
    options = _options("lr-find")
    helps = {f.name: f.metadata["help"] for f, _ in declared(TrainConfig)}
    for name in ("model", "weights", "pretrained", "img_size", "batch_size", "optimizer", "device"):
        assert options[name].help == helps[name]


def test_every_setting_has_help_and_a_check():
    for f, _ in declared(TrainConfig):
        assert f.metadata["help"], f.name
        assert RULES[f.name] is not None or f.name in STRUCTURED, f.name
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(RULES)


def test_the_settings_page_is_generated_from_the_declarations():
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == reference.markdown(), "regenerate: python -m imgclf.settings.reference > docs/settings.md"


@pytest.mark.parametrize(
    "flags, given",
    [
        (["--no-flip", "--dedupe", "--pretrained"], {"flip": False, "dedupe": True, "pretrained": True}),
        (
            ["--no-probe", "--train-depthwise", "--feature-cache"],
            {"probe": False, "freeze_depthwise": False, "feature_cache": True},
        ),
        (
            ["--time-budget", "2m", "--img-size", "64", "--lr", "0.01"],
            {"time_budget": "2m", "img_size": 64, "lr": 0.01},
        ),
        ([], {}),
    ],
)
def test_flags_reach_the_api_as_the_settings_they_spell(flags, given, monkeypatch, tmp_path):
    from imgclf import api

    seen = {}

    class Run:
        path = tmp_path

    monkeypatch.setattr(api, "train", lambda data, **kw: seen.update(kw) or Run())
    result = CliRunner().invoke(app, ["train", str(tmp_path), *flags])
    assert result.exit_code == 0, result.output
    own = {"config", "resume", "mlflow", "mlflow_weights", "workers", "ray"}
    assert {k: v for k, v in seen.items() if k not in own} == given


# ---- scan: its settings declared once too (settings.scan) -------------------------------------------


def test_scan_help_is_each_declarations_help():
    # The options scan has of its own: what to scan, with what, and where its files go.
    own = {"targets", "detector", "out", "mine", "no_verifier", "backend", "device"}
    assert _help_is_declared("scan", ScanSettings, own) == 16
    text = CliRunner().invoke(app, ["scan", "--help"], terminal_width=200).output
    for flag in ("--vote / --no-vote", "--no-verifier", "--verifier ", "--verifier-top", "--min-size", "--max-seconds"):
        assert flag in text


def test_every_scan_setting_has_help_and_a_check():
    for f, _ in declared(ScanSettings):
        assert f.metadata["help"], f.name
        assert SCAN_RULES[f.name] is not None, f.name


@pytest.mark.parametrize(
    "flags, given",
    [
        (
            ["--no-vote", "--min-size", "40", "--verifier", "v", "--verifier-top", "2", "--iou", "0.4"],
            {"vote": False, "min_size": 40, "verify": "v", "verify_top": 2, "iou": 0.4},
        ),
        (
            ["--vote", "--scales", "1,0.8", "--margin", "0.1", "--tiles", "2x2", "--classes", "car,person"],
            {"vote": True, "scales": "1,0.8", "margin": "0.1", "tiles": "2x2", "classes": "car,person"},
        ),
        (["--verifier", "v", "--no-verifier", "--method", "fcn"], {"verify": False, "method": "fcn"}),
        ([], {}),
    ],
)
def test_scan_flags_reach_the_api_as_the_settings_they_spell(flags, given, monkeypatch, tmp_path):
    from imgclf import api
    from imgclf.cli import render

    seen = {}
    monkeypatch.setattr(api, "scan", lambda run, images, **kw: seen.update(kw) or [])
    monkeypatch.setattr(render, "scans", lambda results: None)
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "p.jpg"), *flags])
    assert result.exit_code == 0, result.output
    own = {"detector", "out", "mine", "backend", "device"}
    assert {k: v for k, v in seen.items() if k not in own} == given
    ScanSettings.of({k: v for k, v in seen.items() if k not in own})  # what the API checks them by


def test_scan_settings_are_checked_by_their_declarations_whichever_way_they_come():
    import imgclf
    from imgclf.core.errors import UserError

    chosen = ScanSettings.of({"scales": "1,0.8", "margin": "0.167,0.1", "tiles": "2X2", "classes": "car,person"})
    assert chosen.scales == [1.0, 0.8] and chosen.margin == (0.167, 0.1, 0.167, 0.1)
    assert chosen.tiles == "2x2" and chosen.classes == ["car", "person"]
    assert chosen.given() == {
        "scales": [1.0, 0.8],
        "margin": (0.167, 0.1, 0.167, 0.1),
        "tiles": "2x2",
        "classes": ["car", "person"],
    }
    # A refusal names the option as the command line spells it, from the Python API too, before any model loads.
    for keywords, said in (
        ({"iou": 2}, "--iou must be a number in (0, 1], not 2"),
        ({"verify_top": 0}, "--verifier-top must be 1 to 1000 windows a photo, not 0"),
        ({"max_seconds": float("nan")}, "--max-seconds must be a positive number of seconds"),
        ({"tiles": "5x1"}, "--tiles must be COLUMNSxROWS"),
        ({"min_sise": 40}, "unknown scan setting(s) min_sise (did you mean 'min_size'?); valid: "),
    ):
        with pytest.raises(UserError) as refused:
            imgclf.scan(["photo.jpg"], **keywords)
        assert str(refused.value).startswith(said), str(refused.value)


def test_a_scan_line_counts_its_boxes_in_english(capsys):
    from imgclf.cli import render

    box = {"x1": 1, "y1": 2, "x2": 30, "y2": 40, "score": 0.9}
    one = {"path": "a.jpg", "present": True, "score": 0.9, "boxes": [box], "seconds": 0.01}
    render.scans([one, {**one, "present": False, "score": 0.1, "boxes": []}, {**one, "boxes": [box, box]}])
    lines = capsys.readouterr().out.splitlines()
    assert "1 box [1,2,30,40 0.90]  (0.01s)" in lines[0] and "0 boxes  (0.01s)" in lines[1]
    assert "2 boxes [1,2,30,40 0.90] [1,2" in lines[2]

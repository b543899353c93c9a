"""Each training setting is declared once (settings.config): the command line's options, their help,
the checks and the docs' reference are made from the declaration, so they cannot drift apart."""

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

ROOT = Path(__file__).resolve().parents[2]
STRUCTURED = {"group_by", "augment", "model_kwargs"}  # checked as a whole in settings.checks


def _options(command: str) -> dict:
    click = typer.main.get_command(app).commands[command]
    return {p.name: p for p in click.params}


def test_train_help_is_each_declarations_help():
    options = _options("train")
    on_cli = [f for f, _ in declared(TrainConfig) if f.metadata["cli"]]
    assert len(on_cli) >= 35
    for f in on_cli:
        assert options[f.name].help == f.metadata["help"], f.name
    # The options train has of its own, beside the settings.
    assert set(options) - {f.name for f in on_cli} == {
        "data",
        "config",
        "resume",
        "mlflow",
        "mlflow_weights",
        "workers",
        "ray",
    }
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

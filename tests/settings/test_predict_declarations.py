"""`imgclf predict`'s settings are declared once (settings.predict.PredictSettings): its options, their
help, the checks of the command line and of the Python API (predict_folder, predict_video,
predict_on_ray) come from the declarations."""

from __future__ import annotations

import sys

import pytest
import typer.main
from typer.testing import CliRunner

import imgclf
from imgclf.cli import app
from imgclf.cli.app import bare_options
from imgclf.core.errors import UserError
from imgclf.settings.declare import declared
from imgclf.settings.predict import RULES, PredictSettings

OWN = {"run", "paths"}  # what to predict with, and what


def test_predict_help_is_each_declarations_help():
    options = {p.name: p for p in typer.main.get_command(app).commands["predict"].params}
    on_cli = [f for f, _ in declared(PredictSettings) if f.metadata["cli"]]
    assert len(on_cli) == 15
    for f in on_cli:
        assert options[f.name].help == f.metadata["help"], f.name
    assert set(options) - {f.name for f in on_cli} == OWN
    text = CliRunner().invoke(app, ["predict", "--help"], terminal_width=200).output
    for shown in ("--ray ADDRESS", "--scan ", "--top-k", "--shard-format", "--video-out", "--max-seconds"):
        assert shown in text
    assert "--no-scan" not in text


def test_every_predict_setting_has_help_and_a_check():
    for f, _ in declared(PredictSettings):
        assert f.metadata["help"], f.name
        assert RULES[f.name] is not None, f.name


class _Model:
    def predict(self, paths, top_k):
        return []


@pytest.fixture
def calls(monkeypatch):
    """What `imgclf predict` hands the API: {function name: its keywords}."""
    from imgclf import api
    from imgclf.cli import render

    seen = {}

    def record(name, value=None):
        def call(*args, **kw):
            seen[name] = kw
            return value

        return call

    monkeypatch.setattr(api, "load", record("load", _Model()))
    for name in ("predict_video", "predict_on_ray"):
        monkeypatch.setattr(api, name, record(name))
    monkeypatch.setattr(api, "predict_folder", record("predict_folder", {"predicted": 1, "errors": 0, "skipped": 0}))
    monkeypatch.setattr(render, "predictions", lambda answers, format, top_k: seen.update(table=top_k))
    return seen


@pytest.mark.parametrize(
    "args, call, given",
    [
        (["a.jpg", "--top-k", "3", "--tta", "flip"], "load", {"tta": "flip", "backend": "auto"}),
        (["a.jpg", "--top-k", "3"], "table", 3),
        (["a.jpg", "--out", "p.csv", "--top-k", "2"], "predict_folder", {"top_k": 2}),
        (
            ["door.mp4", "--every", "2", "--smooth", "0", "--out", "f.csv", "--video-out", "v.mp4", "--scan"],
            "predict_video",
            {"every": 2, "smooth": 0.0, "events": None, "scan": True, "max_seconds": None}
            | {"out_csv": "f.csv", "out_video": "v.mp4", "tta": None, "device": "auto", "backend": "auto"},
        ),
        (
            ["photos/", "--ray", "--out", "o", "--shard-size", "16", "--shard-format", "csv", "--top-k", "2"],
            "predict_on_ray",
            {"address": "auto", "top_k": 2, "shard_size": 16, "format": "csv", "tta": None, "backend": "auto"}
            | {"device": "auto"},
        ),
    ],
)
def test_predict_flags_reach_the_api_as_its_keywords(args, call, given, calls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"")  # it must exist: predict names a missing photo before loading the run
    result = CliRunner().invoke(app, bare_options(["predict", "run", *args]))
    assert result.exit_code == 0, result.output
    assert calls[call] == given


@pytest.mark.parametrize(
    "flag, value, says",
    [
        ("--top-k", "0", "--top-k must be an integer from 1 to 1000, not 0"),
        ("--every", "0", "--every must be a whole number of frames, at least 1, not 0"),
        ("--smooth", "-1", "--smooth must be 0 (off) or a time in seconds, not -1.0"),
        ("--smooth", "nan", "--smooth must be 0 (off) or a time in seconds, not nan"),
        ("--shard-size", "0", "--shard-size must be a whole number of images, at least 1, not 0"),
        ("--shard-format", "json", "unknown --shard-format 'json'; choose one of parquet, csv"),
        ("--max-seconds", "0", "--max-seconds must be a positive number of seconds, not 0.0"),
        ("--max-seconds", "inf", "--max-seconds must be a positive number of seconds, not inf"),
        ("--tta", "mirror", "unknown --tta 'mirror'; choose one of none, flip, crop, flip-crop"),
        ("--backend", "tensorrt", "unknown --backend 'tensorrt'; choose one of auto, torch, onnx"),
    ],
)
def test_a_bad_predict_flag_is_one_error_line(flag, value, says, monkeypatch, capsys):
    from imgclf import api, cli

    def never(*args, **kw):
        raise AssertionError("a bad value is refused before the model is loaded")

    monkeypatch.setattr(api, "load", never)
    monkeypatch.setattr(api, "predict_on_ray", never)
    monkeypatch.setattr(sys, "argv", ["imgclf", "predict", "run", "door.mp4", flag, value])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {says}") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "call, says",
    [
        (lambda tmp: imgclf.predict_video(None, "door.mp4", every=0), "--every must be"),
        (lambda tmp: imgclf.predict_video(None, "door.mp4", smooth=float("nan")), "--smooth must be"),
        (lambda tmp: imgclf.predict_video(None, "door.mp4", max_seconds=-1), "--max-seconds must be"),
        (lambda tmp: imgclf.predict_folder(tmp / "nowhere", tmp, tmp / "p.csv", top_k=0), "--top-k must be"),
        (lambda tmp: imgclf.predict_folder(tmp / "nowhere", tmp, tmp / "p.csv", tta="x"), "unknown --tta 'x'"),
        (lambda tmp: imgclf.predict_on_ray(tmp, tmp, tmp / "o", format="json"), "unknown --shard-format 'json'"),
        (lambda tmp: imgclf.predict_on_ray(tmp, tmp, tmp / "o", shard_size=1.5), "--shard-size must be"),
        (lambda tmp: imgclf.predict_on_ray(tmp, tmp, tmp / "o", backend="x"), "unknown --backend 'x'"),
        (lambda tmp: PredictSettings(top_k=True), "--top-k must be"),
    ],
)
def test_the_python_api_checks_by_the_same_rules(call, says, tmp_path):
    with pytest.raises(UserError) as e:
        call(tmp_path)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "o").exists()


def test_the_model_keyword_top_k_keeps_its_name():
    from imgclf.inference.predictor import check_top_k

    with pytest.raises(UserError, match="top_k must be an integer from 1 to 1000, not 0"):
        check_top_k(0)
    assert check_top_k(2.0) == 2

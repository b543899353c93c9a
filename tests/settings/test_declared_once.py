"""`imgclf compare`, `monitor`, `update` (settings.improve), `export` (settings.export), `check`,
`evaluate`, `explain`, `report`, `ensemble` (settings.examine), `serve` (settings.serve), `scan`,
`negatives` (settings.scan), `predict` (settings.predict), `train` and `lr-find` take their settings
from one declaration each: the options, their help, the Python API's checks and defaults,
and the docs cannot drift apart. No model is trained here: every refusal comes before a run is read."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer.main
from helpers import cli
from typer.testing import CliRunner

import imgclf
from imgclf import api
from imgclf.cli import app
from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig
from imgclf.settings.declare import REQUIRED, declared
from imgclf.settings.examine import CheckSettings, EnsembleSettings, EvaluateSettings, ExplainSettings, ReportSettings
from imgclf.settings.export import ExportSettings
from imgclf.settings.improve import (
    CompareSettings,
    FeedbackSettings,
    MonitorSettings,
    RegistryAddSettings,
    RegistryAliasSettings,
    UpdateSettings,
)
from imgclf.settings.job import DemoSettings, ModelsSettings, TrainJobSettings
from imgclf.settings.predict import PredictSettings
from imgclf.settings.scan import NegativesSettings, ScanJobSettings, ScanSettings
from imgclf.settings.serve import ServeJobSettings, ServeSettings
from imgclf.settings.tune import LrFindSettings, TuneSettings

COMMANDS = [
    ("compare", CompareSettings, {"a", "b", "new_data"}),
    ("monitor", MonitorSettings, {"run"}),
    ("update", UpdateSettings, {"version", "new_data"}),
    ("export", ExportSettings, {"run"}),
    ("check", CheckSettings, {"data", "val_frac", "test_frac", "seed", "group_by"}),  # train's split settings too
    ("evaluate", EvaluateSettings, {"run", "data"}),
    ("train", TrainJobSettings, {"data"} | {f.name for f, _ in declared(TrainConfig) if f.metadata["cli"]}),
    (
        "lr-find",
        LrFindSettings,
        {"data", "model", "weights", "pretrained", "img_size", "batch_size", "optimizer", "device"},
    ),
    ("serve", ServeJobSettings, {"run"} | {f.name for f, _ in declared(ServeSettings) if f.metadata["cli"]}),
    # --no-verifier: verify=False's spelling on the command line
    ("scan", ScanJobSettings, {"targets", "no_verifier"} | {f.name for f, _ in declared(ScanSettings)}),
    ("scan", ScanSettings, {"targets", "no_verifier"} | {f.name for f, _ in declared(ScanJobSettings)}),
    ("negatives", NegativesSettings, {"photos"}),
    ("predict", PredictSettings, {"run", "paths"}),
    ("explain", ExplainSettings, {"run", "images"}),
    ("report", ReportSettings, {"run"}),
    ("ensemble", EnsembleSettings, {"runs", "target_accuracy", "target_coverage", "device"}),  # train's own
    ("models", ModelsSettings, {"pattern"}),
    ("demo", DemoSettings, set()),
    ("registry add", RegistryAddSettings, {"run"}),
    ("registry promote", RegistryAliasSettings, {"ref"}),
    ("registry rollback", RegistryAliasSettings, set()),
]
# Commands that take some of a class's settings: (command, class, the ones it takes, its arguments)
SOME = [
    ("registry list", RegistryAliasSettings, {"registry"}, set()),
    ("registry show", RegistryAliasSettings, {"registry"}, {"ref"}),
    ("feedback import", FeedbackSettings, {"inbox", "registry", "who"}, {"folder"}),
    ("feedback list", FeedbackSettings, {"inbox", "registry", "format"}, set()),
]


def _options(command: str) -> dict:
    group = typer.main.get_command(app)
    for word in command.split():
        group = group.commands[word]
    return {p.name: p for p in group.params}


@pytest.mark.parametrize("command, cls, own", COMMANDS)
def test_each_option_is_its_declaration(command, cls, own):
    options = _options(command)
    on_cli = [f for f, _ in declared(cls) if f.metadata["cli"]]
    for f in on_cli:
        assert options[f.name].help == f.metadata["help"], f.name
        assert f.metadata["rule"] is not None, f.name
    assert set(options) - {f.name for f in on_cli} == own


@pytest.mark.parametrize("command, cls, taken, own", SOME)
def test_a_command_taking_some_settings_takes_their_declarations(command, cls, taken, own):
    options = _options(command)
    for f, _ in declared(cls):
        if f.name in taken:
            assert options[f.name].help == f.metadata["help"] and f.metadata["rule"] is not None, f.name
    assert set(options) == taken | own


@pytest.mark.parametrize(
    "function, cls",
    [(api.compare, CompareSettings), (api.monitor, MonitorSettings), (api.update, UpdateSettings)]
    + [(api.tune, TuneSettings), (api.export, ExportSettings), (api.check, CheckSettings)]
    + [(api.evaluate, EvaluateSettings), (api.train, TrainJobSettings), (api.lr_find, LrFindSettings)]
    + [(api.serve, ServeJobSettings), (api.scan, ScanJobSettings), (api.negatives, NegativesSettings)]
    + [(api.explain, ExplainSettings), (api.report, ReportSettings), (api.ensemble, EnsembleSettings)]
    + [(api.registry_add, RegistryAddSettings), (api.registry_promote, RegistryAliasSettings)]
    + [(api.registry_rollback, RegistryAliasSettings), (api.feedback_import, FeedbackSettings)]
    + [(api.list_models, ModelsSettings), (api.demo, DemoSettings)],
)
def test_the_python_api_defaults_are_the_declared_ones(function, cls):
    # The API spells its keywords out for the reader (and editors); they must say what the declaration says.
    params = inspect.signature(function).parameters
    shared = [f for f, _ in declared(cls) if f.name in params]
    # evaluate's --tta is load()'s, report's --device too; the rest of an ensemble's are train's
    fewer = {
        EvaluateSettings: 3,
        LrFindSettings: 4,
        NegativesSettings: 4,
        ExplainSettings: 4,
        ReportSettings: 1,
        EnsembleSettings: 1,
        RegistryAliasSettings: 3,
        FeedbackSettings: 3,
        ModelsSettings: 3,
        DemoSettings: 1,
    }
    assert len(shared) >= fewer.get(cls, 5)
    for f in shared:
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default is REQUIRED:
            assert params[f.name].default is inspect.Parameter.empty, f.name
        else:
            assert params[f.name].default == default, f.name


@pytest.mark.parametrize(
    "args, text",
    [
        (
            ["monitor", "r", "--log", "l", "--low-confidence", "nan"],
            "--low-confidence must be a number in [0, 1], not nan",
        ),
        (["monitor", "r", "--log", "l", "--low-confidence", "2"], "--low-confidence must be a number in [0, 1], not 2"),
        (["monitor", "r", "--log", "l", "--top", "-1"], "--top must be an integer from 0 to"),
        (["update", "production", "new/", "--mode", "fast"], "unknown --mode 'fast'; choose one of finetune, full"),
        (["update", "production", "new/", "--lr-factor", "0"], "--lr-factor must be a number in (0, 1], not 0"),
        (["compare", "a", "b", "--tolerance", "2"], "--tolerance must be a number in [0, 1], not 2"),
        (["export", "r", "--max-loss", "nan"], "--max-loss must be a number from 0 to 100 (accuracy points; a"),
        (["export", "r", "--format", "tflite"], "unknown --format 'tflite'; choose one of onnx"),
        (["export", "r", "--opset", "0"], "--opset must be an ONNX opset (7 up to what the installed torch"),
        (["check", "d", "--near-distance", "40"], "--near-distance must be pHash bits from 0 to 16, not 40"),
        (["check", "d", "--labels", "--folds", "1"], "--folds must be a whole number, at least 2, not 1"),
        (["check", "d", "--val-frac", "1.5"], "--val-frac must be a number in [0, 1), not 1.5"),
        (["train", "d", "--img-size", "8"], "--img-size must be an integer from 16 to 1024, not 8"),
        (["train", "d", "--time-budget", "soon"], "--time-budget must be a duration such as 90s, 5m or 1h30m"),
        (["train", "d", "--optimizer", "adam"], "unknown --optimizer 'adam'; choose one of adamw, sgd"),
        (["evaluate", "r", "--tta", "rotate"], "unknown --tta 'rotate'; choose one of"),
        (["train", "d", "--workers", "0"], "--workers must be a whole number of workers, at least 1, not 0"),
        (["lr-find", "d", "--steps", "5"], "--steps must be at least 10 steps, not 5"),
        (["lr-find", "d", "--end-lr", "0"], "--end-lr must be a number in (0, 1000], not 0"),
        (["serve", "r", "--port", "99999"], "--port must be a TCP port from 1 to 65535 (e.g. 8000), not 99999"),
        (["serve", "--backend", "gpu"], "unknown --backend 'gpu'; choose one of auto, torch, onnx"),
        (["scan", "p", "--backend", "gpu"], "unknown --backend 'gpu'; choose one of auto, torch, onnx, onnx-int8, op"),
        (["predict", "r", "p", "--format", "xml"], "unknown --format 'xml'; choose one of table, json, csv"),
        (["explain", "r", "p", "--method", "guess"], "unknown --method 'guess'; choose one of gradcam, gradcam++"),
        (["negatives", "p", "--out", "o", "--size", "3x3"], "--size 3x3 is too small; give at least 4x4 px"),
        (["negatives", "p", "--out", "o", "--per-image", "0"], "--per-image must be a whole number, at least 1, not 0"),
        (["registry", "add", "r", "--parent", " "], "--parent must be a version number or an alias (e.g. 3 or"),
        (["feedback", "list", "--format", "csv"], "unknown --format 'csv'; choose one of table, json"),
        (["models", "--size", "0"], "--size must be 16 to 4096 px, not 0"),
        (
            ["ensemble", "a", "b", "--out", "o", "--target-accuracy", "2"],
            "--target-accuracy must be a number in (0, 1], not 2",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_its_option(args, text, tmp_path):
    p = cli(*args, check=False, cwd=tmp_path)  # nothing named r, l, production or a exists there
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"error: {text}"), p.stderr


def test_the_python_api_refuses_the_same_values(tmp_path):
    with pytest.raises(UserError, match=r"--top must be an integer from 0 to"):
        imgclf.monitor(tmp_path / "run", tmp_path / "log", top=-5)
    with pytest.raises(UserError, match="--replay must be an integer from 0 to"):
        imgclf.update("production", tmp_path / "new", registry=tmp_path, replay=-1, verbose=False)
    with pytest.raises(UserError, match="two inboxes"):
        imgclf.update("production", from_inbox=tmp_path / "a", inbox=tmp_path / "b", verbose=False)
    # --inbox names the inbox to learn from: --from-inbox goes without saying, and NEW_DATA beside it is one too many
    with pytest.raises(UserError, match="or the feedback inbox .*, not both"):
        imgclf.update("production", tmp_path / "new", inbox=tmp_path / "fb", registry=tmp_path, verbose=False)
    with pytest.raises(UserError, match="registry"):  # taken as the inbox's update: on to the (missing) registry
        imgclf.update("production", inbox=tmp_path / "fb", registry=tmp_path / "reg", verbose=False)


def test_update_hands_its_options_to_the_api(monkeypatch):
    seen = {}
    monkeypatch.setattr(api, "update", lambda *a, **kw: seen.update(args=a, kw=kw) or {"run": "runs/x"})
    args = ["update", "production", "--from-inbox", "--inbox", "fb/", "--promote", "--data", "moved/"]
    r = CliRunner().invoke(app, [*args, "--tolerance", "0.1"])
    assert r.exit_code == 0, r.output
    assert seen["args"] == ("production", None)
    assert seen["kw"] == {"from_inbox": True, "inbox": "fb/", "promote": True, "data_root": "moved/", "tolerance": 0.1}


def test_the_data_doctors_declared_bounds_are_the_hash_s_own():
    """settings.examine repeats data.phash's two numbers (phash carries numpy, which no command's start
    imports): the option's range and default are the algorithm's."""
    from imgclf.data import phash
    from imgclf.settings import examine

    assert (examine.NEAR_DISTANCE, examine.MAX_DISTANCE) == (phash.NEAR_DISTANCE, phash.MAX_DISTANCE)

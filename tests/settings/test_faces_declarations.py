"""`imgclf faces`' settings are declared once (settings.faces: EnrolSettings, IdentifySettings): the
options of enrol, add and identify, their help, and the checks of the command line and of the Python
API (imgclf.faces.enrol, add, identify, FaceModel) come from the declarations. No face model runs
here: the API calls are recorded, and a bad value is refused before one would load."""

from __future__ import annotations

import sys

import pytest
import typer.main
from typer.testing import CliRunner

import imgclf.faces as F
from imgclf.cli import app
from imgclf.cli.app import bare_options
from imgclf.core.errors import UserError
from imgclf.settings.declare import declared
from imgclf.settings.faces import ENROL_RULES, IDENTIFY_RULES, EnrolSettings, IdentifySettings

# Each command's own parameters, beside the declared options: what to enrol, add or name.
OWN = {"enrol": {"known"}, "add": {"gallery", "name", "photos"}, "identify": {"gallery", "photos"}}


def _options(command: str) -> dict:
    click = typer.main.get_command(app).commands["faces"].commands[command]
    return {p.name: p for p in click.params}


@pytest.mark.parametrize(
    "command, cls, only",
    [
        ("enrol", EnrolSettings, None),
        ("add", EnrolSettings, {"keep_photos", "backend"}),
        ("identify", IdentifySettings, None),
    ],
)
def test_faces_help_is_each_declarations_help(command, cls, only):
    options = _options(command)
    on_cli = [f for f, _ in declared(cls) if only is None or f.name in only]
    for f in on_cli:
        assert options[f.name].help == f.metadata["help"], f.name
    assert set(options) - {f.name for f in on_cli} == OWN[command]


def test_faces_help_shows_the_flags_as_before():
    enrol = CliRunner().invoke(app, ["faces", "enrol", "--help"], terminal_width=200).output
    for shown in ("--out ", "[required]", "--far ", "[default: 0.05]", "--keep-photos ", "[default: auto]"):
        assert shown in enrol, shown
    assert "--no-keep-photos" not in enrol
    identify = CliRunner().invoke(app, ["faces", "identify", "--help"], terminal_width=200).output
    for shown in ("--ray ADDRESS", "--threshold ", "--every ", "--video-out ", "--max-seconds ", "--backend "):
        assert shown in identify, shown


def test_every_faces_setting_has_help_and_a_check():
    for cls, rules in ((EnrolSettings, ENROL_RULES), (IdentifySettings, IDENTIFY_RULES)):
        for f, _ in declared(cls):
            assert f.metadata["help"], f.name
            assert rules[f.name] is not None, f.name


@pytest.fixture
def calls(monkeypatch):
    """What `imgclf faces` hands the API: {function name: (its arguments, its keywords)}."""
    from imgclf import api

    seen = {}

    def record(name, value=None):
        def call(*args, **kw):
            seen[name] = (args, kw)
            return value

        return call

    for name in ("enrol", "add"):
        monkeypatch.setattr(F, name, record(name))
    monkeypatch.setattr(F, "identify", record("identify", []))
    monkeypatch.setattr(api, "predict_on_ray", record("predict_on_ray"))
    return seen


@pytest.mark.parametrize(
    "args, call, given",
    [
        (
            ["enrol", "known", "--out", "g"],
            "enrol",
            (("known",), {"out": "g", "far": 0.05, "keep_photos": False, "backend": "auto"}),
        ),
        (
            ["enrol", "known", "--out", "g", "--far", "0.1", "--keep-photos", "--backend", "onnx-int8"],
            "enrol",
            (("known",), {"out": "g", "far": 0.1, "keep_photos": True, "backend": "onnx-int8"}),
        ),
        (["add", "g", "Ada", "a.jpg", "b.jpg"], "add", (("g", "Ada", ["a.jpg", "b.jpg"]), {})),
        (
            ["add", "g", "Ada", "a.jpg", "--keep-photos", "--backend", "torch"],
            "add",
            (("g", "Ada", ["a.jpg"]), {"keep_photos": True, "backend": "torch"}),
        ),
        (
            ["identify", "g", "a.jpg"],
            "identify",
            (
                ("g", ["a.jpg"]),
                {"out": None, "threshold": None, "every": None, "video_out": None, "max_seconds": None}
                | {"backend": "auto"},
            ),
        ),
        (
            ["identify", "g", "door.mp4", "--out", "o", "--threshold", "0.9", "--every", "2", "--video-out", "v.mp4"]
            + ["--max-seconds", "3", "--backend", "onnx"],
            "identify",
            (
                ("g", ["door.mp4"]),
                {"out": "o", "threshold": 0.9, "every": 2, "video_out": "v.mp4", "max_seconds": 3.0, "backend": "onnx"},
            ),
        ),
        (
            ["identify", "g", "photos/", "--ray", "--out", "o"],
            "predict_on_ray",
            (("g", "photos/", "o"), {"address": "auto", "backend": "auto"}),
        ),
        (
            ["identify", "g", "a/", "b/", "--ray", "ray://head:10001", "--backend", "torch"],
            "predict_on_ray",
            (("g", ["a/", "b/"], None), {"address": "ray://head:10001", "backend": "torch"}),
        ),
    ],
)
def test_faces_flags_reach_the_api_as_its_keywords(args, call, given, calls):
    result = CliRunner().invoke(app, bare_options(["faces", *args]))
    assert result.exit_code == 0, result.output
    assert calls[call] == given


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ["enrol", "known", "--out", "g", "--far", "1.5"],
            "--far must be the share of strangers the threshold may let through, between 0 and 1 (e.g. 0.05), not 1.5",
        ),
        (["enrol", "known", "--out", "g", "--far", "0"], "--far must be the share of strangers"),
        (["enrol", "known", "--out", "g", "--far", "nan"], "--far must be the share of strangers"),
        (
            ["enrol", "known", "--out", "g", "--backend", "openvino"],
            "unknown --backend 'openvino'; choose one of auto, onnx, onnx-int8, torch",
        ),
        (["add", "g", "Ada", "a.jpg", "--backend", "cuda"], "unknown --backend 'cuda'; choose one of auto"),
        (["identify", "g", "a.jpg", "--threshold", "2"], "--threshold must be a cosine similarity between 0 and 1"),
        (["identify", "g", "a.jpg", "--threshold", "-0.5"], "--threshold must be a cosine similarity"),
        (["identify", "g", "d.mp4", "--every", "0"], "--every must be a whole number of frames, at least 1, not 0"),
        (["identify", "g", "d.mp4", "--max-seconds", "0"], "--max-seconds must be a positive number of seconds"),
        (["identify", "g", "d.mp4", "--max-seconds", "inf"], "--max-seconds must be a positive number of seconds"),
        (["identify", "g", "a.jpg", "--backend", "openvino"], "unknown --backend 'openvino'"),
        (["identify", "g", "a/", "--ray", "--backend", "openvino"], "unknown --backend 'openvino'"),
        (["identify", "g", "a/", "--ray", "--threshold", "0.9"], "--threshold is not taken with --ray"),
    ],
)
def test_a_bad_faces_flag_is_one_error_line(args, says, monkeypatch, capsys):
    from imgclf import api, cli

    def never(*args, **kw):
        raise AssertionError("a bad value is refused before the API is called")

    for name in ("enrol", "add", "identify"):
        monkeypatch.setattr(F, name, never)
    monkeypatch.setattr(api, "predict_on_ray", never)
    monkeypatch.setattr(sys, "argv", ["imgclf", "faces", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {says}") and err.count("\n") == 1, err


def test_enrol_without_out_checks_the_folder_before_making_a_gallery_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["faces", "enrol", "nowhere"])
    assert isinstance(result.exception, UserError) and "nowhere is not a folder" in str(result.exception)
    assert not (tmp_path / "galleries").exists()


@pytest.mark.parametrize(
    "call, says",
    [
        (lambda tmp: F.enrol(tmp, tmp / "g", far=1.5), "--far must be the share of strangers"),
        (lambda tmp: F.enrol(tmp, tmp / "g", far=0), "--far must be the share of strangers"),
        (lambda tmp: F.enrol(tmp, tmp / "g", backend="x"), "unknown --backend 'x'"),
        (lambda tmp: F.enrol(tmp, tmp / "g", keep_photos="yes"), "--keep-photos must be true or false"),
        (lambda tmp: F.add(tmp / "g", "Ada", [tmp], backend="x"), "unknown --backend 'x'"),
        (lambda tmp: F.identify(tmp / "g", [tmp], threshold=1.5), "--threshold must be a cosine similarity"),
        (lambda tmp: F.identify(tmp / "g", [tmp], every=0), "--every must be a whole number of frames"),
        (lambda tmp: F.identify(tmp / "g", [tmp], every=1.5), "--every must be a whole number of frames"),
        (lambda tmp: F.identify(tmp / "g", [tmp], max_seconds=-1), "--max-seconds must be"),
        (lambda tmp: F.identify(tmp / "g", [tmp], backend="openvino"), "unknown --backend 'openvino'"),
        (lambda tmp: F.FaceModel(backend="openvino"), "unknown --backend 'openvino'"),
        (lambda tmp: EnrolSettings(out=str(tmp / "g"), far=1), "--far must be"),
        (lambda tmp: IdentifySettings(every=0), "--every must be"),
    ],
)
def test_the_python_api_checks_by_the_same_rules(call, says, tmp_path):
    with pytest.raises(UserError) as e:
        call(tmp_path)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "g").exists()


def test_a_video_is_held_to_the_same_rules():
    from imgclf.faces.video import identify_video

    with pytest.raises(UserError, match="--every must be a whole number of frames, at least 1, not 0"):
        identify_video(None, None, "door.mp4", "out", every=0)
    with pytest.raises(UserError, match="--max-seconds must be a positive number of seconds"):
        identify_video(None, None, "door.mp4", "out", max_seconds=0)

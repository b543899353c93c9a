"""Issue 37's table: the last tracebacks and silently accepted values of a hostile probe, each now one
line on stderr (exit 2) before any work is done, and files that are not regular (a FIFO) skipped
wherever files are read instead of hanging the reader."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, make_run, make_shapes_dataset, png

import imgclf
from imgclf.core.errors import UserError
from imgclf.core.files import NotRegularFile, is_regular, output_file, output_folder, read_regular
from imgclf.store import registry

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


def one_line_error(p, text: str) -> None:
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert text in p.stderr, p.stderr


def within(seconds: float, fn):
    """fn()'s result (or its exception), or a test failure, not a hung suite, after `seconds`."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


# ---- one check for output paths ---------------------------------------------------------------


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a folder; give a file name, e.g. .*model.onnx"):
        output_file(tmp_path / "folder", "--out", "model.onnx")
    # `--out preds/`: a folder meant, not yet made; written as a file named "preds" it was a surprise
    with pytest.raises(UserError, match=r"preds is a folder; give a file name, e.g. .*preds.predictions\.csv"):
        output_file(f"{tmp_path / 'preds'}/", "--out")
    assert not (tmp_path / "preds").exists()
    with pytest.raises(UserError, match="file.txt is a file, not a folder"):
        output_file(tmp_path / "file.txt" / "x.onnx", "--out")
    with pytest.raises(UserError, match="--inbox .*file.txt is a file; give a folder"):
        output_folder(tmp_path / "file.txt", "--inbox")
    with pytest.raises(UserError, match="not a usable path"):
        output_file("bad\0name.csv", "--out")
    with pytest.raises(UserError, match="^--out is empty; give a path$"):  # `--out "$UNSET"`: not the current folder
        output_folder("", "--out")
    assert output_file(tmp_path / "new" / "deeper" / "x.csv", "--out") == tmp_path / "new" / "deeper" / "x.csv"
    assert output_folder(tmp_path / "log", "--log-predictions") == tmp_path / "log"
    # an existing file is replaced or resumed (predict --out appends to its CSV), never refused
    assert output_file(tmp_path / "file.txt", "--out") == tmp_path / "file.txt"
    assert output_folder(tmp_path / "folder", "--out") == tmp_path / "folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]  # nothing made, no probe left
    assert list((tmp_path / "folder").iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_a_place_no_file_can_be_made_is_refused():
    with pytest.raises(UserError, match="cannot be written: no file can be made in /proc"):
        output_file("/proc/x.onnx", "--out")


@needs_fifo
def test_a_fifo_is_not_an_output_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(UserError, match="is not a regular file"):
        output_file(tmp_path / "pipe.csv", "--out")


def test_serve_refuses_an_inbox_or_log_that_is_a_file(tmp_path):
    run = make_run(tmp_path, "photos-1", 0.8, [])
    (tmp_path / "existing.txt").write_text("x")
    one_line_error(
        cli("serve", run, "--log-predictions", tmp_path / "existing.txt", "--inbox", tmp_path / "inbox", check=False),
        f"--log-predictions {tmp_path / 'existing.txt'} is a file; give a folder",
    )
    one_line_error(
        cli("serve", run, "--inbox", tmp_path / "existing.txt", check=False),
        f"--inbox {tmp_path / 'existing.txt'} is a file; give a folder",
    )


def test_export_out_is_checked_before_the_export(tmp_path):
    run = make_run(tmp_path, "photos-1", 0.8, [])  # never loaded: the path is refused first
    (tmp_path / "folder").mkdir()
    one_line_error(
        cli("export", run, "--out", tmp_path / "folder", check=False),
        f"--out {tmp_path / 'folder'} is a folder; give a file name, e.g. {tmp_path / 'folder' / 'model.onnx'}",
    )
    if Path("/proc/self").is_dir():
        one_line_error(cli("export", run, "--out", "/proc/x.onnx", check=False), "--out /proc/x.onnx cannot be written")


# ---- update, compare ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, text",
    [
        ({"tolerance": float("nan")}, "--tolerance must be a number in [0, 1], not nan"),
        ({"tolerance": -1}, "--tolerance must be a number in [0, 1], not -1"),
        ({"epochs": 0}, "--epochs must be an integer from 1 to 10000, not 0"),
        ({"lr_factor": float("nan")}, "--lr-factor must be a number in (0, 1], not nan"),
        ({"replay": -3}, "--replay must be an integer from 0 to "),
    ],
)
def test_update_refuses_bad_numbers_before_reading_any_data(tmp_path, options, text):
    import imgclf

    # No registry at all: the options are refused before the version is looked up.
    with pytest.raises(UserError) as e:
        imgclf.update("production", tmp_path / "new", registry=tmp_path, verbose=False, **options)
    assert str(e.value).startswith(text), e.value


def test_update_tolerance_nan_on_the_command_line(tmp_path):
    one_line_error(
        cli("update", "production", tmp_path / "new", "--tolerance", "nan", check=False),
        "--tolerance must be a number in [0, 1], not nan",
    )


def test_update_out_must_be_a_folder(tmp_path):
    (tmp_path / "existing.txt").write_text("x")
    one_line_error(
        cli("update", "production", tmp_path / "new", "--out", tmp_path / "existing.txt", check=False),
        f"--out {tmp_path / 'existing.txt'} is a file; give a folder",
    )


def test_compare_tolerance_and_alpha_are_checked_before_any_model_is_loaded(tmp_path):
    import imgclf

    # Neither run exists: the options are refused first, naming the option, for keywords as for flags.
    for tolerance, alpha, text in ((float("nan"), 0.05, "--tolerance"), (0.02, 0.0, "--alpha"), (0.02, 1, "--alpha")):
        with pytest.raises(UserError, match=text):
            imgclf.compare(tmp_path / "a", tmp_path / "b", tolerance=tolerance, alpha=alpha)
    one_line_error(
        cli("compare", tmp_path / "a", tmp_path / "b", "--alpha", "1", check=False),
        "--alpha must be a number in (0, 1), not 1",
    )


# ---- the registry ---------------------------------------------------------------------------------


def test_a_corrupt_version_file_is_one_line(tmp_path):
    registry.add(make_run(tmp_path, "photos-1", 0.8, []), tmp_path / "registry", alias="production")
    version = tmp_path / "registry" / "versions" / "1" / "version.json"
    for text, word in (('{"run": ', "is not valid JSON"), ("[]", "must hold a JSON object")):
        version.write_text(text)
        for command in (["registry", "list"], ["registry", "show", "1"]):
            one_line_error(cli(*command, "--registry", tmp_path / "registry", check=False), word)
    version.unlink()
    with pytest.raises(UserError, match="version 1 has no"):
        registry.resolve(tmp_path / "registry", "production")


# ---- the feedback inbox ---------------------------------------------------------------------------


@needs_fifo
def test_feedback_import_skips_a_fifo_instead_of_hanging(tmp_path):
    label = tmp_path / "corrections" / "square"
    label.mkdir(parents=True)
    (label / "ok.png").write_bytes(png(np.full((8, 8, 3), 200)))
    os.mkfifo(label / "pipe.png")
    p = cli("feedback", "import", tmp_path / "corrections", "--inbox", tmp_path / "inbox", timeout=60)
    assert "1 added" in p.stdout and "pipe.png: not a regular file" in p.stdout, p.stdout


def test_feedback_import_who_has_the_service_cap(tmp_path):
    (tmp_path / "corrections" / "square").mkdir(parents=True)
    one_line_error(
        cli("feedback", "import", tmp_path / "corrections", "--who", "x" * 100_000, check=False),
        "--who is 100,000 characters long; at most 200",
    )
    one_line_error(
        cli("feedback", "import", tmp_path / "corrections", "--who", "ann\u202e", check=False),
        "--who contains control or invisible characters",
    )


def test_feedback_list_refuses_a_format_it_does_not_have(tmp_path):
    p = cli("feedback", "list", "--inbox", tmp_path / "inbox", "--format", "csv", check=False)
    assert p.returncode == 2 and p.stderr == "error: unknown --format 'csv'; choose one of table, json\n", p.stderr
    assert json.loads(cli("feedback", "list", "--inbox", tmp_path / "inbox", "--format", "json").stdout)["images"] == 0


# ---- readers skip what is not a regular file -------------------------------------------------------


@needs_fifo
def test_fifos_are_left_out_of_listings_and_refused_by_readers(tmp_path):
    from imgclf.data.images import UnusableImage, read_rgb
    from imgclf.data.manifest import MISSING, file_sha256
    from imgclf.data.spec import files_under

    data = make_shapes_dataset(tmp_path / "shapes", per_class=2, size=16)
    os.mkfifo(data / "disc" / "pipe.png")
    pipe = data / "disc" / "pipe.png"
    assert not is_regular(pipe) and is_regular(data / "disc" / "disc_000.png")
    assert pipe not in files_under(data) and len(files_under(data)) == 6
    with pytest.raises(UnusableImage, match="not a regular file"):
        within(10, lambda: read_rgb(pipe))
    assert within(10, lambda: file_sha256(pipe)) == MISSING
    with pytest.raises(NotRegularFile):
        within(10, lambda: read_regular(pipe))
    assert read_regular(data / "disc" / "disc_000.png") == (data / "disc" / "disc_000.png").read_bytes()


# ---- predict --scan's advice ----------------------------------------------------------------------


@pytest.mark.slow
def test_predict_scan_without_a_class_to_find_names_predicts_own_options(tiny_run, tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 32))
    for _ in range(3):
        writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()
    p = cli("predict", tiny_run, video, "--scan", check=False)
    one_line_error(p, "predict --scan finds the run's positive class")
    assert "--positive-class CLASS" in p.stderr and "give --positive," not in p.stderr


# ---- every other --out takes the same check --------------------------------------------------------


def test_tune_and_enrol_out_must_be_folders(tmp_path):
    from imgclf.tuning.tune import tune_folder

    (tmp_path / "existing.txt").write_text("x")
    with pytest.raises(UserError, match="--out .*existing.txt is a file; give a folder"):
        tune_folder(str(tmp_path), tmp_path / "existing.txt")
    faces = pytest.importorskip("imgclf.faces", exc_type=ImportError)
    with pytest.raises(UserError, match="--out .*existing.txt is a file; give a folder"):
        faces.enrol(tmp_path, tmp_path / "existing.txt", verbose=False)


@pytest.mark.slow
def test_explain_ensemble_and_monitor_out_must_be_folders(tiny_run, tmp_path):
    (tmp_path / "existing.txt").write_text("x")
    image = next((tiny_run.parent / "shapes").rglob("*.png"))
    twin = shutil.copytree(tiny_run, tmp_path / "twin")  # an ensemble's members are two runs
    for args in (
        ["explain", tiny_run, image],
        ["ensemble", tiny_run, twin],
        ["monitor", tiny_run, "--log", tmp_path],
    ):
        one_line_error(
            cli(*args, "--out", tmp_path / "existing.txt", check=False),
            f"--out {tmp_path / 'existing.txt'} is a file; give a folder",
        )


def test_a_new_run_or_bundle_is_not_written_into_a_folder_of_other_files(tiny_run, tmp_path):
    """`--out .` or `--out ~/Desktop`: the run's report.html and splits.csv would replace the user's."""
    desk = tmp_path / "desk"
    desk.mkdir()
    for name in ("report.html", "notes.txt", ".DS_Store"):
        (desk / name).write_text("the user's")
    shapes = tiny_run.parent / "shapes"
    twin = shutil.copytree(tiny_run, tmp_path / "twin")  # an ensemble's members are two runs
    for args in (["train", shapes, "--epochs", "1"], ["ensemble", tiny_run, twin]):
        one_line_error(
            cli(*args, "--out", desk, check=False),
            f"{desk} already holds other files (notes.txt, report.html); give a new or empty folder as --out",
        )
    assert (desk / "report.html").read_text() == "the user's" and len(list(desk.iterdir())) == 3
    for name in ("notes.txt", "report.html"):  # a folder of hidden files only is taken
        (desk / name).unlink()
    from imgclf.store.runs import refuse_finished_run

    refuse_finished_run(desk)


def test_scan_and_negatives_out_must_be_folders(tmp_path):
    run = make_run(tmp_path, "people-1", 0.8, [])  # never loaded: the path is refused first
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(np.full((32, 32, 3), 120)))
    (tmp_path / "existing.txt").write_text("x")
    for args in (["scan", run, photo], ["negatives", photo]):
        one_line_error(
            cli(*args, "--out", tmp_path / "existing.txt", check=False),
            f"--out {tmp_path / 'existing.txt'} is a file; give a folder",
        )


def test_feedback_inbox_must_be_a_folder(tmp_path):
    (tmp_path / "corrections" / "square").mkdir(parents=True)
    (tmp_path / "existing.txt").write_text("x")
    one_line_error(
        cli("feedback", "import", tmp_path / "corrections", "--inbox", tmp_path / "existing.txt", check=False),
        f"--inbox {tmp_path / 'existing.txt'} is a file; give a folder",
    )
    one_line_error(
        cli("feedback", "list", "--inbox", tmp_path / "existing.txt", check=False),
        f"--inbox {tmp_path / 'existing.txt'} is a file",
    )


def test_a_folder_with_no_image_is_said_not_answered_with_an_empty_table(tiny_run, tmp_path):
    """predict printed an empty table (and --out an empty CSV), scan "0 of 0 images", exit 0 each."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no photos here")
    said = f"no images in {tmp_path / 'notes'}: no file there, nor in the folders below, is an image"
    for args in (["predict", tiny_run], ["predict", tiny_run, "--out", tmp_path / "p.csv"], ["scan"]):
        one_line_error(cli(*args[:2], tmp_path / "notes", *args[2:], check=False), said)
    assert not (tmp_path / "p.csv").exists()
    image = next((tiny_run.parent / "shapes").rglob("*.png"))  # beside a folder that has some: answered
    assert str(image) in cli("predict", tiny_run, tmp_path / "notes", image, "--format", "csv").stdout


def test_the_person_detector_or_a_gallery_given_as_a_run_points_to_its_own_command(tmp_path):
    """`evaluate person`, `predict person` and `serve` take the detector by name; explain and report read a run."""
    (tmp_path / "staff").mkdir()
    (tmp_path / "staff" / "gallery.safetensors").write_bytes(b"")  # the file `imgclf faces enrol` writes
    for args, said in (
        (["explain", "person", tmp_path], "a detector answers where with boxes, not a heat map: imgclf scan PHOTOS"),
        (
            ["report", "person"],
            "person is a detector: its report comes from an evaluation on your photos: imgclf evaluate person PHOTOS/",
        ),
        (["predict", tmp_path / "staff", tmp_path], "is a face gallery, not a run: name the people in photos with "),
        (["serve", tmp_path / "staff"], f"serve it with imgclf serve --faces {tmp_path / 'staff'}; score it with"),
    ):
        one_line_error(cli(*args, check=False, cwd=tmp_path), said)


def test_a_run_folder_given_as_data_or_before_its_images_is_named_so(tmp_path):
    """A run folder where data is expected (train, check) is not read as COCO annotations or a
    class; predict with RUN and IMAGES swapped says which comes first."""
    run = make_run(tmp_path, "photos-1", 0.8, [])
    (run / "config.yaml").write_text("model: resnet_fast\n")
    (run / "data_report.json").write_text("{}")
    for command in ("train", "check"):
        one_line_error(
            cli(command, run, check=False),
            f"{run} is an imgclf run folder, not data: give the data it was trained on, or continue an "
            f"interrupted run with: imgclf train --resume {run}",
        )
    data = make_shapes_dataset(tmp_path / "shapes", per_class=2, size=16)
    swapped = f"error: {data} is not a finished run folder but images: imgclf train {data} makes a run folder of them"
    for command in (("predict", data, run), ("serve", data)):  # serve takes no images: the hint names no one command
        one_line_error(cli(*command, check=False), swapped)


def test_a_mistyped_run_folder_is_said_with_the_runs_beside_it(tmp_path):
    for n in (1, 2):
        make_run(tmp_path, f"photos-{n}", 0.8, [])
    one_line_error(
        cli("predict", tmp_path / "runs" / "photos-3", tmp_path, check=False),
        f"no such run folder: {tmp_path / 'runs' / 'photos-3'}; {tmp_path / 'runs'}/ holds photos-1, photos-2",
    )
    one_line_error(cli("serve", tmp_path / "nowhere" / "run", check=False), "no such run folder: ")


# ---- a mistyped model name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, text", [("resnet_fsat", "unknown model 'resnet_fsat'"), ("timm/resnet1", "unknown timm architecture")]
)
def test_a_mistyped_model_is_refused_before_the_images_are_decoded(tmp_path, model, text):
    data = make_shapes_dataset(tmp_path / "shapes", per_class=4, size=16)
    p = cli("train", data, "--model", model, "--out", tmp_path / "run", check=False)
    one_line_error(p, text)
    # Refused before decoding: nothing was decoded, split or grouped, and no run folder was made.
    assert "decod" not in p.stdout and "split" not in p.stdout, p.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["train", "{tmp}/nowhere"], "data not found: {tmp}/nowhere"),
        (["tune", "{tmp}/nowhere"], "data not found: {tmp}/nowhere"),
        (["lr-find", "{tmp}/nowhere"], "data not found: {tmp}/nowhere"),
        (["export", "{tmp}/nowhere"], "no such run folder: {tmp}/nowhere"),
        (["predict", "{tmp}", "{tmp}/typo.jpg"], "no such file or folder: {tmp}/typo.jpg"),
    ],
    ids=["train", "tune", "lr-find", "export", "predict"],
)
def test_a_mistyped_path_is_said_before_torch_is_imported(args, says, tmp_path):
    """`imgclf train nowhere` and the like: the one line came after torch's imports or a model's load
    (2.5 s on 2 cores); now at once."""
    import subprocess
    import sys

    argv = ["imgclf", *(a.format(tmp=tmp_path) for a in args)]
    code = (
        "import atexit, sys; atexit.register(lambda: print('TORCH', 'torch' in sys.modules))\n"
        f"sys.argv = {argv!r}\nfrom imgclf.cli import entry; entry()"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith(f"error: {says.format(tmp=tmp_path)}"), p.stderr
    assert p.stdout.strip() == "TORCH False", p.stdout


@pytest.mark.parametrize(
    "args, said",
    [
        (["train", "d", "--epocs", "3"], "error: No such option: --epocs (Possible options: --epochs, "),
        (["trian", "d"], "error: No such command 'trian'. Did you mean 'train'? See imgclf --help\n"),
        (["train", "d", "--epochs", "abc"], "error: Invalid value for '--epochs': "),
        (["predict"], "error: Missing argument 'run'; see imgclf predict --help\n"),
        (["faces", "identify", "g"], "error: Missing argument 'photos'; see imgclf faces identify --help\n"),
    ],
)
def test_a_mistyped_command_line_is_one_line_with_where_to_look(args, said, tmp_path):
    """Click said these in four lines (usage, a hint, a blank, the error); imgclf's own mistakes are one."""
    p = cli(*args, check=False, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith(said), p.stderr
    assert p.stderr.rstrip().endswith(" --help")


def test_a_bare_command_group_still_shows_its_help(tmp_path):
    p = cli("faces", check=False, cwd=tmp_path)
    assert "Usage: imgclf faces" in p.stdout + p.stderr and "enrol" in p.stdout + p.stderr


def test_version_names_imgclf_and_the_engines_it_runs_on(tmp_path):
    """What a bug report needs first, without the seconds importing torch would cost."""
    from importlib import metadata

    from imgclf.core.version import __version__

    p = cli("--version", cwd=tmp_path)
    assert p.stdout.startswith(f"imgclf {__version__} (Python ") and p.stderr == ""
    assert f"torch {metadata.version('torch')}" in p.stdout and p.stdout.count("\n") == 1


# ---- an empty argument (an unset shell variable) is not the current folder --------------------


def test_an_empty_argument_is_refused_not_read_as_the_current_folder(tmp_path):
    """Path("") is ".": `imgclf train "$DATA"` with DATA unset trained on whatever lay in the current
    folder, `imgclf feedback import ""` copied all of it into the inbox, and `tune --device ""` ran
    every trial to the same failure. Each is now one line before any work."""
    from imgclf.cli.app import refuse_empty
    from imgclf.inference.predictor import expand_inputs
    from imgclf.settings.config import TrainConfig
    from imgclf.settings.tune import TuneSettings

    for argv, says in (
        (["train", ""], "the argument after 'train' is empty (an unset shell variable?)"),
        (["predict", "run", "--out="], "--out is empty"),
        (["tune", "data", "--device", ""], "the argument after '--device' is empty"),
    ):
        with pytest.raises(UserError, match=f"^{re.escape(says)}"):
            refuse_empty(argv)
    refuse_empty(["registry", "add", "r", "--parent", " "])  # blank, not empty: the option's own check names it
    with pytest.raises(UserError, match="^--device is empty; give a value"):
        TuneSettings(device="")
    with pytest.raises(UserError, match="^weights is empty; give a path$"):
        TrainConfig(weights="")
    assert TrainConfig().data == ""  # unset data stays a valid default
    with pytest.raises(UserError, match="^an empty path"):
        list(expand_inputs(["", str(tmp_path)]))
    (tmp_path / "rose").mkdir()
    (tmp_path / "rose" / "a.png").write_bytes(png(np.zeros((8, 8, 3), np.uint8)))
    p = cli("feedback", "import", "", "--inbox", tmp_path / "inbox", check=False, cwd=tmp_path)
    one_line_error(p, "the argument after 'import' is empty")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["rose"]  # nothing imported, no inbox made
    with pytest.raises(UserError, match="^the folder to import is empty"):
        imgclf.feedback_import("", inbox=tmp_path / "inbox")
    with pytest.raises(UserError, match="^data is empty"):
        imgclf.check("")

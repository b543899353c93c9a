"""A run folder that was truncated, edited or bit-flipped is refused on load with one line naming the
file and the field, never a traceback, a terabyte allocation or a confident wrong answer."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, cli, make_shapes_dataset

import imgclf
from imgclf.core.errors import UserError

pytestmark = pytest.mark.slow  # every test here trains a model, itself or through a fixture


@pytest.fixture
def run(tiny_run) -> Path:
    return tiny_run


@pytest.fixture
def copy(run, tmp_path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def edit_json(run: Path, change) -> None:
    meta = json.loads((run / "model.json").read_text())
    change(meta)
    (run / "model.json").write_text(json.dumps(meta))


def test_the_weights_hash_is_recorded_and_checked(run, copy):
    from imgclf.store.run_schema import sha256_file

    meta = json.loads((run / "model.json").read_text())
    assert meta["weights_sha256"] == sha256_file(run / "model.safetensors")
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-50] ^= 0xFF  # one flipped byte inside a tensor: still a valid file
    (copy / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(UserError, match=r"copy/model.safetensors has SHA-256 .* not the .* recorded in model.json"):
        imgclf.load(copy)


def test_a_run_from_before_hashes_still_loads(copy):
    edit_json(copy, lambda m: m.pop("weights_sha256"))
    assert imgclf.load(copy).classes == ["disc", "square", "stripes"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda m: m["input"].update(size=100000000), "field input.size must be an integer from 16 to 1024"),
        (lambda m: m["input"].pop("size"), "field input.size is missing"),
        (
            lambda m: m["normalization"].update(std=[0, 0, 0]),
            "field normalization.std must be a list of 1 or 3 finite numbers above 0, not [0, 0, 0]",
        ),
        (lambda m: m.update(classes="disc"), "field classes must be a list of at least two distinct class names"),
        (lambda m: m["calibration"].update(temperature=-1), "field calibration.temperature"),
        (lambda m: m.update(tta="sideways"), "field tta must be one of none, flip, crop, flip-crop"),
        (lambda m: m.update(weights_sha256="abc"), "field weights_sha256 must be 64 lowercase hex digits"),
        (lambda m: m["architecture"]["kwargs"].update(width=8), "model.safetensors does not fit the architecture"),
    ],
)
def test_an_edited_model_json_is_refused_naming_the_field(copy, damage, message):
    edit_json(copy, damage)
    with pytest.raises(UserError) as e:
        imgclf.load(copy)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_cut_model_json_gives_one_line_on_the_command_line(run, copy):
    (copy / "model.json").write_text('{"format": 1, "classes": [')
    p = cli("predict", copy, next((run.parent / "shapes").rglob("*.png")), check=False)
    assert p.returncode == 2 and p.stderr.startswith(f"error: {copy / 'model.json'} is not valid JSON")
    assert p.stderr.count("\n") == 1


@pytest.mark.parametrize("content", [b"garbage" * 50, None])
def test_truncated_or_garbage_weights_are_refused(copy, content):
    edit_json(copy, lambda m: m.pop("weights_sha256"))  # the safetensors reader itself must say it
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(content if content is not None else data[:1000])
    with pytest.raises(UserError, match="model.safetensors is not a readable safetensors file"):
        imgclf.load(copy)


def test_nan_weights_are_refused(copy):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(copy / "model.safetensors"))
    first = next(k for k, t in sd.items() if t.is_floating_point())
    sd[first][...] = math.nan
    save_file(sd, str(copy / "model.safetensors"))
    edit_json(copy, lambda m: m.pop("weights_sha256"))
    with pytest.raises(UserError, match=f"NaN or infinite weights \\({first}\\): the training diverged"):
        imgclf.load(copy)


def test_a_damaged_training_state_stops_resume_in_one_line(run, tmp_path):
    assert not (run / "train_state.safetensors").exists()  # a finished run resumes nothing: not kept
    unfinished = imgclf.train(run.parent / "shapes", out=tmp_path / "run", evaluate=False, verbose=False, **TINY).path
    state = unfinished / "train_state.safetensors"
    state.write_bytes(state.read_bytes()[:500])
    p = cli("train", "--resume", unfinished, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert f"cannot resume from {state}: it is damaged" in p.stderr and "delete it" in p.stderr


def test_predict_json_never_prints_nan(run, monkeypatch):
    from typer.testing import CliRunner

    from imgclf.cli import app
    from imgclf.inference.predictor import Predictor

    monkeypatch.setattr(Predictor, "predict_proba", lambda self, images: np.full((len(images), 3), np.nan))
    image = next((run.parent / "shapes").rglob("*.png"))
    r = CliRunner().invoke(app, ["predict", str(run), str(image), "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
    assert out[0]["confidence"] is None


def test_two_trainings_started_together_get_their_own_run_folders(tmp_path, monkeypatch):
    """Two terminals, the same data, no --out: a run folder is made as its name is chosen (a run's
    first files come only after decoding, seconds to minutes later), so a second training never
    writes into the first's; one stopped before then by a mistake in the data leaves no empty folder."""
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.store.runs import new_run_dir

    monkeypatch.chdir(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: new_run_dir("photos", reserve=True), range(8)))
    assert sorted(p.name for p in made) == sorted(f"photos-{i}" for i in range(1, 9))
    assert all(p.is_dir() for p in made)
    for cls in ("cat", "dog"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "photos" / cls / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError):
        imgclf.train(tmp_path / "photos", verbose=False)
    assert len(list((tmp_path / "runs").iterdir())) == 8


def test_a_resume_keeps_the_runs_own_split_and_a_finished_run_is_not_resumed(tmp_path):
    """Photos added to the data (a new class too) between Ctrl-C and --resume: the resumed run keeps
    its recorded split and classes (a fresh split could move a test photo into training, a new class
    shift the indices under the saved weights) and says what it left out. A finished run: one line."""
    import shutil

    from imgclf.core.errors import Interrupted

    data = make_shapes_dataset(tmp_path / "shapes", per_class=10, size=16)

    def stop(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    settings = dict(model="simple_cnn", epochs=3, img_size=16, verbose=False)
    with pytest.raises(Interrupted):
        imgclf.train(data, out=tmp_path / "run", on_epoch=stop, **settings)
    recorded = (tmp_path / "run" / "splits.csv").read_text()
    (data / "blob").mkdir()  # a new class, sorted before the others
    for i in range(10):
        shutil.copy(data / "disc" / f"disc_{i:03d}.png", data / "blob" / f"{i}.png")
        shutil.copy(data / "square" / f"square_{i:03d}.png", data / "square" / f"more_{i}.png")
    (data / "disc" / "disc_000.png").unlink()

    run = imgclf.train(resume=tmp_path / "run", verbose=False)
    assert json.loads((run.path / "model.json").read_text())["classes"] == ["disc", "square", "stripes"]
    assert (tmp_path / "run" / "splits.csv").read_text().splitlines() == [
        line for line in recorded.splitlines() if not line.startswith("disc/disc_000.png")
    ]
    note = json.loads((tmp_path / "run" / "data_report.json").read_text())["read_as"]
    assert (
        "20 image(s) added to the data since it started are left out" in note and "1 recorded image(s) are gone" in note
    )

    with pytest.raises(UserError, match="is a finished run: nothing to resume"):
        imgclf.train(resume=tmp_path / "run", verbose=False)


def test_a_resume_finds_data_that_moved_where_the_user_says(tmp_path):
    """The photos moved between Ctrl-C and --resume: one line says so and how to name the new place;
    `imgclf train NEW_PLACE --resume RUN` finishes on the run's own split there."""
    from imgclf.core.errors import Interrupted

    data = make_shapes_dataset(tmp_path / "shapes", per_class=8, size=16)

    def stop(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        imgclf.train(data, out=tmp_path / "run", model="simple_cnn", epochs=2, on_epoch=stop, verbose=False)
    recorded = (tmp_path / "run" / "splits.csv").read_text()
    data.rename(tmp_path / "moved")
    with pytest.raises(UserError, match=f"no longer at {data}; say where it is now: imgclf train DATA --resume"):
        imgclf.train(resume=tmp_path / "run", verbose=False)
    run = imgclf.train(tmp_path / "moved", resume=tmp_path / "run", verbose=False)
    assert (run.path / "splits.csv").read_text() == recorded and run.metrics["accuracy"] >= 0
    assert json.loads((run.path / "model.json").read_text())["data"]["root"] == str(tmp_path / "moved")


def test_a_run_still_training_is_neither_resumed_nor_used_from_another_process(tmp_path):
    """Training in one terminal, `imgclf predict RUN` in another: it said the run was interrupted and
    to resume it, which would have made two processes train one run. While a training holds the run
    (a flock on the run folder, its pid in .training.pid), predict says it is still training and a resume is refused."""
    import signal
    import subprocess
    import time

    from helpers import CLI, cli_env

    data = make_shapes_dataset(tmp_path / "shapes", per_class=8, size=16)
    run = tmp_path / "run"
    args = [*CLI, "train", str(data), "--model", "simple_cnn", "--epochs", "300", "--img-size", "16", "--out", str(run)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "train_state.safetensors").is_file():
            time.sleep(0.1)
        assert proc.poll() is None, "training finished before the test could look"
        p = cli("predict", run, data, check=False)
        assert p.returncode == 2 and p.stderr.strip() == (
            f"error: {run} is still training (pid {proc.pid}): use it once that training has finished"
        ), p.stderr
        p = cli("train", "--resume", run, check=False)
        assert p.returncode == 2 and f"is being trained right now by another process (pid {proc.pid})" in p.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Killed: the lock went with the process, and the run is an interrupted one again.
    p = cli("predict", run, data, check=False)
    assert "was interrupted before it finished; resume it with" in p.stderr


def test_a_folder_that_is_no_run_says_what_it_is(tmp_path):
    """The "run folder comes first" hint is for a data folder given where the run belongs; a tune's
    retrain that never began (only tuning.json) names the command that goes on with it."""
    from imgclf.store.runs import find_run

    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "photos" / "cat" / "1.jpg").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "retrain").mkdir()
    (tmp_path / "retrain" / "tuning.json").write_text("{}")
    with pytest.raises(
        UserError, match=r"photos is not a finished run folder but images: imgclf train .*photos makes a run "
    ):
        find_run(tmp_path / "photos")
    with pytest.raises(UserError, match=r"imgclf train DATA$"):
        find_run(tmp_path / "empty")
    with pytest.raises(UserError, match=r"holds only tuning.json.*same imgclf tune command"):
        find_run(tmp_path / "retrain")


def test_what_is_made_from_a_source_is_named_after_it_without_its_archive_suffix(tmp_path, monkeypatch):
    """photos/, photos.zip, photos.tar.gz and photos.csv all make runs/photos-<n> (and
    RUN/evaluations/photos): the name a user looks for, safe as a folder name."""
    from imgclf.data.paths import source_name
    from imgclf.store.runs import new_run_dir

    monkeypatch.chdir(tmp_path)
    for given in ("photos", "photos/", "photos.zip", "Photos.TAR.GZ", "data/photos.csv", "photos.tgz"):
        assert source_name(given).lower() == "photos", given
    assert source_name("my photos (2024)") == "my_photos_2024"
    assert source_name("flowers.v2") == "flowers.v2"  # a dot in a folder's name is not an archive's suffix
    assert source_name(".zip") == "zip" and source_name("###") == "data"
    (tmp_path / "shots").mkdir()
    monkeypatch.chdir(tmp_path / "shots")
    assert new_run_dir(".") == Path("runs/shots-1")  # `imgclf train .` is named after the folder it is in

"""Running `imgclf train DATA` again after a crash (the "resume with" line lost with the terminal)
starts a new run beside the interrupted one: it says so, and names the command that continues it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from helpers import cli, ctrl_c

from imgclf.api.making import newest_interrupted
from imgclf.cli.app import bare_options
from imgclf.core.errors import UserError
from imgclf.store.runs import interrupted_note


def _run(folder: Path, data: Path, state: bool = True, finished: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"data: {data}\nepochs: 3\n")
    if state:
        (folder / "train_state.safetensors").write_bytes(b"state")
    if finished:
        (folder / "model.json").write_text("{}")
    return folder


def test_only_an_interrupted_run_of_the_same_data_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "photos"
    data.mkdir()
    assert interrupted_note(data) is None  # no runs/ at all
    _run(tmp_path / "runs" / "photos-1", data, finished=True)  # finished: nothing to continue
    _run(tmp_path / "runs" / "photos-2", data, state=False)  # stopped before its first epoch: nothing kept
    _run(tmp_path / "runs" / "photos-3", tmp_path / "elsewhere" / "photos")  # another folder of that name
    _run(tmp_path / "runs" / "photos-copy", data)  # not one of train's own names
    assert interrupted_note(data) is None
    old = _run(tmp_path / "runs" / "photos-4", data)
    new = _run(tmp_path / "runs" / "photos-5", Path("photos"))  # recorded as given, relative
    os.utime(old / "train_state.safetensors", (1, 1))  # the older of the two
    assert interrupted_note(data) == (
        f"  note: {Path('runs') / 'photos-5'} is an interrupted training of this data (1 more like it in runs): "
        f"imgclf train --resume {Path('runs') / 'photos-5'} continues it"
    )
    assert newest_interrupted(data) == Path("runs") / "photos-5"
    with pytest.raises(
        UserError, match=r"^no interrupted training of elsewhere in runs/ to resume: give its run folder"
    ):
        newest_interrupted("elsewhere")
    with pytest.raises(UserError, match=r"^--resume alone continues the newest interrupted training of DATA"):
        newest_interrupted(None)
    assert new.is_dir()
    from imgclf.training.resolve import user_settings

    # `imgclf train --resume photos/`: the data folder where the run folder belongs.
    with pytest.raises(UserError, match=r"a data folder: imgclf train \S*photos --resume\)$"):
        user_settings(None, None, str(data), {})


def test_a_bare_options_flag_means_the_newest_interrupted_run():
    assert bare_options(["train", "photos", "--resume"]) == ["train", "photos", "--resume=auto"]
    assert bare_options(["train", "photos", "--resume", "--epochs", "3"])[2] == "--resume=auto"
    assert bare_options(["train", "--resume", "runs/photos-1"]) == ["train", "--resume", "runs/photos-1"]
    assert bare_options(["predict", "--resume"]) == ["predict", "--resume"]  # only train takes it


@pytest.mark.slow
def test_a_new_training_beside_an_interrupted_one_names_it(shapes, tmp_path):
    _run(tmp_path / "runs" / "shapes-1", shapes)
    p = cli("train", shapes, "--preset", "fast", "--epochs", "1", "--img-size", "32", cwd=tmp_path)
    said = "  note: runs/shapes-1 is an interrupted training of this data: imgclf train --resume runs/shapes-1 continues it"
    assert said in p.stdout.splitlines()
    assert p.stdout.strip().splitlines()[-1] == "runs/shapes-2"  # the new run, beside it: nothing overwritten
    assert p.stdout.index("imgclf 0") < p.stdout.index(said)  # after the headline, before the defaults


@pytest.mark.slow
def test_train_data_resume_continues_the_run_ctrl_c_left(shapes, tmp_path):
    """Ctrl-C (or a crash) mid-training, then `imgclf train DATA --resume` with no run folder: the
    newest interrupted run of that data in runs/ goes on, each epoch's row once."""
    hist = tmp_path / "runs" / "shapes-1" / "history.csv"
    args = ["train", shapes, "--preset", "fast", "--epochs", "6", "--img-size", "48"]
    p = ctrl_c(args, ready=lambda: hist.exists() and len(hist.read_text().strip().splitlines()) >= 3, cwd=tmp_path)
    assert p.returncode == 130, p.stderr
    p = cli("train", shapes, "--resume", cwd=tmp_path)
    assert "resuming from epoch" in p.stdout and p.stdout.strip().splitlines()[-1] == "runs/shapes-1"
    with open(hist) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 7))
    assert not (tmp_path / "runs" / "shapes-2").exists()

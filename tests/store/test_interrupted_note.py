"""Running `imgclf train DATA` again after a crash (the "resume with" line lost with the terminal)
starts a new run beside the interrupted one: it says so, and names the command that continues it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import cli

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
    assert new.is_dir()


@pytest.mark.slow
def test_a_new_training_beside_an_interrupted_one_names_it(shapes, tmp_path):
    _run(tmp_path / "runs" / "shapes-1", shapes)
    p = cli("train", shapes, "--preset", "fast", "--epochs", "1", "--img-size", "32", cwd=tmp_path)
    said = "  note: runs/shapes-1 is an interrupted training of this data: imgclf train --resume runs/shapes-1 continues it"
    assert said in p.stdout.splitlines()
    assert p.stdout.strip().splitlines()[-1] == "runs/shapes-2"  # the new run, beside it: nothing overwritten
    assert p.stdout.index("imgclf 0") < p.stdout.index(said)  # after the headline, before the defaults

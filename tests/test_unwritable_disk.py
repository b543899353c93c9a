"""A disk that fills up mid-command: one line naming the file and the space left, nothing half-written
left behind, and the command that goes on. A folder that takes no file (a read-only disk, /proc):
one line before any work. The writers fail as they do on a full disk: the kernel's
ENOSPC from a write (which names no file), safetensors' Rust error (not an OSError), and
posix_fallocate's ENOSPC for the image cache."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys

import pytest
from helpers import TINY, cli, make_shapes_dataset
from safetensors import SafetensorError

import imgclf
import imgclf.store.checkpoint
from imgclf.core.errors import UserError, disk_full, refused

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def test_the_line_names_the_file_prefers_imgclfs_own_words_and_ignores_other_errors(tmp_path):
    named = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "model.onnx"))
    line = disk_full(named)
    free = shutil.disk_usage(tmp_path).free
    assert line.startswith(f"the disk is full: no room to write {tmp_path}/run/model.onnx (")
    assert line.endswith(
        "free there); free some space (IMGCLF_CACHE_DIR moves imgclf's cache to another disk), then run the same command again"
    )
    assert free > 0 and " free there" in line
    try:  # a writer's own error type, raised from inside imgclf's message
        try:
            raise SafetensorError(SAFETENSORS_FULL)
        except SafetensorError as e:
            raise OSError(errno.ENOSPC, "the decoded images need 29 MB in imgclf's cache") from e
    except OSError as e:
        assert (
            disk_full(e, then="go on")
            == "the disk is full: the decoded images need 29 MB in imgclf's cache; then go on"
        )
    assert disk_full(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))).startswith(
        "the disk is full (or over its quota); "
    )
    assert disk_full(OSError(errno.EACCES, "Permission denied", "x")) is None
    assert disk_full(ValueError("no space for doubt")) is None


class _FillsUp:
    """A text file on a disk with `room` characters left: a write beyond them lands in part, then fails
    as the kernel's does (ENOSPC, no file name)."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self.file.write(text[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(text)
        return self.file.write(text)

    def __getattr__(self, name):
        return getattr(self.file, name)


def _imgclf(argv: list, monkeypatch, capsys) -> tuple[int, list[str]]:
    """The command line's main() in this process: (exit status, stderr's lines)."""
    from imgclf.cli.app import main

    monkeypatch.setattr(sys, "argv", ["imgclf", *map(str, argv)])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.slow
def test_predictions_onto_a_full_disk_say_so_in_one_line_and_go_on_once_there_is_room(
    tiny_run, tmp_path, monkeypatch, capsys
):
    import imgclf.core.files

    out = tmp_path / "preds.csv"

    def opened(path, mode="r", *a, **k):  # only the CSV's disk is full
        f = open(path, mode, *a, **k)
        return _FillsUp(f, 700) if str(path) == str(out) else f

    monkeypatch.setattr(imgclf.core.files, "open", opened, raising=False)
    code, err = _imgclf(["predict", tiny_run, tiny_run.parent / "shapes", "--out", out], monkeypatch, capsys)
    assert code == 1 and len(err) == 1, err
    assert re.fullmatch(
        rf"error: the disk is full: no room to write {re.escape(str(out))} \([\d.]+ [kMG]?B free there\); free some "
        r"space \(IMGCLF_CACHE_DIR moves imgclf's cache to another disk\), then run the same command again",
        err[0],
    ), err
    kept = out.read_text()
    assert 0 < len(kept) == 700  # what fitted, its last row cut short

    monkeypatch.undo()  # space freed: the same command finishes the file
    code, err = _imgclf(["predict", tiny_run, tiny_run.parent / "shapes", "--out", out], monkeypatch, capsys)
    rows = out.read_text().splitlines()
    assert code in (0, None) and len(rows) == 31 and len({r.split(",")[0] for r in rows}) == 31, rows


@pytest.mark.slow
def test_a_training_whose_disk_fills_up_names_the_file_and_resumes(tmp_path, monkeypatch):
    data = make_shapes_dataset(tmp_path / "shapes", per_class=10, size=16)
    run = tmp_path / "run"
    real = imgclf.store.checkpoint.save_file
    writes = []

    def fills_up(tensors, filename, metadata=None):
        writes.append(filename)
        if len(writes) == 2:  # the second file written: the first epoch's has landed
            raise SafetensorError(SAFETENSORS_FULL)
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(imgclf.store.checkpoint, "save_file", fills_up)
    with pytest.raises(UserError) as e:
        imgclf.train(data, out=run, verbose=False, **{**TINY, "epochs": 2})
    meant = re.fullmatch(
        rf"the disk is full: no room to write {re.escape(str(run))}/(\S+) \([\d.]+ [kMG]?B free there\); "
        rf"free some space \(IMGCLF_CACHE_DIR moves imgclf's cache to another disk\), "
        rf"then go on with: imgclf train --resume {re.escape(str(run))}",
        str(e.value),
    )
    assert meant, str(e.value)
    assert not (run / meant.group(1)).exists() or meant.group(1) != "model.safetensors"
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]  # no half-written file left
    assert not (run / "metrics.json").exists()

    monkeypatch.setattr(imgclf.store.checkpoint, "save_file", real)  # space freed
    done = imgclf.train(resume=run, verbose=False)
    assert done.metrics["accuracy"] >= 0 and (run / "metrics.json").exists()
    assert len(open(run / "history.csv").read().strip().splitlines()) == 3  # header + 2 epochs, none twice


def test_a_full_image_cache_is_one_line_from_the_command_line(tmp_path, monkeypatch, capsys):
    data = make_shapes_dataset(tmp_path / "shapes", per_class=4, size=16)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    run = ["--model", "simple_cnn", "--img-size", "16", "--epochs", "1", "--out", tmp_path / "run"]
    code, err = _imgclf(["train", data, *run], monkeypatch, capsys)
    assert (
        code == 1
        and len(err) == 1
        and re.fullmatch(
            r"error: the disk is full: the decoded images need [\d.]+ kB in imgclf's cache, \S+, and [\d.]+ [kMG]B are free "
            r"there: free some space, or set IMGCLF_CACHE_DIR to a folder on a larger disk; then run the same command again",
            err[0],
        )
    ), err


@pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="needs /proc (Linux), where no file can be made, even by root"
)
def test_a_folder_that_takes_no_file_is_one_line_before_any_work(shapes):
    for args, line in [
        (["train", shapes], "error: cannot make the run folder runs/shapes-1 ("),
        (["lr-find", shapes], "error: --out runs/shapes-lr-find-1 cannot be written: no file can be made in . ("),
        (
            ["tune", shapes, "--trials", "1"],
            "error: --out tunes/shapes-1 cannot be written: no file can be made in . (",
        ),
        (
            ["train", shapes, "--out", "/proc/run"],
            "error: --out /proc/run cannot be written: no file can be made in /proc (",
        ),
    ]:
        p = cli(*args, cwd="/proc", check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert p.stderr.startswith(line), p.stderr
    # What no check caught before the work began (a read-only disk met later) is one line too.
    line = refused(OSError(errno.EROFS, os.strerror(errno.EROFS), "runs"))
    assert line.startswith("runs: Read-only file system; choose a folder you can write to, or run imgclf from one")
    assert refused(OSError(errno.ENOENT, os.strerror(errno.ENOENT), "photo.jpg")) is None
    assert refused(OSError(errno.EACCES, os.strerror(errno.EACCES))) is None  # names no path: the traceback stays


@pytest.mark.slow
def test_a_cache_that_cannot_be_written_is_a_one_line_warning_and_the_command_goes_on(shapes, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # no folder can be made there
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    # A home that cannot hold matplotlib's settings either: its own two lines of warning are not said
    monkeypatch.setenv("HOME", str(tmp_path / "a-file"))
    for name in ("XDG_CONFIG_HOME", "MPLCONFIGDIR"):
        monkeypatch.delenv(name, raising=False)
    p = cli("train", shapes, "--model", "simple_cnn", "--img-size", "16", "--epochs", "1", "--out", tmp_path / "run")
    assert "atplotlib" not in p.stderr and (tmp_path / "tmp" / f"imgclf-matplotlib-{os.getuid()}").is_dir()
    warned = [line for line in p.stderr.splitlines() if "cannot write" in line]
    assert warned == [
        f"warning: cannot write the image cache to {tmp_path}/a-file/cache (Not a directory); "
        f"using {tmp_path}/tmp/imgclf-cache-{os.getuid()}"
    ], p.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()

"""Durable writes: replaced files are fsynced with their folder, honour the umask, and a full disk
(ENOSPC) while writing weights, a checkpoint, a registry alias or the inbox log leaves the previous
files exactly as they were, with no temp file behind."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_run
from PIL import Image

from imgclf.core.files import write_json
from imgclf.store import inbox, registry
from imgclf.store.checkpoint import load_weights, save_training_state, save_weights

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes and folder fsync")


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (the lock file is not state)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@posix_only
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_json(tmp_path / "run" / "model.json", {"format": 1})
    save_weights(tmp_path / "run" / "model.safetensors", {"w": torch.zeros(2)})
    inbox.add(tmp_path / "inbox", _png(1), "rose", classes=None)
    for p in [
        tmp_path / "run" / "model.json",
        tmp_path / "run" / "model.safetensors",
        tmp_path / "inbox" / "feedback.jsonl",
        *(tmp_path / "inbox" / "rose").iterdir(),
    ]:
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


def record_fsyncs(monkeypatch) -> list[tuple[int, bool]]:
    """os.fsync still syncs, and each call is listed as (inode, is a folder), in call order."""
    synced: list[tuple[int, bool]] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        st = os.fstat(fd)
        synced.append((st.st_ino, stat.S_ISDIR(st.st_mode)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


@posix_only
def test_replaced_files_and_their_folder_are_fsynced(tmp_path, monkeypatch):
    synced = record_fsyncs(monkeypatch)
    for write in (lambda p: write_json(p, {"a": 1}), lambda p: save_weights(p, {"w": torch.ones(3)})):
        synced.clear()
        path = tmp_path / "out" / "file"
        write(path)
        # The temp file is renamed, so its inode is the final file's.
        assert (path.stat().st_ino, False) in synced
        assert (path.parent.stat().st_ino, True) in synced
        assert synced.index((path.stat().st_ino, False)) < synced.index((path.parent.stat().st_ino, True))

    synced.clear()
    box = tmp_path / "inbox"
    inbox.add(box, _png(2), "tulip", classes=None)
    for p in (box / "feedback.jsonl", *(box / "tulip").iterdir()):
        assert (p.stat().st_ino, False) in synced, p
    assert (box.stat().st_ino, True) in synced and ((box / "tulip").stat().st_ino, True) in synced


def test_full_disk_keeps_the_previous_weights_and_checkpoint(tmp_path, monkeypatch):
    weights, state = tmp_path / "model.safetensors", tmp_path / "train_state.safetensors"
    save_weights(weights, {"w": torch.ones(4)})
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_training_state(state, model, opt, {"epoch": 1})
    before = _snapshot(tmp_path)

    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(OSError) as e:
        save_weights(weights, {"w": torch.zeros(400)})
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        save_training_state(state, model, opt, {"epoch": 2})
    monkeypatch.undo()

    assert _snapshot(tmp_path) == before
    assert torch.equal(load_weights(weights)["w"], torch.ones(4))


def test_full_disk_keeps_the_previous_registry_aliases(tmp_path, monkeypatch):
    img = tmp_path / "data" / "cat" / "0.png"
    img.parent.mkdir(parents=True)
    img.write_bytes(_png(3))
    reg = tmp_path / "registry"
    for k in range(2):
        registry.add(
            make_run(tmp_path, f"photos-{k}", 0.8 + k / 10, [(img, "cat", "train")]),
            reg,
            alias="production" if k == 0 else None,
        )
    before = _snapshot(reg)

    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(OSError):
        registry.promote(reg, 2)
    monkeypatch.undo()

    assert _snapshot(reg) == before
    assert registry.show(reg, "production")["version"] == 1


def _fail_writes_to(path: Path, monkeypatch) -> None:
    """os.write to `path` writes a few bytes, then the disk is full: a realistic partial write."""
    real_write, ino = os.write, path.stat().st_ino

    def write(fd, data):
        if os.fstat(fd).st_ino != ino:
            return real_write(fd, data)
        real_write(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("label", ["tulip", "rose"])
def test_full_disk_keeps_the_previous_inbox(tmp_path, monkeypatch, label):
    """A new image (tulip) or a relabel (rose -> ...) whose log line cannot be written: the image is
    not kept or moved, and the log has no half line."""
    box = tmp_path / "inbox"
    png = _png(4)
    inbox.add(box, png, "rose", classes=None)
    before = _snapshot(box)

    _fail_writes_to(box / "feedback.jsonl", monkeypatch)
    with pytest.raises(OSError):
        inbox.add(box, _png(5) if label == "tulip" else png, "daisy", classes=None)
    monkeypatch.undo()
    assert _snapshot(box) == before

    monkeypatch.setattr(os, "fsync", _full_disk)  # the image's temp file itself cannot be made durable
    with pytest.raises(OSError):
        inbox.add(box, _png(6), "daisy", classes=None)
    monkeypatch.undo()
    assert _snapshot(box) == before
    assert [r["label"] for r in inbox.records(box)] == ["rose"]


def _registered(tmp_path: Path) -> tuple[Path, Path]:
    """(registry, a second run not registered yet): version 1 is production."""
    img = tmp_path / "data" / "cat" / "0.png"
    img.parent.mkdir(parents=True)
    img.write_bytes(_png(7))
    reg = tmp_path / "registry"
    registry.add(make_run(tmp_path, "photos-0", 0.8, [(img, "cat", "train")]), reg, alias="production")
    return reg, make_run(tmp_path, "photos-1", 0.9, [(img, "cat", "train")])


@posix_only
@pytest.mark.parametrize("mask, mode", [(0o022, 0o755), (0o077, 0o700)])
def test_registry_versions_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    reg, _ = _registered(tmp_path)
    version = reg / "versions" / "1"
    assert stat.S_IMODE(version.stat().st_mode) == mode  # not mkdtemp's 0700 whatever the umask
    for p in (*version.iterdir(), reg / "aliases.json", reg / "history.jsonl"):
        assert stat.S_IMODE(p.stat().st_mode) == mode & 0o666, p


@posix_only
def test_registry_versions_and_history_are_fsynced(tmp_path, monkeypatch):
    reg, run = _registered(tmp_path)
    synced = record_fsyncs(monkeypatch)
    registry.add(run, reg, alias="candidate")
    version = reg / "versions" / "2"
    for p in (version / "version.json", version / "manifest.csv", reg / "history.jsonl"):
        assert (p.stat().st_ino, False) in synced, p
    # The rename of the version folder into versions/ is made durable after the folder's own files.
    assert synced.index(((reg / "versions").stat().st_ino, True)) > synced.index(
        ((version / "version.json").stat().st_ino, False)
    )


def test_full_disk_keeps_the_registry_history_whole(tmp_path, monkeypatch):
    reg, _ = _registered(tmp_path)
    before = (reg / "history.jsonl").read_bytes()
    _fail_writes_to(reg / "history.jsonl", monkeypatch)
    with pytest.raises(OSError):
        registry.promote(reg, 1, alias="candidate")
    monkeypatch.undo()
    assert (reg / "history.jsonl").read_bytes() == before  # no half line for the next append to follow
    assert len(registry.history(reg)) == 1


@posix_only
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_streamed_and_scan_outputs_are_fsynced_and_honour_the_umask(tmp_path, monkeypatch, umask, mask, mode):
    """The writes that went around fsutil: streamed CSVs (batch predict, video), the prediction log's
    kept images and rotated parts, a scan's annotated copies. Their bytes are what they were."""
    import hashlib

    from imgclf.core.files import commit, open_stream
    from imgclf.inference.box_files import ScanOutputs, draw_boxes
    from imgclf.store.predlog import PredictionLog, record

    umask(mask)
    synced = record_fsyncs(monkeypatch)

    def durable(p: Path, folder_too: bool = True) -> bool:
        return (
            stat.S_IMODE(p.stat().st_mode) == mode
            and (p.stat().st_ino, False) in synced
            and (not folder_too or (p.parent.stat().st_ino, True) in synced)
        )

    csv_path = tmp_path / "out" / "preds.csv"
    with open_stream(csv_path) as f:
        f.write("path,label\r\n")
    with open_stream(csv_path, append=True) as f:
        f.write("a.png,rose\n")
    assert csv_path.read_bytes() == b"path,label\r\na.png,rose\n" and durable(csv_path)

    tmp = tmp_path / "out" / ".clip.partial.mp4"
    tmp.write_bytes(b"video")
    commit(tmp, tmp_path / "out" / "clip.mp4")
    assert not tmp.exists() and durable(tmp_path / "out" / "clip.mp4")

    log = PredictionLog(tmp_path / "log", max_mb=0.005)  # rotates every ~500 bytes
    log.start()
    data = _png(3)
    for _ in range(3):
        rec = record(
            sha256=hashlib.sha256(data).hexdigest(),
            model="m",
            version=1,
            answer={"label": "a", "confidence": 0.9},
            probs=np.array([0.9, 0.1]),
            classes=["a", "b"],
            decision="argmax",
        )
        log.write(rec, data)
        log.flush()
    log.close()
    [kept] = (tmp_path / "log" / "images").rglob("*.png")
    assert kept.read_bytes() == data and durable(kept)
    [part, *_] = sorted((tmp_path / "log").glob("predictions-*.jsonl"))
    assert durable(part)

    scan = ScanOutputs(tmp_path / "scan")
    img = Image.fromarray(np.random.default_rng(4).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    result = {"path": "street.png", "boxes": [{"x1": 2.0, "y1": 3.0, "x2": 20.0, "y2": 30.0, "score": 0.9}]}
    scan.add(result, img)
    expected = io.BytesIO()
    draw_boxes(img, result["boxes"]).save(expected, "JPEG", quality=90)
    annotated = Path(result["annotated"])
    assert annotated.name == "street.jpg" and annotated.read_bytes() == expected.getvalue() and durable(annotated)
    assert not [p for p in annotated.parent.iterdir() if p.name.startswith(".")]  # no temp file behind

"""imgclf.data.cache: built once from real files, reused, invalidated, identical across workers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data import cache as cache_mod
from imgclf.data.cache import build_cache, default_cache_dir
from imgclf.data.images import load_resized

BAD = {3: "empty file (0 bytes)", 11: "not an image (cannot identify format)"}


def _dataset(root: Path, n: int, bad: dict[int, str] = BAD) -> list[Path]:
    """n small images of varied sizes, formats and colours; the indices in `bad` are broken files."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        path = root / f"{i:03d}.{'jpg' if i % 3 == 0 else 'png'}"
        if bad.get(i, "").startswith("empty"):
            path.write_bytes(b"")
        elif i in bad:
            path.write_text("not an image")
        else:
            h, w = rng.integers(6, 30, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def paths(tmp_path) -> list[Path]:
    return _dataset(tmp_path / "imgs", 20)


def test_build_rows_equal_load_resized(tmp_path, paths):
    res = build_cache(paths, 12, "crop", cache_dir=tmp_path / "c", progress=False)
    assert isinstance(res.images, np.memmap) and not res.images.flags.writeable
    assert res.images.shape == (20, 12, 12, 3) and res.images.dtype == np.uint8
    assert res.bad == BAD and not res.hit
    assert res.path.exists() and res.path.with_suffix(".json").exists() and res.path.parent == tmp_path / "c"
    for i, p in enumerate(paths):
        expected = np.zeros((12, 12, 3), np.uint8) if i in BAD else load_resized(p, 12, "crop")
        assert np.array_equal(res.images[i], expected), i
    assert [f.name for f in (tmp_path / "c").iterdir() if f.name.startswith(".")] == []  # no temp left


def test_second_call_is_a_hit_and_decodes_nothing(tmp_path, paths, monkeypatch):
    first = build_cache(paths, 12, cache_dir=tmp_path / "c", progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("decoded on a cache hit")

    monkeypatch.setattr(cache_mod, "load_resized", fail)
    again = build_cache([str(p) for p in paths], 12, cache_dir=tmp_path / "c", progress=False)
    assert again.hit and again.path == first.path and again.bad == first.bad
    assert np.array_equal(again.images, first.images)


def test_changes_invalidate(tmp_path, paths):
    def key(**kw):
        args = {"paths": paths, "size": 12, "cache_dir": tmp_path / "c", "progress": False} | kw
        res = build_cache(**args)
        return res.path, res.hit

    base, _ = key()
    assert key() == (base, True)
    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched, hit = key()
    assert touched != base and not hit
    st = paths[1].stat()
    Image.new("RGB", (9, 9), "red").save(paths[1])  # new bytes, same mtime
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert paths[1].stat().st_size != st.st_size
    assert key()[0] not in (base, touched)
    assert len({key()[0], key(size=10)[0], key(mode="pad")[0], key(paths=paths[:-1])[0]}) == 4


def test_damaged_metadata_rebuilds(tmp_path, paths):
    res = build_cache(paths, 8, cache_dir=tmp_path / "c", progress=False)
    res.path.with_suffix(".json").write_text("{not json")
    again = build_cache(paths, 8, cache_dir=tmp_path / "c", progress=False)
    assert not again.hit and again.bad == BAD and np.array_equal(again.images, res.images)


def test_workers_give_identical_pixels(tmp_path, monkeypatch):
    pools = []

    class SpyPool(cache_mod.ProcessPoolExecutor):
        def __init__(self, workers):
            pools.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(cache_mod, "ProcessPoolExecutor", SpyPool)
    paths = _dataset(tmp_path / "many", 70, bad={5: "empty", 66: "text"})
    one = build_cache(paths, 8, cache_dir=tmp_path / "c1", workers=1, progress=False)
    two = build_cache(paths, 8, cache_dir=tmp_path / "c2", workers=2, progress=False)
    assert pools == [2]
    assert sorted(two.bad) == [5, 66] and two.bad == one.bad
    assert np.array_equal(one.images, two.images) and one.images[10].any()


def test_decoding_pools_work_when_processes_are_spawned(tmp_path, monkeypatch):
    """macOS and Windows start a pool's processes by spawning (Python 3.14 on Linux by forkserver):
    a worker then imports its function anew and gets its arguments pickled, which fork never asks."""
    import multiprocessing

    from imgclf.data import doctor

    pools = []

    class SpawnPool(cache_mod.ProcessPoolExecutor):
        def __init__(self, workers):
            pools.append(workers)
            super().__init__(workers, mp_context=multiprocessing.get_context("spawn"))

    monkeypatch.setattr(cache_mod, "ProcessPoolExecutor", SpawnPool)
    monkeypatch.setattr(doctor, "ProcessPoolExecutor", SpawnPool)
    paths = _dataset(tmp_path / "many", 70, bad={5: "empty", 66: "text"})
    one = build_cache(paths, 8, cache_dir=tmp_path / "c1", workers=1, progress=False)
    two = build_cache(paths, 8, cache_dir=tmp_path / "c2", workers=2, progress=False)
    assert sorted(two.bad) == [5, 66] and np.array_equal(one.images, two.images)
    bad, digests, *_ = doctor._scan([str(p) for p in paths], 2, progress=False)
    assert sorted(bad) == [5, 66] and len({d for d in digests if d}) == 68 and pools == [2, 2]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("IMGCLF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "imgclf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "imgclf"


def test_default_dir_is_used(paths):
    assert build_cache(paths, 8, progress=False).path.parent == Path(os.environ["IMGCLF_CACHE_DIR"])


def test_unwritable_dir_falls_back_to_temp(tmp_path, paths, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "a-file").write_text("")
    with pytest.warns(UserWarning, match="cannot write the image cache"):
        res = build_cache(paths, 8, cache_dir=tmp_path / "a-file" / "cache", progress=False)
    assert res.path.parent.parent == tmp_path / "tmp" and res.images.shape == (20, 8, 8, 3)


def test_progress_bar_and_empty_list(tmp_path, paths, monkeypatch, capsys):
    monkeypatch.setattr(cache_mod, "PROGRESS_MIN_IMAGES", 1)
    assert build_cache(paths, 8, cache_dir=tmp_path / "c", progress=True).bad == BAD
    # Into a file or pipe no bar is drawn, and none leaves an empty line behind in the log
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal, as rich sees it
    assert build_cache(paths, 8, cache_dir=tmp_path / "d", progress=True).bad == BAD
    assert "decoding 20 images" in capsys.readouterr().out
    empty = build_cache([], 8, cache_dir=tmp_path / "c")
    assert empty.images.shape == (0, 8, 8, 3) and empty.bad == {}
    with pytest.raises(ValueError, match="resize mode"):
        build_cache(paths, 8, "stretch", cache_dir=tmp_path / "c")

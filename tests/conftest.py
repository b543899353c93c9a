"""Shared fixtures: small real datasets written as image files, and an isolated cache dir."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

import imgclf.workflows  # noqa: E402 - the real report function, kept before the session fixture replaces it

REPORT_AFTER_TRAINING = imgclf.workflows._report_after_training


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_report_after_training():
    """The HTML report written after each training is 2-4 s of plotting, most of a tiny test run's
    time (about 3 minutes of the suite). In-process trainings skip it unless the test is marked
    `report` (the tests that read it; tests/test_report.py covers the report itself). Session-wide,
    so module fixtures that train skip it too; CLI subprocesses still write it."""
    import imgclf.workflows

    mp = pytest.MonkeyPatch()
    mp.setattr(imgclf.workflows, "_report_after_training", lambda model, console: None)
    yield
    mp.undo()


@contextmanager
def reporting():
    """Trainings inside write their report again: for module fixtures whose run's report a test
    reads (a marker cannot reach them)."""
    import imgclf.workflows

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(imgclf.workflows, "_report_after_training", REPORT_AFTER_TRAINING)
        yield


@pytest.fixture(autouse=True)
def _report_when_marked(request, monkeypatch):
    if request.node.get_closest_marker("report"):
        import imgclf.workflows

        monkeypatch.setattr(imgclf.workflows, "_report_after_training", REPORT_AFTER_TRAINING)


def make_shapes_dataset(root: Path, per_class: int = 30, size: int = 24, seed: int = 0) -> Path:
    """Three visually distinct classes a small CNN learns in a few epochs:
    a bright square, a dark disc, horizontal stripes — on noisy backgrounds, random positions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for cls in ("square", "disc", "stripes"):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(60, 120, size=(size, size, 3)).astype(np.float64)
            cx, cy, r = rng.integers(7, size - 7), rng.integers(7, size - 7), rng.integers(4, 7)
            if cls == "square":
                img[cy - r : cy + r, cx - r : cx + r] = [250, 240, 60]
            elif cls == "disc":
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = [10, 20, 200]
            else:
                img[(yy // 3) % 2 == 0] = [230, 230, 230]
            Image.fromarray(img.astype(np.uint8)).save(d / f"{cls}_{i:03d}.png")
    return root


@pytest.fixture
def shapes(tmp_path) -> Path:
    return make_shapes_dataset(tmp_path / "shapes")


def shared_archive(name: str, tmp_root: Path) -> Path:
    """Unpack ../shared/datasets/<name>.tar.gz once per session, or skip when it is absent."""
    import tarfile

    archive = SHARED / f"{name}.tar.gz"
    if not archive.exists():
        pytest.skip(f"{archive} not available")
    dest = tmp_root / name
    if not dest.exists():
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(dest)
    return dest

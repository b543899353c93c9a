"""Fixtures: an isolated cache dir, reports only where a test reads them, small real datasets written
as image files, and one tiny trained run shared by the whole session. Helpers that are not fixtures
(make_shapes_dataset, cli, TINY, ...) live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPORT_AFTER_TRAINING, TINY, TINY_DATA, make_shapes_dataset

import imgclf


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_report_after_training():
    """The HTML report written after each training is 2-4 s of plotting, most of a tiny test run's
    time (about 3 minutes of the suite). In-process trainings skip it unless the test is marked
    `report` (the tests that read it; tests/reporting/test_report.py covers the report itself).
    Session-wide, so module fixtures that train skip it too; CLI subprocesses still write it."""
    import imgclf.workflows

    mp = pytest.MonkeyPatch()
    mp.setattr(imgclf.workflows, "_report_after_training", lambda model, console: None)
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _report_when_marked(request, monkeypatch):
    if request.node.get_closest_marker("report"):
        import imgclf.workflows

        monkeypatch.setattr(imgclf.workflows, "_report_after_training", REPORT_AFTER_TRAINING)


@pytest.fixture
def shapes(tmp_path) -> Path:
    return make_shapes_dataset(tmp_path / "shapes")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run folder for tests that need *a* trained model and not a good one: simple_cnn,
    16 px, 1 epoch on 3 shapes classes of 10 images (`tiny_run.parent / "shapes"`), trained once per
    session (about a second). Shared: read it, never write into it; copy it first
    (shutil.copytree(tiny_run, tmp_path / "run")) to damage or change it. Tests using it train, so
    they are marked slow."""
    root = tmp_path_factory.mktemp("tiny")
    data = make_shapes_dataset(root / "shapes", **TINY_DATA)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLF_CACHE_DIR", str(root / "cache"))
        return imgclf.train(data, out=root / "run", verbose=False, **TINY).path

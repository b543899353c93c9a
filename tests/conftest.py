"""Fixtures: an isolated cache dir, reports only where a test reads them, small real datasets written
as image files, and one tiny trained run shared by the whole session. Helpers that are not fixtures
(make_shapes_dataset, cli, TINY, ...) live in helpers.py."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from helpers import REPORT_AFTER_TRAINING, TINY, TINY_DATA, make_shapes_dataset

import imgclf

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N`: the workers share the machine's cores, so each takes its share of threads (torch's
    # default, every core each, would oversubscribe them). The environment variable reaches the CLI
    # subprocesses the tests start. Measured on 2 cores: 540 s with -n 2, 826 s in one process.
    import torch

    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


def pytest_xdist_make_scheduler(config, log):
    """`-n 2`: the cluster tests share one local Ray cluster a session, and a bare `--ray` finds the
    newest cluster on the machine, so they all run in one worker, in file order (their module
    fixtures set up once); so do the tests of a file with a module-scoped fixture; every other test
    is scheduled alone, as `--dist load` would. This is
    xdist's loadgroup keyed on the path: loadgroup itself reads a group from a suffix its hook writes
    into the node id, which pytest 9.2's structured node ids ignore (pytest-xdist issue 1386), and
    the cluster tests were spread over both workers, each starting a cluster."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ClusterTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/cluster/"):
                return "ray"
            path = nodeid.split("::", 1)[0]
            return path if _has_module_fixture(path) else nodeid

    return ClusterTestsTogether(config, log)


@functools.cache
def _has_module_fixture(path: str) -> bool:
    """A file with a module-scoped fixture (a trained run, a detector's graph) keeps its tests in one
    worker, which builds the fixture once: spread over both, each built it (about 2 minutes of the
    suite's worker time)."""
    try:
        text = (Path(__file__).parent.parent / path).read_text()
    except OSError:
        return False
    return 'scope="module"' in text


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_report_after_training():
    """The HTML report written after each training is 2-4 s of plotting, most of a tiny test run's
    time (about 3 minutes of the suite). In-process trainings skip it unless the test is marked
    `report` (the tests that read it; tests/reporting/test_report.py covers the report itself).
    Session-wide, so module fixtures that train skip it too; so do CLI commands that helpers.cli forks
    from its zygote (a fresh interpreter, as ctrl_c and IMGCLF_TEST_FORK=0 start, still writes it)."""
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

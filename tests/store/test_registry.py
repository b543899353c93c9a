"""The model registry: versions with parents and manifests, aliases, promote and rollback, the CLI.

Run folders are written by hand (model.json, metrics.json, splits.csv over real small files):
the registry never loads a network, so no training is needed.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
import subprocess
import sys

import pytest
from helpers import make_run

from imgclf.core.errors import UserError
from imgclf.core.files import read_json
from imgclf.data.discover import discover
from imgclf.store import registry
from imgclf.store.runs import find_run


@pytest.fixture
def project(tmp_path):
    data = tmp_path / "data"
    images = []
    for i, (label, split) in enumerate([("cat", "train"), ("dog", "train"), ("cat", "test"), ("dog", "val")]):
        p = data / label / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * (100 + i))
        images.append((p, label, split))
    runs = [make_run(tmp_path, f"photos-{k}", acc, images[: 2 + k]) for k, acc in enumerate((0.8, 0.85, 0.9))]
    return tmp_path, runs, images


def test_versions_parents_promote_and_rollback(project):
    root, runs, _ = project
    reg = root / "registry"
    v1 = registry.add(runs[0], reg, alias="production")
    v2 = registry.add(runs[1], reg, parent="production", alias="candidate")
    v3 = registry.add(runs[2], reg, parent=2)
    assert [v1["version"], v2["version"], v3["version"]] == [1, 2, 3]
    assert [v1["parent"], v2["parent"], v3["parent"]] == [None, 1, 2]
    # registry/ sits beside runs/: the pointer is relative, so both can move together.
    assert v1["run"] == "../runs/photos-0"
    assert v3["metrics"]["accuracy"] == 0.9 and v3["classes"] == ["cat", "dog"]

    aliases = lambda: read_json(reg / "aliases.json")["aliases"]  # noqa: E731
    assert aliases() == {"production": 1, "candidate": 2}
    registry.promote(reg, "candidate")
    assert aliases() == {"production": 2, "candidate": 2}
    registry.promote(reg, "v3")
    assert aliases()["production"] == 3
    assert registry.resolve(reg, "production") == runs[2]

    assert registry.rollback(reg)["to"] == 2  # undo the last promotion ...
    assert aliases()["production"] == 2
    assert registry.rollback(reg)["to"] == 1  # ... and the one before
    assert aliases() == {"production": 1, "candidate": 2}
    with pytest.raises(UserError, match="no earlier version"):
        registry.rollback(reg)
    registry.promote(reg, 3)  # a new promotion after rollbacks starts from here
    assert registry.rollback(reg)["to"] == 1

    actions = [(e["action"], e["alias"], e["from"], e["to"]) for e in registry.history(reg)]
    assert actions[:3] == [
        ("add", "production", None, 1),
        ("add", "candidate", None, 2),
        ("promote", "production", 1, 2),
    ]
    assert [v["aliases"] for v in registry.list_versions(reg)] == [["production"], ["candidate"], []]
    # Nothing copied or deleted: the run folders are untouched and the registry holds no weights.
    assert not list(reg.rglob("*.safetensors")) and all((r / "model.safetensors").is_file() for r in runs)


def test_manifest_records_hashes_labels_and_missing_files(project):
    root, runs, images = project
    reg = root / "registry"
    images[3][0].unlink()  # gone before registration: recorded, not a crash
    v = registry.add(runs[2], reg)
    rows = registry.read_manifest(reg, v["version"])
    assert [(r["path"], r["label"], r["split"]) for r in rows] == [(str(p), y, s) for p, y, s in images]
    for r, (p, _, _) in zip(rows[:3], images):
        assert r["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert rows[3]["sha256"] == "missing"
    assert v["manifest"]["files"] == 4 and v["manifest"]["missing"] == 1
    assert v["manifest"]["splits"] == {"train": 2, "test": 1, "val": 1}


def test_manifest_is_a_training_set_imgclf_train_reads(project):
    root, runs, images = project
    v = registry.add(runs[2], root / "registry")
    # `imgclf train registry/versions/1/manifest.csv` rebuilds the version's data, splits included.
    spec = discover(root / "registry" / "versions" / str(v["version"]) / "manifest.csv")
    assert spec.paths == [str(p) for p, _, _ in images]
    assert [spec.classes[y] for y in spec.labels] == [y for _, y, _ in images]
    assert list(spec.splits) == [s for _, _, s in images]


def test_user_mistakes_say_what_to_do(project, tmp_path, monkeypatch):
    root, runs, _ = project
    reg = root / "registry"
    with pytest.raises(UserError, match="no versions yet"):
        registry.show(reg, "production")
    with pytest.raises(UserError, match="not a finished run folder"):
        registry.add(root / "data", reg)
    registry.add(runs[0], reg)
    with pytest.raises(UserError, match="already version 1"):
        registry.add(runs[0], reg)
    with pytest.raises(UserError, match="no version 7"):
        registry.promote(reg, 7)
    with pytest.raises(UserError, match="no version or alias 'production'"):
        registry.resolve(reg, "production")
    with pytest.raises(UserError, match="must start with a letter"):
        registry.promote(reg, 1, alias="42")

    registry.promote(reg, 1)
    # `imgclf.load("registry/production")` and every command taking a RUN go through find_run.
    assert find_run(reg / "production") == runs[0] and find_run(reg / "1") == runs[0]
    # A bare alias where a run goes (as update takes it) is named as the commands that read a run take it
    monkeypatch.chdir(root)
    for bare in ("production", "1"):
        with pytest.raises(UserError, match=rf"no such run folder: {bare}; did you mean registry/{bare} "):
            find_run(bare)
    with pytest.raises(UserError, match=r"no such run folder: candidate$"):  # no such alias: no guess
        find_run("candidate")
    shutil.move(runs[0], root / "elsewhere")
    with pytest.raises(UserError, match="is gone .moved or deleted.*registry add NEW_PATH --parent 1"):
        registry.resolve(reg, "production")
    info = registry.show(reg, "production")
    assert info["run_exists"] is False and info["aliases"] == ["production"]


def _promote_many(reg: str, version: int, times: int) -> None:
    for _ in range(times):
        registry.promote(reg, version)


@pytest.mark.slow
def test_concurrent_promoters_leave_valid_aliases(project):
    root, runs, _ = project
    reg = root / "registry"
    registry.add(runs[0], reg)
    registry.add(runs[1], reg)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_promote_many, args=(str(reg), n, 200)) for n in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    state = read_json(reg / "aliases.json")
    assert state["aliases"]["production"] in (1, 2)
    events = registry.history(reg)
    assert len(events) == 400
    # The lock serialises read-modify-write: each change starts where the previous one ended.
    assert all(a["to"] == b["from"] for a, b in zip(events, events[1:]))


@pytest.mark.slow
def test_cli(project):
    root, runs, _ = project

    def imgclf(*args):
        return subprocess.run(
            [sys.executable, "-m", "imgclf.cli", "registry", *args, "--registry", str(root / "reg")],
            capture_output=True,
            text=True,
            cwd=root,
        )

    r = imgclf("list")
    assert r.returncode == 2 and "no versions yet" in r.stderr
    assert imgclf("add", str(runs[0]), "--as", "production").returncode == 0
    r = imgclf("add", str(runs[1]), "--parent", "1", "--as", "candidate")
    assert r.returncode == 0 and r.stdout.startswith("version 2:") and "3 files hashed, 0 missing" in r.stdout
    r = imgclf("promote", "candidate")
    assert (r.returncode, r.stdout.strip()) == (0, "production: 1 -> 2")
    r = imgclf("list")
    assert r.returncode == 0, r.stderr
    assert "version" in r.stdout and "candidate, production" in r.stdout
    assert "0.8500" in r.stdout and "../runs/photos-1" in r.stdout
    r = imgclf("show", "production")
    assert r.returncode == 0 and json.loads(r.stdout)["parent"] == 1
    r = imgclf("rollback")
    assert (r.returncode, r.stdout.strip()) == (0, "production: 2 -> 1")
    r = imgclf("show", "9")
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: no version 9")

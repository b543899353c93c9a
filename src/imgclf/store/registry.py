"""The model registry: numbered versions of run folders, and aliases (production, candidate) pointing at them.

registry/ aliases.json        {"aliases": {"production": 3, ...}, "previous": {"production": [1, 2]}}
          history.jsonl       every alias change, appended: time, user, action, alias, from, to
          versions/<n>/ version.json  run path, parent, metrics, classes, architecture, manifest summary
                        manifest.csv  path, sha256, label, split: the exact training data of that run

Nothing is copied or deleted: a version points at its run folder (relative to the registry when the
run sits beside it, so `registry/` and `runs/` can move together), and its manifest records the data
root its absolute paths were under, so the data can move too (`data_root=`, `--data DIR`). Promoting
and rolling back replace aliases.json atomically, so a server or `imgclf.load("registry/production")`
sees the old or the new version, never a half-written file.

    from imgclf.store import registry
    v = registry.add("runs/photos-1", "registry", alias="candidate")     # {"version": 1, ...}
    registry.promote("registry", v["version"])                          # production -> 1
    registry.resolve("registry", "production")                          # Path("runs/photos-1")
    registry.rollback("registry")                                       # production -> what it was before
"""

from __future__ import annotations

import csv
import getpass
import json
import os
import re
import shutil
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import append_line, file_lock, fsync_dir, new_temp_dir, output_folder, read_json, write_json
from imgclf.data.manifest import write_manifest
from imgclf.data.paths import rebase
from imgclf.store.run_meta import load_run_meta
from imgclf.store.runs import find_run, moved_root, read_splits, recorded_root, require_data
from imgclf.store.versions import (  # noqa: F401
    ALIASES_FILE,
    aliases_state,
    registry_dir,
    version_info,
    version_number,
    version_numbers,
    version_run,
    version_run_path,
)

ALIAS_RE = re.compile(r"[A-Za-z][\w-]*")  # never all digits, so "3" always means version 3
# REGISTRY/<name> names these folders itself, and "v3" is version 3: an alias so named could never be reached.
RESERVED = re.compile(r"versions|inbox|v\d+", re.IGNORECASE)


# ---------------------------------------------------------------- reading


def show(registry: str | Path, ref: str | int) -> dict:
    """Everything recorded about one version, plus its aliases and whether its run folder is still there."""
    reg = registry_dir(registry)
    n = version_number(reg, ref)
    info = version_info(reg, n)
    aliases = aliases_state(reg)["aliases"]
    info["aliases"] = sorted(a for a, v in aliases.items() if v == n)
    info["run_path"] = str(version_run_path(reg, info))
    info["run_exists"] = (version_run_path(reg, info) / "model.json").is_file()
    return info


def list_versions(registry: str | Path) -> list[dict]:
    """Every version, oldest first; an empty list for a registry that does not exist yet."""
    reg = Path(registry).expanduser()
    return [show(reg, n) for n in version_numbers(reg)]


def resolve(registry: str | Path, ref: str | int = "production") -> Path:
    """The run folder behind a version or alias, checked to still be a finished run.

    >>> imgclf.load(registry.resolve("registry", "production"))
    """
    return find_run(version_run(registry, ref))


def read_manifest(
    registry: str | Path, ref: str | int, data_root: str | Path | None = None, required: bool = False
) -> list[dict]:
    """The version's training data: rows of path, sha256 ("missing" for a file gone at registration), label, split.
    `data_root`: where the data folder is now, when it moved since registration; `required`: refuse
    in one line when none of the files is there."""
    reg = registry_dir(registry)
    folder = reg / "versions" / str(version_number(reg, ref))
    try:
        with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"cannot read {folder / 'manifest.csv'} ({e}); register the run again: imgclf registry add RUN"
        ) from None
    info = version_info(reg, int(folder.name))
    # Versions registered before the root was recorded: the folder all their files share.
    root = info.get("manifest", {}).get("root") or (
        os.path.commonpath([os.path.dirname(r["path"]) for r in rows]) if rows else None
    )
    moved = moved_root(data_root)
    if moved is not None and root is not None:
        for r in rows:
            r["path"] = rebase(r["path"], root, moved)
    if required:
        require_data(version_run_path(reg, info), [r["path"] for r in rows], root, moved)
    return rows


# ---------------------------------------------------------------- writing


def _locked(reg: Path):
    """One writer at a time: two promoters must not both read the old aliases and each write their own."""
    return file_lock(reg / ".lock")


def _metrics_summary(run: Path) -> dict | None:
    p = run / "metrics.json"
    if not p.is_file():
        return None
    m = read_json(p)
    return {
        "accuracy": m.get("accuracy"),
        "macro_f1": (m.get("macro_avg") or {}).get("f1-score"),
        "log_loss": m.get("log_loss"),
        "n": m.get("n"),
    }


def _stored_run_path(run: Path, reg: Path) -> str:
    """Relative when the run lives beside the registry (runs/ next to registry/), so both can move together."""
    run, reg = run.resolve(), reg.resolve()
    if run.is_relative_to(reg.parent):
        return os.path.relpath(run, reg)
    return str(run)


def add(
    run: str | Path,
    registry: str | Path = "registry",
    parent: str | int | None = None,
    alias: str | None = None,
    data_root: str | Path | None = None,
) -> dict:
    """Register a finished run folder as the next version; return its version.json record.

    `parent`: the version (or alias) it was derived from, e.g. the production model it retrains.
    `alias`: also point this alias (candidate, production) at it.
    `data_root`: where the run's data folder is now, when it moved since training (its files are hashed).

        >>> registry.add("runs/photos-2", "registry", parent="production", alias="candidate")["version"]
        2
    """
    run = find_run(run)
    reg = output_folder(registry, "--registry")  # a read-only disk: said before the run's files are hashed
    if alias is not None:
        check_alias(alias)
    meta = load_run_meta(run, loadable=False)
    parent_n = version_number(reg, parent) if parent is not None else None
    stored = _stored_run_path(run, reg)
    for v in list_versions(reg):
        if Path(v["run_path"]).resolve() == run.resolve():
            raise UserError(
                f"{run} is already version {v['version']} in {reg}; "
                f"promote it with: imgclf registry promote {v['version']}"
            )
    info = {
        "run": stored,
        "parent": parent_n,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "user": _user(),
        "classes": meta.classes,
        "architecture": meta.architecture.name if meta.architecture else None,
        "metrics": _metrics_summary(run),
    }
    rows = read_splits(run, data_root, required=True)  # the data not found: one line, before any write
    root = moved_root(data_root) or recorded_root(run)
    versions = _new_folder(reg / "versions")
    tmp = new_temp_dir(versions, ".new-")
    try:
        # Slow on big data, so hashed before taking the lock, into a folder no reader lists yet.
        info["manifest"] = {"file": "manifest.csv", **write_manifest(rows, tmp / "manifest.csv", root)}
        with _locked(reg):
            n = max(version_numbers(reg), default=0) + 1
            info = {"version": n, **info}
            write_json(tmp / "version.json", info)
            # The folder appears under its number whole or not at all, and stays after a power cut.
            os.rename(tmp, versions / str(n))
            fsync_dir(versions)
            if alias is not None:
                _set_alias(reg, alias, n, "add")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _new_folder(folder: Path) -> Path:
    """`folder`, created (and made durable in its parents) when missing."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for p in missing:
        fsync_dir(p.parent)
    return folder


def promote(registry: str | Path, ref: str | int, alias: str = "production") -> dict:
    """Point `alias` at a version (an atomic replace of aliases.json); return the history record.

    >>> registry.promote("registry", "candidate")     # production -> the candidate's version
    """
    reg = registry_dir(registry)
    with _locked(reg):
        return _set_alias(reg, alias, version_number(reg, ref), "promote")


def rollback(registry: str | Path, alias: str = "production") -> dict:
    """Undo the last change of `alias`: it points again at the version it pointed at before.

    Each promotion pushes the version it replaced; each rollback pops one, so rolling back twice
    goes two promotions back, and a new promotion after a rollback starts from where you are.
    """
    reg = registry_dir(registry)
    with _locked(reg):
        state = aliases_state(reg)
        stack = state["previous"].get(alias, [])
        if not stack:
            raise UserError(
                f"{alias!r} in {reg} has no earlier version to roll back to; "
                f"pick one with: imgclf registry promote VERSION --alias {alias}"
            )
        return _set_alias(reg, alias, stack[-1], "rollback", state)


def check_alias(alias: str) -> str:
    if not ALIAS_RE.fullmatch(alias):
        raise UserError(f"alias {alias!r} must start with a letter (letters, digits, _ and - after), e.g. production")
    if RESERVED.fullmatch(alias):
        raise UserError(
            f"alias {alias!r} is reserved (versions, inbox and v<number> name the registry's own "
            "folders and versions); choose another, e.g. production"
        )
    return alias


def _set_alias(reg: Path, alias: str, n: int, action: str, state: dict | None = None) -> dict:
    """Caller holds the lock. aliases.json carries the rollback stack too, so one replace updates both."""
    check_alias(alias)
    state = state or aliases_state(reg)
    old = state["aliases"].get(alias)
    stack = state["previous"].setdefault(alias, [])
    if action == "rollback":
        stack.pop()
    elif old is not None and old != n:
        stack.append(old)
    state["aliases"][alias] = n
    write_json(reg / ALIASES_FILE, state)
    event = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "user": _user(),
        "action": action,
        "alias": alias,
        "from": old,
        "to": n,
    }
    # An audit log only: aliases.json alone decides, so a crash before this line loses a record, not a state.
    append_line(reg / "history.jsonl", json.dumps(event) + "\n")
    return event


def history(registry: str | Path) -> list[dict]:
    p = Path(registry).expanduser() / "history.jsonl"
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line] if p.is_file() else []


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"

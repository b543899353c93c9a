"""Reading a registry's versions and aliases (the writing is store.registry's): which run folder
"registry/production" or "registry/3" means. Run lookups (store.runs.find_run) need only this."""

from __future__ import annotations

import os
import re
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import read_json

ALIASES_FILE = "aliases.json"


def aliases_state(reg: Path) -> dict:
    p = reg / ALIASES_FILE
    if not p.is_file():
        return {"aliases": {}, "previous": {}}
    fix = f"fix it by hand ({reg / 'history.jsonl'} lists every alias change)"
    try:
        state = read_json(p)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError: a hand edit or a foreign write
        raise UserError(f"{p} is not valid JSON ({e}); {fix}") from None
    if not (
        isinstance(state, dict)
        and isinstance(state.get("aliases"), dict)
        and isinstance(state.get("previous"), dict)
        and all(isinstance(v, int) for v in state["aliases"].values())
    ):
        raise UserError(f'{p} must hold {{"aliases": {{name: version}}, "previous": {{name: [versions]}}}}; {fix}')
    return state


def version_numbers(reg: Path) -> list[int]:
    d = reg / "versions"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def registry_dir(registry: str | Path, must_exist: bool = True) -> Path:
    reg = Path(registry).expanduser()
    if must_exist and not version_numbers(reg):
        raise UserError(
            f"the registry {reg} has no versions yet; add a run with: imgclf registry add RUN --registry {reg}"
        )
    return reg


def version_number(registry: str | Path, ref: str | int) -> int:
    """A version number from "3", "v3", 3 or an alias such as "production"."""
    reg = registry_dir(registry)
    s = str(ref).strip()
    if re.fullmatch(r"v?\d+", s):
        n = int(s.lstrip("v"))
        if n not in version_numbers(reg):
            raise UserError(
                f"no version {n} in {reg} (it has {span_text(version_numbers(reg))}); see: imgclf registry list"
            )
        return n
    aliases = aliases_state(reg)["aliases"]
    if s not in aliases:
        known = ", ".join(sorted(aliases)) or "none set yet"
        raise UserError(
            f"no version or alias {s!r} in {reg} (aliases: {known}); "
            f"set one with: imgclf registry promote VERSION --alias {s}"
        )
    return int(aliases[s])


def span_text(ns: list[int]) -> str:
    return f"versions {ns[0]}-{ns[-1]}" if len(ns) > 1 else f"version {ns[0]}"


def version_info(reg: Path, n: int) -> dict:
    """versions/N/version.json, refused in one line when it is missing, not JSON or has no run path
    (a hand edit, a disk that filled mid-copy): every reader of a version goes through here."""
    p = reg / "versions" / str(n) / "version.json"
    fix = f"restore it from a backup, or register the run again: imgclf registry add RUN --registry {reg}"
    try:
        info = read_json(p)
    except FileNotFoundError:
        raise UserError(f"version {n} has no {p}; {fix}") from None
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError, a folder in its place
        raise UserError(f"{p} is not valid JSON ({e}); {fix}") from None
    if not (isinstance(info, dict) and isinstance(info.get("run"), str) and info["run"]):
        raise UserError(f'{p} must hold a JSON object with the run folder ("run": "PATH"); {fix}')
    return info


def version_run_path(reg: Path, info: dict) -> Path:
    p = Path(info["run"])
    return p if p.is_absolute() else Path(os.path.normpath(reg / p))


def version_run(registry: str | Path, ref: str | int) -> Path:
    """The run folder a version or alias points at, refused in one line when it is gone (not yet
    checked to be a finished run: store.runs.find_run does that)."""
    reg = registry_dir(registry)
    n = version_number(reg, ref)
    path = version_run_path(reg, version_info(reg, n))
    if not (path / "model.json").is_file():
        raise UserError(
            f"version {n}'s run folder {path} is gone (moved or deleted); put it back, or register "
            f"it again from its new place: imgclf registry add NEW_PATH --parent {n}"
        )
    return path

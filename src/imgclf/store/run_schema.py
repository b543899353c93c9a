"""What a run's model.json must hold, and the SHA-256 that ties it to model.safetensors.

A run folder is handed around, copied and sometimes edited by hand: loading it checks every field the
predictor relies on (a zero std would answer NaN, a huge input size would allocate terabytes) and the
weights against the hash recorded when the run was written (flipped bits would answer wrongly at p = 1.0).
Either failure is one line naming the file and the field. Runs written before hashes were recorded
have none and load unchecked. Format 2 adds data.root, the folder splits.csv's paths are relative
to (see imgclf.store.runs); format-1 runs load as they always did.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from imgclf.core.errors import UserError
from imgclf.data.images import RESIZE_MODES
from imgclf.settings.checks import IMG_SIZE, TTA_MODES

WEIGHTS = "model.safetensors"
HASH_FIELD = "weights_sha256"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_weights(run: Path, expected: str | None) -> None:
    """Refuse RUN/model.safetensors when it is not the file model.json's hash (`expected`, its
    weights_sha256) was taken of; runs from before hashes were recorded have none."""
    if expected is None:
        return
    actual = sha256_file(run / WEIGHTS)
    if actual != expected:
        raise UserError(
            f"{run / WEIGHTS} has SHA-256 {actual[:16]}..., not the {expected[:16]}... recorded in "
            "model.json: the weights were changed or damaged after training; restore the run from a copy"
        )


def check_model_json(meta: Any, path: Path, newest_format: int, loadable: bool = True) -> dict:
    """`meta` when it is a model.json this imgclf can load; else a UserError naming `path` and the field.
    `loadable=False` checks only what a registry records (format, classes): it never loads the network."""
    if not isinstance(meta, dict):
        _bad(path, "(the whole file)", "a JSON object", meta)
    fmt = meta.get("format", 1)
    if not _is_int(fmt) or fmt < 1:
        _bad(path, "format", "a positive integer", fmt)
    if fmt > newest_format:
        raise UserError(f"{path.parent} was written by a newer imgclf (model format {fmt}); upgrade imgclf")
    classes = _get(meta, path, "classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        _bad(path, "classes", "a list of at least two distinct class names", classes)
    _check_data(meta, path)
    if not loadable:
        return meta
    _check_input(meta, path)
    if meta.get("kind") == "ensemble":
        _check_members(meta, path)
    else:
        _check_network(meta, path)
    _check_thresholds(meta, path, classes)
    digest = meta.get(HASH_FIELD)
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        _bad(path, HASH_FIELD, "64 lowercase hex digits", digest)
    return meta


def _check_input(meta: dict, path: Path) -> None:
    size = _get(meta, path, "input.size")
    if not _is_int(size) or not IMG_SIZE[0] <= size <= IMG_SIZE[1]:
        _bad(path, "input.size", f"an integer from {IMG_SIZE[0]} to {IMG_SIZE[1]} (pixels)", size)
    resize = _get(meta, path, "input.resize")
    if resize not in RESIZE_MODES:
        _bad(path, "input.resize", "one of " + ", ".join(RESIZE_MODES), resize)


def _check_network(meta: dict, path: Path) -> None:
    name = _get(meta, path, "architecture.name")
    if not isinstance(name, str) or not name:
        _bad(path, "architecture.name", "a model name", name)
    arch = meta["architecture"]
    if not isinstance(arch.get("kwargs", {}), dict):
        _bad(path, "architecture.kwargs", "a mapping", arch["kwargs"])
    chans = arch.get("in_chans", 3)
    if not _is_int(chans) or not 1 <= chans <= 4:
        _bad(path, "architecture.in_chans", "an integer from 1 to 4", chans)
    for key, low in (("mean", -math.inf), ("std", 0.0)):
        v = _get(meta, path, f"normalization.{key}")
        if not (isinstance(v, list) and len(v) in (1, chans) and all(_is_real(x) and x > low for x in v)):
            extra = " above 0" if key == "std" else ""
            _bad(path, f"normalization.{key}", f"a list of 1 or {chans} finite numbers{extra}", v)

    tta = meta.get("tta", "none")
    if tta not in TTA_MODES:
        _bad(path, "tta", "one of " + ", ".join(TTA_MODES), tta)


def _check_members(meta: dict, path: Path) -> None:
    members = _get(meta, path, "members")
    if not isinstance(members, list) or not members:
        _bad(path, "members", "a list of member runs", members)
    for i, m in enumerate(members):
        p = m.get("path") if isinstance(m, dict) else None
        # Inside the bundle only: an edited path must not reach another folder's weights.
        if not isinstance(p, str) or not p or PurePosixPath(p).is_absolute() or ".." in PurePosixPath(p).parts:
            _bad(path, f"members[{i}].path", "a folder inside the bundle", p)


def _check_data(meta: dict, path: Path) -> None:
    """Format 2 records the data root its splits.csv paths are relative to (see imgclf.store.runs); a root
    that is not absolute would silently mean "relative to wherever the reader runs"."""
    if meta.get("data") is None:
        return
    root = _get(meta, path, "data.root")
    if root is not None and not (
        isinstance(root, str) and (PurePosixPath(root).is_absolute() or PureWindowsPath(root).is_absolute())
    ):
        _bad(path, "data.root", "the absolute path of the data folder (or null)", root)


def _check_thresholds(meta: dict, path: Path, classes: list) -> None:
    calibration = meta.get("calibration", {})  # absent in ensembles: members carry their own
    t = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
    if not (_is_real(t) and t > 0):
        _bad(path, "calibration.temperature", "a finite number above 0", t)
    for key in ("decision", "rejection"):
        if meta.get(key) is None:
            continue
        threshold = _get(meta, path, f"{key}.threshold")
        # A threshold that rejects everything sits one float step above a confidence of 1.
        if not (_is_real(threshold) and 0 <= threshold <= 1 + 1e-9):
            _bad(path, f"{key}.threshold", "a probability in [0, 1]", threshold)
    if meta.get("decision") is not None:
        pos = _get(meta, path, "decision.positive_class")
        if pos not in classes or len(classes) != 2:
            _bad(path, "decision.positive_class", f"one of the two classes {classes}", pos)


def _get(meta: dict, path: Path, field: str):
    node: Any = meta
    for key in field.split("."):
        if not isinstance(node, dict) or key not in node:
            raise UserError(f"{path} is damaged: field {field} is missing; restore the run from a copy")
        node = node[key]
    return node


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _bad(path: Path, field: str, allowed: str, value) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise UserError(f"{path} is damaged: field {field} must be {allowed}, not {shown}")

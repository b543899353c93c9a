"""The run folder: the unit a user hands around.

runs/<name>/ model.safetensors  model.json  config.yaml  history.csv  metrics.json
             data_report.json   splits.csv  learning_curves.png  confusion_matrix.png
             last.safetensors   train_state.safetensors (for --resume)
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from .errors import UserError
from .fsutil import read_json, write_text
from .run_schema import check_model_json

MODEL_FORMAT = 1


def new_run_dir(data: str | Path, base: str | Path = "runs") -> Path:
    """runs/<dataset-name>-<n>, n one more than the highest already there."""
    name = re.sub(r"[^\w.-]+", "_", Path(data).stem or "data").strip("_") or "data"
    base = Path(base)
    taken = [int(m.group(1)) for p in base.glob(f"{name}-*") if (m := re.fullmatch(rf"{re.escape(name)}-(\d+)", p.name))]
    return base / f"{name}-{max(taken, default=0) + 1}"


def find_run(path: str | Path) -> Path:
    """Accept a run folder, a model.safetensors/model.json inside one, or REGISTRY/ALIAS (or REGISTRY/VERSION)."""
    p = Path(path).expanduser()
    if not p.exists() and (p.parent / "versions").is_dir():
        from .registry import resolve    # "registry/production", "registry/3": the run behind it

        return resolve(p.parent, p.name)
    if p.is_file() and p.name in ("model.safetensors", "model.json"):
        p = p.parent
    # An ensemble bundle keeps its weights in members/<i>/ (see imgclf.ensembling).
    weights = (p / "model.safetensors").is_file() or (p / "members").is_dir()
    if not (p / "model.json").is_file() or not weights:
        raise UserError(f"{path} is not a finished run folder (it needs model.json and model.safetensors); "
                        "train one with: imgclf train DATA")
    return p


def read_model_json(run: Path, loadable: bool = True) -> dict:
    """RUN/model.json, checked against its schema (see run_schema): a damaged file fails here, by field.
    `loadable=False`: only what describes the run (classes), for readers that never load its network."""
    path = run / "model.json"
    try:
        meta = read_json(path)
    except (ValueError, RecursionError) as e:       # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is not valid JSON ({e}); restore the run from a copy") from None
    return check_model_json(meta, path, MODEL_FORMAT, loadable)


def read_splits(run: Path) -> list[dict]:
    """The rows (path, label, split) of RUN/splits.csv; [] when the run has none."""
    f = Path(run) / "splits.csv"
    if not f.is_file():
        return []
    with open(f, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_split(model, purpose: str = "evaluate on; give DATA: imgclf evaluate RUN DATA"):
    """(paths, class indices in model.classes) of the run's held-out test split."""
    import numpy as np

    rows = [r for r in read_splits(model.path) if r["split"] == "test"]
    if not rows:
        raise UserError(f"{model.path} has no test split to {purpose}")
    return [r["path"] for r in rows], np.array([model.classes.index(r["label"]) for r in rows])


def write_splits(path: Path, paths: list[str], labels, splits, classes: list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "split"])
    for p, y, s in zip(paths, labels, splits):
        w.writerow([p, classes[int(y)], s])
    write_text(path, buf.getvalue())

"""What a run folder becomes in MLflow: its settings as params, its history and test metrics as
metrics, and a one-paragraph note."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from imgclf.store.run_meta import RunMeta

MAX_PARAM = 6000


def run_params(run: Path, meta: RunMeta) -> dict[str, str]:
    from imgclf.settings.config import load_config

    out = {}
    cfg = run / "config.yaml"
    if cfg.is_file():
        _flatten(load_config(cfg).to_dict(), "", out)
    arch = meta.architecture
    out.update(
        {
            "architecture": arch.name if arch else None,
            "parameters": arch.parameters if arch else None,
            "num_classes": len(meta.classes),
            "classes": json.dumps(meta.classes),
            "input_size": meta.input.size if meta.input else None,
            "tta": meta.tta,
        }
    )
    return {_key(k): str(v)[:MAX_PARAM] for k, v in out.items()}


def _flatten(d: dict, prefix: str, out: dict) -> None:
    for k, v in d.items():
        if isinstance(v, dict) and v:
            _flatten(v, f"{prefix}{k}.", out)
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v


def run_metrics(run: Path, meta: RunMeta) -> list[tuple[str, float, int]]:
    """(name, value, step): the test metrics and training summary at step 0, the history per epoch."""
    from imgclf.core.files import read_json

    flat: dict[str, float | None] = {}
    if (run / "metrics.json").is_file():
        m = read_json(run / "metrics.json")
        flat.update(
            {
                "test_accuracy": m.get("accuracy"),
                "test_log_loss": m.get("log_loss"),
                "test_n": m.get("n"),
                "test_macro_f1": (m.get("macro_avg") or {}).get("f1-score"),
                "test_weighted_f1": (m.get("weighted_avg") or {}).get("f1-score"),
                "test_ece": (m.get("calibration") or {}).get("ece_after"),
                "temperature": (m.get("calibration") or {}).get("temperature"),
            }
        )
        flat.update({f"test_top{k}_accuracy": v for k, v in (m.get("top_k_accuracy") or {}).items()})
        for cls, row in (m.get("per_class") or {}).items():
            flat[f"test_recall.{cls}"] = row.get("recall")
            flat[f"test_f1.{cls}"] = row.get("f1-score")
    if t := meta.training:
        flat.update(
            {
                "best_val_acc": t.best_val_acc,
                "best_epoch": t.best_epoch,
                "epochs_run": t.epochs_run,
                "train_seconds": t.train_seconds,
            }
        )
    out = [(_key(k), float(v), 0) for k, v in flat.items() if _number(v)]
    if (run / "history.csv").is_file():
        with open(run / "history.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                step = int(float(row.get("epoch") or 0))
                out += [(_key(k), float(v), step) for k, v in row.items() if k not in ("epoch", "stage") and _number(v)]
    return out


def _number(v) -> bool:
    try:
        return v is not None and v != "" and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _key(name: str) -> str:
    # MLflow keys allow letters, digits, _ - . / space and ':'; class names may hold anything.
    return re.sub(r"[^\w\-./ :]", "_", str(name))[:250]


def run_note(run: Path, meta: RunMeta) -> str:
    arch = meta.architecture.name if meta.architecture else None
    return (
        f"imgclf run `{run}`: {arch}, {len(meta.classes)} classes. "
        f"Load it with `imgclf.load('{run}')`; the report is the artefact run/report.html."
    )

"""RUN/history.csv: one row per epoch (losses, accuracies, learning rate, speed), rewritten
atomically at each commit (training.commits) so a killed run's history is whole up to its last
checkpoint."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from imgclf.core.files import write_text

HISTORY_FIELDS = [
    "epoch",
    "stage",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_balanced_acc",
    "lr",
    "seconds",
    "images_per_s",
]


def write_history(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    for r in rows:
        r = {"stage": 1, **r}  # rows read back from a run made before training stages: one stage
        r.setdefault("val_balanced_acc", "")  # rows of runs made before it was recorded
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in HISTORY_FIELDS})
    write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: (int(v) if k in ("epoch", "stage") else float(v) if v != "" else float("nan")) for k, v in r.items()}
            for r in csv.DictReader(f)
        ]

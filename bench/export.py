"""Benchmark: ONNX export parity and ONNX Runtime vs PyTorch prediction speed, on real photos.

Trains simple_cnn, resnet_fast and timm/resnet10t briefly on flowers5 (5 classes, 128 px JPEGs,
read at --img-size), exports each with `imgclf.export` (its own check: 64 test images), then
measures on the whole held-out test split. Not a test: nothing is asserted; prints one markdown table.

    python bench/export.py                      # 2 epochs, 64 px
    python bench/export.py --epochs 1 --img-size 96

Columns:
- check diff: the export's own parity check (max |p_onnx - p_torch| over 64 test images, calibrated);
- test diff: the same over every test image, through the predictor (`imgclf.load(..., backend=)`),
  with the run's test-time augmentation; `labels equal`: share of identical predicted labels;
- img/s: predict_logits on pre-decoded uint8 images, batches of 256, no TTA, after one warm-up;
- batch-1 ms: median of 50 single-image calls (no TTA).
Both backends use the same number of threads (torch.get_num_threads()).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import tables  # bench/tables.py: the table printed and written as CSV
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import imgclf  # noqa: E402
from imgclf.data.cache import build_cache  # noqa: E402

MODELS = ("simple_cnn", "resnet_fast", "timm/resnet10t")
ARCHIVE = ROOT.parent / "shared" / "datasets" / "flowers5.tar.gz"


def test_images(run: Path, size: int, resize: str) -> np.ndarray:
    import csv

    with open(run / "splits.csv", newline="", encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f) if r["split"] == "test"]
    cache = build_cache(paths, size, resize, progress=False)
    return cache.images[[i for i in range(len(paths)) if i not in cache.bad]]


def speed(model, images: np.ndarray) -> tuple[float, float]:
    model.tta = "none"
    model.predict_logits(images[:256])  # warm-up (ORT arena, oneDNN kernels)
    t = time.perf_counter()
    model.predict_logits(images)
    per_s = len(images) / (time.perf_counter() - t)
    single = []
    for i in range(50):
        t = time.perf_counter()
        model.predict_logits(images[i : i + 1])
        single.append(time.perf_counter() - t)
    return per_s, 1000 * statistics.median(single)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--models", default=",".join(MODELS))
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} not found")
    tmp = Path(tempfile.mkdtemp(prefix="imgclf-bench-export-"))
    with tarfile.open(ARCHIVE) as tf:
        tf.extractall(tmp, filter="data")
    rows = []
    for name in args.models.split(","):
        run = imgclf.train(
            tmp / "flowers5",
            model=name,
            epochs=args.epochs,
            img_size=args.img_size,
            out=tmp / "runs" / name.replace("/", "_"),
            verbose=False,
        )
        check = imgclf.export(run.path, verbose=False)
        torch_model, onnx_model = imgclf.load(run.path, device="cpu"), imgclf.load(run.path, backend="onnx")
        images = test_images(run.path, torch_model.img_size, torch_model.resize_mode)
        p_torch, p_onnx = torch_model.predict_proba(images), onnx_model.predict_proba(images)
        same = float((p_torch.argmax(1) == p_onnx.argmax(1)).mean())
        t_speed, o_speed = speed(torch_model, images), speed(onnx_model, images)
        rows.append(
            [
                name,
                tables.V(run.metrics["accuracy"], ".3f"),
                tables.V(check["max_prob_diff"], ".1e"),
                f"{np.abs(p_torch - p_onnx).max():.1e} ({len(images)} img, tta {torch_model.meta.tta})",
                tables.V(same, ".3f"),
                tables.V(check["seconds"], ".1f"),
                f"{t_speed[0]:.0f} / {o_speed[0]:.0f}",
                f"{t_speed[1]:.1f} / {o_speed[1]:.1f}",
            ]
        )
    print(
        f"\nflowers5, {args.epochs} epochs at {args.img_size} px; {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; torch {torch.__version__}\n"
    )
    tables.emit(
        "parity",
        [
            "model",
            "test acc",
            "check diff",
            "test diff",
            "labels equal",
            "export s",
            "img/s torch / onnx",
            "batch-1 ms torch / onnx",
        ],
        rows,
    )


if __name__ == "__main__":
    main()

"""Benchmark: imgclf's decode-once cache + batched tensor augmentation vs the usual
torchvision ImageFolder + DataLoader + PIL transforms pipeline, same model, same device, same run.

    python bench/data_pipeline.py [--data ../shared/datasets/cifar10-jpg.tar.gz] [--epochs 3]

Prints one table (markdown) of: cache build time for all images, then per pipeline the training
images/s (mean over epochs, training steps only), seconds per epoch and test accuracy.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import tables  # bench/tables.py: the table printed and written as CSV
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgclf.core.device import pick_device  # noqa: E402
from imgclf.data.cache import build_cache  # noqa: E402
from imgclf.data.discover import discover  # noqa: E402
from imgclf.models import create_model  # noqa: E402
from imgclf.training.optim import lr_factor, make_optimizer, set_lr  # noqa: E402


def unpack(archive: Path, dest: Path) -> Path:
    if not (dest / "cifar10").exists():
        with tarfile.open(archive) as tf:
            tf.extractall(dest)
    return dest / "cifar10"


def baseline(data: Path, args, device, mean, std) -> dict:
    """The textbook pipeline: PIL decode + transforms in DataLoader workers, every epoch."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    norm = T.Normalize(mean, std)
    train_tf = T.Compose(
        [T.RandomCrop(32, padding=2, padding_mode="reflect"), T.RandomHorizontalFlip(), T.ToTensor(), norm]
    )
    test_tf = T.Compose([T.ToTensor(), norm])
    train_ds, test_ds = ImageFolder(data / "train", train_tf), ImageFolder(data / "test", test_tf)
    workers = os.cpu_count() or 2
    loader = DataLoader(
        train_ds,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
    )
    torch.manual_seed(0)
    model = create_model("simple_cnn", 10, img_size=32).to(device)
    opt = make_optimizer(model, "adamw", args.lr, 0.05)
    total = args.epochs * len(loader)
    step, rates, t_all = 0, [], time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        for xb, yb in loader:
            set_lr(opt, args.lr * lr_factor(step, total, "onecycle", 0))
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, seen = step + 1, seen + len(yb)
        rates.append(seen / (time.perf_counter() - t0))
    wall = time.perf_counter() - t_all
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for xb, yb in DataLoader(test_ds, batch_size=512, num_workers=workers):
            correct += (model(xb.to(device)).argmax(1).cpu() == yb).sum().item()
            n += len(yb)
    return {"images_per_s": float(np.mean(rates)), "epoch_s": wall / args.epochs, "acc": correct / n}


def ours(data: Path, args, out: Path) -> dict:
    import imgclf

    run = imgclf.train(
        data,
        model="simple_cnn",
        img_size=32,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment={"flip": True, "translate": 2},
        patience=1000,
        out=out,
        verbose=False,
    )
    import csv

    with open(run.path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return {
        "images_per_s": float(np.mean([float(r["images_per_s"]) for r in rows])),
        "epoch_s": float(np.mean([float(r["seconds"]) for r in rows])),
        "acc": run.metrics["accuracy"],
        "mean": imgclf.load(run.path).meta.normalization,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    device = pick_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="imgclf-bench-"))
    os.environ["IMGCLF_CACHE_DIR"] = str(tmp / "cache")  # a cold cache: the decode is measured
    data = unpack(Path(args.data), tmp) if args.data.endswith(".tar.gz") else Path(args.data)

    spec = discover(data)
    t0 = time.perf_counter()
    cache = build_cache(spec.paths, 32, "squash")
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_cache(spec.paths, 32, "squash")
    reuse_s = time.perf_counter() - t0

    mine = ours(data, args, tmp / "run")
    norm = mine.pop("mean")
    base = baseline(data, args, device, norm.mean, norm.std)

    print(
        f"\nimgclf data-pipeline benchmark — {platform.node() and 'this machine'}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, device {device}, torch {torch.__version__}, simple_cnn 32px, "
        f"batch {args.batch_size}, {args.epochs} epochs\n"
    )
    print(
        f"decode + cache {len(spec.paths):,} images: {decode_s:.1f} s ({len(spec.paths) / decode_s:,.0f} img/s, "
        f"{len(cache.bad)} unusable); re-open cached: {reuse_s:.2f} s\n"
    )
    tables.emit(
        "pipelines",
        ["pipeline", "train images/s", "s / epoch", "test accuracy"],
        [
            [label, tables.V(r["images_per_s"], ",.0f"), tables.V(r["epoch_s"], ".1f"), tables.V(r["acc"], ".4f")]
            for label, r in (
                ("torchvision ImageFolder + DataLoader + PIL transforms (baseline)", base),
                ("imgclf (decode-once cache, batched tensor augmentation)", mine),
            )
        ],
        align=["---", "---:", "---:", "---:"],
    )
    print(f"\nspeed-up: {mine['images_per_s'] / base['images_per_s']:.2f}x images/s")


if __name__ == "__main__":
    main()

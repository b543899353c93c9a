"""Scaling out on one machine: batch prediction and DDP training, one process against Ray.

    python bench/scale.py                          # all 60,000 CIFAR-10 JPEGs, training on 5,000
    python bench/scale.py --limit 5000 --train-images 1000     # a quick look

Prediction rows (the same run, the same images, this machine): today's single-machine
`imgclf predict RUN FOLDER --out preds.csv` (decoding in a process pool, torch and ONNX Runtime),
then `imgclf predict RUN FOLDER --ray` (Ray Data, an actor pool of 1 and of 2 one-CPU workers;
Parquet shards). Ray's rows include starting the local cluster and the actors: what a user waits.
Training rows: `imgclf train` in one process (all cores) against `--workers 1` and `--workers 2`
(Ray Train, PyTorch DDP over gloo, one share of the cores each), images/s of the training steps
(history.csv, epochs after the first) and the wall time of the whole command.

Data: CIFAR-10 as JPEGs from ../shared/datasets/cifar10-jpg.tar.gz (bench/predict_batch.py
unpacks it), or --data. The run predicted with is a quick `--preset fast` run (throughput depends
on its architecture and input size, not on its weights). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import tables
from predict_batch import WORK, cifar_folder, cpu_name, quick_run

import imgclf  # noqa: E402  (predict_batch put src/ on the path)
from imgclf.data.spec import files_under, is_image  # noqa: E402
from imgclf.training.history import read_history  # noqa: E402

OUT = WORK / "scale"
TRAIN = dict(model="resnet_fast", img_size=32, epochs=3, probe=False, seed=0)


def source(root: Path, limit: int | None) -> Path | list[str]:
    """The whole CIFAR-10 folder (train/ and test/), or a list file of its first `limit` images."""
    if limit is None:
        return root
    paths = sorted(str(p) for p in files_under(root) if is_image(p))[:limit]
    listing = OUT / f"first-{limit}.txt"
    listing.write_text("\n".join(paths) + "\n")
    return listing


def predict_single(run: Path, src, backend: str) -> tuple[int, float]:
    out = OUT / f"single-{backend}.csv"
    inputs = [line for line in Path(src).read_text().split()] if Path(src).is_file() else src
    s = imgclf.predict_folder(run, inputs, out, resume=False, backend=backend, verbose=False)
    return s["predicted"] + s["errors"], s["seconds"]


def predict_ray(run: Path, src, cpus: int) -> tuple[int, float]:
    import ray

    out = OUT / f"ray-{cpus}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_config=ray.LoggingConfig(log_level="ERROR"))
    try:
        s = imgclf.predict_on_ray(run, src, out, progress=False)
    finally:
        ray.shutdown()
    return s["predicted"] + s["errors"], time.perf_counter() - t


def train_subset(root: Path, n: int) -> Path:
    """n training images, the same number from each class (linked, not copied)."""
    subset = OUT / f"train-{n}"
    classes = sorted(p for p in (root / "train").iterdir() if p.is_dir())
    for cls in classes:
        (subset / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[: n // len(classes)]:
            link = subset / cls.name / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    return subset


def train(data: Path, workers: int | None) -> tuple[float, float, float]:
    """(training images/s after the first epoch, wall seconds, test accuracy)."""
    out = OUT / f"train-{workers or 'single'}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    kw = {} if workers is None else {"workers": workers}
    run = imgclf.train(data, out=str(out), verbose=False, **TRAIN, **kw)
    wall = time.perf_counter() - t
    rows = read_history(run.path / "history.csv")[1:] or read_history(run.path / "history.csv")
    return sum(r["images_per_s"] for r in rows) / len(rows), wall, run.metrics["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="CIFAR-10 folder (with train/ and test/) or the .tar.gz")
    ap.add_argument("--run", help="Run folder to predict with [default: a quick --preset fast run]")
    ap.add_argument("--limit", type=int, help="Predict only the first N images (sorted paths)")
    ap.add_argument("--train-images", type=int, default=5000, help="Training rows: images in the training folder")
    ap.add_argument("--skip", choices=["predict", "train"], help="Leave one part out")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    import torch

    OUT.mkdir(parents=True, exist_ok=True)
    root = cifar_folder(args.data)
    machine = (
        f"{platform.machine()} {cpu_name()}, {len(os.sched_getaffinity(0))} CPU cores; torch {torch.__version__}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    if args.skip != "predict":
        run = Path(args.run) if args.run else quick_run(root)
        src = source(root, args.limit)
        n = args.limit or sum(1 for p in files_under(root) if is_image(p))
        meta = imgclf.load(run).meta
        print(f"predicting {n:,} images with {run} ({meta.architecture_name}, {meta.input.size} px)")
        table = tables.Table(
            "predict",
            ["how", "workers", "images", "seconds", "images/s"],
            align=["---", "---:", "---:", "---:", "---:"],
        )
        for backend in ("torch", "onnx"):
            k, s = predict_single(run, src, backend)
            table.add(
                [f"`predict --out x.csv` ({backend}, process pool)", 1, k, tables.V(s, ".1f"), tables.V(k / s, ",.0f")]
            )
        for cpus in (1, 2):
            k, s = predict_ray(run, src, cpus)
            table.add(
                [
                    "`predict --ray` (Ray Data, ONNX Runtime actors)",
                    cpus,
                    k,
                    tables.V(s, ".1f"),
                    tables.V(k / s, ",.0f"),
                ]
            )
    if args.skip != "train":
        data = train_subset(root, args.train_images)
        print(f"\ntraining {TRAIN} on {args.train_images:,} CIFAR-10 images (80 % of them train)")
        table = tables.Table(
            "train",
            ["how", "DDP workers", "train images/s", "wall seconds", "test accuracy"],
            align=["---", "---:", "---:", "---:", "---:"],
        )
        for workers in (None, 1, 2):
            rate, wall, acc = train(data, workers)
            how = "`train` (one process)" if workers is None else f"`train --workers {workers}` (Ray Train, gloo)"
            table.add([how, workers or 1, tables.V(rate, ",.0f"), tables.V(wall, ".1f"), tables.V(acc, ".3f")])
    print(f"\nmachine: {machine}")


if __name__ == "__main__":
    main()

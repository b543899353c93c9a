"""Batch prediction throughput: `imgclf predict RUN FOLDER --out preds.csv` with the network in
PyTorch (eager) versus ONNX Runtime, same run, same images, same decoding pipeline, same machine.

    python bench/predict_batch.py                                  # CIFAR-10 test folder, a quick run
    python bench/predict_batch.py --data /tmp/cifar10 --run runs/cifar10-1 --repeats 3
    python bench/predict_batch.py --tta run --limit 2000           # with the run's test-time views

Data: the CIFAR-10 test folder (10,000 32x32 JPEGs), unpacked from
../shared/datasets/cifar10-jpg.tar.gz into the temp folder when --data is not given (--data takes
the unpacked folder, its test/ sub-folder, or the archive). Without --run, a run is trained with
`--preset fast` for one epoch on 100 training images per class: throughput depends on the
architecture and input size the preset picks, not on the weights.

Rows: the whole `predict_folder` pipeline (listing, parallel decoding, batched inference,
thresholds, CSV writing) per backend, decoding in a process pool (the default) and in threads;
the same pipeline with the network replaced by a no-op (decode only: the ceiling the model
cannot beat), both pools; and the network alone on pre-decoded images. `--tta none` (default) times the
network as exported, one forward pass per image; `--tta run` uses the run's own test-time views
(`--preset` runs: flip-crop, 6 passes per image). Each number is the best of --repeats, after a
warm-up. Not a test: nothing is asserted.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
WORK = Path(tempfile.gettempdir()) / "imgclf-bench-predict"

import imgclf  # noqa: E402
from imgclf.data.images import load_resized  # noqa: E402
from imgclf.data.spec import files_under, is_image  # noqa: E402
from imgclf.inference.batch import predict_folder  # noqa: E402


def cifar_folder(data: str | None) -> Path:
    """The CIFAR-10 root (with train/ and test/), unpacking the archive when needed."""
    src = Path(data) if data else ARCHIVE
    if src.is_dir():
        return src.parent if src.name == "test" else src
    if not src.is_file():
        sys.exit(f"no data: {src} is missing; give --data FOLDER")
    if not (WORK / "cifar10" / "test").is_dir():
        print(f"unpacking {src} to {WORK} ...", flush=True)
        with tarfile.open(src) as tf:
            tf.extractall(WORK, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(WORK)
    return WORK / "cifar10"


def quick_run(root: Path) -> Path:
    """--preset fast, 1 epoch, on 100 training images per class (linked, not copied)."""
    run = WORK / "run-fast"
    if (run / "model.json").is_file():
        return run
    subset = WORK / "train-subset"
    for cls in sorted(p for p in (root / "train").iterdir() if p.is_dir()):
        (subset / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:100]:
            link = subset / cls.name / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    print("training a quick run (--preset fast, 1 epoch, 1,000 images) ...", flush=True)
    return imgclf.train(subset, preset="fast", epochs=1, out=run, verbose=False).path


class DecodeOnly:
    """The model with its network replaced by nothing: the pipeline's decoding, batching and CSV
    writing at full speed, i.e. the ceiling any backend can reach."""

    def __init__(self, model):
        self.model, self.img_size, self.resize_mode, self.classes = (
            model,
            model.img_size,
            model.resize_mode,
            model.classes,
        )

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return np.full((len(images), len(self.classes)), 1.0 / len(self.classes))

    def answers(self, probs, top_k=1):
        return self.model.answers(probs, top_k)


def best_rate(fn, repeats: int) -> tuple[float, float]:
    """(best images/s, its seconds) over `repeats` calls of fn() -> (images, seconds)."""
    results = [fn() for _ in range(repeats)]
    n, s = min(results, key=lambda r: r[1] / r[0])
    return n / s, s


def pipeline(model, inputs, warm: list[str], repeats: int, pool: str) -> tuple[float, float]:
    out = WORK / "preds.csv"
    predict_folder(model, warm, out, resume=False, progress=False, pool=pool)

    def once():
        s = predict_folder(model, inputs, out, resume=False, progress=False, pool=pool)
        return s["predicted"] + s["errors"], s["seconds"]

    return best_rate(once, repeats)


def network_only(model, images: np.ndarray, repeats: int) -> tuple[float, float]:
    model.predict_proba(images[:256])

    def once():
        t = time.perf_counter()
        model.predict_proba(images)
        return len(images), time.perf_counter() - t

    return best_rate(once, repeats)


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="CIFAR-10 folder (with test/), its test/ folder, or the .tar.gz")
    ap.add_argument("--run", help="Run folder [default: a quick --preset fast run, trained here]")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tta", choices=["none", "run"], default="none", help="none, or the run's own TTA")
    ap.add_argument("--limit", type=int, help="Only the first N test images (sorted paths)")
    tables.add_csv_dir(ap)
    args = ap.parse_args()

    import onnxruntime
    import torch

    WORK.mkdir(parents=True, exist_ok=True)
    root = cifar_folder(args.data)
    folder = root / "test"
    run = Path(args.run) if args.run else quick_run(root)
    paths = [str(p) for p in files_under(folder) if is_image(p)][: args.limit]
    inputs, warm = (folder if args.limit is None else paths), paths[:256]
    models = {
        b: imgclf.load(run, "cpu", backend=b, tta="none" if args.tta == "none" else None) for b in ("torch", "onnx")
    }
    tta = models["torch"].tta
    images = np.stack([load_resized(p, models["torch"].img_size, models["torch"].resize_mode) for p in paths])

    rows = []  # (what, backend, pool, images/s, seconds)

    def add(*row):
        rows.append(row)
        print(f"  {row[0]}, {row[1]}, {row[2]}: {row[3]:,.0f} images/s", flush=True)

    for pool in ("thread", "process"):
        add(
            "decode + CSV only (no network)",
            "-",
            pool,
            *pipeline(DecodeOnly(models["torch"]), inputs, warm, args.repeats, pool),
        )
    for backend, model in models.items():
        for pool in ("process", "thread"):
            add("predict_folder (whole pipeline)", backend, pool, *pipeline(model, inputs, warm, args.repeats, pool))
    for backend, model in models.items():
        add("network only (pre-decoded)", backend, "-", *network_only(model, images, args.repeats))

    meta = models["torch"].meta
    print(
        f"\n{len(paths):,} images from {folder}; run {run}: {meta.architecture_name} "
        f"{(meta.architecture.parameters or 0) / 1e6:.2f}M parameters, {models['torch'].img_size} px, "
        f"TTA '{tta}'"
    )
    print(
        f"machine: {platform.machine()} {cpu_name()}, {len(os.sched_getaffinity(0))} CPU cores; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, fp32), onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}; best of {args.repeats}\n"
    )
    tables.emit(
        "throughput",
        ["what", "backend", "decode pool", "images/s", "seconds"],
        [
            [what, backend, pool, tables.V(rate, ",.0f"), tables.V(seconds, ".2f")]
            for what, backend, pool, rate, seconds in rows
        ],
        align=["---", "---", "---", "---:", "---:"],
    )


if __name__ == "__main__":
    main()

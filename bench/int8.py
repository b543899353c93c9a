"""Benchmark: int8 against fp32 for the default classifier on CPU — PyTorch, ONNX Runtime, OpenVINO.

Trains the default model on flowers5 (`imgclf train DATA`, no flags: EfficientNet-Lite0 fine-tuned
at 128 px), exports it in fp32 and in int8 (`imgclf export RUN --int8`: calibrated on 300 of its
training images), then measures every engine in one process on the run's held-out test split.
Not a test: nothing is asserted; prints one markdown table.

    python bench/int8.py                      # trains first (about 3 minutes on 2 cores)
    python bench/int8.py --run runs/flowers5-1   # an already trained run
    python bench/int8.py --parts detector,faces  # the person detector and the face embedder only

The detector and face embedder parts are in bench/int8_models.py (its docstring says what they measure).

Columns:
- test acc: argmax accuracy on the test split through the predictor, with the run's test-time
  augmentation, as `imgclf predict` answers; `same label`: share of images labelled as fp32 PyTorch does;
- img/s batch 1 / batch 32: predict_logits on pre-decoded uint8 images (no TTA), 20 single images
  and 4 batches of 32 per round; 10 rounds, the engines interleaved in each, the best round of
  each engine kept (the machine may be shared: many short samples, of which the best is the least
  disturbed, are steadier under others' load than one long one);
- x fp32 ORT: the same numbers divided by fp32 ONNX Runtime's.
Every engine runs on --threads threads (torch.set_num_threads; ONNX Runtime and OpenVINO take the same).
OpenVINO rows need `pip install 'imgclf[openvino]'` and are left out without it.
"""

from __future__ import annotations

import argparse
import importlib.util
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import imgclf  # noqa: E402
from imgclf.data.cache import build_cache  # noqa: E402
from imgclf.store.runs import read_splits  # noqa: E402

ARCHIVE = ROOT.parent / "shared" / "datasets" / "flowers5.tar.gz"
ROUNDS, SINGLES, BATCHES = 10, 20, 4


def test_split(run: Path, model) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in read_splits(run) if r["split"] == "test"]
    cache = build_cache([r["path"] for r in rows], model.img_size, model.resize_mode, progress=False)
    keep = [i for i in range(len(rows)) if i not in cache.bad]
    return cache.images[keep], np.array([model.classes.index(rows[i]["label"]) for i in keep])


def speed(model, images: np.ndarray) -> tuple[float, float]:
    """(images/s at batch 1, images/s at batch 32), no TTA."""
    model.tta = "none"
    # A test split smaller than the samples is repeated: every batch holds its full count of images.
    images = images[np.arange(max(SINGLES, 32 * BATCHES)) % len(images)]
    t = time.perf_counter()
    for i in range(SINGLES):
        model.predict_logits(images[i : i + 1])
    b1 = SINGLES / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(0, 32 * BATCHES, 32):
        model.predict_logits(images[i : i + 32])
    return b1, 32 * BATCHES / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="an already trained run folder [default: train the default model on flowers5]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parts", default="classifier,detector,faces", help="comma-separated: classifier, detector, faces")
    ap.add_argument("--work", default="/tmp/int8bench", help="where the detector and face sets are built")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores, "
        f"{args.threads} threads · load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if "classifier" in parts:
        classifier(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import int8_models  # bench/int8_models.py

    if "detector" in parts:
        int8_models.detector_table(work, bool(importlib.util.find_spec("openvino")))
    if "faces" in parts:
        int8_models.faces_table(work)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def classifier(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imgclf-bench-int8-"))
    if args.run:
        run = Path(args.run)
    else:
        if not ARCHIVE.exists():
            sys.exit(f"{ARCHIVE} not found")
        with tarfile.open(ARCHIVE) as tf:
            tf.extractall(tmp, filter="data")
        t = time.perf_counter()
        run = imgclf.train(tmp / "flowers5", out=tmp / "runs" / "flowers5", verbose=False).path
        print(f"trained {run} in {time.perf_counter() - t:.0f} s", flush=True)
    fp32 = imgclf.export(run, verbose=False)
    int8 = imgclf.export(run, int8=True, verbose=False)
    print(f"fp32 export {fp32['seconds']:.1f} s, int8 export {int8['seconds']:.1f} s", flush=True)

    backends = ["torch", "onnx", "onnx-int8"]
    if importlib.util.find_spec("openvino"):
        backends += ["openvino", "openvino-int8"]
    models = {b: imgclf.load(run, device="cpu", backend=b) for b in backends}
    images, labels = test_split(run, models["torch"])
    tta = models["torch"].tta
    preds = {b: m.predict_proba(images).argmax(1) for b, m in models.items()}
    for m in models.values():
        speed(m, images[:64])  # warm-up: ORT arenas, oneDNN and OpenVINO kernels for both shapes
    best = {b: (0.0, 0.0) for b in backends}
    load_before = os.getloadavg()[0]
    for k in range(ROUNDS):  # interleaved: a burst of load from elsewhere hits every engine alike
        part = np.roll(images, -32 * BATCHES * k, axis=0)  # other images each round
        for b, m in models.items():
            s = speed(m, part)
            best[b] = (max(best[b][0], s[0]), max(best[b][1], s[1]))

    names = {
        "torch": "fp32 PyTorch",
        "onnx": "fp32 ONNX Runtime",
        "onnx-int8": "int8 ONNX Runtime",
        "openvino": "fp32 OpenVINO",
        "openvino-int8": "int8 OpenVINO",
    }
    ref = best["onnx"]
    rows = [
        [
            names[b],
            tables.V(float((preds[b] == labels).mean()), ".3f"),
            tables.V(float((preds[b] == preds["torch"]).mean()), ".3f"),
            tables.V(best[b][0], ",.0f"),
            tables.V(best[b][1], ",.0f"),
            tables.V(best[b][0] / ref[0], "{:.2f}x"),
            tables.V(best[b][1] / ref[1], "{:.2f}x"),
        ]
        for b in backends
    ]
    versions = f"torch {torch.__version__}, onnxruntime {int8['onnxruntime']}"
    if "openvino" in models:
        import openvino

        versions += f", openvino {openvino.__version__.split('-')[0]}"
    print(
        f"\n{run.name} ({models['torch'].meta.architecture_name}, {models['torch'].img_size} px), "
        f"test split n={len(images)}, tta {tta}; int8 calibrated on {int8['n_calibration']} training images; "
        f"{platform.processor() or platform.machine()}, {args.threads} threads; {versions}; "
        f"load average before / after timing {load_before:.1f} / {os.getloadavg()[0]:.1f}\n"
    )
    tables.emit(
        "engines",
        ["engine", "test acc", "same label", "img/s batch 1", "img/s batch 32", "x fp32 ORT b1", "x fp32 ORT b32"],
        rows,
    )


if __name__ == "__main__":
    main()

"""Benchmark: `imgclf train --preset fast|balanced|best` on the CIFAR-10 JPEG set, against the same
`resnet_fast` model trained through torchvision's ImageFolder + DataLoader + transforms, same
device, same run. Not a test: nothing is asserted; it prints one markdown table.

    python bench/speed.py                               # presets fast,balanced,best; 3 seeds on GPU, 1 on CPU
    python bench/speed.py --presets fast --seeds 2 --baseline-epochs 2

Measured per preset (mean ± std over seeds):
- train s: seconds of training steps only (CUDA events around the steps on GPUs, as airbench
  measures; perf_counter on CPUs); first step (compilation, cuDNN autotuning) shown separately;
- wall s: the whole `imgclf.train` call: file discovery, decode cache (built once, then reused),
  compile, training, validation, calibration and the test evaluation;
- img/s: training images per second over the steady epochs (the first is left out);
- test acc: the held-out CIFAR-10 test set (10,000 images) with the preset's test-time augmentation;
- time to 90/92/93/94 %: training seconds until the validation accuracy (5,000 images held out of
  the training set, averaged weights, no TTA) first reached it.
Linear cost: seconds per epoch with half and all of the training images (preset fast, 2 epochs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import tables  # bench/tables.py: the table printed and written as CSV
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import imgclf  # noqa: E402
from imgclf.core.device import amp_dtype, pick_device  # noqa: E402
from imgclf.data.spec import is_image  # noqa: E402
from imgclf.models import create_model  # noqa: E402
from imgclf.training.optim import lr_factor, make_optimizer, set_lr  # noqa: E402
from imgclf.training.presets import preset_settings  # noqa: E402

THRESHOLDS = (0.90, 0.92, 0.93, 0.94)


def unpack(archive: Path, dest: Path) -> Path:
    if not (dest / "cifar10" / "train").exists():
        with tarfile.open(archive) as tf:
            tf.extractall(dest)
    return dest / "cifar10"


def fmt(values: list[float], digits: int = 1, pct: bool = False) -> str:
    if not values:
        return "–"
    k = 100 if pct else 1
    if len(values) == 1:
        return f"{values[0] * k:.{digits}f}"
    return f"{statistics.mean(values) * k:.{digits}f} ± {statistics.stdev(values) * k:.{digits}f}"


def run_preset(data: Path, preset: str, seed: int, device: str, out: Path, **extra) -> dict:
    t0 = time.perf_counter()
    run = imgclf.train(data, preset=preset, seed=seed, device=device, out=out, verbose=False, **extra)
    wall = time.perf_counter() - t0
    meta = json.loads((run.path / "model.json").read_text())
    with open(run.path / "history.csv", newline="") as f:
        hist = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    elapsed, reach = 0.0, {}
    for r in hist:
        elapsed += r["seconds"]
        for t in THRESHOLDS:
            if t not in reach and r["val_acc"] >= t:
                reach[t] = elapsed
    steady = hist[1:] or hist
    return {
        "acc": run.metrics["accuracy"],
        "train_s": meta["training"]["train_seconds"],
        "wall_s": wall,
        "first_step_s": meta["training"]["first_step_seconds"],
        "epochs": len(hist),
        "img_s": statistics.mean(r["images_per_s"] for r in steady),
        "reach": reach,
        "epoch_s": statistics.mean(r["seconds"] for r in steady),
    }


def baseline(data: Path, device: torch.device, epochs: int, seed: int) -> dict:
    """The textbook pipeline: PIL decode + torchvision transforms in DataLoader workers every epoch,
    training the preset-fast resnet_fast with the same optimizer, schedule and precision."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    s, _ = preset_settings("fast", device, 50_000, 32)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10's
    train_tf = T.Compose(
        [
            T.RandomCrop(32, padding=2, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    test_tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    train_ds, test_ds = ImageFolder(data / "train", train_tf), ImageFolder(data / "test", test_tf)
    workers = os.cpu_count() or 2
    loader = DataLoader(
        train_ds,
        batch_size=s["batch_size"],
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
    )
    torch.manual_seed(seed)
    model = (
        create_model("resnet_fast", 10, img_size=32, **s["model_kwargs"])
        .to(device)
        .to(memory_format=torch.channels_last)
    )
    opt = make_optimizer(model, "sgd", s["lr"], s["weight_decay"], s["momentum"])
    amp = amp_dtype(device)
    total, step, rates = epochs * len(loader), 0, []
    for _ in range(epochs):
        model.train()
        seen, t0 = 0, time.perf_counter()
        for xb, yb in loader:
            set_lr(opt, s["lr"] * lr_factor(step, total, "onecycle", 0))
            xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yb = yb.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(model(xb).float(), yb, label_smoothing=s["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen, step = seen + len(yb), step + 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - t0))
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in DataLoader(test_ds, batch_size=1000, num_workers=workers):
            correct += (
                (model(xb.to(device).contiguous(memory_format=torch.channels_last)).argmax(1).cpu() == yb).sum().item()
            )
    steady = rates[1:] or rates
    return {
        "img_s": statistics.mean(steady),
        "epoch_s": len(train_ds) / statistics.mean(steady),
        "acc": correct / len(test_ds),
        "epochs": epochs,
    }


def half_manifest(data: Path, dest: Path) -> Path:
    """A CSV manifest with every other training image of each class (and the whole test set)."""
    rows = []
    for split in ("train", "test"):
        for cls in sorted(p.name for p in (data / split).iterdir() if p.is_dir()):
            files = sorted(f for f in (data / split / cls).iterdir() if is_image(f))
            rows += [(str(f), cls, split) for f in (files[::2] if split == "train" else files)]
    path = dest / "cifar10_half.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return path


def environment(device: torch.device) -> str:
    parts = [f"torch {torch.__version__}", f"Python {platform.python_version()}"]
    if device.type == "cuda":
        parts.insert(0, torch.cuda.get_device_name(device))
        parts.append(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        try:
            import subprocess

            drv = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            parts.append(f"driver {drv}")
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        parts.insert(0, f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz")
    ap.add_argument("--presets", default="fast,balanced,best")
    ap.add_argument("--seeds", type=int, default=None, help="[default: 3 on GPU, 1 on CPU]")
    ap.add_argument(
        "--baseline-epochs", type=int, default=None, help="[default: the fast preset's epochs on GPU, 2 on CPU]"
    )
    ap.add_argument("--no-scaling", action="store_true", help="skip the half-vs-full epoch-time check")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "imgclf-bench")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    tables.add_csv_dir(ap)
    args = ap.parse_args()

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    seeds = args.seeds or (3 if gpu else 1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = unpack(args.data, args.workdir) if args.data.suffix == ".gz" else args.data
    raw: dict = {"device": environment(device), "presets": {}}
    print(f"# imgclf speed benchmark: {raw['device']}", flush=True)

    for preset in args.presets.split(","):
        results = []
        for seed in range(seeds):
            r = run_preset(data, preset, seed, args.device, Path(tempfile.mkdtemp(dir=args.workdir)) / "run")
            print(
                f"{preset} seed {seed}: acc {r['acc']:.4f}  train {r['train_s']:.1f}s  wall {r['wall_s']:.1f}s  "
                f"{r['img_s']:,.0f} img/s",
                flush=True,
            )
            results.append(r)
        raw["presets"][preset] = results

    fast_epochs = raw["presets"].get("fast", [{}])[0].get("epochs", 10)
    b_epochs = args.baseline_epochs or (fast_epochs if gpu else 2)
    print(f"baseline: ImageFolder + DataLoader, {b_epochs} epochs ...", flush=True)
    raw["baseline"] = baseline(data, device, b_epochs, 0)

    if not args.no_scaling:
        half = run_preset(
            half_manifest(data, args.workdir),
            "fast",
            0,
            args.device,
            Path(tempfile.mkdtemp(dir=args.workdir)) / "run",
            epochs=2,
        )
        full = run_preset(data, "fast", 0, args.device, Path(tempfile.mkdtemp(dir=args.workdir)) / "run", epochs=2)
        raw["scaling"] = {"half_epoch_s": half["epoch_s"], "full_epoch_s": full["epoch_s"]}

    print(f"\n**{raw['device']}**\n")
    # Cells of several seeds print as "mean ± std" (fmt) and are written as printed.
    table = tables.Table(
        "presets",
        [
            "pipeline",
            "epochs",
            "train s",
            "first step s",
            "wall s",
            "img/s",
            "test acc %",
            *(f"to {int(t * 100)}% s" for t in THRESHOLDS),
        ],
    )
    for preset, rs in raw["presets"].items():
        reach = [" / ".join(f"{r['reach'][t]:.1f}" if t in r["reach"] else "–" for r in rs) for t in THRESHOLDS]
        table.add(
            [
                f"imgclf --preset {preset}",
                rs[0]["epochs"],
                fmt([r["train_s"] for r in rs]),
                fmt([r["first_step_s"] for r in rs]),
                fmt([r["wall_s"] for r in rs]),
                fmt([r["img_s"] for r in rs], 0),
                fmt([r["acc"] for r in rs], 2, pct=True),
                *reach,
            ],
            write=False,
        )
    b = raw["baseline"]
    fast = raw["presets"].get("fast")
    speedup = f" (imgclf fast: {statistics.mean(r['img_s'] for r in fast) / b['img_s']:.1f}x)" if fast else ""
    table.add(
        [
            f"ImageFolder + DataLoader, same model{speedup}",
            b["epochs"],
            tables.V(b["epochs"] * b["epoch_s"], ".1f"),
            "–",
            "–",
            tables.V(b["img_s"], ",.0f"),
            tables.V(b["acc"] * 100, ".2f"),
            *("–" for _ in THRESHOLDS),
        ]
    )
    if "scaling" in raw:
        s = raw["scaling"]
        print(
            f"\nLinear cost: epoch {s['half_epoch_s']:.2f}s with 25,000 training images (22,500 after the val "
            f"split), {s['full_epoch_s']:.2f}s with 50,000: ratio {s['full_epoch_s'] / s['half_epoch_s']:.2f} (ideal 2.00)"
        )
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Ultralytics `yolo classify train`, a peer users reach for, on one of imgclf's splits (not a test).

Runs in a Python of its own with Ultralytics (AGPL-3.0, so it is in no imgclf extra):

    python3 -m venv /tmp/ulv && /tmp/ulv/bin/pip install torch torchvision ultralytics scikit-learn
    /tmp/ulv/bin/python bench/yolo_cls.py RUN/splits.csv --out yolo.json [--weights yolo11n-cls.pt] [--time-s 120]

The recipe is Ultralytics' documented one, `yolo classify train data=DIR model=yolo11n-cls.pt`, with
its own defaults (224 px, batch 16, RandAugment, random erasing, the "auto" optimiser, best epoch by
validation top-1), and two changes a CPU user makes: `device=cpu workers=2`, and a stop, since its
default 100 epochs take hours on 2 cores: `--time-s` (Ultralytics' `time=`, which re-plans the
epochs to the clock after the first one; bench/budget.py passes the no-flag default's wall seconds,
so both get the same time) or `--epochs`. `plots=False`: its plots fetch a font from the network.

Weights: ImageNet-pretrained `yolo11n-cls.pt` downloads from GitHub, which this project's machines
cannot reach. Without `--weights FILE`, the same network trains from scratch (`yolo11n-cls.yaml`),
the row says so, and it is the weaker peer: a user online gets the pretrained start.

The split's rows become a train/val/test folder tree of links (formats Ultralytics does not read,
such as PGM, are written as PNG). The test rows are scored with the kept (best) weights.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from pathlib import Path

import tables  # bench/tables.py (standard library only): the result also as CSV
from keras_cnn import data_root, scores, write_result

T0 = time.perf_counter()
READS = {".avif", ".bmp", ".dng", ".heic", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"}


def folder_tree(rows: list[dict], root: Path) -> None:
    """root/{train,val,test}/<label>/<file>: links, or PNG copies of what Ultralytics cannot read."""
    from PIL import Image

    shutil.rmtree(root, ignore_errors=True)  # a rerun into the same --out folder starts over
    for i, r in enumerate(rows):
        src = Path(r["path"])
        dest = root / r["split"] / r["label"] / f"{i:06d}_{src.stem}{src.suffix.lower()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix.lower() in READS:
            os.symlink(src.resolve(), dest)
        else:
            Image.open(src).convert("RGB").save(dest.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("splits", help="an imgclf run's splits.csv (path,label,split)")
    ap.add_argument("--out", required=True, help="where the JSON result is written")
    ap.add_argument("--weights", help="yolo11n-cls.pt (ImageNet); without it the network trains from scratch")
    ap.add_argument("--time-s", type=float, help="train for this many seconds (Ultralytics' time=)")
    ap.add_argument("--epochs", type=int, default=100, help="Ultralytics' default; --time-s overrides it")
    ap.add_argument("--imgsz", type=int, default=224, help="Ultralytics' classification default")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    import ultralytics
    from ultralytics import YOLO

    rows = list(csv.DictReader(open(args.splits, newline="", encoding="utf-8")))
    base = data_root(Path(args.splits))
    for r in rows:
        r["path"] = str(base / r["path"])
    work = Path(args.out).resolve().parent / "yolo"
    folder_tree(rows, work / "data")
    model = YOLO(args.weights or "yolo11n-cls.yaml")
    extra = {"time": args.time_s / 3600} if args.time_s else {}
    t1 = time.perf_counter()
    model.train(
        data=str(work / "data"),
        epochs=args.epochs,
        imgsz=args.imgsz,
        device="cpu",
        workers=2,
        plots=False,
        project=str(work),
        name="train",
        exist_ok=True,
        seed=0,
        **extra,
    )
    train_s = time.perf_counter() - t1
    best = YOLO(str(work / "train" / "weights" / "best.pt"))
    test = sorted((work / "data" / "test").glob("*/*"))
    names = best.names
    pred, truth = [], []
    for i in range(0, len(test), 64):
        for path, res in zip(
            test[i : i + 64],
            best.predict([str(p) for p in test[i : i + 64]], imgsz=args.imgsz, device="cpu", verbose=False),
        ):
            pred.append(names[int(res.probs.top1)])
            truth.append(path.parent.name)
    epochs = len(list(csv.DictReader(open(work / "train" / "results.csv"))))
    result = {
        **scores(truth, pred),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - T0, 1),
        "model": f"yolo11n-cls {'from ' + Path(args.weights).name if args.weights else 'from scratch'}, "
        f"{epochs} epochs at {args.imgsz} px",
        "size": args.imgsz,
        "ultralytics": ultralytics.__version__,
    }
    tables.save("result", list(result), [list(result.values())])
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""Transfer learning benchmark (not a test): imgclf's default against today's from-scratch default
and fastai's transfer recipe, on the same split of each shared set, in one run.

    pip install -e . fastai       # fastai is the peer; imgclf does not need it
    python bench/transfer.py                       # flowers5, orl-faces, daimler, cifar10-5k
    python bench/transfer.py --sets flowers5 --recipes default,fastai

Recipes:
  default  `imgclf train DATA` with no flags (what a user gets)
  scratch  `imgclf train DATA --model resnet_fast` (the default before pretrained backbones)
  fastai   `vision_learner(dls, 'tf_efficientnet_lite0', pretrained=False)` given the same converted
           ImageNet weights, Normalize.from_stats(0.5, 0.5), aug_transforms(), `fine_tune(4)`, at the
           size imgclf's default chose, as the fastai docs teach it

The split: the default run splits the data (80/10/10, seeded, near-duplicates kept together, or the
set's own train/test); its splits.csv is handed to the other recipes as a manifest, so every
recipe trains on the same images and is scored on the same test images. Prints one table: test
accuracy, macro F1, training seconds (the recipe's training calls) and wall seconds (all of it:
decoding, training, evaluation).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SETS = {"flowers5": ("flowers5.tar.gz", "flowers5"), "orl-faces": ("orl-faces.tar.gz", "orl-faces"),
        "daimler": ("daimler-pedestrians.tar.gz", "daimler-pedestrians"), "cifar10-5k": ("cifar10-jpg.tar.gz", "cifar10")}


def unpack(name: str, work: Path) -> Path:
    archive, folder = SETS[name]
    dest = work / "data" / folder
    if not dest.exists():
        with tarfile.open(SHARED / archive) as tf:
            tf.extractall(work / "data", filter="data")
    if name != "cifar10-5k":
        return dest
    subset = work / "data" / "cifar10-5k"      # 500 training images per class, the full 10,000 test images
    if not subset.exists():
        for split, keep in (("train", 500), ("test", None)):
            for cls in sorted(p for p in (dest / split).iterdir() if p.is_dir()):
                out = subset / split / cls.name
                out.mkdir(parents=True)
                for f in sorted(cls.iterdir())[:keep]:
                    (out / f.name).symlink_to(f)
    return subset


def imgclf_run(data: Path, out: Path, *flags: str) -> dict:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgclf.cli", "train", str(data), "--out", str(out), *flags], check=True)
    wall = time.perf_counter() - t0
    meta, metrics = json.loads((out / "model.json").read_text()), json.loads((out / "metrics.json").read_text())
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_avg"]["f1-score"],
            "train_s": meta["training"]["train_seconds"], "wall_s": wall, "model": meta["architecture"]["name"],
            "size": meta["input"]["size"]}


def fastai_run(splits: Path, size: int, epochs: int = 4) -> dict:
    """fastai's transfer recipe on the rows of `splits` (path,label,split)."""
    import numpy as np
    import torch
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, Normalize, Resize, aug_transforms,
                                   accuracy, vision_learner)
    from safetensors.torch import load_file
    from sklearn.metrics import f1_score

    from imgclf.models.packaged import packaged_weights

    t0 = time.perf_counter()
    rows = list(csv.DictReader(open(splits, newline="", encoding="utf-8")))
    fit_rows = [r for r in rows if r["split"] in ("train", "val")]
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=lambda r: r["path"], get_y=lambda r: r["label"],
                      splitter=lambda items: ([i for i, r in enumerate(items) if r["split"] == "train"],
                                              [i for i, r in enumerate(items) if r["split"] == "val"]),
                      item_tfms=Resize(size), batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5] * 3, [0.5] * 3)])
    dls = block.dataloaders(fit_rows, bs=64)
    learn = vision_learner(dls, "tf_efficientnet_lite0", pretrained=False, metrics=accuracy)
    body = learn.model[0].model         # fastai's TimmBody wraps the timm network (its head removed)
    sd = {k: v for k, v in load_file(packaged_weights("tf_efficientnet_lite0")).items() if not k.startswith("classifier")}
    missing, unexpected = body.load_state_dict(sd, strict=False)
    assert not unexpected and not [k for k in missing if not k.startswith("classifier")], (missing, unexpected)
    t1 = time.perf_counter()
    learn.fine_tune(epochs)
    train_s = time.perf_counter() - t1
    test = [r for r in rows if r["split"] == "test"]
    probs, _ = learn.get_preds(dl=dls.test_dl([r for r in test]))
    vocab = list(dls.vocab)
    pred = np.array([vocab[i] for i in probs.argmax(1).numpy()])
    truth = np.array([r["label"] for r in test])
    return {"accuracy": float((pred == truth).mean()), "macro_f1": float(f1_score(truth, pred, average="macro")),
            "train_s": train_s, "wall_s": time.perf_counter() - t0, "model": "fastai tf_efficientnet_lite0",
            "size": size, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--recipes", default="default,scratch,fastai")
    ap.add_argument("--work", default="/tmp/imgclf-transfer")
    args = ap.parse_args()
    work = Path(args.work)
    results = []
    for name in args.sets.split(","):
        data = unpack(name, work)
        default_dir = work / "runs" / f"{name}-default"
        res = {}
        if "default" in args.recipes or not (default_dir / "metrics.json").exists():
            if default_dir.exists() and not (default_dir / "metrics.json").exists():
                import shutil

                shutil.rmtree(default_dir)
            if not (default_dir / "metrics.json").exists():
                res["default"] = imgclf_run(data, default_dir)
        splits = default_dir / "splits.csv"
        size = json.loads((default_dir / "model.json").read_text())["input"]["size"]
        for recipe in args.recipes.split(","):
            if recipe == "scratch":
                res[recipe] = imgclf_run(splits, work / "runs" / f"{name}-scratch-{int(time.time())}",
                                         "--model", "resnet_fast", "--group-by", "none")
            elif recipe == "fastai":
                res[recipe] = fastai_run(splits, size)
        for recipe, r in res.items():
            results.append({"set": name, "recipe": recipe, **r})
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{'set':<12} {'recipe':<8} {'model':<30} {'px':>4} {'test acc':>9} {'macro F1':>9} {'train s':>8} {'wall s':>7}")
    for r in results:
        print(f"{r['set']:<12} {r['recipe']:<8} {r['model']:<30} {r['size']:>4} {r['accuracy']:>9.4f} "
              f"{r['macro_f1']:>9.4f} {r['train_s']:>8.0f} {r['wall_s']:>7.0f}")


if __name__ == "__main__":
    main()

"""Benchmark: does `imgclf evaluate RUN FOLDER` find copies of the run's training photos that are not
byte-identical (resized and saved as JPEG, mirrored, trimmed), and does it leave fresh photos of the
same classes alone?

    python bench/copies.py [--sets orl,flowers] [--copies 60] [--work DIR]

Per set: train the no-flag default on it (ORL faces: all 400 photos; flowers5: 30 photos a class,
with 60 others a class kept aside as fresh photos), then evaluate the run on two folders: `copies`
(copies of its first N training photos, a third each 70 % of their size as JPEG, mirrored, and
trimmed by 2 px a side as JPEG) and `fresh` (its own test split re-encoded as JPEG, and for flowers5
the photos kept aside). Reads `near_copies` from evaluate's result. Prints markdown tables. Not a
test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import tables  # bench/tables.py: the tables printed and written as CSV
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import imgclf  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
KINDS = ("70 % size, JPEG", "mirrored", "2 px trimmed, JPEG")


def unpack(name: str, work: Path) -> Path:
    folder = {"orl-faces": "orl-faces", "flowers5": "flowers5"}[name]
    if not (work / folder).exists():
        with tarfile.open(SHARED / f"{name}.tar.gz") as tf:
            tf.extractall(work, filter="data")
    return work / folder


def flowers_sample(flowers: Path, work: Path, train: int = 30, fresh: int = 60) -> tuple[Path, Path]:
    """The first `train` photos of each class as the data, the last `fresh` as fresh photos."""
    data, aside = work / "flowers-30", work / "flowers-fresh"
    for cls in sorted(p.name for p in flowers.iterdir() if p.is_dir()):
        files = sorted((flowers / cls).iterdir())
        for dest, chosen in ((data, files[:train]), (aside, files[-fresh:])):
            (dest / cls).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, dest / cls / f.name)
    return data, aside


def make_copies(run: Path, out: Path, n: int) -> dict[str, int]:
    """Copies of the run's first `n` training photos into out/copies, its test split into out/fresh."""
    rows = list(csv.DictReader(open(run / "splits.csv", newline="", encoding="utf-8")))
    root = Path(json.loads((run / "model.json").read_text())["data"]["root"])
    kinds = dict.fromkeys(KINDS, 0)
    made = 0
    for r in rows:
        img = Image.open(root / r["path"]).convert("RGB")
        name = Path(r["path"]).stem
        if r["split"] == "test":
            (out / "fresh" / r["label"]).mkdir(parents=True, exist_ok=True)
            img.save(out / "fresh" / r["label"] / f"{name}.jpg", quality=85)
        elif r["split"] == "train" and made < n:
            kind = KINDS[made % 3]
            w, h = img.size
            copy = {KINDS[0]: lambda: img.resize((int(w * 0.7), int(h * 0.7))), KINDS[1]: lambda: ImageOps.mirror(img)}
            copy = copy.get(kind, lambda: img.crop((2, 2, w - 2, h - 2)))()
            (out / "copies" / r["label"]).mkdir(parents=True, exist_ok=True)
            copy.save(out / "copies" / r["label"] / f"{name}-{made}.{'png' if kind == KINDS[1] else 'jpg'}", quality=80)
            kinds[kind] += 1
            made += 1
    return kinds


def found(run: Path, folder: Path) -> tuple[int, int, float]:
    """(images called near-copies of training or validation photos, images scored, seconds)."""
    start = time.perf_counter()
    m = imgclf.evaluate(run, folder, verbose=False)
    near = m.get("near_copies", {})
    return near.get("train", 0) + near.get("val", 0), m["n"], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tables.add_csv_dir(ap)
    ap.add_argument("--sets", default="orl,flowers")
    ap.add_argument("--copies", type=int, default=60)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="imgclf-copies-"))
    print(f"# bench/copies.py, {platform.machine()}, {time.strftime('%Y-%m-%d')}, work {work}\n")
    rows = []
    for name in args.sets.split(","):
        fresh_extra = None
        if name == "orl":
            data = unpack("orl-faces", work)
        else:
            data, fresh_extra = flowers_sample(unpack("flowers5", work), work)
        run = work / f"run-{name}"
        if not (run / "model.json").is_file():
            imgclf.train(data, out=run, verbose=False)
        out = work / f"eval-{name}"
        shutil.rmtree(out, ignore_errors=True)
        make_copies(run, out, args.copies)
        for kind_at, kind in enumerate(KINDS):  # each kind alone: which of them the check misses
            sub = out / f"copies-{kind_at}"
            for f in (out / "copies").rglob("*-*.*"):
                if int(f.stem.rsplit("-", 1)[1]) % 3 == kind_at:
                    (sub / f.parent.name).mkdir(parents=True, exist_ok=True)
                    shutil.copy(f, sub / f.parent.name / f.name)
            hit, n, s = found(run, sub)
            rows.append([name, f"copies: {kind}", tables.V(hit, "d"), tables.V(n, "d"), tables.V(s, ".1f")])
        for label, folder in (
            ("fresh: its test split, as JPEG", out / "fresh"),
            ("fresh: photos kept aside", fresh_extra),
        ):
            if folder is not None:
                hit, n, s = found(run, folder)
                rows.append([name, label, tables.V(hit, "d"), tables.V(n, "d"), tables.V(s, ".1f")])
    tables.emit("copies", ["set", "folder", "called copies", "images", "evaluate s"], rows)


if __name__ == "__main__":
    main()

"""Benchmark: does `imgclf monitor` say "no drift" when it should, and "drift" when it should?

Trains a flowers5 run on three of its five classes (`--preset fast`, 8 epochs; or give --run), serves it
with `--log-predictions` on localhost and sends it one kind of traffic per scenario (each image as
its own POST /predict request, through the real service and its prediction log), then runs
`imgclf.monitor` on that log:

- test split: the run's own test images, drawn with replacement (the issue's "no drift" case);
- validation split: the same classes, images the reference never saw (a false-alarm check);
- darkened: test images with every pixel x 0.4, re-encoded as JPEG;
- foreign classes: photos of the two species the model never learnt;
- 80/20 mix: test images with 20% foreign photos mixed in; the to-label column says how many of
  the listed images are foreign, beside the foreign share of the distinct images logged.

Not a test: nothing is asserted; prints one markdown table.

    python bench/monitor.py                      # unpacks flowers5 under /tmp, trains, ~3-6 min on 2 cores
    python bench/monitor.py --run runs/flowers3-1 --data /tmp/flowers5
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
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

import imgclf  # noqa: E402

ARCHIVE = ROOT.parent / "shared" / "datasets" / "flowers5.tar.gz"


def flowers(data: str | None, work: Path) -> Path:
    if data:
        return Path(data)
    dest = work / "flowers5"
    if not dest.exists():
        with tarfile.open(ARCHIVE) as tf:
            tf.extractall(work, filter="data")
    return dest


def subset(root: Path, classes: list[str], work: Path) -> Path:
    """A class-folder dataset of only `classes` (symlinks; nothing copied)."""
    sub = work / f"flowers{len(classes)}"
    sub.mkdir(exist_ok=True)
    for c in classes:
        if not (sub / c).exists():
            (sub / c).symlink_to((root / c).resolve(), target_is_directory=True)
    return sub


def darkened(path: str, factor: float = 0.4) -> bytes:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    buf = io.BytesIO()
    Image.fromarray((np.asarray(img, np.float32) * factor).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def send(model, uploads: list[tuple[bytes, bool]], log: Path) -> float:
    """POST each upload to a fresh service logging to `log`; seconds taken."""
    import httpx

    from imgclf.serving import BackgroundServer, ServeSettings, create_app

    settings = ServeSettings(log_predictions=str(log))
    t = time.perf_counter()
    with BackgroundServer(create_app(model, settings)) as url, httpx.Client(timeout=60) as client:
        for data, _ in uploads:
            r = client.post(f"{url}/predict", content=data, headers={"Content-Type": "image/jpeg"})
            r.raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="unpacked flowers5 folder [default: unpack the shared archive]")
    ap.add_argument("--run", help="a run trained on --classes [default: train one with --preset fast]")
    ap.add_argument("--classes", default="daisy,dandelion,rose")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs (the preset's 40 take ~30 min on 2 cores)")
    ap.add_argument("--n", type=int, default=300, help="requests per scenario")
    ap.add_argument("--work", help="working folder [default: a new /tmp folder]")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="imgclf-bench-monitor-"))
    work.mkdir(parents=True, exist_ok=True)
    root = flowers(args.data, work)
    known = args.classes.split(",")
    foreign_classes = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in known)
    t = time.perf_counter()
    if args.run:
        run, trained = Path(args.run), "given"
    else:
        run = imgclf.train(
            subset(root, known, work), preset="fast", epochs=args.epochs, out=work / "run", verbose=False
        ).path
        trained = f"trained in {time.perf_counter() - t:.0f} s"
    model = imgclf.load(run)
    rows = list(csv.DictReader(open(run / "splits.csv", newline="", encoding="utf-8")))
    test = [r["path"] for r in rows if r["split"] == "test"]
    val = [r["path"] for r in rows if r["split"] == "val"]
    foreign = [str(p) for c in foreign_classes for p in sorted((root / c).iterdir())]
    rng = np.random.default_rng(0)
    draw = lambda paths, n: [paths[i] for i in rng.choice(len(paths), size=n, replace=True)]  # noqa: E731
    read = lambda p: Path(p).read_bytes()  # noqa: E731
    n = args.n
    scenarios = {
        "test split (drawn with replacement)": [(read(p), False) for p in draw(test, n)],
        "validation split (unseen by the reference)": [(read(p), False) for p in val],
        "darkened test images (x0.4)": [(darkened(p), False) for p in draw(test, n)],
        f"foreign classes ({', '.join(foreign_classes)})": [(read(p), True) for p in draw(foreign, n)],
        "80% test + 20% foreign": [(read(p), False) for p in draw(test, n - n // 5)]
        + [(read(p), True) for p in draw(foreign, n // 5)],
    }
    print(
        f"run {run} ({', '.join(model.classes)}; {model.meta.architecture_name} {model.img_size} px, "
        f"TTA {model.tta}; {trained}); {len(test)} test images; {platform.processor() or platform.machine()}, "
        f"imgclf {imgclf.__version__}\n"
    )
    table = tables.Table(
        "scenarios",
        [
            "traffic",
            "requests",
            "status",
            "confidence median (test / live, PSI)",
            "below 0.5 (test / live)",
            "brightness mean (test / live, PSI)",
            "predicted classes PSI",
            "foreign among top 50 to label",
            "monitor s (first / cached)",
        ],
        align=["---", "---:", "---", "---", "---", "---", "---:", "---:", "---"],
    )
    verdicts = []
    for i, (name, uploads) in enumerate(scenarios.items()):
        order = rng.permutation(len(uploads))
        uploads = [uploads[k] for k in order]
        log, out = work / f"log-{i}", work / f"monitor-{i}"
        send(model, uploads, log)
        t = time.perf_counter()
        imgclf.monitor(run, log, out=out, verbose=False)
        first = time.perf_counter() - t
        t = time.perf_counter()
        r = imgclf.monitor(run, log, out=out, verbose=False)
        cached = time.perf_counter() - t
        s = r["statistics"]
        c, b, low = s["confidence"], s["brightness"], s["low_confidence"]
        is_foreign = {hashlib.sha256(d).hexdigest(): f for d, f in uploads}
        picked = [is_foreign[p["sha256"]] for p in r["to_label"]]
        share = sum(is_foreign.values()) / len(is_foreign)
        table.add(
            [
                name,
                r["n_live"],
                tables.V(r["status"], "**{}**"),
                f"{c['ref']['median']:.2f} / {c['live']['median']:.2f}, {c['psi']:.2f}",
                f"{low['ref']:.0%} / {low['live']:.0%}",
                f"{b['ref']['mean']:.0f} / {b['live']['mean']:.0f}, {b['psi']:.2f}",
                tables.V(s["predicted_class"]["psi"], ".2f"),
                f"{sum(picked)} of {len(picked)} ({share:.0%} of distinct images)",
                f"{first:.1f} / {cached:.1f}",
            ]
        )
        verdicts.append((name, r["verdict"]))
    print()
    for name, v in verdicts:
        print(f"- {name}: {v}")


if __name__ == "__main__":
    main()

"""`imgclf tune` on a real dataset, interrupted and resumed: does the best configuration beat the
default one, are trials pruned, and does a resume repeat nothing?

Makes a class-balanced subset of ../shared/datasets/flowers5.tar.gz (PER_CLASS images per class),
runs `imgclf tune SUBSET --trials 12 --timeout 600`, sends it Ctrl-C (SIGINT) after
--interrupt-after seconds, runs the same command again, and prints what the study holds.

    flock /tmp/imgclf-heavy.lock timeout 2400 .venv/bin/python bench/tune.py [--per-class 80]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import tables  # bench/tables.py: the summary written as CSV

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def subset(archive: Path, root: Path, per_class: int) -> Path:
    with tarfile.open(archive) as tf:
        tf.extractall(root / "full", filter="data")
    src = next((root / "full").iterdir())
    dst = root / f"{src.name}-{per_class}"
    rng = random.Random(0)
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(cls.iterdir())
        rng.shuffle(files)
        (dst / cls.name).mkdir(parents=True)
        for f in files[:per_class]:
            shutil.copy(f, dst / cls.name / f.name)
    return dst


def finished(tune_dir: Path) -> dict[int, tuple]:
    trials = json.loads((tune_dir / "tune.json").read_text())["trials"]
    return {
        r["number"]: (r["value"], tuple(sorted(r["params"].items())))
        for r in trials
        if r["state"] in ("COMPLETE", "PRUNED")
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", type=Path, default=SHARED / "flowers5.tar.gz")
    ap.add_argument("--per-class", type=int, default=80)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--interrupt-after", type=float, default=200)
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgclf-bench-tune-"))
    data = subset(args.archive, work, args.per_class)
    cmd = [
        sys.executable,
        "-m",
        "imgclf.cli",
        "tune",
        str(data),
        "--trials",
        str(args.trials),
        "--timeout",
        str(args.timeout),
        "--out",
        str(work / "tune"),
        "--run-out",
        str(work / "run"),
    ]

    started = time.time()
    first = subprocess.Popen(cmd)
    time.sleep(args.interrupt_after)
    first.send_signal(signal.SIGINT)
    first.wait()
    before = finished(work / "tune")
    resumed = time.time()
    subprocess.run(cmd, check=True)
    ended = time.time()

    t = json.loads((work / "tune" / "tune.json").read_text())
    after = finished(work / "tune")
    params = [p for _, p in after.values()]
    kept = all(after.get(n) == v for n, v in before.items())
    print(
        f"\n{data.name}: {sum(1 for p in data.rglob('*') if p.is_file())} images, {args.trials} trials, "
        f"{args.timeout:g} s budget per command, Ctrl-C after {args.interrupt_after:g} s"
    )
    print(f"  first command: {len(before)} trial(s) finished before Ctrl-C (exit code {first.returncode})")
    print(
        f"  resumed: {len(after) - len(before)} more; finished trials kept their numbers and values: {kept}; "
        f"repeated parameter sets: {len(params) - len(set(params))}"
    )
    print(f"  trials: {t['counts']}")
    print(
        f"  best val_acc {t['best']['value']:.4f} (trial {t['best']['number']}) vs default "
        f"{t['default']['value']:.4f} (trial {t['default']['number']})"
    )
    print(f"  best params: {t['best']['params']}")
    print(f"  retrained run test accuracy: {t.get('run', {}).get('test_accuracy')}")
    print(f"  wall: first command {resumed - started:.0f} s, resume + retrain {ended - resumed:.0f} s")
    # No table is printed: the lines above, as (quantity, value) rows.
    tables.save(
        "summary",
        ["quantity", "value"],
        [
            ("dataset", data.name),
            ("images", sum(1 for p in data.rglob("*") if p.is_file())),
            ("trials", args.trials),
            ("timeout s", args.timeout),
            ("interrupt after s", args.interrupt_after),
            ("finished before Ctrl-C", len(before)),
            ("first exit code", first.returncode),
            ("finished after resume", len(after) - len(before)),
            ("finished trials kept", kept),
            ("repeated parameter sets", len(params) - len(set(params))),
            ("trial counts", json.dumps(t["counts"])),
            ("best val_acc", t["best"]["value"]),
            ("best trial", t["best"]["number"]),
            ("default val_acc", t["default"]["value"]),
            ("default trial", t["default"]["number"]),
            ("best params", json.dumps(t["best"]["params"])),
            ("retrained run test accuracy", t.get("run", {}).get("test_accuracy")),
            ("first command wall s", resumed - started),
            ("resume + retrain wall s", ended - resumed),
        ],
    )


if __name__ == "__main__":
    main()

"""How long the no-flag default trains (not a test): the budgeted default against the fixed-epoch
default it replaced, the linear probe alone and a short explicit budget, on the same split of each
set, in one run.

    python bench/budget.py                                  # orl-lighting-6x, flowers5
    python bench/budget.py --sets orl-faces --recipes default,fixed

Recipes (every one `imgclf train`, run as a user would, as a subprocess; wall seconds are all of it):
  default   no flags: the time budget chosen for the data and machine, a plateau may end it sooner
  fixed     the default before issue 34: `--epochs N`, N = 24,000 images seen / training images (2-15)
  probe     `--time-budget 1s`: the budget is spent before fine-tuning starts, the probe is the model
  2m        `--time-budget 2m`: is a stated budget honoured (within 15 %)?
  budget=T  `--time-budget T` (budget=30s, budget=5m): any other stated budget
  scratch   `--model resnet_fast`: from scratch, with the default budget
  no-faces  `--faces off`: the default without dlib's face embedding on the leaderboard
  faces-on  `--faces on`: the face embedding competes whatever the gate found
  no-texture `--texture off`: the default without the light-normalised texture on the leaderboard
  no-person `--person off`: the default without the pretrained person detector on the leaderboard
  keras     the peer: TensorFlow's image classification tutorial CNN (bench/keras_cnn.py), run by
            `--keras-python` (default: this Python, with `pip install -e '.[bench]'`)
  yolo      the peer: Ultralytics' `yolo classify train` (bench/yolo_cls.py) for the default run's wall
            seconds, by `--yolo-python` (a venv with ultralytics); from scratch unless `--yolo-weights`

The split is the default run's (splits.csv handed to the others as a manifest, `--group-by none`).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import tables  # bench/tables.py: the table written as CSV
from transfer import imgclf_run, unpack

RECIPES = {
    "probe": ("--time-budget", "1s"),
    "2m": ("--time-budget", "2m"),
    "scratch": ("--model", "resnet_fast"),
    "no-faces": ("--faces", "off"),
    "faces-on": ("--faces", "on"),
    "no-texture": ("--texture", "off"),
    "no-person": ("--person", "off"),
    "128px": ("--img-size", "128"),  # the CPU's size before larger photos got more pixels
    "160px": ("--img-size", "160"),
    "224px": ("--img-size", "224"),  # what a GPU's default trains at
}
# Sets whose versions of one photo pHash does not see as copies: the default's split keeps them
# together by name (orl-tail-6x: s1/3_0.png ... s1/3_5.png are six versions of ORL's s1/3.pgm).
GROUPS = {"orl-tail-6x": ("--group-by", r"^([^/]+/\d+)_\d+\.png$")}


def old_epochs(splits: Path) -> int:
    """The fixed CPU fine-tuning epochs of the default before the budget: 24,000 images seen, 2-15."""
    with open(splits, newline="") as f:
        n = sum(row["split"] == "train" for row in csv.DictReader(f))
    return int(min(15, max(2, round(24_000 / max(1, n)))))


def peer_run(script: str, splits: Path, out: Path, python: str, *flags: str) -> dict:
    """A peer's bench script (keras_cnn.py, yolo_cls.py) on the same split, in `python` (one with the
    peer's library); wall seconds all of it."""
    out.mkdir(parents=True, exist_ok=True)
    result = out / f"{Path(script).stem}.json"
    t0 = time.perf_counter()
    subprocess.run(
        [python, str(Path(__file__).with_name(script)), str(splits), "--out", str(result), *flags], check=True
    )
    return {**json.loads(result.read_text()), "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="orl-lighting-6x,flowers5", help="sets bench/transfer.py knows")
    ap.add_argument("--recipes", default="default,fixed,probe,2m")
    ap.add_argument("--work", default="/tmp/imgclf-budget")
    ap.add_argument(
        "--keras-python",
        default=sys.executable,
        help="a Python with TensorFlow for the keras recipe (the bench extra's)",
    )
    ap.add_argument("--yolo-python", default=sys.executable, help="a Python with ultralytics for the yolo recipe")
    ap.add_argument("--yolo-weights", help="yolo11n-cls.pt for the yolo recipe (else it trains from scratch)")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    work, results = Path(args.work), []
    for name in args.sets.split(","):
        data = unpack(name, work)
        default_dir = work / "runs" / f"{name}-default-{int(time.time())}"
        res = {"default": imgclf_run(data, default_dir, *GROUPS.get(name, ()))}
        splits = default_dir / "splits.csv"
        plan = json.loads((default_dir / "model.json").read_text())["training"].get("plan") or {}
        res["default"].update(budget_s=plan.get("budget_s"), ended_by=plan.get("ended_by"))
        for recipe in args.recipes.split(","):
            if recipe == "default":
                continue
            flags = RECIPES.get(recipe) or ("--epochs", str(old_epochs(splits)))
            if recipe.startswith("budget="):  # any stated budget: budget=30s, budget=5m
                flags = ("--time-budget", recipe.split("=", 1)[1])
            out = work / "runs" / f"{name}-{recipe}-{int(time.time())}"
            if recipe == "keras":
                res[recipe] = peer_run("keras_cnn.py", splits, out, args.keras_python)
                continue
            if recipe == "yolo":  # trained for as long as the default's whole run took
                flags = ("--time-s", f"{res['default']['wall_s']:.0f}")
                flags += ("--weights", args.yolo_weights) if args.yolo_weights else ()
                res[recipe] = peer_run("yolo_cls.py", splits, out, args.yolo_python, *flags)
                continue
            res[recipe] = imgclf_run(splits, out, *flags, "--group-by", "none")
            if recipe == "2m":
                res[recipe]["budget_s"] = 120.0
        for recipe, r in res.items():
            results.append({"set": name, "recipe": recipe, **r})
            print(json.dumps(results[-1]), flush=True)
    header = (
        f"{'set':<16} {'recipe':<8} {'test acc':>9} {'macro F1':>9} {'train s':>8} {'wall s':>7} {'budget s':>9}  "
        "ended by / model kept"
    )
    print("\n" + header)
    for r in results:
        print(
            f"{r['set']:<16} {r['recipe']:<8} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f} {r['train_s']:>8.1f} "
            f"{r['wall_s']:>7.1f} {r.get('budget_s') or 0:>9.0f}  {r.get('ended_by') or ''} / {r['model']}"
        )
    keys = ("set", "recipe", "accuracy", "macro_f1", "train_s", "wall_s", "budget_s", "ended_by", "model")
    tables.save("recipes", keys, [[r.get(k) for k in keys] for r in results])


if __name__ == "__main__":
    main()

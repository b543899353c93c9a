"""How should a run's softmax temperature be fitted on its validation split? (not a test)

    python bench/temperature_prior.py RUN [RUN ...] [--csv-dir DIR]

For each finished run folder (its data where its splits.csv says), scores the validation and
test images with the run's own model (its test-time augmentation), then fits the temperature on
the validation logits by each rule below and prints the test log-loss it gives. The rules:

  T=1      no calibration
  plain    the maximum-likelihood T (imgclf's fit until 2026-11-28)
  prior S  the most probable T under a normal prior on log T with spread S (imgclf's fit since,
           S = evaluation.calibration.LOG_T_PRIOR_SD)

Every rule keeps imgclf's guards (fewer than 20 validation images, or all of them named right:
T = 1). A run whose images cannot be read is named and skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tables  # bench/tables.py: the tables also as CSV

SPREADS = (0.25, 0.5, 1.0)


def logits_of(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (logits, labels)} for the run's validation and test rows."""
    import imgclf
    from imgclf.store.runs import read_splits

    model = imgclf.load(run, backend="auto")
    rows = read_splits(run, required=True)  # paths ready to open, wherever the run recorded its data
    out = {}
    for split in ("val", "test"):
        mine = [r for r in rows if r["split"] == split]
        images = np.stack([model.preprocess(r["path"]) for r in mine])
        out[split] = (model.predict_logits(images), np.array([model.classes.index(r["label"]) for r in mine]))
    return out


def main() -> None:
    from imgclf.evaluation.calibration import fit_temperature, nll
    from imgclf.evaluation.scoring import MIN_CALIBRATION_IMAGES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="finished run folders")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    rules = {"T=1": "one", "plain": None, **{f"prior {s}": s for s in SPREADS}}
    print(f"{'run':40} {'val':>4} {'wrong':>5} " + " ".join(f"{k + ': T / test NLL':>24}" for k in rules))
    losses: dict[str, list[float]] = {k: [] for k in rules}
    per_run = []
    for arg in args.runs:
        run = Path(arg)
        try:
            got = logits_of(run)
        except Exception as e:  # noqa: BLE001 - a run this bench cannot rescore is named and skipped
            print(f"{run.name:40} skipped ({type(e).__name__})")
            continue
        (vl, vy), (tl, ty) = got["val"], got["test"]
        wrong = int((vl.argmax(1) != vy).sum())
        guarded = len(vy) < MIN_CALIBRATION_IMAGES or wrong == 0
        cells = []
        for k, spread in rules.items():
            t = 1.0 if guarded or spread == "one" else fit_temperature(vl, vy, prior_sd=spread)
            losses[k].append(nll(tl, ty, t))
            cells.append(f"{t:.2f} / {losses[k][-1]:.4f}")
            per_run.append([str(run), len(vy), wrong, k, round(t, 4), round(losses[k][-1], 4)])
        print(f"{run.name[:40]:40} {len(vy):>4} {wrong:>5} " + " ".join(f"{c:>24}" for c in cells))
    tables.save("runs", ["run", "val images", "val wrong", "rule", "T", "test log-loss"], per_run)
    base = np.array(losses["T=1"])
    print()
    tables.emit(
        "rules",
        ["rule", "mean test log-loss", "mean ratio to T=1", "runs worse than T=1"],
        [
            [
                k,
                tables.V(np.mean(v), ".4f"),
                tables.V(np.mean(np.array(v) / base), ".3f"),
                int((np.array(v) > base + 1e-4).sum()),
            ]
            for k, v in losses.items()
        ],
    )


if __name__ == "__main__":
    main()

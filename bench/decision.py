"""Benchmark: how many validation images does the two-class threshold need? (not a test)

    .venv/bin/python bench/decision.py [--draws 300] [--seed 0]

A calibrated model's scores are simulated (a class-conditional normal feature, the posterior with
the class prior), a validation split of N images is drawn, and the default rule's threshold (best
validation F1, `evaluation.decision.choose_threshold`) is scored by F1 of the positive class on
40,000 new images, against argmax (0.5). Rows: the share of positives and the validation size;
`per class` is the rarer class's expected count. Seconds, no data. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import tables  # bench/tables.py: the table written as CSV

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imgclf.evaluation import decision  # noqa: E402


def sample(rng: np.random.Generator, n: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(positive-class probability, is positive) for n images of a calibrated model."""
    is_pos = rng.random(n) < share
    x = rng.normal(np.where(is_pos, 1.0, -1.0), 1.2)
    logit = 2 * x / 1.44 + np.log(share / (1 - share))
    return 1 / (1 + np.exp(-logit)), is_pos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    decision.MIN_DECISION_PER_CLASS = 0  # measure the rule itself, below the guard too
    print(f"{date.today()} · simulated scores, {args.draws} draws a row\n")
    rows = []
    for share in (0.5, 0.2, 0.1):
        test = sample(rng, 40_000, share)
        argmax = decision.decision_metrics(*test, 0.5)["f1"]
        for n in (10, 20, 40, 100, 200, 400):
            f1 = []
            for _ in range(args.draws):
                val = sample(rng, n, share)
                if val[1].all() or not val[1].any():
                    continue
                t, _ = decision.choose_threshold(*val)
                f1.append(decision.decision_metrics(*test, t)["f1"])
            rows.append(
                [
                    f"{share:.0%}",
                    n,
                    round(n * min(share, 1 - share)),
                    tables.V(argmax, ".3f"),
                    tables.V(float(np.mean(f1)), ".3f"),
                    tables.V(float(np.quantile(f1, 0.1)), ".3f"),
                ]
            )
    tables.emit(
        "threshold",
        ["positives", "validation images", "per class", "argmax F1", "best-F1 threshold: F1", "its worst tenth"],
        rows,
        align=["---"] + ["---:"] * 5,
    )


if __name__ == "__main__":
    main()

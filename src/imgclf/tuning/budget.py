"""What one trial may cost: the default configuration, run for one epoch and timed.

The probe is an ordinary `imgclf.train` of the default configuration (plus the tune's fixed
settings) stopped after its first epoch. It resolves every automatic choice for this data and
machine (image size, batch size, learning rate, epochs, ...), decodes the images into the cache
that every trial then reuses, and times an epoch and the set-up around it. From that, the epochs
range of the search space is sized so that `trials` trials fit in `timeout` seconds.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imgclf.core.errors import UserError

# The top of the epochs range may cost this much more than a trial's share of the time: the
# sampled epochs average ~60 % of the top, and pruning and early stopping end many trials sooner.
STRETCH = 1.5
MIN_TOP = 2


class _FirstEpochDone(Exception):
    pass


@dataclass
class Probe:
    config: dict  # the default configuration as train resolved it (config.yaml)
    n_train: int
    n_val: int
    epoch_seconds: float  # the first epoch, warm-up included: a cautious estimate
    setup_seconds: float  # discovery, cache check, model build: paid again by every trial

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "config"}


def probe(data: str, settings: dict, out: Path) -> Probe:
    """Run the default configuration (with `settings`) for one epoch in `out`, then remove it."""
    import yaml

    from imgclf import workflows
    from imgclf.core.files import read_json

    def stop(epoch: int, row: dict) -> None:
        raise _FirstEpochDone(row)

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    try:
        workflows.train(data, out=out, verbose=False, evaluate=False, on_epoch=stop, **settings)
        raise AssertionError("on_epoch runs after every epoch, so train cannot end without it")
    except _FirstEpochDone as done:
        row = done.args[0]
    total = time.perf_counter() - started
    config = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    totals = read_json(out / "data_report.json")["totals"]
    shutil.rmtree(out, ignore_errors=True)
    if totals.get("val", 0) == 0:
        raise UserError(
            "tuning compares trials on the validation split, and this data has none: "
            "give --val-frac above 0 (or a val/ folder)"
        )
    return Probe(
        config, int(totals["train"]), int(totals["val"]), float(row["seconds"]), max(0.0, total - float(row["seconds"]))
    )


def epochs_range(probe: Probe, trials: int, timeout: float | None, spent: float) -> tuple[int, int, str]:
    """(low, high, reason): high is train's own epochs for this data, lowered to what a trial's
    share of the remaining time affords at the probe's epoch speed; low is a quarter of it."""
    high = int(probe.config["epochs"])
    why = f"train's default for {probe.n_train:,} training images"
    budget = probe.config.get("time_budget")
    if isinstance(budget, (int, float)) and budget > 0:  # a budgeted default's epochs are a cap (200)
        afforded = max(MIN_TOP, round((budget - probe.setup_seconds) / max(probe.epoch_seconds, 1e-3)))
        if afforded < high:
            high = afforded
            why = f"what train's default time budget ({budget:g} s) affords at {probe.epoch_seconds:.1f} s per epoch"
    if timeout:
        share = (timeout - spent) / max(1, trials) - probe.setup_seconds
        affordable = int(STRETCH * share / max(probe.epoch_seconds, 1e-3))
        if affordable < high:
            high = max(MIN_TOP, affordable)
            why = (
                f"{timeout:g} s for {trials} trials at {probe.epoch_seconds:.1f} s per epoch of the default "
                f"model (+{probe.setup_seconds:.1f} s set-up per trial)"
            )
    return max(1, round(high / 4)), high, why

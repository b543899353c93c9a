"""The run folder's commit after an epoch (history.csv, the last and best weights, then the training
state, which a resume trusts), and which epochs are committed.

Every epoch was: on 13 photos, Lite0's 200 epochs of 0.1 s each wrote 66 MB after each (its weights,
their copy as the best, and the weights with AdamW's moments), 0.13 s of every 0.3 s. Now an epoch
is committed when the time since the last commit is at least RATIO times what that commit took, so
writing costs at most about a tenth of the training; and always the last epoch, an early stop, and
every epoch of a run whose caller reads it after each (a tuner's pruning). A killed run resumes from
its last commit and repeats the epochs after it: at most a few seconds' worth, each row once.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from imgclf.core.files import atomic_path
from imgclf.store.checkpoint import save_training_state, save_weights
from imgclf.training.history import write_history

STATE_FILE = "train_state.safetensors"
RATIO = 10


class Commits:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.cost = 0.0  # seconds the last commit took (0: the first epoch is committed)
        self.since = time.monotonic()
        self.best = None  # an improved epoch's shipped weights, not committed yet

    def after_epoch(self, result, model, shipped, opt, ema, improved: bool, info: dict, always: bool) -> None:
        if not (always or time.monotonic() - self.since >= RATIO * self.cost):
            if improved:  # held until the next commit writes it as model.safetensors
                self.best = {k: v.detach().clone() for k, v in shipped.state_dict().items()}
            return
        started = time.monotonic()
        d = self.run_dir
        write_history(d / "history.csv", result.history)
        save_weights(d / "last.safetensors", shipped.state_dict())
        if improved:  # the same bytes: copied, not serialised twice (keep=last makes it every epoch)
            with atomic_path(d / "model.safetensors") as tmp:
                shutil.copyfile(d / "last.safetensors", tmp)
            self.best = None
        self.keep_best()
        save_training_state(d / STATE_FILE, model, opt, info, ema.average if ema else None)
        self.since = time.monotonic()
        self.cost = self.since - started

    def keep_best(self) -> None:
        """The held best weights as model.safetensors now (also before a diverged run stops, whose
        message says that file keeps them)."""
        if self.best is not None:
            save_weights(self.run_dir / "model.safetensors", self.best)
            self.best = None

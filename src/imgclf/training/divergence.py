"""When training blew up (NaN, inf or an exploding loss), and the one line that says what to do."""

from __future__ import annotations

import math
from pathlib import Path

from imgclf.core.errors import UserError

# An epoch's mean training loss over this many times a uniform guess's (ln C) means the weights have
# blown up: logits tens of units apart the wrong way, which no recovering run shows (lr 10 on a tiny
# shapes run: 1.1, 10, 424, ...; a healthy one starts at about ln C and falls).
DIVERGED = 100


class Diverged(UserError):
    """Training blew up (NaN, inf or an exploding loss): the learning rate is too high for the model."""


def diverged(row: dict, n_classes: int, has_val: bool) -> str | None:
    """What says this epoch's training blew up, or None. Checked once an epoch, where the losses are
    read anyway: a check every step would wait for the GPU at every step."""
    loss = row["train_loss"]
    if not math.isfinite(loss):
        return f"the training loss became {loss}"
    if has_val and not math.isfinite(row["val_loss"]):
        return f"the validation loss became {row['val_loss']} (the weights are no longer finite)"
    if loss > DIVERGED * math.log(max(n_classes, 2)):
        return f"the training loss rose to {loss:.3g} (a uniform guess scores {math.log(max(n_classes, 2)):.2f})"
    return None


def diverged_message(why: str, epoch: int, lr: float, run_dir: Path, best_epoch: int | None) -> str:
    kept = (
        f"{run_dir / 'model.safetensors'} keeps the last good weights "
        f"({'the linear probe' if best_epoch == 0 else f'epoch {best_epoch}'}), but the run is unfinished"
        if best_epoch is not None
        else "no model was saved"
    )
    return (
        f"training diverged in epoch {epoch}: {why}. The learning rate is too high for this model and data: "
        f"train again with a lower --lr than {lr:.3g} (e.g. --lr {lr / 10:.3g}); {kept}"
    )

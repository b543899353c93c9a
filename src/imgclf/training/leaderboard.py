"""The leaderboard of a run: the candidates it compared on the user's validation split, and the
one it kept (what model.safetensors holds, so what predict and serve use). Printed after training,
saved as leaderboard.json in the run folder and in model.json, shown in the report.

The candidates are the linear probe (seconds) and the network trained from it (fine-tuning the
upper layers), or one network trained from scratch; and the descriptors with a linear head that
training.candidates races: dlib's face embedding on photos of faces, the light-normalised texture on
greyscale photos.
"""

from __future__ import annotations

from pathlib import Path

from imgclf.core.files import write_json
from imgclf.settings.config import TrainConfig


def record_leaderboard(
    run_dir: Path, cfg: TrainConfig, probe: dict, result, console, others=(), won=None, n_val: int = 0
) -> list[dict]:
    """Build, print and save the leaderboard; returns its rows for model.json."""
    rows = leaderboard(cfg, probe, result, others, won, n_val)
    write_json(run_dir / "leaderboard.json", rows)
    _print_leaderboard(rows, console)
    return rows


def leaderboard(cfg: TrainConfig, probe: dict, result, others=(), won=None, n_val: int = 0) -> list[dict]:
    """The candidates this run compared on its validation split, the kept one first: the linear
    probe and the trained network (fine-tuned from the probe's head, or trained from scratch), and
    `others` (training.candidates.Candidate's) when they competed (`won`: the one that won, if any).
    The kept one is what model.safetensors holds, and so what predict and serve use; its "why" says
    why it ships where another scored higher (`n_val`: the validation images they were scored on)."""
    from imgclf.training.finetune import is_finetune

    arch = cfg.model.removeprefix("timm/")
    key = "val_acc" if result.criterion == "accuracy" else "val_balanced_acc"
    rows = []
    if probe:
        rows.append(
            {
                "candidate": "linear probe",
                "what": f"logistic regression (C={probe.get('C')}) on frozen {arch} features{_sample(probe)}",
                "val_acc": probe.get("val_acc"),
                "val_balanced_acc": probe.get("val_balanced_acc"),
                "seconds": probe.get("seconds"),
                "best_epoch": 0,
                "kept": result.best_epoch == 0 and won is None,
            }
        )
    ran = result.history
    if ran:
        # The kept epoch; when the probe was kept, the trained network's best epoch all the same.
        top = next((r for r in ran if r["epoch"] == result.best_epoch), None) or max(ran, key=lambda r: r[key])
        name = "from scratch"
        if is_finetune(cfg):
            name = "fine-tune upper layers" if cfg.freeze_stride else "fine-tune"
        rows.append(
            {
                "candidate": name,
                "what": f"{arch}, {len(ran)} epochs at {cfg.img_size}px" + (", from the probe's head" if probe else ""),
                "val_acc": top["val_acc"],
                "val_balanced_acc": top["val_balanced_acc"],
                "seconds": round(sum(float(r["seconds"]) for r in ran), 2),
                "best_epoch": int(top["epoch"]),
                "kept": (result.best_epoch > 0 or not probe) and won is None,
            }
        )
    for c in others:
        rows.append(
            {
                "candidate": c.name,
                "what": f"logistic regression (C={c.row.get('C')}) on {c.on}{_sample(c.row)}",
                "val_acc": c.row["val_acc"],
                "val_balanced_acc": c.row["val_balanced_acc"],
                "seconds": c.row["seconds"],
                "best_epoch": 0,
                "kept": c is won,
            }
        )
    rows = sorted(rows, key=lambda r: not r["kept"])
    if why := _kept_below(rows, key, cfg, n_val):
        rows[0]["why"] = why
    return rows


def _kept_below(rows: list[dict], key: str, cfg: TrainConfig, n_val: int) -> str | None:
    """Why the kept candidate ships though another scored higher on validation (keep=last's fine-tune
    against the probe: ProbeGuard), or None: a table whose kept row is not its top reads as a mistake."""
    # Only the trained network (best_epoch > 0) ships below the probe: another candidate wins only
    # by beating the network, and one the probe leads is not the ProbeGuard's to explain.
    if not rows or not rows[0]["kept"] or rows[0]["best_epoch"] == 0 or cfg.keep != "last" or not n_val:
        return None
    top = next((r for r in rows[1:] if r["candidate"] == "linear probe"), None)
    if top is None or not top[key] > rows[0][key]:
        return None
    if key == "val_acc":
        ahead = f"named {round((top[key] - rows[0][key]) * n_val)} more of the {n_val} validation images"
    else:
        ahead = f"scored {top[key] - rows[0][key]:.3f} more balanced accuracy on the {n_val} validation images"
    return (
        f"kept though the linear probe {ahead}: too few to rank them (keep=last); the probe ships "
        f"instead only when it leads by {CLEAR_SHARE:.0%} of them and {CLEAR_IMAGES} images, and fine-tuning "
        "failed to fit its own training images"
    )


def _sample(row: dict) -> str:
    """', fitted on 3,160 of 45,000 training images (the time budget)' where a budget cut it short."""
    n, of = row.get("training_images"), row.get("training_images_of")
    return f", fitted on {n:,} of {of:,} training images (the time budget)" if n and of and n < of else ""


def _print_leaderboard(rows: list[dict], console) -> None:
    if len(rows) < 2:
        return
    console.print("leaderboard (validation split):")
    for r in rows:
        console.print(
            f"  {'*' if r['kept'] else ' '} {r['candidate']:<24} val acc {r['val_acc']:.4f}  balanced "
            f"{r['val_balanced_acc']:.4f}  {r['seconds']:7.1f}s  {r['what']}"
        )
    console.print("  * kept: model.safetensors (what predict and serve use); leaderboard.json has the table")
    if rows[0].get("why"):
        console.print(f"  {rows[0]['why']}")


# ---- keep=last's safety net ----
# keep=last ships the last, cooled-down epoch without ranking epochs on a validation split too small
# to rank them (training.budget.SMALL_VAL): on average it beat the plateau's pick by 4 points. Still, a
# fine-tune that failed (diverged: a 48-photo set's second epoch at a training loss of 7.3, val 0.50
# against the probe's 1.00) is not noise: the probe, a whole model already, ships instead when it
# names CLEAR_SHARE of the validation images more than the last epoch, and at least CLEAR_IMAGES, and
# the last epoch did not even fit its training images as well as the probe names validation ones. A
# fine-tune that fits them and loses 3 of 10 validation photos is a small split's noise: flowers, 20
# a class, 500 test photos: the probe put back 0.580, the fine-tune shipped 0.644.
CLEAR_SHARE = 0.15
CLEAR_IMAGES = 3
PROBE_WEIGHTS = "probe.safetensors"  # the probe's weights while keep=last overwrites model.safetensors


class ProbeGuard:
    """Before the epochs, copy the probe's weights aside (keep=last only: its epochs overwrite
    model.safetensors); after them, put the probe back if the last epoch clearly lost to it."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, baseline: tuple[float, float] | None):
        import shutil

        from imgclf.training import distributed as dist

        self.file = run_dir / PROBE_WEIGHTS
        self.baseline = baseline if cfg.keep == "last" and dist.is_main() else None
        if self.baseline is not None and not self.file.is_file():  # a resumed run copied it already
            from imgclf.core.files import atomic_path

            with atomic_path(self.file) as tmp:
                shutil.copyfile(run_dir / "model.safetensors", tmp)

    def after(self, result, net, n_val: int, console):
        """The network to ship: `net`, or the probe put back (model.safetensors too, `result` saying
        the probe was kept)."""
        if self.baseline is None:
            return net
        probe_score, probe_loss = self.baseline
        lost = probe_score - result.best_val_acc
        fitted = result.history[-1].get("train_acc", 0.0) if result.history else 0.0
        failed = fitted < probe_score  # its own training images (augmented) named worse than the probe's val
        if result.best_epoch > 0 and lost >= CLEAR_SHARE and lost * n_val >= CLEAR_IMAGES - 1e-9 and failed:
            import shutil

            from imgclf.core.files import atomic_path
            from imgclf.store.checkpoint import load_weights

            with atomic_path(self.file.with_name("model.safetensors")) as tmp:
                shutil.copyfile(self.file, tmp)
            net.load_state_dict(load_weights(self.file))
            console.print(
                f"  the last epoch's val {result.criterion} {result.best_val_acc:.4f} is far below the linear "
                f"probe's {probe_score:.4f} ({round(lost * n_val)} of {n_val} images), and it named only {fitted:.4f} "
                "of its training images: fine-tuning failed, the probe ships"
            )
            result.best_epoch, result.best_val_acc, result.best_val_loss = 0, probe_score, probe_loss
        self.file.unlink(missing_ok=True)
        return net

"""The API for keeping a deployed model good: compare two runs, monitor live traffic, update
with new images; the feedback inbox and the registry (re-exported from imgclf.lifecycle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgclf.core.errors import UserError
from imgclf.lifecycle.feedback import feedback_import, feedback_summary  # noqa: F401
from imgclf.lifecycle.releases import (  # noqa: F401
    registry_add,
    registry_promote,
    registry_rollback,
    registry_show,
    registry_versions,
)
from imgclf.settings.improve import ALPHA, LR_FACTOR, TOLERANCE, TOP, CompareSettings

# A trained run as the functions take it: its folder (or REGISTRY/ALIAS), a Run, or a loaded model.
RunLike = "str | Path | Run | Model"


def compare(
    a: RunLike,
    b: RunLike,
    data: str | Path | None = None,
    tolerance: float = TOLERANCE,
    alpha: float = ALPHA,
    n_boot: int = 1000,
    seed: int = 0,
    rule: dict | None = None,
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
) -> dict:
    """Champion/challenger: run A and run B on A's frozen test split (and on `data`, new labeled images):
    accuracy with paired bootstrap CIs, McNemar's test, per-class recall, ECE, the images whose
    prediction changed, and a verdict {promote, reasons, paragraph}. Writes B/compare-<A>.json (or `out`).
    `data_root`: where A's data folder is now, when it moved since A was trained. The settings are
    settings.improve.CompareSettings' (checked as declared); `rule` may add the promotion rule's
    min_diff and min_discordant (lifecycle.compare.DEFAULT_RULE).

        imgclf.compare("registry/production", "runs/photos-7")["verdict"]["promote"]
    """
    from imgclf.lifecycle.compare import compare as run_compare

    data = CompareSettings(data=data).data  # checked as declared; the others by the comparison
    return run_compare(
        a, b, data, rule=rule, tolerance=tolerance, alpha=alpha, n_boot=n_boot, seed=seed, out=out, data_root=data_root
    )


def monitor(
    ref: str | Path | int,
    log: str | Path,
    *,
    out: str | Path | None = None,
    registry: str | Path | None = None,
    top: int = TOP,
    since: str | None = None,
    low_confidence: float | None = None,
    device: str = "auto",
    verbose: bool = True,
    data_root: str | Path | None = None,
) -> dict:
    """Compare the service's prediction log (`imgclf serve --log-predictions DIR`) with the run's frozen
    test split: predicted classes, confidence, low-confidence and 'unknown' rates, brightness, size and
    colour mode (PSI + two-sample tests), a plain-words verdict, and the least confident logged images
    to label next. Writes OUT/monitor.json, monitor.html, to_label.csv and to_label/ (OUT defaults to
    monitors/<run name>). `ref`: run folder, REGISTRY/ALIAS, or a version/alias with `registry`.
    `data_root`: where the run's data folder is now, when it moved since training. The settings are
    settings.improve.MonitorSettings' (checked as declared).

        imgclf.monitor("registry/production", "logs/")["verdict"]   # 'No drift: 412 logged predictions ...'
    """
    from imgclf.lifecycle.monitor import monitor as run_monitor

    return run_monitor(
        ref,
        log,
        out=out,
        registry=registry,
        top=top,
        since=since,
        low_confidence=low_confidence,
        device=device,
        verbose=verbose,
        data_root=data_root,
    )


def update(
    ref: str | Path | int,
    new_data: str | Path | None = None,
    *,
    registry: str | Path = "registry",
    from_inbox: bool | str | Path = False,
    inbox: str | Path | None = None,
    mode: str = "finetune",
    promote: bool = False,
    epochs: int | None = None,
    lr_factor: float = LR_FACTOR,
    tolerance: float = TOLERANCE,
    out: str | Path | None = None,
    verbose: bool = True,
    data_root: str | Path | None = None,
    **options: Any,
) -> dict:
    """Retrain a registry version (number or alias; or a run folder) on its recorded data plus new
    labeled images (`new_data`, or the feedback inbox with from_inbox=True: the `inbox` folder, else
    REGISTRY/inbox; from_inbox may also name the folder): its test split stays frozen, new classes
    grow the head, `finetune` warm-starts with replay of the old data, `full` retrains from scratch.
    The result is registered as version `candidate`, compared with the parent on the frozen test split
    and the new test slice, and promoted only when `promote` and the rule passes. `data_root`: where
    the version's recorded data is now, when it moved since registration. Other keywords: replay,
    seed, doctor, mlflow (settings.improve.UpdateSettings, each checked as declared), or TrainConfig
    settings. See imgclf.lifecycle.update.

        r = imgclf.update("production", "new_photos/", promote=True)
        r["version"], r["verdict"]["paragraph"], r["promoted"]
    """
    from imgclf.lifecycle.update import update as run_update

    if not isinstance(from_inbox, bool) and from_inbox is not None:  # from_inbox="feedback/": that inbox
        if inbox is not None and str(inbox) != str(from_inbox):
            raise UserError(f"two inboxes ({from_inbox} and inbox={inbox}): give one")
        from_inbox, inbox = True, from_inbox
    return run_update(
        ref,
        new_data,
        registry=registry,
        from_inbox=from_inbox,
        inbox=inbox,
        mode=mode,
        promote=promote,
        epochs=epochs,
        lr_factor=lr_factor,
        tolerance=tolerance,
        out=out,
        verbose=verbose,
        data_root=data_root,
        **options,
    )

"""Every setting of `imgclf compare`, `imgclf monitor`, `imgclf update`, `imgclf registry` and
`imgclf feedback` (keeping a deployed model good), declared once (settings.declare) as TuneSettings' are: their options (cli.app.with_settings),
the checks imgclf.compare, imgclf.monitor, imgclf.update and the registry and feedback functions
hold their keywords to, and the docs'
reference (docs/settings.md) are all made from here.

A refusal names the option as the command line spells it, whichever way the value came in:

    >>> MonitorSettings(log="logs/", low_confidence=float("nan"))
    UserError: --low-confidence must be a number in [0, 1], not nan
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgclf.core.errors import UserError
from imgclf.settings.checks import Choice, Flag, Number, PathSetting, Text
from imgclf.settings.config import DEVICE_HELP, NUMBERS
from imgclf.settings.declare import REQUIRED, Declared, setting

MODES = ("finetune", "full")  # lifecycle.update: warm start + replay of the old data, or from scratch
# finetune: the version's learning rate x LR_FACTOR for its full epochs (a warm restart). Measured on
# flowers5 (bench/update.py, 3 classes + 2): 0.5x for half the epochs left v2 under-trained (new classes
# 65%, five-class 64%); 1.0x for half 72% / 69%; 1.0x for all 79% / 72%, as good as retraining from
# scratch (76% / 73%). The old classes' frozen test images scored 62-63% five-way in all three.
LR_FACTOR = 1.0
TOLERANCE = 0.02  # the promotion rule's default: a class may lose 2 points of recall (one image always)
ALPHA = 0.05  # McNemar's test's significance level
TOP = 50  # monitor: logged images listed for labelling

# The promotion rule's numbers, as compare and update both take them: a NaN tolerance would pass any
# drop in recall, and an alpha of 0 or 1 makes McNemar's test always or never significant.
TOLERANCE_RULE = Number(float, 0, 1)
TOLERANCE_HELP = "Largest allowed drop in any class's recall (one image is allowed unless 0).  [default: 0.02]"
ALPHA_RULE = Number(float, 0, 1, low_open=True, high_open=True)
MOVED_HELP = (
    "Where the run's data folder is now, when it moved since training [default: the folder recorded in the run]"
)
# --data too: the older spelling; compare's --data is its new data, so --data-root is the one name that
# means a moved data folder everywhere.
MOVED_FLAG = "--data-root, --data"
MLFLOW_HELP = (
    "MLflow tracking URI to mirror this to (pip install 'imgclf[mlflow]')  [default: $MLFLOW_TRACKING_URI, else none]"
)


def moved_setting(help: str = MOVED_HELP, flag: str | None = MOVED_FLAG):
    return setting(None, help, PathSetting(optional=True), flag=flag)


def mlflow_setting():
    return setting(None, MLFLOW_HELP, Text(optional=True), envvar="MLFLOW_TRACKING_URI")


@dataclass
class CompareSettings(Declared):
    WHAT = "compare setting"

    data: str | None = setting(
        None, "The same as DATA: labeled new images, a second slice to compare on.", PathSetting(optional=True)
    )
    tolerance: float = setting(TOLERANCE, TOLERANCE_HELP, TOLERANCE_RULE)
    alpha: float = setting(ALPHA, "Significance level of McNemar's test.  [default: 0.05]", ALPHA_RULE)
    out: str | None = setting(
        None, "JSON file to write  [default: B/compare-<A name>.json]", PathSetting(optional=True)
    )
    data_root: str | None = moved_setting(
        "Where A's data folder is now, when it moved since A was trained [default: the folder recorded in A]",
        "--data-root",  # compare's --data is its new data
    )
    n_boot: int = setting(
        1000,
        "Paired bootstrap resamples behind each accuracy's confidence interval.",
        Number(int, 1, 1_000_000),
        cli=False,
    )
    seed: int = setting(0, "Seed of the bootstrap resamples.", NUMBERS["seed"], cli=False)


@dataclass
class MonitorSettings(Declared):
    WHAT = "monitor setting"

    log: str = setting(
        REQUIRED,
        "The prediction log: the folder given to imgclf serve --log-predictions, or one predictions*.jsonl in it.",
        PathSetting(),
    )
    out: str | None = setting(None, "Output folder  [default: monitors/<run name>]", PathSetting(optional=True))
    registry: str | None = setting(
        None, "Registry folder, for RUN given as a version or alias.", PathSetting(optional=True)
    )
    top: int = setting(
        TOP,
        "How many logged images to list for labelling, least confident first (0: none).  [default: 50]",
        Number(int, 0, 1_000_000),
    )
    since: str | None = setting(
        None, "Only predictions at or after this ISO time (UTC), e.g. 2026-11-23.", Text(optional=True)
    )
    low_confidence: float | None = setting(
        None,
        "Confidence below which an answer counts as low "
        "[default: the run's rejection threshold, else 0.5; 0.75 for 2 classes]",
        Number(float, 0, 1, optional=True),
    )
    device: str = setting("auto", DEVICE_HELP, Text())
    data_root: str | None = moved_setting()


@dataclass
class UpdateSettings(Declared):
    WHAT = "update setting"

    from_inbox: bool = setting(False, "Learn from the feedback inbox instead of NEW_DATA.", Flag(), flag="--from-inbox")
    inbox: str | None = setting(
        None,
        "The inbox folder to learn from (--from-inbox implied) [default: where imgclf serve puts it: REGISTRY/inbox; "
        "for PROJECT/runs/x, PROJECT/inbox; else ./inbox]",
        PathSetting(optional=True),
    )
    mode: str = setting(
        "finetune",
        "finetune (warm start + replay of old data) | full (from scratch)  [default: finetune]",
        Choice(MODES),
    )
    registry: str = setting("registry", "Registry folder.  [default: registry]", PathSetting())
    epochs: int | None = setting(None, "[default: the version's]", NUMBERS["epochs"])
    lr_factor: float = setting(
        LR_FACTOR,
        "finetune: learning rate = the version's x this (a warm restart)  [default: 1.0]",
        Number(float, 0, 1, low_open=True),
    )
    replay: int | None = setting(
        None,
        "finetune: most old training images replayed [default: max(1000, 2 x the new ones); a class-balanced "
        "sample above]",
        Number(int, 0, 10**9, optional=True),
    )
    promote: bool = setting(False, "Promote the candidate when the promotion rule passes.", Flag(), flag="--promote")
    tolerance: float = setting(TOLERANCE, TOLERANCE_HELP, TOLERANCE_RULE)
    out: str | None = setting(None, "Run folder  [default: runs/<parent>-update-<n>]", PathSetting(optional=True))
    seed: int = setting(0, "Seed of the new images' split and of the replay sample.  [default: 0]", NUMBERS["seed"])
    mlflow: str | None = mlflow_setting()
    data_root: str | None = moved_setting(
        "Where VERSION's recorded data folder is now, when it moved since it was registered "
        "[default: the recorded folder]"
    )
    doctor: bool = setting(
        True, "Check the new images against the old (duplicates, leakage) before training.", Flag(), cli=False
    )


class VersionRef:
    """A registry version: its number (3, "3", "v3") or an alias ("production"); None where optional."""

    def check(self, name: str, v: Any):
        if v is None or (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.strip()):
            return v
        raise UserError(f"{name} must be a version number or an alias (e.g. 3 or production), not {v!r}")


def registry_setting():
    return setting("registry", "Registry folder.  [default: registry]", PathSetting())


@dataclass
class RegistryAddSettings(Declared):
    WHAT = "registry setting"

    registry: str = registry_setting()
    parent: str | int | None = setting(None, "Version or alias this run was derived from.", VersionRef())
    alias: str | None = setting(
        None, "Also point this alias at it: candidate | production", Text(optional=True), flag="--as"
    )
    mlflow: str | None = mlflow_setting()
    data_root: str | None = moved_setting()


@dataclass
class RegistryAliasSettings(Declared):
    """promote and rollback (and list, show: --registry only)."""

    WHAT = "registry setting"

    alias: str = setting(
        "production",
        "The alias to point at the version (promote) or to move back (rollback).  [default: production]",
        Text(),
    )
    registry: str = registry_setting()
    mlflow: str | None = mlflow_setting()


@dataclass
class FeedbackSettings(Declared):
    """feedback import (inbox, registry, who) and feedback list (inbox, registry, format)."""

    WHAT = "feedback setting"

    # blank=True: an empty value is refused by the inbox's own check ("--inbox is empty; give a folder")
    inbox: str | None = setting(
        None,
        "Inbox folder [default: REGISTRY/inbox, else ./inbox]",
        PathSetting(optional=True, blank=True),
        flag="--inbox",
    )
    registry: str | None = setting(
        None,
        "Registry whose production model the feedback is about [default: ./registry when there is one]",
        PathSetting(optional=True, blank=True),
    )
    who: str | None = setting(None, "Recorded as who gave the labels [default: your login name]", Text(optional=True))
    format: str = setting("table", "table | json  [default: table]", Choice(("table", "json")))

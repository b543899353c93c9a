"""Every setting of the commands that examine data or a trained run: `imgclf check` (the data
doctor), `imgclf evaluate` (a model scored on labelled photos), `imgclf explain` (where it looked),
`imgclf report`, and `imgclf ensemble` (runs combined and scored), declared once (settings.declare)
as TuneSettings' are: their options (cli.app.with_settings), the checks the Python API holds their
keywords to, and the docs' reference (docs/settings.md) are all made from here. check's split
settings are train's own (val_frac, test_frac, seed, group_by: settings.config), so that it finds
the leakage of the split train makes; ensemble's rejection targets and device are train's too.

    >>> CheckSettings(near_distance=40)
    UserError: --near-distance must be pHash bits from 0 to 16, not 40
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.settings.checks import EXPLAIN_METHODS, TTA_MODES, Choice, Flag, Number, PathSetting, Text
from imgclf.settings.config import DEVICE_HELP
from imgclf.settings.declare import REQUIRED, Declared, setting
from imgclf.settings.improve import MOVED_HELP, moved_setting
from imgclf.settings.predict import TTA_HELP

# data.phash's NEAR_DISTANCE and MAX_DISTANCE (held equal by tests/settings/test_declared_once.py):
# settings sit above data in the stages, and phash carries numpy, which no command's start may import.
NEAR_DISTANCE, MAX_DISTANCE = 6, 16


@dataclass
class CheckSettings(Declared):
    WHAT = "check setting"

    json_path: str | None = setting(
        None, "Write every finding to this JSON file.", PathSetting(optional=True), flag="--json"
    )
    near_distance: int | None = setting(
        None,
        f"pHash bits within which a pair is a near-duplicate candidate (then checked on thumbnails) "
        f"[default: {NEAR_DISTANCE}]",
        Number(int, 0, MAX_DISTANCE, optional=True, says=f"pHash bits from 0 to {MAX_DISTANCE}"),
    )
    labels: bool = setting(
        False,
        "Also find images whose label is probably wrong "
        "(k-fold cross-validation + confident learning; minutes, it trains k small models).",
        Flag(),
        flag="--labels",
    )
    folds: int = setting(
        5, "--labels: cross-validation folds.  [default: 5]", Number(int, 2, 1000, says="a whole number, at least 2")
    )
    run: str | None = setting(
        None,
        "--labels: write label_issues.json into this run folder and rebuild its report.html, which shows the suspects.",
        PathSetting(optional=True),
    )
    device: str = setting("auto", f"--labels: {DEVICE_HELP}", Text())


@dataclass
class EvaluateSettings(Declared):
    WHAT = "evaluate setting"

    device: str = setting("auto", DEVICE_HELP, Text())
    tta: str | None = setting(None, f"A classifier run: {TTA_HELP}", Choice((None, *TTA_MODES)))
    data_root: str | None = moved_setting(MOVED_HELP + "; for its own test split, not DATA")
    out: str | None = setting(
        None,
        "Folder for the report.html, metrics.json and every answer as CSV [default: RUN/evaluations/<DATA's "
        "name>; evaluations/<name>-on-<DATA's name> for the pretrained detector or a gallery]",
        PathSetting(optional=True),
    )


@dataclass
class ExplainSettings(Declared):
    WHAT = "explain setting"

    target: str | None = setting(
        None, "Explain this class [default: the answered class]", Text(optional=True), flag="--class"
    )
    method: str = setting("gradcam", " | ".join(EXPLAIN_METHODS) + "  [default: gradcam]", Choice(EXPLAIN_METHODS))
    # The command writes the overlays by default, the Python API only when asked (it returns the heatmaps).
    out: str | None = setting(
        None,
        "Folder for the overlay PNGs [default: explanations; from Python, none written]",
        PathSetting(optional=True),
    )
    device: str = setting("auto", DEVICE_HELP, Text())


@dataclass
class ReportSettings(Declared):
    WHAT = "report setting"

    device: str = setting("auto", DEVICE_HELP, Text())
    data_root: str | None = moved_setting(MOVED_HELP)


@dataclass
class EnsembleSettings(Declared):
    WHAT = "ensemble setting"

    out: str = setting(REQUIRED, "Bundle folder to write.", PathSetting())

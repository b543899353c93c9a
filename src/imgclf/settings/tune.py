"""Every setting of `imgclf tune` (the study itself; the training settings its trials share are
TrainConfig's), declared once (settings.declare) as PredictSettings' are: `imgclf tune`'s options
(cli.app.with_settings), the checks imgclf.tune holds its keywords to, and the docs' reference
(docs/settings.md) are all made from here.

A refusal names the option as the command line spells it, whichever way the value came in:

    >>> TuneSettings(timeout=float("nan"))
    UserError: --timeout must be a positive number of seconds, at most 7 days, not nan
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.settings.checks import Choice, Flag, Number, PathSetting, Text
from imgclf.settings.declare import Declared, ray_setting, setting

PRUNERS = ("median", "hyperband", "none")  # tuning.study.make_pruner


@dataclass
class TuneSettings(Declared):
    WHAT = "tune setting"

    trials: int = setting(
        20,
        "Trials in the study in total (finished ones count; a re-run resumes).  [default: 20]",
        Number(int, 1, 100_000),
    )
    timeout: float | None = setting(
        None,
        "Seconds for this tune; sizes the epochs per trial too  [default: none, the trials decide]",
        Number(float, 0, 7 * 86400, low_open=True, optional=True, says="a positive number of seconds, at most 7 days"),
    )
    space: str | None = setting(None, "YAML file overriding the default search space.", PathSetting(optional=True))
    storage: str | None = setting(
        None,
        "Study storage: a journal file path (a folder: its study.journal) or a database URL (sqlite:///t.db, "
        "postgresql://...); workers given the same one share the study  [default: TUNE/study.journal]",
        Text(optional=True),
    )
    study_name: str | None = setting(None, "[default: the dataset folder's name]", Text(optional=True))
    pruner: str = setting("median", "median | hyperband | none  [default: median]", Choice(PRUNERS))
    out: str | None = setting(
        None, "Tune folder  [default: tunes/<dataset>-<n>, reused by the same command]", PathSetting(optional=True)
    )
    run_out: str | None = setting(
        None, "Run folder for the retrained best  [default: runs/<dataset>-<n>]", PathSetting(optional=True)
    )
    seed: int = setting(
        0, "Sampler seed and the training seed (the split) of every trial.  [default: 0]", Number(int, 0, 2**32 - 1)
    )
    device: str | None = setting(
        None, "auto | cpu | cuda | cuda:N | mps (this worker's own)  [default: auto]", Text(optional=True)
    )
    retrain: bool = setting(
        True,
        "Do not retrain the best configuration into a run folder: the study only.",
        Flag(),
        flag="--no-retrain",
    )
    ray: str | None = ray_setting(
        "Run trials as Ray tasks, one per GPU (else CPU) of the cluster, sharing --storage (pip install "
        "'imgclf[ray]'): ray://HOST:10001, HOST:6379; bare --ray: $RAY_ADDRESS, else this machine"
    )


@dataclass
class LrFindSettings(Declared):
    """`imgclf lr-find`'s own settings (the learning-rate range test: a search for one setting, as a
    study is for many); the data, model and batch it uses are TrainConfig's. That start_lr lies
    below end_lr is checked where both are known (training.lr_find)."""

    WHAT = "lr-find setting"

    steps: int = setting(
        100, "Training steps over the range.  [default: 100]", Number(int, 10, 100_000, says="at least 10 steps")
    )
    start_lr: float = setting(1e-7, "The first learning rate.  [default: 1e-07]", Number(float, 0, 10, low_open=True))
    end_lr: float = setting(10.0, "The last learning rate.  [default: 10]", Number(float, 0, 1000, low_open=True))
    out: str | None = setting(
        None,
        "Folder for lr_find.json and lr_find.png [default: runs/<dataset>-lr-find-<n>]",
        PathSetting(optional=True),
    )

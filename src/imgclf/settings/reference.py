"""docs/settings.md, the reference of every setting a command declares (training, tune, scan,
predict, faces, serve, export, check, evaluate, explain, report, ensemble, compare, monitor, update,
registry, feedback, models, demo),
made from the declarations in settings.config, settings.job, settings.tune, settings.scan,
settings.predict, settings.faces, settings.serve, settings.export, settings.examine and
settings.improve (a test keeps the page equal to what this prints):

    python -m imgclf.settings.reference > docs/settings.md
"""

from __future__ import annotations

import dataclasses
import typing

from imgclf.settings.config import TrainConfig
from imgclf.settings.declare import REQUIRED, declared
from imgclf.settings.examine import CheckSettings, EnsembleSettings, EvaluateSettings, ExplainSettings, ReportSettings
from imgclf.settings.export import ExportSettings
from imgclf.settings.faces import EnrolSettings, IdentifySettings
from imgclf.settings.improve import (
    CompareSettings,
    FeedbackSettings,
    MonitorSettings,
    RegistryAddSettings,
    RegistryAliasSettings,
    UpdateSettings,
)
from imgclf.settings.job import DemoSettings, ModelsSettings, TrainJobSettings
from imgclf.settings.predict import PredictSettings
from imgclf.settings.scan import NegativesSettings, ScanJobSettings, ScanSettings
from imgclf.settings.serve import ServeJobSettings, ServeSettings
from imgclf.settings.tune import LrFindSettings, TuneSettings

HEAD = """# Training settings

Every setting of `imgclf train` (and `lr-find`), as declared once in
`src/imgclf/settings/config.py`: the command line's options, the checks of flags, `config.yaml`
(`imgclf train DATA --config settings.yaml`) and the Python API's keywords
(`imgclf.train(DATA, img_size=128)`) all come from these declarations. *auto* (or an empty
default, –) means chosen from the data and the machine; the value chosen is printed and written
to the run's `config.yaml`. This page is generated: `python -m imgclf.settings.reference > docs/settings.md`.

"""
JOB = """
## How the training job runs

`imgclf train`'s options that are not training settings (`src/imgclf/settings/job.py`): a config
file, a run to resume, MLflow, DDP workers and the Ray cluster. The Python API takes them as
`imgclf.train` keywords; a config file cannot set them, and config.yaml does not record them.

"""
TUNE = """
# Tune settings

Every setting of `imgclf tune` itself, as declared once in `src/imgclf/settings/tune.py`: the
command line's options and the checks `imgclf.tune(DATA, trials=12, timeout=600)` holds its
keywords to come from these declarations. The Python API also takes training settings every trial
shares (`imgclf.tune(DATA, img_size=96)`, the settings above); what the trials search is the space
file's ([Tuning](tuning.md)).

"""
LR_FIND = """
## lr-find

`imgclf lr-find`'s own settings (the learning-rate range test), declared in the same file; it also
takes `--model`, `--weights`, `--pretrained`, `--img-size`, `--batch-size`, `--optimizer` and
`--device` of the first table.

"""
MODELS = """
# Models and demo settings

`imgclf models` (which architectures, their size and cost) and `imgclf demo`, declared in
`src/imgclf/settings/job.py`.

## models

"""
DEMO = """
## demo

"""
SCAN = """
# Scan settings

Every setting of `imgclf scan`, as declared once in `src/imgclf/settings/scan.py`: the command
line's options, the Python API's keywords (`imgclf.scan(run, photos, min_size=40)`,
`imgclf.scanning.scan(model, photos, ...)`) and the checks the scanner, the detector and the
service's `POST /scan` hold a value to all come from these declarations. A refusal names the option
as the command line spells it (`--min-size`), whichever way the value came in.

## What finds, where the answers go

`imgclf scan`'s detector, output folders and engine (`ScanJobSettings`); `--no-verifier` is
`verify=False`'s spelling on the command line.

"""
SCAN_HOW = """
## How the photos are scanned

"""
NEGATIVES = """
## negatives

`imgclf negatives` (`imgclf.negatives`): random windows of person-free photos, the negative class of a
crop model.

"""
PREDICT = """
# Predict settings

Every setting of `imgclf predict` (images, a video, a Ray cluster), as declared once in
`src/imgclf/settings/predict.py`: the command line's options and the checks
`imgclf.predict_folder`, `imgclf.predict_video` (`every`, `smooth`, `max_seconds`) and
`imgclf.predict_on_ray` (`shard_size`; `format` is `--shard-format`) hold a value to all come from
these declarations (`--format` and `--device` are the command's: `imgclf.load(run, device)` takes the
device). A refusal names the option as the command line spells it (`--every`),
whichever way the value came in.

"""
FACES = """
# Faces settings

Every setting of `imgclf faces enrol` (and `add`: `--keep-photos`, `--backend`) and
`imgclf faces identify`, as declared once in `src/imgclf/settings/faces.py`: the command line's
options and the checks `imgclf.faces.enrol`, `add`, `identify` and `FaceModel` hold a value to all
come from these declarations. A refusal names the option as the command line spells it (`--far`),
whichever way the value came in.

## enrol, add

"""
FACES_IDENTIFY = """
## identify

"""
SERVE = """
# Service settings

Every setting of `imgclf serve` (and `imgclf.serve(run, **settings)`, `ServeSettings(...)`), as
declared once in `src/imgclf/settings/serve.py`: its options and their checks come from these
declarations; "Python only" ones are for `imgclf.serve` and `ServeSettings`.

## What it serves, where it listens

`ServeJobSettings`: checked before the model loads.

"""
SERVE_LIMITS = """
## Limits, logging and access

"""
EXPORT = """
# Export settings

Every setting of `imgclf export`, as declared once in `src/imgclf/settings/export.py`: the command
line's options and the checks `imgclf.export(run, int8=True, max_loss=2)` holds its keywords to come
from these declarations. The opsets the installed torch and onnx can export are checked when the
export starts. See [Deployment](deployment.md).

"""
IMPROVE = """
# Compare, monitor, update, registry and feedback settings

Every setting of `imgclf compare`, `imgclf monitor`, `imgclf update`, `imgclf registry` and
`imgclf feedback` (keeping a deployed model good: [Improving a model](improvement.md)), as declared
once in `src/imgclf/settings/improve.py`: the command line's options and the checks
`imgclf.compare`, `imgclf.monitor`, `imgclf.update`, `imgclf.registry_add` (and promote,
rollback) and `imgclf.feedback_import` (and `feedback_summary`) hold their keywords to come from
these declarations. `imgclf.update` also takes training settings
for the new run (the first table). A refusal names the option as the command line spells it
(`--tolerance`), whichever way the value came in.

## compare

"""
MONITOR = """
## monitor

"""
UPDATE = """
## update

"""
REGISTRY = """
## registry add

"""
REGISTRY_ALIAS = """
## registry promote, rollback (list, show: `--registry`)

"""
FEEDBACK = """
## feedback import (`--inbox`, `--registry`, `--who`), feedback list (`--inbox`, `--registry`, `--format`)

"""
EXAMINE = """
# Check, evaluate, explain, report and ensemble settings

Every setting of `imgclf check` (the data doctor), `imgclf evaluate` (a model scored on labelled
photos), `imgclf explain`, `imgclf report` and `imgclf ensemble`, as declared once in
`src/imgclf/settings/examine.py`: the command line's options and the checks `imgclf.check`,
`imgclf.evaluate`, `imgclf.explain` and `imgclf.ensemble` hold their keywords to come from these
declarations.
`imgclf check` also takes train's split settings (`--val-frac`, `--test-frac`, `--seed`,
`--group-by`, the first table), so that it looks for leakage across the split `train` would make.

## check

"""
EVALUATE = """
## evaluate

"""
EXPLAIN = """
## explain

`imgclf explain` writes the overlays into `explanations/` unless `--out` says where;
`imgclf.explain(run, images)` writes none unless given `out` (it returns the heatmaps).

"""
REPORT = """
## report

"""
ENSEMBLE = """
## ensemble

`imgclf ensemble RUN RUN... --out BUNDLE`; it also takes `--target-accuracy`, `--target-coverage` and
`--device` of the first table (the bundle's rejection is chosen as train chooses a run's).

"""
TABLE = """| setting | command line | type | default | what it does |
|---|---|---|---|---|
"""


def _type(kind) -> str:
    names = [getattr(a, "__name__", str(a)) for a in typing.get_args(kind) if a is not type(None)]
    text = " or ".join(names) if names else getattr(kind, "__name__", str(kind))
    return text.replace("Any", "text or mapping")


def _flag(f, off_cli: str) -> str:
    if f.name == "data":
        return "the argument `DATA`" + (" or `--data`" if f.metadata["cli"] else "")
    if not f.metadata["cli"]:
        return off_cli
    spelt = f.metadata["flag"] or "--" + f.name.replace("_", "-")
    return " / ".join(f"`{s.strip()}`" for s in spelt.replace(", ", "/").split("/"))


def _default(f) -> str:
    if f.default_factory is not dataclasses.MISSING:  # a mapping, made fresh for each config
        return "`{}`"
    if f.default is REQUIRED:
        return "required"
    return "–" if f.default in (None, "") else f"`{f.default}`"


def markdown() -> str:
    return (
        HEAD
        + _table(TrainConfig)
        + JOB
        + _table(TrainJobSettings, "Python only")
        + TUNE
        + _table(TuneSettings)
        + LR_FIND
        + _table(LrFindSettings)
        + MODELS
        + _table(ModelsSettings)
        + DEMO
        + _table(DemoSettings)
        + SCAN
        + _table(ScanJobSettings)
        + SCAN_HOW
        + _table(ScanSettings)
        + NEGATIVES
        + _table(NegativesSettings)
        + PREDICT
        + _table(PredictSettings)
        + FACES
        + _table(EnrolSettings)
        + FACES_IDENTIFY
        + _table(IdentifySettings)
        + SERVE
        + _table(ServeJobSettings)
        + SERVE_LIMITS
        + _table(ServeSettings, "Python only")
        + EXPORT
        + _table(ExportSettings)
        + EXAMINE
        + _table(CheckSettings)
        + EVALUATE
        + _table(EvaluateSettings)
        + EXPLAIN
        + _table(ExplainSettings)
        + REPORT
        + _table(ReportSettings)
        + ENSEMBLE
        + _table(EnsembleSettings)
        + IMPROVE
        + _table(CompareSettings, "Python only")
        + MONITOR
        + _table(MonitorSettings)
        + UPDATE
        + _table(UpdateSettings, "Python only")
        + REGISTRY
        + _table(RegistryAddSettings)
        + REGISTRY_ALIAS
        + _table(RegistryAliasSettings)
        + FEEDBACK
        + _table(FeedbackSettings)
    )


def _table(cls, off_cli: str = "config.yaml / Python only") -> str:
    rows = []
    for f, kind in declared(cls):
        text = f.metadata["help"].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{f.name}` | {_flag(f, off_cli)} | {_type(kind)} | {_default(f)} | {text} |")
    return TABLE + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")

"""A run's metadata (RUN/model.json, DETECTOR_RUN/detector.json) as typed records.

Every reader gets attributes, not dictionary keys: a misspelt field is an AttributeError that a type
checker or a test finds at once, not a None at run time. The file layout is unchanged, and read
through this module alone:

    meta = load_run_meta(run)          # checked field by field (store.run_schema), then typed
    meta.classes, meta.input.size, meta.normalization.mean, meta.temperature, meta.is_ensemble
    meta.calibration = Calibration(temperature=t, n=len(val))
    save_run_meta(run, meta)           # with the weights' SHA-256 (store.run_schema)

Fields this imgclf does not type (written by a newer or older version) are kept in each record's
`extra` and written back, so loading and saving a run never loses what was in it. An optional
field is left out of the file while it is None, as its writer did (the training record keeps all).

Versions: format 1 (runs before data.root was recorded; their splits.csv paths are relative to the
folder training ran in) loads as a format-2 record with no data root; nothing else changed between
them. MODEL_FORMAT is what this version writes.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from imgclf.core.errors import UserError
from imgclf.core.files import read_json, write_json
from imgclf.store.run_schema import WEIGHTS, check_model_json, sha256_file

# 2: splits.csv paths are relative to model.json's data.root. 1: relative to the folder training ran
# in; such runs still load, and their paths still mean what they meant.
MODEL_FORMAT = 2


@dataclass(kw_only=True)
class Record:
    """A JSON object with typed fields; unknown keys ride along in `extra`."""

    extra: dict[str, Any] = field(default_factory=dict)
    # An optional field left out of the file while it is None (most writers never wrote them).
    omit_none: typing.ClassVar[bool] = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        hints = _hints(cls)
        names = {f.name for f in fields(cls)} - {"extra"}
        typed = {k: _typed(hints[k], v) for k, v in d.items() if k in names}
        return cls(**typed, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and not (value is None and f.default is None and self.omit_none):
                out[f.name] = _plain(value)
        return {**out, **_plain(self.extra)}


def _typed(hint, value):
    """`value` (parsed JSON) as `hint` says: records from objects, lists of records from lists."""
    if isinstance(value, dict):
        for t in _options(hint):
            # get_origin: on Python 3.10 a dict[str, Any] is an instance of type, and issubclass refuses it.
            if typing.get_origin(t) is None and isinstance(t, type) and issubclass(t, Record):
                return t.from_dict(value)
    if isinstance(value, list):
        for t in _options(hint):
            if typing.get_origin(t) is list:
                (item,) = typing.get_args(t)
                return [_typed(item, v) for v in value]
    return value


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _options(hint) -> tuple:
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _plain(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(kw_only=True)
class Architecture(Record):
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    parameters: int | None = None


@dataclass(kw_only=True)
class InputSpec(Record):
    size: int
    resize: str = "squash"
    channels: str | None = None
    dtype: str | None = None


@dataclass(kw_only=True)
class Normalization(Record):
    mean: list[float]
    std: list[float]


@dataclass(kw_only=True)
class DataRecord(Record):
    root: str | None = None  # the absolute folder splits.csv's paths are relative to (store.runs)


@dataclass(kw_only=True)
class Calibration(Record):
    method: str = "temperature"
    temperature: float = 1.0
    fitted_on: str | None = None
    n: int = 0
    skipped: str | None = None  # why no temperature was fitted (T stays 1): the report says so


@dataclass(kw_only=True)
class Decision(Record):
    """Two classes: answer `positive_class` when its calibrated probability reaches `threshold`."""

    positive_class: str
    threshold: float
    rule: str | None = None  # how it was chosen: best_f1, target_recall, ...
    validation: dict[str, Any] | None = None


@dataclass(kw_only=True)
class Rejection(Record):
    """Three or more classes: answer `label` ('unknown') when the top confidence is under `threshold`."""

    threshold: float
    rule: str | None = None
    label: str = "unknown"
    validation: dict[str, Any] | None = None


@dataclass(kw_only=True)
class TrainingRecord(Record):
    """How the kept network was trained (training.pipeline); the report and the tracking read it."""

    omit_none: typing.ClassVar[bool] = False  # its writer always wrote every field

    epochs_run: int = 0
    best_epoch: int = 0
    best_val_acc: float | None = None
    criterion: str = "accuracy"
    stopped_early: bool = False
    train_seconds: float = 0.0
    first_step_seconds: float | None = None
    compile: dict[str, Any] | None = None  # training.timing.CompileChoice's record
    device: str | None = None
    preset: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)  # training.finetune's per-stage records
    plan: dict[str, Any] | None = None  # a budgeted run's (training.budget)


@dataclass(kw_only=True)
class Member(Record):
    """One run inside an ensemble bundle (inference.ensemble), copied to `path` under the bundle."""

    path: str
    source: str = ""
    architecture: str = ""
    input_size: int | None = None
    tta: str = "none"
    temperature: float = 1.0


@dataclass(kw_only=True)
class RunMeta(Record):
    """RUN/model.json: a trained classifier, or (kind "ensemble") a bundle of them."""

    format: int = MODEL_FORMAT
    kind: str | None = None  # None: one trained network; "ensemble": `members`
    imgclf_version: str | None = None
    classes: list[str]
    architecture: Architecture | None = None  # every run but an ensemble
    input: InputSpec | None = None  # always there in a loadable run (store.run_schema checks it)
    normalization: Normalization | None = None
    preprocessing: str | None = None
    tta: str = "none"
    data: DataRecord | None = None
    pretrained: dict[str, Any] | None = None  # models.pretrained.preprocessing_record
    starting_weights: str | None = None  # an in-house model started from a file or an earlier run
    probe: dict[str, Any] | None = None  # training.probe's result (as probe.json)
    training: TrainingRecord | None = None
    leaderboard: list[dict[str, Any]] | None = None  # training.leaderboard's rows
    calibration: Calibration | None = None
    decision: Decision | None = None
    rejection: Rejection | None = None
    combine: str | None = None  # ensemble: how the members' probabilities are combined
    members: list[Member] | None = None
    weights_sha256: str | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.kind == "ensemble"

    @property
    def temperature(self) -> float:
        return float(self.calibration.temperature) if self.calibration else 1.0

    @property
    def architecture_name(self) -> str:
        return self.architecture.name if self.architecture else (self.kind or "")

    @property
    def data_root(self) -> str | None:
        return self.data.root if self.data else None

    @property
    def training_record(self) -> TrainingRecord:
        """The training record, or an empty one (ensembles, runs from before it was written)."""
        return self.training or TrainingRecord()


@dataclass(kw_only=True)
class DetectorMeta(Record):
    """DETECTOR_RUN/detector.json: a detector fine-tuned on the user's boxes (detection.training)."""

    kind: str = "detector"
    format: int = 1
    architecture: str = "ssdlite_mobilenet_v2"
    classes: list[str]
    positive: str
    threshold: float
    threshold_from: str = ""
    flip: bool = False  # its answers average in the mirror image (threshold chosen so); files before 2026-11-29: no
    split: str = ""  # how the photos were split: "seed 0", or which of the user's splits were kept
    started_from: dict[str, Any] | None = None
    data: str = ""
    annotations: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def load_run_meta(run: Path, loadable: bool = True) -> RunMeta:
    """RUN/model.json, checked against its schema (store.run_schema: a damaged file fails there, by
    field), as a RunMeta. `loadable=False`: only what describes the run (format, classes, data), for
    readers that never load its network."""
    path = Path(run) / "model.json"
    try:
        raw = read_json(path)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is not valid JSON ({e}); restore the run from a copy") from None
    checked = check_model_json(raw, path, MODEL_FORMAT, loadable)
    try:
        return RunMeta.from_dict(checked)
    except TypeError as e:  # a record missing a field that `loadable=False` did not check (a decision's threshold)
        raise UserError(f"{path} is damaged ({e}); restore the run from a copy") from None


def save_run_meta(run: Path, meta: RunMeta) -> None:
    """RUN/model.json with the SHA-256 of the model.safetensors beside it (which must be final);
    `meta` gets the hash too, so a model held in memory matches its file."""
    meta.weights_sha256 = sha256_file(Path(run) / WEIGHTS)
    write_json(Path(run) / "model.json", meta.to_dict())


def load_detector_meta(run: Path) -> DetectorMeta:
    path = Path(run) / "detector.json"
    try:
        return DetectorMeta.from_dict(read_json(path))
    except (ValueError, TypeError, RecursionError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}: {e}); train the detector again") from None

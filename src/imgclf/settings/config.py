"""Every training setting in one flat dataclass, nanoGPT style: defaults at the top.

`None` means "choose automatically from the data and the hardware"; the chosen value is
written back (see `imgclf.training.defaults`) so config.yaml always holds what actually ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imgclf.core.errors import UserError, from_settings
from imgclf.settings.checks import check_settings


@dataclass
class TrainConfig:
    data: str = ""
    out: str | None = None  # run folder; default runs/<dataset>-<n>
    preset: str | None = None  # fast | balanced | best: a recipe for the hardware and data (see training/presets.py)
    # data
    val_frac: float = 0.1  # used when the data has no val split
    test_frac: float = 0.1  # used when the data has no test split
    dedupe: bool = False  # drop identical files that conflict or leak across splits (one copy kept)
    group_by: str = "auto"  # keep groups in one split: auto (= near-duplicates) | none | near-duplicates | a regex with one capture group
    img_size: int | None = None  # auto: median image side, clamped for the device
    resize: str = "squash"  # squash | crop | pad
    augment: Any = "auto"  # auto | none | dict of AugmentPolicy fields
    flip: bool = True  # horizontal flips in augmentation (off for text/digits)
    # model
    model: str = "auto"  # auto | lite0 | lite1 | lite2 | simple_cnn | resnet_fast | timm/<arch>
    model_kwargs: dict = field(default_factory=dict)
    weights: str | None = None  # starting weights: a local file, or an earlier run of the same in-house model
    pretrained: bool = False  # timm weights from the local hub cache, else downloaded (online)
    freeze_epochs: int | None = (
        None  # epochs training only the new head (backbone frozen); auto 1-3 when fine-tuning, else 0
    )
    layer_decay: float | None = (
        None  # after them, each layer's lr = the one above's x this; auto ~0.7 when fine-tuning, else 1
    )
    freeze_stride: int | None = (
        None  # fine-tuning keeps layers at stride <= this frozen; auto 8 on CPU, 0 (none) on GPU
    )
    probe: bool | None = None  # fit the new head on frozen features first (seconds); auto on when fine-tuning
    freeze_depthwise: bool | None = None  # fine-tuning keeps depthwise conv weights frozen; auto on CPU
    feature_cache: bool | None = None  # fine-tuning trains on stored outputs of the frozen layers; auto on CPU
    init_from: str | None = None  # warm start from this run's weights (imgclf update); its head grows by class name
    # optimisation
    epochs: int | None = None  # auto: as many as the time budget allows, until validation plateaus
    # whole run's wall time: "5m", "90s", seconds; auto grows with the data and the machine; 0 / "off": none
    time_budget: float | str | None = None
    batch_size: int | None = None  # auto from dataset size and device
    optimizer: str = "adamw"  # adamw | sgd (Nesterov)
    momentum: float = 0.9  # sgd only
    lr: float | None = None  # auto from optimizer and batch size
    weight_decay: float | None = None  # auto: 0.05 adamw, 5e-4 sgd
    schedule: str = "onecycle"  # onecycle | cosine
    warmup_epochs: float = 1.0  # linear warm-up length (cosine); onecycle warms up 25% of the run
    label_smoothing: float = 0.1
    class_weight: str = "auto"  # auto (sqrt when classes are >= 3x apart) | none | sqrt | balanced
    grad_clip: float | None = 5.0
    ema: bool = False  # validate, keep and ship an exponential moving average of the weights
    tta: str = "auto"  # test-time augmentation: auto | none | flip | crop | flip-crop
    patience: int | None = None  # early stopping on val accuracy; auto = max(5, epochs // 3)
    # decisions (two-class tasks): the operating threshold is chosen on the validation split
    positive_class: str | None = None  # auto: the class not named like "no-x"/"non-x"/"background"
    target_recall: float | None = None  # else target_precision, else best F1
    target_precision: float | None = None
    # open-set rejection (3+ classes): answer "unknown" below a confidence threshold chosen on validation
    target_accuracy: float | None = None  # highest coverage with this validation accuracy on the accepted
    target_coverage: float | None = None  # else keep this fraction of validation images; neither: no threshold
    # runtime
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:1 | mps
    amp: str = "auto"  # auto | bf16 | fp16 | off
    channels_last: bool | None = None  # auto: on for CUDA
    compile: str = "auto"  # torch.compile: auto (on CUDA, from epoch 2 when the time ahead pays it back) | on | off
    workers: int | None = None  # decoding processes; default all cores

    def __post_init__(self):
        # Every way in (flags, YAML, keywords, a resumed config.yaml) builds one of these: checked here, once.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in check_settings(values).items():
            setattr(self, name, value)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_settings(cls, d)

    def updated(self, **overrides: Any) -> "TrainConfig":
        """Return a copy with the non-None overrides applied (CLI flags left unset stay out)."""
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.from_dict(d)


def config_keys(path: str | Path) -> set[str]:
    """The settings a YAML config file sets explicitly (they win over a preset)."""
    return {k for k, v in _read_yaml(Path(path)).items() if v is not None}


def load_config(path: str | Path) -> TrainConfig:
    return TrainConfig.from_dict(_read_yaml(Path(path)))


def _read_yaml(path: Path) -> dict:
    return read_yaml_mapping(path, "config file", "a mapping of setting: value")


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """A YAML file that must hold a mapping; `what` and `expected` name it in the errors."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{what} {path} is not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise UserError(f"{what} {path} must hold {expected}")
    return d


def dump_yaml(d: dict) -> str:
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)

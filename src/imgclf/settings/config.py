"""Every training setting, declared once: name, type, default, help text and the rule that checks
it, in one flat dataclass (nanoGPT style: defaults at the top). The command line's options
(cli.app.with_settings), the checks of flags, config.yaml and the Python API's keywords
(settings.checks), and the docs' reference (settings.reference, docs/settings.md) are all made
from these declarations (settings.declare): a new setting is one `setting(...)` line here.

`None` means "choose automatically from the data and the hardware"; the chosen value is
written back (see `imgclf.training.defaults`) so config.yaml always holds what actually ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imgclf.core.errors import UserError, from_settings
from imgclf.settings.checks import (
    CLASS_WEIGHT_MODES,
    DURATION,
    FRACTION,
    IMG_SIZE,
    PRESET_NAMES,
    TARGET,
    TTA_MODES,
    Choice,
    Flag,
    Number,
    PathSetting,
    Text,
    check_training,
)
from imgclf.settings.declare import rules, setting

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps  [default: auto]"  # monitor's --device says the same

OPT = {"optional": True}  # None allowed: chosen automatically
# texture=auto tries the texture on at most this many training images (training.textureprobe): its
# logistic regression's C search grows with them (17 s at 4,400 grey CIFAR-10 photos on 2 cores).
TEXTURE_MAX_IMAGES = 5000


TASKS = ("auto", "classify", "detect")


@dataclass
class TrainConfig:
    data: str = setting(
        "",
        "Folder with one sub-folder per class, split folders, a CSV of labels, or a .zip of them.",
        PathSetting(blank=True),
        cli=False,
    )
    task: str = setting(
        "auto",
        "auto | classify | detect: what to train  [default: auto: a detector (the pretrained person detector "
        "fine-tuned) where the folder holds box annotations (YOLO, Pascal VOC, COCO or a CSV of boxes), else a "
        "classifier]",
        Choice(TASKS),
    )
    preset: str | None = setting(
        None,
        "fast | balanced | best: a whole recipe sized for this hardware and data (flags given with it win)  "
        "[default: none, the plain defaults]",
        Choice((None, *PRESET_NAMES)),
    )
    model: str = setting(
        "auto",
        "auto | lite0 | lite1 | lite2 | simple_cnn | resnet_fast | timm/<arch>  "
        "[default: auto: lite0 (ImageNet weights) for photos, resnet_fast for tiny images]",
        Text(),
    )
    epochs: int | None = setting(
        None,
        "Epoch cap [default: auto: until validation stops improving or the time budget ends]",
        Number(int, 1, 10_000, **OPT),
    )
    time_budget: float | str | None = setting(
        None,
        "Wall time for the whole run: 90s, 5m, 1h30m, or off (train --epochs, no clock)  "
        "[default: auto: grows with the training images and the machine; off with --epochs or --preset]",
        DURATION,
        cli_type=str,
    )
    img_size: int | None = setting(
        None, "Training resolution in px [default: auto from image sizes]", Number(int, *IMG_SIZE, **OPT)
    )
    batch_size: int | None = setting(None, "[default: auto]", Number(int, 1, 65_536, **OPT))
    lr: float | None = setting(None, "Peak learning rate [default: auto]", Number(float, 0, 10, low_open=True, **OPT))
    optimizer: str = setting("adamw", "adamw | sgd  [default: adamw]", Choice(("adamw", "sgd")))
    schedule: str = setting("onecycle", "onecycle | cosine  [default: onecycle]", Choice(("onecycle", "cosine")))
    seed: int = setting(0, "[default: 0]", Number(int, 0, 2**32 - 1))  # numpy's and torch's seeds are unsigned
    device: str = setting("auto", DEVICE_HELP, Text())
    weights: str | None = setting(
        None,
        "Starting weights: a .safetensors/.pth file, a folder holding one (a Hugging Face snapshot or cache "
        "folder), or an earlier imgclf run of the same architecture (e.g. simple_cnn pretrained on a big "
        "dataset); tensors that differ in shape (the head) start fresh.",
        PathSetting(optional=True),
    )
    pretrained: bool = setting(
        False,
        "Pretrained timm weights: from the local Hugging Face cache, else downloaded (online).",
        Flag(),
        flag="--pretrained",
    )
    freeze_epochs: int | None = setting(
        None,
        "Fine-tuning: epochs training only the new head, backbone frozen [default: 1-3 when fine-tuning, else 0]",
        Number(int, 0, 10_000, **OPT),
    )
    layer_decay: float | None = setting(
        None,
        "Fine-tuning, after those: each layer's lr = the next layer's x this (1: same lr everywhere) "
        "[default: auto ~0.7]",
        Number(float, 0, 1, low_open=True, **OPT),
    )
    freeze_stride: int | None = setting(
        None,
        "Fine-tuning: layers at stride <= this stay frozen (0: none) [default: 8 on CPU, 0 on GPU]",
        Number(int, 0, 1024, **OPT),
    )
    freeze_depthwise: bool | None = setting(
        None,
        "Fine-tuning: keep depthwise convolution weights frozen  [default: on CPU]",
        Flag(**OPT),
        flag="--freeze-depthwise/--train-depthwise",
    )
    feature_cache: bool | None = setting(
        None,
        "Fine-tuning: run the frozen lower layers once and train on their stored output  [default: on CPU]",
        Flag(**OPT),
        flag="--feature-cache/--no-feature-cache",
    )
    probe: bool | None = setting(
        None,
        "Fine-tuning: fit the new head on frozen features first (a linear probe)  [default: on]",
        Flag(**OPT),
        flag="--probe/--no-probe",
    )
    faces: str = setting(
        "auto",
        "auto | on | off: also try dlib's pretrained face embedding with a linear head, kept when it wins on "
        "the validation split  [default: auto: on when over 2/3 of sampled training photos hold a face]",
        Choice(("auto", "on", "off")),
    )
    texture: str = setting(
        "auto",
        "auto | on | off: also try a logistic regression on the light-normalised texture (Tan & Triggs, LBP "
        "histograms; the classic descriptor for faces lit hard), kept when it wins on the validation split  "
        f"[default: auto: on when the sampled training photos are greyscale, up to {TEXTURE_MAX_IMAGES:,} of them]",
        Choice(("auto", "on", "off")),
    )
    person: str = setting(
        "auto",
        "auto | on | off: also try the pretrained person detector with a linear head on what it sees (its best "
        "person box's score and size), kept when it wins on the validation split  [default: auto: on for two "
        "classes, one named like person/people/human/pedestrian or parted by the detector's score on 12 photos "
        "of each, of up to 10,000 photos 200 px or larger]",
        Choice(("auto", "on", "off")),
    )
    flip: bool = setting(True, "No horizontal flips (text, digits, asymmetric signs).", Flag(), flag="--no-flip")
    augment: Any = setting("auto", "auto | none  [default: auto]", cli_type=str)  # or a mapping of AugmentPolicy fields
    resize: str = setting("squash", "squash | crop | pad  [default: squash]", Choice.of_resize_modes())
    dedupe: bool = setting(
        False,
        "Remove identical files that carry different labels or sit in two splits (one copy of the rest is kept).",
        Flag(),
        flag="--dedupe",
    )
    group_by: str = setting(
        "auto",
        "Keep groups in one split: auto (near-duplicates, mirrored copies too) | none | near-duplicates | "
        r"a regex whose one capture group names the group, e.g. '^(crop\d+)'  [default: auto]",
    )
    val_frac: float = setting(0.1, "Validation share when DATA has no val split [default: 0.1]", FRACTION)
    test_frac: float = setting(0.1, "Test share when DATA has no test split [default: 0.1]", FRACTION)
    patience: int | None = setting(
        None, "Early-stopping patience in epochs [default: auto]", Number(int, 1, 10_000, **OPT)
    )
    keep: str = setting(
        "auto",
        "Which epoch's weights the run ships: best (the best validation score) | last (the last, cooled-down "
        "epoch)  [default: auto: last when the validation split has under 100 images, too few to rank epochs; "
        "else best]",
        Choice(("auto", "best", "last")),
    )
    label_smoothing: float = setting(0.1, "[default: 0.1]", FRACTION)  # 1 would make every target uniform
    class_weight: str = setting(
        "auto",
        "Loss weight per class: auto (sqrt when classes are 3x or more apart in size) | none | sqrt | balanced  "
        "[default: auto]",
        Choice(CLASS_WEIGHT_MODES),
    )
    # Decisions (two classes): the operating threshold is chosen on the validation split.
    positive_class: str | None = setting(
        None, "Two classes: the positive one [default: auto from names]", Text(optional=True, numbers=True)
    )
    target_recall: float | None = setting(None, "Two classes: threshold for this validation recall", TARGET)
    target_precision: float | None = setting(None, "Two classes: threshold for this validation precision", TARGET)
    # Open-set rejection (3+ classes): "unknown" below a confidence threshold chosen on validation.
    target_accuracy: float | None = setting(
        None,
        "3+ classes: answer 'unknown' below the confidence that gives this validation accuracy on the answered images",
        TARGET,
    )
    target_coverage: float | None = setting(
        None,
        "3+ classes: answer 'unknown' for the least confident images, keeping this fraction of validation images",
        TARGET,
    )
    tta: str = setting(
        "auto",
        "Test-time augmentation at evaluation: none | flip | crop | flip-crop [default: flip when training flips]",
        Choice(("auto", *TTA_MODES)),
    )
    compile: str = setting(
        "auto",
        "torch.compile: auto | on | off  [default: auto: on CUDA when the time ahead pays it back]",
        Choice(("auto", "on", "off")),
    )
    out: str | None = setting(
        None, "Run folder [default: runs/<dataset>-<n>]", PathSetting(optional=True, run_folder=True)
    )
    # Settings config.yaml and the Python API take, not the command line.
    model_kwargs: dict = setting({}, "Keyword arguments of the architecture (e.g. widths of resnet_fast).", cli=False)
    init_from: str | None = setting(
        None,
        "Warm start from this run's weights (imgclf update); its head grows by class name.",
        PathSetting(optional=True),
        cli=False,
    )
    momentum: float = setting(0.9, "SGD momentum (sgd only).", FRACTION, cli=False)
    weight_decay: float | None = setting(
        None, "[default: auto: 0.05 adamw, 5e-4 sgd]", Number(float, 0, 10, **OPT), cli=False
    )
    warmup_epochs: float = setting(
        1.0, "Linear warm-up length (cosine); onecycle warms up 25% of the run.", Number(float, 0, 10_000), cli=False
    )
    grad_clip: float | None = setting(
        5.0, "Gradient norm clipping (None: off).", Number(float, 0, 1e6, low_open=True, **OPT), cli=False
    )
    ema: bool = setting(
        False, "Validate, keep and ship an exponential moving average of the weights.", Flag(), cli=False
    )
    amp: str = setting(
        "auto", "Mixed precision: auto | bf16 | fp16 | off.", Choice(("auto", "bf16", "fp16", "off")), cli=False
    )
    channels_last: bool | None = setting(None, "[default: auto: on for CUDA]", Flag(**OPT), cli=False)
    workers: int | None = setting(
        None, "Decoding processes [default: all cores].", Number(int, 0, 1024, **OPT), cli=False
    )

    def __post_init__(self):
        # Every way in (flags, YAML, keywords, a resumed config.yaml) builds one of these: checked here, once.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in check_train_settings(values).items():
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


# Each setting's check, from its declaration: what flags, config.yaml and keywords are held to.
RULES = rules(TrainConfig)
NUMBERS = {name: rule for name, rule in RULES.items() if isinstance(rule, Number)}


def check_train_settings(values: dict[str, Any]) -> dict[str, Any]:
    """`values` (any subset of TrainConfig's settings) checked and normalised; raises UserError in one line."""
    return check_training(values, RULES)


def config_keys(path: str | Path) -> set[str]:
    """The settings a YAML config file sets explicitly (they win over a preset)."""
    return {k for k, v in _read_yaml(Path(path)).items() if v is not None}


def load_config(path: str | Path) -> TrainConfig:
    """The settings of a YAML file (a --config, a run's config.yaml); a refused one names the file."""
    values = _read_yaml(Path(path))
    try:
        return TrainConfig.from_dict(values)
    except UserError as e:
        raise UserError(f"config file {path}: {e}") from None


def _read_yaml(path: Path) -> dict:
    """A config file's settings, its keys spelt as setting names: `img-size` and `--img-size`, as the
    command line spells them, are `img_size` (a key given both ways is refused, not guessed)."""
    d, names = read_yaml_mapping(path, "config file", "a mapping of setting: value"), {}
    for key in d:
        name = str(key).lstrip("-").replace("-", "_")
        if name in names:
            raise UserError(f"config file {path}: {names[name]!r} and {key!r} are the same setting; give it once")
        names[name] = key
    return {name: d[key] for name, key in names.items()}


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """A YAML file that must hold a mapping; `what` and `expected` name it in the errors."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{what} {path} is not valid YAML: {yaml_problem(e)}") from None
    except UnicodeDecodeError:  # a model file or a photo given where the YAML belongs
        raise UserError(f"{what} {path} is not a text file (YAML); give {expected} in YAML") from None
    if not isinstance(d, dict):
        raise UserError(f"{what} {path} must hold {expected}")
    return d


def yaml_problem(e: "yaml.YAMLError") -> str:
    """PyYAML's error on one line: what is wrong and where ("expected ',' or ']' ... (line 2, column
    1)"); its own text spans five lines with the offending line and a caret."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if not problem:
        return " ".join(str(e).split())
    return problem + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else "")


def dump_yaml(d: dict) -> str:
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)


def settled(cfg, name: str, explicit: set[str] | None) -> str | None:
    """Candidate setting `name` (faces, texture, person) when there is nothing to decide: on or off as
    given, or off for auto when the user named --model or --preset but not it (they chose a recipe:
    no other candidate, unless they said --NAME auto too). None: auto, decided from the data."""
    value = getattr(cfg, name)
    if value != "auto":
        return value
    named = explicit or set()
    return "off" if {"model", "preset"} & named and name not in named else None

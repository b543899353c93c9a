"""The search space as plain data: which settings a tune varies, and over what.

Every entry names a TrainConfig setting, or one of the two tuner knobs in KNOBS, and says how
to draw it:

    lr:     {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    epochs: {type: int, low: 5, high: 30}
    model:  {type: categorical, choices: [resnet_fast, simple_cnn]}

A YAML file (`imgclf tune --space space.yaml`) overrides DEFAULT_SPACE by name: a mapping with a
`type` replaces the distribution, a plain value fixes the setting for every trial (`width: 1.0`,
`img_size: 48`), `null` leaves the setting to train's own default, and any other TrainConfig
field can be added (`optimizer: {type: categorical, choices: [adamw, sgd]}`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig, read_yaml_mapping

KNOBS = {
    "width": "model size: a multiplier of the model family's default channel widths",
    "augment_strength": "augmentation: 0 = flips only, 0.5 = the default policy, 1 = twice as strong",
}
AUTO = "auto"  # epochs bounds chosen from the time budget (see tuning.budget)

# General, not fitted to one dataset: every range holds train's own default (the default trial
# is a point of the space) and spans the values that are sensible for small CNNs trained from
# scratch on CPU or GPU.
DEFAULT_SPACE: dict[str, Any] = {
    "model": {"type": "categorical", "choices": ["resnet_fast", "simple_cnn"]},
    "width": {"type": "categorical", "choices": [0.5, 1.0, 1.5]},
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 1e-4, "high": 0.2, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "augment_strength": {"type": "float", "low": 0.0, "high": 1.0},
    "label_smoothing": {"type": "float", "low": 0.0, "high": 0.3},
    "epochs": {"type": "int", "low": AUTO, "high": AUTO},
}
NOT_TUNABLE = {"data", "out"}
KNOB_DEFAULTS = {"width": 1.0, "augment_strength": 0.5}  # what train does without them


@dataclass(frozen=True)
class Param:
    type: str  # float | int | categorical
    low: float | None = None  # None: AUTO, filled in by the budget
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial, name: str):
        if self.type == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.type == "float" or value == int(value))

    def to_dict(self) -> dict:
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        d = {"type": self.type, "low": self.low, "high": self.high}
        return {**d, **({"log": True} if self.log else {}), **({"step": self.step} if self.step else {})}


@dataclass
class Space:
    params: dict[str, Param]
    fixed: dict[str, Any]  # settings every trial uses as they are

    def to_dict(self) -> dict:
        return {"params": {k: p.to_dict() for k, p in self.params.items()}, "fixed": self.fixed}

    @classmethod
    def from_dict(cls, d: dict) -> "Space":
        return cls({k: _param(k, v, "stored space") for k, v in d["params"].items()}, dict(d["fixed"]))


def load_space(path: str | Path | None = None, fixed: dict | None = None) -> Space:
    """DEFAULT_SPACE, overridden by the YAML file at `path`, then by `fixed` settings (keywords
    given to imgclf.tune, which every trial uses). Raises UserError naming any bad entry."""
    entries = dict(DEFAULT_SPACE)
    where = "search space"
    if path is not None:
        entries.update(_read_yaml(Path(path)))
        where = f"space file {path}"
    entries.update(fixed or {})
    valid = {f.name for f in dataclasses.fields(TrainConfig)} - NOT_TUNABLE
    params, settings = {}, {}
    for name, spec in entries.items():
        if name not in valid and name not in KNOBS:
            raise UserError(
                f"{where}: '{name}' is not a setting; use a train setting "
                f"({', '.join(sorted(valid))}) or one of {', '.join(KNOBS)}"
            )
        if isinstance(spec, dict) and "type" in spec:
            params[name] = _param(name, spec, where)
        elif spec is not None:
            settings[name] = spec
    if "augment" in settings and ("augment_strength" in params or "augment_strength" in settings):
        raise UserError(
            f"{where}: 'augment' fixes the policy that 'augment_strength' would scale; "
            "set augment_strength: null, or remove augment"
        )
    try:
        TrainConfig.from_dict({k: v for k, v in settings.items() if k not in KNOBS})
    except TypeError as e:
        raise UserError(f"{where}: {e}") from None
    return Space(params, settings)


def _read_yaml(path: Path) -> dict:
    return read_yaml_mapping(
        path,
        "space file",
        "a mapping of setting: {type, low, high, log} or {type: categorical, choices} or a fixed value",
    )


def _param(name: str, spec: dict, where: str) -> Param:
    def fail(why: str) -> UserError:
        return UserError(
            f"{where}: '{name}' {why} (e.g. {name}: {{type: float, low: 0.001, high: 0.1, log: true}} "
            "or {type: categorical, choices: [a, b]})"
        )

    kind = spec.get("type")
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
    if kind not in ("float", "int", "categorical"):
        raise fail(f"has type {kind!r}; use float, int or categorical")
    if extra := sorted(set(spec) - allowed):
        raise fail(f"has unknown key(s) {', '.join(extra)} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail("needs a non-empty list of choices")
        if not all(c is None or isinstance(c, (str, int, float, bool)) for c in choices):
            raise fail("choices must be plain values (numbers, strings, booleans)")
        return Param("categorical", choices=tuple(choices))
    auto = name == "epochs" and spec.get("low") == AUTO and spec.get("high") == AUTO
    if auto:
        return Param("int")
    low, high = _number(spec.get("low"), fail, "low"), _number(spec.get("high"), fail, "high")
    step = _number(spec["step"], fail, "step") if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail("has log that is not true/false")
    if kind == "int" and not all(v is None or v == int(v) for v in (low, high, step)):
        raise fail("is an int but has a fractional low, high or step")
    if not low <= high:
        raise fail(f"has low {low} above high {high}")
    if log and low <= 0:
        raise fail("is log-scaled, so low must be above 0")
    if log and step:
        raise fail("cannot be both log-scaled and stepped")
    cast = int if kind == "int" else float
    return Param(kind, cast(low), cast(high), log, cast(step) if step else None)


def _number(value, fail, key: str) -> float:
    # YAML 1.1 reads 1e-4 (no dot) as a string: accept any numeric text.
    if isinstance(value, bool) or value is None:
        raise fail(f"needs a number for {key}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise fail(f"needs a number for {key}, not {value!r}") from None
    if not math.isfinite(v):
        raise fail(f"needs a finite number for {key}")
    return v


def with_default_model(space: Space, config: dict) -> tuple[Space, str]:
    """(the space, train's default model as a trial names it). Where train's default for this data is
    a pretrained backbone (lite0 for photos), DEFAULT_SPACE's model choices, the from-scratch families,
    gain it, first: trial 0 is then train's default, and every trial may fine-tune it. A space file
    that names its own model choices is left as it is."""
    from imgclf.models.packaged import SHORT_NAMES

    model = str(config.get("model"))
    if config.get("pretrained"):  # trials name packaged weights by their short name, which loads them
        model = next((short for short, full in SHORT_NAMES.items() if full == model), model)
    param = space.params.get("model")
    if param is None or param != _param("model", DEFAULT_SPACE["model"], "") or model in param.choices:
        return space, model
    grown = Param("categorical", choices=(model, *param.choices))
    return Space({**space.params, "model": grown}, space.fixed), model


def without_default_model(space: Space) -> Space:
    """`space` as it was before with_default_model grew DEFAULT_SPACE's model choices by train's
    default: what a user asked for, to compare with what they ask for now."""
    param = space.params.get("model")
    plain = _param("model", DEFAULT_SPACE["model"], "")
    if param is None or param.type != "categorical" or param.choices[1:] != plain.choices:
        return space
    return Space({**space.params, "model": plain}, space.fixed)


def with_epochs(space: Space, low: int, high: int) -> Space:
    """The space with AUTO epoch bounds filled in."""
    params = dict(space.params)
    if "epochs" in params and params["epochs"].low is None:
        params["epochs"] = Param("int", int(low), int(high))
    return Space(params, space.fixed)


def trial_settings(values: dict, space: Space, img_size: int, n_train: int) -> dict:
    """train() keywords for one trial: the fixed settings and the drawn values, with the knobs
    translated (width -> the model's width setting, augment_strength -> an augment policy)."""
    s = {**space.fixed, **values}
    # A tune searches the network's settings: the face embedding and the texture (training.candidates)
    # have none, and winning on validation they would skip the very epochs a trial is judged by.
    s.setdefault("faces", "off")
    s.setdefault("texture", "off")
    width = s.pop("width", None)
    strength = s.pop("augment_strength", None)
    model = s.get("model", TrainConfig.model)
    if width is not None:
        s["model_kwargs"] = {**s.get("model_kwargs", {}), **width_setting(model, width)}
    if strength is not None:
        s["augment"] = scaled_policy(strength, img_size, n_train, s.get("flip", True)).to_dict()
    return s


def width_setting(model: str, multiplier: float) -> dict:
    """The model's own `width` setting scaled by `multiplier` ({} for models without one, e.g. timm)."""
    from imgclf.models import model_defaults
    from imgclf.models.packaged import expand_short_name

    base = model_defaults(expand_short_name(model)[0]).get("width")
    if base is None or isinstance(base, bool):
        return {}
    return {"width": float(base) * multiplier if isinstance(base, float) else max(1, round(base * multiplier))}


def scaled_policy(strength: float, img_size: int, n_train: int, flip: bool = True):
    """train's default augmentation for this image size and data size, with every strength
    (translate, crop area, rotation, colour jitter, cutout) scaled by 2 x `strength`: 0.5 is the
    default itself, 0 leaves flips only, 1 doubles it."""
    from imgclf.data.augment import AugmentPolicy, default_policy

    base, f = default_policy(img_size, n_train, allow_flip=flip), 2.0 * float(strength)
    crop = None
    if base.resized_crop is not None:
        low = max(0.08, 1.0 - (1.0 - base.resized_crop[0]) * f)
        crop = (round(low, 4), 1.0) if low < 1.0 else None
    return AugmentPolicy(
        flip=base.flip,
        translate=min(img_size // 4, round(base.translate * f)),
        resized_crop=crop,
        rotate=min(45.0, base.rotate * f),
        color_jitter=min(0.9, base.color_jitter * f),
        cutout=min(img_size // 2, round(base.cutout * f)),
    )


def default_values(space: Space, defaults: dict) -> tuple[dict, list[str]]:
    """The point of the space that is train's default configuration (`defaults`: a resolved
    config plus the knobs), and the names of parameters whose default lies outside their range."""
    known = {**KNOB_DEFAULTS, **defaults}
    values, outside = {}, []
    for name, p in space.params.items():
        if name in known and p.contains(known[name]):
            values[name] = known[name]
        else:
            outside.append(name)
    return values, outside

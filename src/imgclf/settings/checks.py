"""One check for every setting (training, scan, service), wherever it enters: CLI flags, a --config YAML file, the
Python API's keywords, a resumed run's config.yaml. Each setting's rule (a Number, a Choice, a Flag,
...) is declared with it in settings.config; TrainConfig runs the checks when it is built, so no way
in can skip them, and that happens before anything touches the disk: a refused start leaves no run folder.

A refusal is one line naming the setting, the bad value and what is allowed:

    >>> check_settings({"batch_size": 0}, {"batch_size": Number(int, 1, 65536)})
    UserError: batch_size must be an integer from 1 to 65536, not 0
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.core.errors import UserError

# The names each choice-setting may take. They live here, with the checks, so a setting can be
# checked without importing the (torch-heavy) code that carries it out; that code reads them from here.
TTA_MODES = ("none", "flip", "crop", "flip-crop")  # models.forward.tta_logits
# inference.explain: each a class of the grad-cam package (the service lists them without loading torch)
EXPLAIN_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam", "hirescam")
CLASS_WEIGHT_MODES = ("auto", "none", "sqrt", "balanced")  # training.balance
PRESET_NAMES = ("fast", "balanced", "best")  # training.presets
DETECTOR_BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino")  # detection.engines
FACES_BACKENDS = ("auto", "onnx", "onnx-int8", "torch")  # the face embedder's engines (models.face.engine)
# imgclf predict's: a run's (inference.load) and, with --ray, auto and a detector's (cluster.predict)
PREDICT_BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
UNKNOWN = "unknown"  # the label open-set rejection answers with
IMG_SIZE = (16, 1024)  # below: no room for a CNN's poolings and augmentation; above: memory, not accuracy


@dataclass(frozen=True)
class Number:
    kind: type  # int or float
    low: float
    high: float
    low_open: bool = False  # (low, ...: the bound itself is refused
    high_open: bool = False
    optional: bool = False  # None means "choose automatically"
    says: str = ""  # what is allowed, in the user's words (its unit), where the range alone would not say it

    def allowed(self) -> str:
        if self.says:
            return self.says
        if self.kind is int:
            return f"an integer from {self.low} to {self.high}"
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def check(self, name: str, v: Any):
        return check_number(name, v, self)


FRACTION = Number(float, 0, 1, high_open=True)
TARGET = Number(float, 0, 1, low_open=True, optional=True)


@dataclass(frozen=True)
class Choice:
    """One of named options (None among them: may be left out); `resize_modes`: the decoder's, read
    when first needed (data.images is light, but not needed to declare a setting)."""

    options: tuple = ()
    resize_modes: bool = False

    @classmethod
    def of_resize_modes(cls) -> "Choice":
        return cls(resize_modes=True)

    def names(self) -> tuple:
        if self.resize_modes:
            from imgclf.data.images import RESIZE_MODES

            return tuple(RESIZE_MODES)
        return self.options

    def check(self, name: str, v: Any):
        return check_choice(name, v, self.names())


@dataclass(frozen=True)
class Flag:
    optional: bool = False  # None: chosen automatically

    def check(self, name: str, v: Any):
        if not (isinstance(v, bool) or (v is None and self.optional)):
            _refuse(name, v, "true or false")
        return v


@dataclass(frozen=True)
class PathSetting:
    optional: bool = False
    run_folder: bool = False  # a folder training makes: a file in its way is refused at the start
    blank: bool = False  # "" stands for "not given" (TrainConfig.data, filled in later); else refused

    def check(self, name: str, v: Any):
        return _path(name, v, self.optional, self.run_folder, self.blank)


@dataclass(frozen=True)
class Text:
    optional: bool = False
    # An empty or blank value is refused: `--device ""` or `--study-name "$UNSET"` is a mistake, and
    # code that reads "" as unset would quietly do something else (a tune's trials each failed on it).
    blank: bool = False
    numbers: bool = False  # a whole number is taken as its text: a class folder named "1" is 1 in YAML

    def check(self, name: str, v: Any):
        return _text(name, v, self)


class Duration:
    def check(self, name: str, v: Any):
        return parse_duration(v, name)


DURATION = Duration()


def check_settings(values: dict[str, Any], rules: dict) -> dict[str, Any]:
    """`values` checked and normalised by each one's rule in `rules` (YAML's `1e-3` is a string, `10.0`
    epochs an integer); raises UserError. Settings without a rule are left to their job's own checks."""
    out = dict(values)
    for name, v in values.items():
        if rules.get(name) is not None:
            out[name] = rules[name].check(name, v)
    return out


def check_training(values: dict[str, Any], rules: dict) -> dict[str, Any]:
    """check_settings, then what only training settings need: the structured ones (group_by,
    model_kwargs, augment) and the combinations (val_frac + test_frac, one target of each pair)."""
    out = check_settings(values, rules)
    _check_structured(out)
    _check_combinations(out)
    return out


def parse_duration(value, name: str = "time_budget") -> float | None:
    """`time_budget` in seconds, from '90s', '5m', '1h30m', '2.5m', '5 minutes', '1 hour 30 min', 300 or
    '300'; 0 or 'off' means no budget;
    None or 'auto' means the default. Anything else is refused in one line naming `name`."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, bool):
        raise UserError(f"{name} must be a duration such as 90s, 5m or 1h30m, or auto or off, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if text in ("off", "none", "0"):
            return 0.0
        # 90s, 5m, 1h30m; and as people write them: "2 min", "10 sec", "1 hour 30 minutes", "1.5 hrs"
        hours, minutes, secs = r"h(?:ours?|rs?)?", r"m(?:in(?:ute)?s?)?", r"(?:s(?:ec(?:ond)?s?)?)?"
        num = r"(\d+(?:\.\d+)?)\s*"
        parts = re.fullmatch(rf"(?:{num}{hours})?\s*(?:{num}{minutes})?\s*(?:{num}{secs})?", text)
        if not text or parts is None or not any(parts.groups()):
            raise UserError(f"{name} must be a duration such as 90s, 5m or 1h30m, or auto or off, not {value!r}")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if not (math.isfinite(seconds) and 0 <= seconds <= 7 * 86400):
        raise UserError(f"{name} must be between 0 (off) and 7 days, not {value!r}")
    return seconds


def check_number(name: str, v: Any, rule: Number):
    """`v` (a number, or its text: a YAML string, a query parameter) as `rule.kind`, or UserError
    naming the setting, the value and what is allowed. The service checks its parameters with this too.

        >>> check_number("iou", "nan", Number(float, 0, 1, low_open=True))
        UserError: iou must be a number in (0, 1], not 'nan'
    """
    if v is None and rule.optional:
        return None
    x = _as_number(v, rule.kind)
    if x is None or not _within(x, rule):
        _refuse(name, v, rule.allowed())
    return x


def _as_number(v: Any, kind: type):
    """int or float from a number or a numeric string; None when it is neither (or not whole for an int)."""
    if isinstance(v, bool) or v is None:  # True is an int to Python, never a count to a user
        return None
    if isinstance(v, str):
        try:
            v = int(v) if kind is int and v.strip().lstrip("+-").isdigit() else float(v)
        except ValueError:
            return None
    if isinstance(v, numbers.Integral):
        return int(v) if kind is int else _float(v)
    if isinstance(v, numbers.Real):
        x = _float(v)
        if kind is int:
            return int(x) if x is not None and math.isfinite(x) and x == int(x) else None
        return x
    return None


def _float(v) -> float | None:
    try:
        return float(v)
    except OverflowError:  # an integer past 1e308
        return None


def check_choice(name: str, v: Any, options) -> Any:
    """`v` when it is one of `options` (None among them: may be left out), else UserError naming them."""
    options = tuple(options)
    if v not in options:
        named = [str(c) for c in options if c is not None]
        more = f" (and {len(named) - 20} more)" if len(named) > 20 else ""
        raise UserError(f"unknown {name} {_shown(v)}; choose one of {', '.join(named[:20])}{more}")
    return v


def _within(x, r: Number) -> bool:
    if isinstance(x, float) and not math.isfinite(x):
        return False
    return (x > r.low if r.low_open else x >= r.low) and (x < r.high if r.high_open else x <= r.high)


def _path(name: str, v: Any, optional: bool, run_folder: bool, blank: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, (str, os.PathLike)):
        _refuse(name, v, "a path")
    p = str(v)
    if not p.strip() and not blank:  # Path("") is "." (the current folder): an unset $OUT is a mistake
        raise UserError(f"{name} is empty; give a path")
    if run_folder:
        # The run folder is made after minutes of decoding: a file in its way must stop the start, not the end.
        try:
            blocker = next((a for a in (Path(p), *Path(p).parents) if a.exists()), None)
        except (OSError, ValueError):  # a NUL byte, a name longer than the file system allows
            _refuse(name, v, "a usable folder path")
        if blocker is not None and not blocker.is_dir():
            raise UserError(
                f"{name} {p!r} is an existing file; give a folder for the run"
                if str(blocker) == p
                else f"{name} {p!r} cannot be a folder: {blocker} is a file"
            )
    return p


def _text(name: str, v: Any, rule: Text) -> str | None:
    if v is None and rule.optional:
        return None
    if rule.numbers and isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        _refuse(name, v, "a name")
    if not rule.blank and not v.strip():
        raise UserError(f"{name} is empty; give a value, or leave it out for the default")
    return v


def _check_structured(s: dict) -> None:
    if "group_by" in s:
        if not isinstance(s["group_by"], str):
            _refuse("group_by", s["group_by"], "auto, none, near-duplicates or a regular expression")
        from imgclf.data.groups import check_group_by

        try:
            check_group_by(s["group_by"])
        except (RecursionError, OverflowError):  # a pattern nested past what `re` compiles
            _refuse("group_by", s["group_by"], "a regular expression that compiles")
    if "model_kwargs" in s and not isinstance(s["model_kwargs"], dict):
        _refuse("model_kwargs", s["model_kwargs"], "a mapping of architecture keyword: value")
    augment = s.get("augment", "auto")
    if isinstance(augment, dict):
        from imgclf.data.augment import AugmentPolicy

        try:
            policy = AugmentPolicy.from_dict(augment)
        except UserError:
            raise
        except (TypeError, ValueError, OverflowError):  # a string or NaN where the policy's own checks want a number
            _refuse("augment", augment, "a mapping of augmentation fields with numeric values")
        size = s.get("img_size")
        if size is not None and policy.translate >= size:
            raise UserError(f"augment translate {policy.translate} must be smaller than img_size {size}")
    elif augment not in ("auto", "none"):
        _refuse("augment", augment, "auto, none or a mapping of augmentation fields")


def _check_combinations(s: dict) -> None:
    val, test = s.get("val_frac", 0.0), s.get("test_frac", 0.0)
    if val + test >= 1:
        raise UserError(
            f"val_frac {val:g} + test_frac {test:g} = {val + test:g} leaves no training images; "
            "the two must sum to less than 1"
        )
    for a, b in (("target_accuracy", "target_coverage"), ("target_recall", "target_precision")):
        if s.get(a) is not None and s.get(b) is not None:
            raise UserError(f"give {a} or {b}, not both ({s[a]:g} and {s[b]:g}): each chooses the threshold alone")


def _refuse(name: str, value: Any, allowed: str):
    raise UserError(f"{name} must be {allowed}, not {_shown(value)}")


def _shown(value: Any) -> str:
    """The value as the user would recognise it, on one line and short."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def check_targets(classes: list[str], target_accuracy: float | None, target_coverage: float | None) -> None:
    """Refuse bad rejection targets before training starts, not after."""
    if target_accuracy is None and target_coverage is None:
        return
    if target_accuracy is not None and target_coverage is not None:
        raise UserError("give either --target-accuracy or --target-coverage for rejection, not both")
    for name, v in (("target-accuracy", target_accuracy), ("target-coverage", target_coverage)):
        if v is not None and not 0 < v <= 1:
            raise UserError(f"--{name} must be a fraction in (0, 1], not {v}")
    if len(classes) == 2:
        raise UserError(
            "two classes use a decision threshold instead of rejection: give --target-recall or --target-precision"
        )
    if UNKNOWN in classes:
        raise UserError(f"a class is named '{UNKNOWN}', the label rejection answers with; rename that folder")

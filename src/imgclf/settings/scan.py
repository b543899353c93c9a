"""Every scan setting (imgclf scan, imgclf.scan, imgclf.scanning.scan), declared once as TrainConfig's
are (settings.declare): name, type, default, help text and the rule that checks it. `imgclf scan`'s
options (cli.app.with_settings), the Python API's keywords, the checks the scanner, the detector and
the service hold a value to, and the docs' reference (docs/settings.md) are all made from here.

A refusal names the option as the command line spells it, whichever way the value came in:

    >>> ScanSettings(iou=2)
    UserError: --iou must be a number in (0, 1], not 2
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from imgclf.core.errors import UserError
from imgclf.settings.checks import DETECTOR_BACKENDS, Choice, Flag, Number, PathSetting, Text
from imgclf.settings.config import DEVICE_HELP
from imgclf.settings.declare import REQUIRED, Declared, checker, flags, rules, setting

SCAN_METHODS = ("auto", "fcn", "windows")  # scanning.scanner: fully convolutional, or window by window
MAX_TILES = 4  # a side: 4x4 tiles = 17 passes a photo (detection.tiles)
PROBABILITY = Number(float, 0, 1, low_open=True, high_open=True, optional=True)  # 0 keeps all, 1 none


def _numbers(v: Any) -> tuple | None:
    """Numbers from a number, a sequence of them or their comma-separated text ('1,0.8'); None if not."""
    if isinstance(v, str):
        v = v.split(",")
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        v = (v,)
    try:
        return tuple(float(x) for x in v if not isinstance(x, bool))
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Scales:
    """Pyramid scales: a list of positive numbers (or their comma-separated text)."""

    def check(self, name: str, v: Any):
        if v is None:
            return None
        values = _numbers(v)
        # Not `s > 0` alone: nan passes no comparison, and inf would make a window of 0 px.
        if not values or not all(0 < s < math.inf for s in values):
            shown = list(v) if isinstance(v, (list, tuple)) else v
            raise UserError(f"{name} must be positive numbers (window scales, e.g. 1,0.8,0.64), not {shown!r}")
        return list(values)


@dataclass(frozen=True)
class Margin:
    """(left, top, right, bottom) fractions of the window between its sides and the object's box."""

    def check(self, name: str, v: Any):
        return None if v is None else parse_margin(v, name)


def parse_margin(margin, name: str = "--margin") -> tuple[float, float, float, float]:
    """(left, top, right, bottom) fractions of the window's width / height that lie between the
    window's side and the object's box: one number for all four sides, (x, y), or all four (or their
    comma-separated text). A negative side puts the box's edge outside the window (a placement fitted
    to labelled boxes may find objects reaching past the window that fired)."""
    values = _numbers(margin) or ()
    if len(values) == 2:
        values = values * 2
    if len(values) == 1:
        values = values * 4
    if (
        len(values) != 4
        or any(not -0.5 < m < 0.5 for m in values)
        or values[0] + values[2] >= 1
        or values[1] + values[3] >= 1
    ):
        raise UserError(
            f"{name} must be 1, 2 (x, y) or 4 (left, top, right, bottom) fractions in (-0.5, 0.5) "
            f"leaving a box of positive size, not {margin}"
        )
    return values


@dataclass(frozen=True)
class Tiles:
    """COLUMNSxROWS ('2x2', or a pair), each 1 to MAX_TILES; kept as its text, e.g. '2x2'."""

    def check(self, name: str, v: Any):
        return None if v is None else "{}x{}".format(*parse_tiles(v, name))


def parse_tiles(tiles: str | tuple, name: str = "--tiles") -> tuple[int, int]:
    """'2x2', '3x2' (columns x rows), '1x1' (none) or a pair -> (columns, rows)."""
    try:
        nx, ny = (int(v) for v in (tiles.lower().split("x") if isinstance(tiles, str) else tiles))
    except (ValueError, TypeError, AttributeError):
        nx = ny = 0
    if not (1 <= nx <= MAX_TILES and 1 <= ny <= MAX_TILES):
        raise UserError(f"{name} must be COLUMNSxROWS, each 1 to {MAX_TILES} (e.g. 2x2; 1x1: none), not '{tiles}'")
    return nx, ny


@dataclass(frozen=True)
class Names:
    """Class names: a list of them, or their comma-separated text."""

    def check(self, name: str, v: Any):
        if v is None:
            return None
        names = v.split(",") if isinstance(v, str) else v
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{name} must be class names (e.g. car,person), not {v!r}")
        return list(names)


@dataclass(frozen=True)
class Verify:
    """A verifier: a run folder, a loaded model (Python), None (the run's recorded one) or False (none)."""

    def check(self, name: str, v: Any):
        if v is None or v is False or hasattr(v, "predict_proba") or (isinstance(v, (str, os.PathLike)) and str(v)):
            return v
        raise UserError(f"{name} must be a run folder, a loaded model or False (none), not {v!r}")


@dataclass
class ScanSettings(Declared):
    WHAT = "scan setting"

    classes: list[str] | None = setting(
        None,
        "Comma-separated classes to find, e.g. car,person (a COCO detector's) [default: person]",
        Names(),
        cli_type=str,
    )
    positive: str | None = setting(
        None,
        "The class to find [default: the run's positive class, else "
        "a class named like person/human/pedestrian/positive]",
        Text(optional=True),
    )
    scales: list[float] | None = setting(
        None,
        "Comma-separated pyramid scales, e.g. 1,0.8,0.64 (at scale s the window covers crop size / s image px) "
        "[default: from --min-size down in steps of 0.8 while the window fits]",
        Scales(),
        cli_type=str,
    )
    stride: int | None = setting(
        None,
        "Window step in px of the model input [default: input/8, or the "
        "network's own stride for a fully convolutional scan]",
        Number(int, 1, 100_000, optional=True, says="a step of at least 1 px of the model input"),
    )
    min_size: int | None = setting(
        None,
        "Smallest window height in image px [default: the run's recorded one, else 64]",
        Number(int, 1, 999_999, optional=True, says="a window height of at least 1 px"),
    )
    iou: float | None = setting(
        None,
        "NMS: a box overlapping a better one by more than this IoU is dropped "
        "[default: the detector's 0.6; a crop-model scan's 0.3]",
        Number(float, 0, 1, low_open=True, optional=True),
    )
    threshold: float | None = setting(
        None,
        "Detector: the score a box needs (and presence) [default: the detector's recorded one]. "
        "Crop model: positive probability to keep a window; with a verifier, its photo-level "
        "threshold [default: the recorded one, else the run's decision threshold, else 0.5]",
        PROBABILITY,
    )
    tiles: str | None = setting(
        None,
        "Detector: also look at COLUMNSxROWS overlapping tiles of each photo (e.g. 2x2), each at the "
        "detector's full input size: people small in a wide photo are found (INRIA people pasted into street "
        "photos: AP@0.5 0.55 -> 0.78 at 2x2), at one more pass a tile [default: 1x1, the whole photo only]",
        Tiles(),
    )
    flip: bool | None = setting(
        None,
        "Detector: also look at each photo's mirror image and average the two answers, anchor by anchor (--no-flip: "
        "the photo alone, one pass: 1.1x as fast a photo, 1.5-1.8x over a folder): on bench/presence.py's photos AP@0.5 +3 to +7 points and presence ROC-AUC "
        "+2 [default: the detector's, --flip]",
        Flag(optional=True),
        flag="--flip/--no-flip",
    )
    margin: float | tuple | None = setting(
        None,
        "Context around the object in the training crops, as a fraction of the window on each side: one number, "
        "X,Y (INRIA 96x160 crops: 0.167,0.1) or LEFT,TOP,RIGHT,BOTTOM (negative: past the window); boxes are "
        "placed by it [default: the run's recorded one (RUN/scan_window.json), else 0]",
        Margin(),
        cli_type=str,
    )
    method: str = setting("auto", "auto | fcn (fully convolutional) | windows  [default: auto]", Choice(SCAN_METHODS))
    vote: bool | None = setting(
        None,
        "Move each firing window's box to the score-weighted mean of the firing windows around it (IoU >= 0.5) "
        "before NMS (--no-vote: each window's own box) [default: the run's recorded choice, else --vote]",
        Flag(optional=True),
        flag="--vote/--no-vote",
    )
    verify: str | bool | None = setting(  # or a loaded model (Python); False: none
        None,
        "A run trained on the same crops (e.g. the default ImageNet backbone) that re-scores each photo's best "
        "windows and decides presence; the scan's boxes are kept only in photos it passes [default: the run's "
        "recorded verifier, if any]",
        Verify(),
        flag="--verifier",
    )
    verify_top: int | None = setting(
        None,
        "Windows a photo the verifier re-scores [default: the recorded number, else 4]",
        Number(int, 1, 1000, optional=True, says="1 to 1000 windows a photo"),
        flag="--verifier-top",
    )
    box_threshold: float | None = setting(
        None,
        "With a verifier: the scan score a window needs to become a box [default: the recorded one, else the "
        "run's threshold]",
        PROBABILITY,
    )
    max_seconds: float | None = setting(
        None,
        "Longest a photo's scan may take, estimated from its size and the model's measured cost before it is "
        "read: a photo over it is skipped with a note (a crop-model scan with no --min-size or --scales has its "
        "smallest window raised to fit instead). Photos over 12000 px a side or 10:1 are refused too; a video: "
        "each frame, a video over it refused before a frame is read [default: 10]",
        Number(float, 0, 1e9, low_open=True, optional=True, says="a positive number of seconds"),
    )

    def given(self) -> dict:
        """The settings that differ from their defaults: what the caller chose."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: v for k, v in self.values().items() if v is not defaults[k] and v != defaults[k]}


class DetectorRule:
    """A detector: a name or a run folder (text), a loaded one (Python), or None (the pretrained person detector)."""

    def check(self, name: str, v: Any):
        if v is None or hasattr(v, "detect_batch"):
            return v
        return Text().check(name, os.fspath(v) if isinstance(v, os.PathLike) else v)


@dataclass
class ScanJobSettings(Declared):
    """What `imgclf scan` finds with, where its answers go and what runs it: imgclf.scan's keywords
    beside ScanSettings' (how the photos are scanned), checked before a photo is read.

        >>> ScanJobSettings(backend="gpu")
        UserError: unknown --backend 'gpu'; choose one of auto, torch, onnx, onnx-int8, openvino
    """

    WHAT = "scan setting"

    detector: str | None = setting(
        None,
        "The detector when no run is given: person (the pretrained SSDLite, offline), a detector run folder "
        "(imgclf train BOXES/), or a torchvision COCO detector such as ssdlite320_mobilenet_v3_large or "
        "fasterrcnn_mobilenet_v3_large_fpn (weights downloaded once) [default: person]",
        DetectorRule(),
    )
    out: str | None = setting(None, "Write boxes.csv, scan.json and annotated/ here.", PathSetting(optional=True))
    mine: str | None = setting(
        None,
        "Save every window that fires as a crop PNG here (give person-free photos: hard negatives to add to "
        "the negative class).",
        PathSetting(optional=True),
    )
    backend: str = setting(
        "auto",
        "Detector: what runs it, auto (ONNX Runtime on a CPU, PyTorch on a GPU) | onnx | onnx-int8 (made by "
        "imgclf export person --int8 --calibration PHOTOS/) | openvino (pip install 'imgclf[openvino]') | torch  "
        "[default: auto]",
        Choice(DETECTOR_BACKENDS),
    )
    device: str = setting("auto", DEVICE_HELP, Text())


class CropSize:
    """'96x160' or (96, 160) -> (96, 160): a crop's width and height, at least 4 px each."""

    def check(self, name: str, v: Any) -> tuple[int, int]:
        try:
            w, h = (int(x) for x in (v.lower().split("x") if isinstance(v, str) else v))
        except (ValueError, TypeError, AttributeError):
            raise UserError(f"{name} must look like WIDTHxHEIGHT (e.g. 96x160), not {v!r}") from None
        if w < 4 or h < 4:
            raise UserError(f"{name} {w}x{h} is too small; give at least 4x4 px")
        return w, h


@dataclass
class NegativesSettings(Declared):
    """`imgclf negatives`: random windows of person-free photos, the negative class of a crop model."""

    WHAT = "negatives setting"

    out: str = setting(REQUIRED, "Folder for the crops (e.g. data/no-person).", PathSetting())
    per_image: int = setting(
        20, "Random windows per photo.  [default: 20]", Number(int, 1, 10**6, says="a whole number, at least 1")
    )
    size: str | tuple = setting(
        "64x64", "Crop size WxH: the positive crops' size (INRIA: 96x160).  [default: 64x64]", CropSize()
    )
    seed: int = setting(0, "Which random windows.  [default: 0]", Number(int, 0, 2**32 - 1))


RULES = rules(ScanSettings)
FLAGS = flags(ScanSettings)
# `values` (any of ScanSettings') checked and normalised by their declared rules; a refusal names the
# option as `imgclf scan` spells it (--min-size), as the scanner and the detector always have.
check_scan = checker(ScanSettings)

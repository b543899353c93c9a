"""The scanning window: the shape of the crops the model was trained on, the image pyramid, and which
class the windows look for (positive_class; torch-free, as the service asks it at start).

A crop classifier learned objects framed the way its training crops frame them. With the default
`squash` resize a 96x160 person crop became a square input, so the network learned people
stretched to 1.67x their width: a square window over a photo would show it people at the wrong
proportions. The window therefore takes the median aspect of the run's training crops of the
positive class, and is resized to the model's square input exactly as those crops were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import read_json, write_json
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.models import FACE_EMBEDDING, PERSON_DETECTOR
from imgclf.store.run_meta import load_run_meta

CACHE = "scan_window.json"  # in the run folder: the training crops may be gone when a run is moved
SAMPLE = 200  # crop headers read to find the median shape (a few ms)
SCALE_STEP = 0.8  # each pyramid level's window is 1/0.8 = 1.25x the previous one
DEFAULT_MIN_SIZE = 64  # smallest window height in image pixels
# Runs whose model answers for a whole photo itself: slid over windows, each window would cost a
# detector pass at 300x300, or a face search and an embedding (the service timed that at start-up:
# 18 s on two people's run).
WHOLE_PHOTO = {
    PERSON_DETECTOR: "this run kept the pretrained person detector (its leaderboard chose it): it answers for "
    "whole photos, not windows; for boxes, scan with the detector itself: imgclf scan PHOTOS",
    FACE_EMBEDDING: "this run kept the face embedding (its leaderboard chose it): it finds and names the face in "
    "each whole photo, not in windows (imgclf predict RUN PHOTOS); for a box and a name for every face in a "
    "photo, enrol the people: imgclf faces enrol KNOWN/",
}
POSITIVE_NAMES = re.compile(r"person|people|human|pedestrian|positive|object|target", re.I)


def positive_class(model, positive: str | None) -> str:
    """--positive, else the run's decision positive class, else a class named like person/human/..."""
    kept = getattr(getattr(model, "meta", None), "architecture_name", None)
    if kept in WHOLE_PHOTO:
        raise UserError(WHOLE_PHOTO[kept])
    classes = model.classes
    if positive is not None:
        if positive not in classes:
            raise UserError(f"--positive '{positive}' is not a class of this model; its classes: {', '.join(classes)}")
        return positive
    chosen = OperatingPoint.of(model.meta).positive_class
    if chosen:
        return chosen
    named = [c for c in classes if POSITIVE_NAMES.search(c)]
    if len(named) == 1:
        return named[0]
    raise UserError(f"which class is the object to find? give --positive, one of: {', '.join(classes)}")


@dataclass(frozen=True)
class Window:
    """The training crop shape in its own pixels (width, height) and how a window becomes the
    model's input: `fit` is 'squash' (stretched to the square input), 'crop' (the model saw the
    centre square of each crop, so windows are square) or 'pad' (letterboxed with grey)."""

    width: int
    height: int
    fit: str = "squash"
    defaults: tuple = ()  # (key, value) scan settings recorded for the run: margin, min_size, threshold, vote

    @property
    def aspect(self) -> float:
        return self.width / self.height


def window_of(model, positive: str) -> Window:
    """The run's window: cached in RUN/scan_window.json, else measured from the positive class's
    training crops listed in splits.csv, else the model's square input. The cache may also hold
    the run's default `margin` and `min_size` (see `remember`): the service and the page use them."""
    fit = model.resize_mode
    run = Path(model.path) if getattr(model, "path", None) else None
    cached = read_json(run / CACHE) if run and (run / CACHE).is_file() else None
    if cached and cached.get("positive") == positive:
        w, h = cached["width"], cached["height"]
    else:
        w, h = _median_crop(run, positive) if run else (model.img_size, model.img_size)
        if run:
            try:
                write_json(
                    run / CACHE,
                    {
                        "positive": positive,
                        "width": w,
                        "height": h,
                        "measured_from": "median size of the training crops of this class",
                    },
                )
            except OSError:
                pass  # a read-only run folder: measure again next time
    if fit == "crop":
        w = h = min(w, h)
    defaults = tuple(
        (k, cached[k])
        for k in ("margin", "min_size", "threshold", "box_threshold", "vote", "verify", "verify_top")
        if cached and cached.get(k) is not None
    )
    return Window(int(w), int(h), fit, defaults)


def remember(run: str | Path, positive: str, **defaults) -> None:
    """Record default scan settings (margin, min_size, threshold, vote, verify, verify_top,
    box_threshold) for a run, in RUN/scan_window.json. `verify` names a verifier run folder: its model
    files are copied into RUN/verifier/, so the run folder stays whole when it is moved or registered.
    With a verifier, `threshold` is its photo-level operating point and `box_threshold` the scan
    score a window needs to become a box.

        remember("runs/person-1", "person", margin=[0.167, 0.1], min_size=128)
        remember("runs/person-1", "person", verify="runs/person-lite0", verify_top=8, threshold=0.9,
                 box_threshold=0.8)
    """
    from imgclf.inference.load import load_model

    model = load_model(run)
    window_of(model, positive)  # measures and writes the cache first
    path = Path(model.path) / CACHE
    if defaults.get("verify"):
        _copy_verifier(Path(defaults["verify"]), Path(model.path) / VERIFIER)
        defaults["verify"] = VERIFIER
    write_json(path, {**read_json(path), **defaults})


VERIFIER = "verifier"  # RUN/verifier/: the recorded verifier's model files


def _copy_verifier(src: Path, dest: Path) -> None:
    """The verifier's model.json and weights into dest, replaced whole (a folder beside it, renamed)."""
    import shutil

    from imgclf.core.files import fsync_dir, new_temp_dir

    if (src / "model.json").resolve() == (dest / "model.json").resolve():
        return
    tmp = new_temp_dir(dest.parent, ".verifier-")
    for name in ("model.json", "model.safetensors"):
        shutil.copyfile(src / name, tmp / name)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    fsync_dir(dest.parent)
    from imgclf.scanning.verify import load_verifier

    load_verifier(dest)  # exports model.onnx now, not on the first photo a service is sent


def _median_crop(run: Path, positive: str) -> tuple[int, int]:
    from imgclf.data.images import UnusableImage, image_size
    from imgclf.store.runs import read_splits

    rows = [r["path"] for r in read_splits(run) if r["label"] == positive and r["split"] == "train"]
    sizes = []
    for p in rows[:: max(1, len(rows) // SAMPLE)]:
        try:
            sizes.append(image_size(p))
        except (UnusableImage, OSError):
            continue
    if not sizes:
        side = _input_size(run)
        return side, side
    a = np.array(sizes)
    return int(np.median(a[:, 0])), int(np.median(a[:, 1]))


def _input_size(run: Path) -> int:
    return int(load_run_meta(run, loadable=False).input.size)


def pyramid(window: Window, image_w: int, image_h: int, scales=None, min_size: int | None = None) -> list[float]:
    """Scales s (the window covers window.width/s x window.height/s image pixels), largest first.

    By default from the scale whose window is `min_size` px tall down in steps of 0.8 until the
    window no longer fits the image; given `scales` are kept where the window fits.
    """

    def fits(s: float) -> bool:
        return window.width / s <= image_w + 0.5 and window.height / s <= image_h + 0.5

    if scales:
        return [float(s) for s in scales if s > 0 and fits(s)]
    top = window.height / (min_size or DEFAULT_MIN_SIZE)
    out, s = [], top
    while fits(s) and len(out) < 64:
        out.append(s)
        s *= SCALE_STEP
    if not out:
        # The image is smaller than the smallest window: one scale that fits it whole.
        out = [max(window.width / image_w, window.height / image_h)]
    return out

"""What a crop-model scan of a photo will cost, in seconds, known from its size before it runs.

A scan's work is the pyramid's: each level resamples the photo, then either scores every window
(window by window: the cost is the window count) or runs the conv trunk over the whole level (fully
convolutional: the cost is the pixels the trunk convolves). The model's price of one window, or of
one trunk pixel, is measured once per loaded model (`unit_costs`: a few timed batches, about half a
second for a Lite0), so the estimate holds for this model on this machine: a default Lite0 crop
model (96 px, flip TTA) scored a window in 3.5-8 ms on 2 busy cores (the issue's probe: 20 ms),
so a 640 x 480 photo's 9,000 windows at the default 64 px are a minute or more, while a simple_cnn
scanned fully convolutionally covers them in well under a second.

A scan over the budget is refused before a pixel is decoded; one whose window size the user did not
choose has it raised instead, in the pyramid's own steps, until the scan fits (`fit`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from imgclf.core.work import BATCH_SECONDS, TooMuchWork, measured, timed
from imgclf.scanning.window import DEFAULT_MIN_SIZE, SCALE_STEP, pyramid

CLI_NAMES = {"min_size": "--min-size", "stride": "--stride", "verify_top": "--verifier-top", "limit": "--max-seconds"}
LEVEL_SECONDS = 0.001  # per pyramid level: the small tensor work around each one


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per unit of work: a window (or a trunk pixel, fully convolutional), a trunk pass (its
    fixed overhead: a small pyramid level is mostly overhead), a resampled pixel, and the
    verifier's fixed look at each photo."""

    unit: float
    per_pass: float
    resize_px: float
    verifier: float

    def batch(self) -> int:
        """Windows in one forward batch: as many as take about BATCH_SECONDS, so a stop (shutdown,
        Ctrl-C, a deadline) waits at most that long; 1024 at most, 8 at least."""
        return int(min(1024, max(8, BATCH_SECONDS / max(self.unit, 1e-9))))


def unit_costs(scanner) -> UnitCosts:
    """The scanner's model's measured costs, cached on the loaded model (core.work.measured)."""
    key = ("scan", scanner.method, scanner.stride if scanner.parts else 0, scanner.model.tta)
    unit, per_pass = measured(scanner.model, key, lambda: _fcn_pixel(scanner) if scanner.parts else _window(scanner))
    verifier = 0.0
    if scanner.verify:
        verify = scanner.verify
        verifier = verify.top * measured(verify.model, "verify", lambda: _verify(verify))
    return UnitCosts(unit, per_pass, _resize_pixel(), verifier)


def estimate(scanner, width: int, height: int) -> dict:
    """{seconds, windows, levels} of scanning a width x height photo, either way up (EXIF may turn
    it upright after the header was read)."""
    return max((_estimate(scanner, w, h) for w, h in ((width, height), (height, width))), key=lambda e: e["seconds"])


def _estimate(scanner, width: int, height: int) -> dict:
    costs = unit_costs(scanner)
    seconds, windows = costs.verifier, 0
    scales = pyramid(scanner.window, width, height, scanner.scales, scanner.min_size)
    for s in scales:
        *_, cw, ch, rw, rh = scanner._level_size(width, height, s)
        n = ((rw - cw) // scanner.stride + 1) * ((rh - ch) // scanner.stride + 1)
        windows += n
        passes = _passes(scanner) if scanner.parts else math.ceil(n / costs.batch())
        work = n if not scanner.parts else passes * rw * rh
        seconds += LEVEL_SECONDS + passes * costs.per_pass + costs.resize_px * (width * height + rw * rh)
        seconds += costs.unit * work
    return {"seconds": seconds, "windows": windows, "levels": len(scales)}


def fit(scanner, width: int, height: int, limit: float, names: dict = CLI_NAMES):
    """The scanner for this photo within `limit` seconds: itself when its estimate fits; else, when
    the user chose no window size (min_size, scales), a copy whose smallest window is raised in the
    pyramid's steps until it fits; else TooMuchWork saying what would fit."""
    est = estimate(scanner, width, height)
    if est["seconds"] <= limit:
        return scanner, est
    if not {"min_size", "scales"} & scanner.given:  # the window size is ours to raise
        for size in _larger_sizes(scanner, width, height):
            other = scanner.with_options(min_size=size)
            est = estimate(other, width, height)
            if est["seconds"] <= limit:
                return other, est
    raise TooMuchWork(_over(scanner, width, height, estimate(scanner, width, height), limit, names))


def _larger_sizes(scanner, width: int, height: int):
    """Smallest-window heights past the current one, 1.25x apart, up to the one that covers the photo."""
    size = float(scanner.min_size or DEFAULT_MIN_SIZE)
    top = max(width, height) / min(1.0, scanner.window.aspect)
    while size < top:
        size = math.ceil(size / SCALE_STEP)
        yield int(size)


def _over(scanner, width: int, height: int, est: dict, limit: float, names: dict) -> str:
    fits = None
    if scanner.scales is None:
        sizes = _larger_sizes(scanner, width, height)
        fits = next(
            (s for s in sizes if estimate(scanner.with_options(min_size=s), width, height)["seconds"] <= limit), None
        )
    ways = [f"{names['min_size']} {fits} or more" if fits else None]
    if names.get("verify_top") and scanner.verify and unit_costs(scanner).verifier > limit / 2:
        ways.append(f"a smaller {names['verify_top']} (now {scanner.verify.top})")
    if names.get("stride") and not scanner.parts:
        ways.append(f"a larger {names['stride']} (now {scanner.stride})")
    ways.append("a smaller image")
    return (
        f"scanning this {width:,} x {height:,} px image would take about {_seconds(est['seconds'])} s "
        f"({est['windows']:,} windows, {_price(scanner)}), over the {limit:g} s limit ({names['limit']}): "
        f"use {_either([w for w in ways if w])}"
    )


def _seconds(s: float) -> str:
    return f"{s:,.0f}" if s >= 10 else f"{s:.2g}"


def _either(ways: list[str]) -> str:
    return ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])} or {ways[-1]}"


def _price(scanner) -> str:
    unit = unit_costs(scanner).unit
    if scanner.parts:
        return f"fully convolutional, {unit * 640 * 480 * 1000:.3g} ms a 640 x 480 px level"
    return f"{unit * 1000:.3g} ms a window"


def _passes(scanner) -> int:
    """Trunk passes per level, fully convolutional: one per offset when the stride is finer than the
    network's own (scanner._fcn_level)."""
    r, st = scanner.parts.stride, scanner.stride
    return (r // st) ** 2 if st % r and r % st == 0 else 1


def _window(scanner) -> tuple[float, float]:
    """(seconds per window, seconds per batch), window by window: batches of 1 and 32 windows through
    predict_proba (the run's TTA); the difference is the windows' price, the rest each batch's. 32,
    as an expensive model's scan batches are about that (UnitCosts.batch): a Lite0's windows cost
    3.5 ms each in batches of 16, 4.7 in batches of 64, 7.7 in batches of 150 (2 loaded cores)."""
    size = scanner.size

    def once(n: int) -> float:
        crops = np.zeros((n, size, size, 3), np.uint8)
        return timed(lambda: scanner.model.predict_proba(crops))

    one, many = once(1), once(32)
    window = max((many - one) / 31, many / 32 / 4)
    return window, max(one - window, 0.0)


def _fcn_pixel(scanner) -> tuple[float, float]:
    """(seconds per trunk pixel, seconds per pass), fully convolutional: the trunk and head over a
    blank level of one window and of at least 320 x 320 px, with the run's flip TTA (window_logits
    does both ways); the difference is the price of the pixels, the rest each pass's overhead."""
    from imgclf.scanning.fcn import window_logits

    size, r = scanner.size, scanner.parts.stride
    side = size + max(0, math.ceil((320 - size) / r)) * r

    def once(n: int) -> float:
        x = torch.zeros((1, 3, n, n), dtype=torch.uint8 if scanner.parts.raw_input else torch.float32)
        x = x.to(scanner.model.device)
        return timed(lambda: window_logits(scanner.parts, x, size, flip=scanner.model.tta == "flip"))

    small, large = once(size), once(side)
    pixel = max(large - small, 0.0) / (side**2 - size**2)
    return max(pixel, large / side**2 / 4), max(small - pixel * size**2, 0.0)


@functools.lru_cache(maxsize=1)  # the same torch code for every model
def _resize_pixel() -> float:
    """Seconds per pixel (source + result) of the antialiased resize that makes each level."""
    import torch.nn.functional as F

    x = torch.zeros((1, 3, 480, 640), dtype=torch.uint8)
    t = timed(lambda: F.interpolate(x, size=(240, 320), mode="bilinear", antialias=True, align_corners=False))
    return t / (480 * 640 + 240 * 320)


def _verify(verifier) -> float:
    """Seconds of the verifier's look at one window (of its `top` a photo), from a look at 4: a
    --verifier-top of 1000 is not measured by a thousand."""
    from PIL import Image

    img = Image.new("RGB", (256, 256), (128, 128, 128))
    boxes = np.tile(np.array([[0.0, 0.0, 128.0, 256.0]]), (4, 1))
    return timed(lambda: verifier.score(img, boxes)) / len(boxes)

"""What a detector's look at a photo costs, in seconds, known from its size before it runs.

A detector sees every photo at one input size (the pretrained SSDLite: 300 x 300; torchvision's: their
own), so its cost is a fixed price per photo, measured once per loaded network (a few timed runs of a
blank photo), plus decoding and shrinking the photo, which grow with its pixels. On 2 cores the
pretrained detector costs ~30 ms a photo: only a torchvision detector on a slow machine, or a photo of
tens of megapixels, comes near a limit.
"""

from __future__ import annotations

import functools

from imgclf.core.work import TooMuchWork, measured, timed


def seconds_per_photo(detector) -> float:
    """The detector's measured seconds for one photo, cached on its loaded network (per tiling: each
    tile is one more pass; per engine: one network may run in ONNX Runtime fp32 and int8)."""
    from PIL import Image

    blank = Image.new("RGB", (640, 480), (128, 128, 128))
    key = f"photo {detector.tiles[0]}x{detector.tiles[1]} {getattr(detector, 'backend', 'torch')}"
    return measured(detector.net, key, lambda: timed(lambda: detector.detect_batch([blank])))


def estimate(detector, width: int, height: int) -> float:
    """Seconds to decode, shrink and look at a width x height photo."""
    return seconds_per_photo(detector) + _pixel_seconds() * width * height


def check(detector, width: int, height: int, limit: float, limit_name: str = "--max-seconds") -> float:
    """The photo's estimate, or TooMuchWork when it is over `limit` seconds."""
    seconds = estimate(detector, width, height)
    if seconds > limit:
        raise TooMuchWork(
            f"looking at this {width:,} x {height:,} px image would take about {seconds:,.1f} s with "
            f"{detector.name}, over the {limit:g} s limit ({limit_name}): use a smaller image or a faster detector"
        )
    return seconds


@functools.lru_cache(maxsize=1)
def _pixel_seconds() -> float:
    """Seconds per pixel of decoding a photo and shrinking it (a PNG: slower to decode than a JPEG)."""
    import io

    import numpy as np
    from PIL import Image

    from imgclf.data.images import read_rgb, resize

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    return timed(lambda: resize(read_rgb(io.BytesIO(data)), 300)) / (640 * 480)

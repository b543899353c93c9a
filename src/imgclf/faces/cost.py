"""What looking for faces in a photo costs, in seconds, known from its size before it is decoded.

The search is dlib's HOG detector (model.FaceModel.find), whose cost grows with the pixels searched: a
photo is searched at most DETECT_SIDE px on its long side, once as it is and, when nothing is found,
once equalised; one UPSAMPLE_BELOW px or smaller is searched at twice its size too when nothing is
found there (4x the pixels). Its price per pixel, plain and upsampled, is measured once per loaded
model (a few timed runs on a blank 320 x 240 photo: ~0.15 s); decoding and shrinking the photo
(data.images.decode_seconds) grow with its full size. The estimate is the search's worst case (every
pass, none finding a face); each face found then costs its alignment and embedding (~10 ms), which
the deadline of the request bounds. On a loaded 2-core machine a 640 x 480 photo is ~0.25 s, a
40-megapixel one ~2 s: only a slow machine or a short limit refuses a photo.
"""

from __future__ import annotations

import numpy as np

from imgclf.core.work import measured, timed, within_limit
from imgclf.data.images import decode_seconds
from imgclf.models.face.model import DETECT_SIDE, UPSAMPLE_BELOW


def pixel_seconds(model) -> tuple[float, float]:
    """(seconds per pixel searched as it is, at twice its size) for this loaded FaceModel."""
    return measured(model, "hog", lambda: _measure(model))


def estimate(model, width: int, height: int) -> float:
    """Seconds to decode a width x height photo and search it for faces, at worst."""
    scale = min(1.0, DETECT_SIDE / max(width, height))
    searched = width * height * scale * scale
    plain, upsampled = pixel_seconds(model)
    if max(width, height) * scale > UPSAMPLE_BELOW:
        upsampled = 0.0
    return decode_seconds() * width * height + 2 * (plain + upsampled) * searched


def check(model, width: int, height: int, limit: float, limit_name: str = "--max-seconds") -> float:
    """The photo's estimate, or TooMuchWork when it is over `limit` seconds."""
    work = f"looking for faces in this {width:,} x {height:,} px image"
    return within_limit(estimate(model, width, height), limit, work, limit_name, "send a smaller image")


def _measure(model) -> tuple[float, float]:
    blank = np.full((240, 320, 3), 128, np.uint8)
    plain = timed(lambda: model.detector.run(blank, 0, 0.0))
    upsampled = timed(lambda: model.detector.run(blank, 1, 0.0))
    return plain / blank[..., 0].size, upsampled / blank[..., 0].size

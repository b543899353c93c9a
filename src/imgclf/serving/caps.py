"""Work caps for the routes whose cost grows with an image's shape, not its bytes (/scan, /explain).

A 99-byte PNG can claim 20000 x 1 pixels: under any pixel limit, yet /scan resamples it so that the
smallest window becomes the model's input, a strip millions of pixels long, and ran for a minute
at ~5 GB. So the shape is read from the header first (no pixel decoded) and refused when its long
side, its aspect ratio or, for /scan, the number of windows it would cost (which also grows with
the request's min_size) is over the service's caps.
"""

from __future__ import annotations

import io

from imgclf.data.images import UnusableImage, image_size
from imgclf.serving.limits import Rejected, png_size, rejection


def header_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image's header, or the Rejected a full decode would have given."""
    size = png_size(data)
    try:
        width, height = size or image_size(io.BytesIO(data))
    except UnusableImage as e:
        raise rejection(e.reason, max_pixels) from e
    if width * height > max_pixels:
        raise rejection(f"too large: {width * height} pixels", max_pixels)
    return width, height


def check_shape(width: int, height: int, settings) -> None:
    """Refuse a photo whose long side or aspect ratio is over the caps (413 / 422)."""
    long, short = max(width, height), min(width, height)
    if long > settings.max_side:
        raise Rejected(
            413,
            f"image is {width:,} x {height:,} px: its long side is over the {settings.max_side:,} px "
            "limit of this route (ServeSettings.max_side); send a smaller image",
            "too_large",
        )
    if short < 1 or long / short > settings.max_aspect:
        raise Rejected(
            422,
            f"image is {width:,} x {height:,} px: an aspect ratio over {settings.max_aspect:g}:1 "
            "(ServeSettings.max_aspect); crop it to the part to look at",
            "bad_shape",
        )


def check_windows(scanner, width: int, height: int, max_windows: int) -> int:
    """The windows a scan of this photo will score, refused with 413 over `max_windows`. Both
    orientations count: the header gives the stored size, and EXIF may turn the photo upright."""
    windows = max(scanner.windows(width, height), scanner.windows(height, width))
    if windows > max_windows:
        raise Rejected(
            413,
            f"scanning this {width:,} x {height:,} px image would score {windows:,} windows, over the "
            f"{max_windows:,} limit (ServeSettings.max_windows): send a smaller image or a larger "
            "min_size",
            "too_much_work",
        )
    return windows

"""What a detector's look at a photo costs, in seconds, known from its size before it runs.

A detector sees every photo at one input size (the pretrained SSDLite: 300 x 300; torchvision's: their
own), so its cost is a fixed price per photo, measured once per loaded network (a few timed runs of a
blank photo), plus decoding and shrinking the photo, which grow with its pixels. On 2 cores the
pretrained detector costs ~30 ms a photo: only a torchvision detector on a slow machine, or a photo of
tens of megapixels, comes near a limit.
"""

from __future__ import annotations

from imgclf.core.work import measured, timed, within_limit
from imgclf.data.images import decode_seconds


def seconds_per_photo(detector) -> float:
    """The detector's measured seconds for one photo, cached on its loaded network (per tiling: each
    tile is one more pass, as is the mirror image; per engine: one network may run in ONNX Runtime fp32 and int8)."""
    from PIL import Image

    blank = Image.new("RGB", (640, 480), (128, 128, 128))
    key = f"photo {detector.tiles[0]}x{detector.tiles[1]} {getattr(detector, 'backend', 'torch')}"
    key += " flip" if getattr(detector, "flip", False) else ""  # the mirror image: a second pass
    # Keyed on what runs the network: asking a graph-run detector for its `net` would build it in torch.
    owner = getattr(detector, "session", None) or detector.net
    return measured(owner, key, lambda: timed(lambda: detector.detect_batch([blank])))


def estimate(detector, width: int, height: int) -> float:
    """Seconds to decode, shrink and look at a width x height photo."""
    return seconds_per_photo(detector) + decode_seconds() * width * height


def check(detector, width: int, height: int, limit: float, limit_name: str = "--max-seconds") -> float:
    """The photo's estimate, or TooMuchWork when it is over `limit` seconds."""
    return within_limit(
        estimate(detector, width, height),
        limit,
        f"looking at this {width:,} x {height:,} px image with {detector.name}",
        limit_name,
        "use a smaller image or a faster detector",
    )

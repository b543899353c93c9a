"""Negative crops for a crop detector, cut from photos known to hold no object.

- Hard negatives (`imgclf scan RUN PHOTOS --mine DIR`): every window that still fires on a
  person-free photo is a false alarm; added to the negative class, training again learns exactly
  the backgrounds it confused (Dalal & Triggs' recipe for the HOG detector).
- Random negatives (`imgclf negatives PHOTOS --out DIR`): windows at random places and scales, the
  negative class to start from when a dataset holds only object crops (as INRIA's does).

Crops keep the window's original pixels resized to the training crop size, and are named by the
sha256 of their PNG bytes, so mining the same photo twice adds nothing new.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from imgclf.core.files import output_folder
from imgclf.data.images import REDUCING_GAP, RESAMPLE
from imgclf.settings.scan import NegativesSettings


def save_crop(img, box, size: tuple[int, int], out: Path) -> Path:
    """The box (x1, y1, x2, y2) of the RGB image, resized to size (w, h), as OUT/<sha256>.png."""
    x1, y1, x2, y2 = (float(v) for v in box)
    box = (max(0.0, x1), max(0.0, y1), min(float(img.width), x2), min(float(img.height), y2))
    crop = img.resize(size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    data = buf.getvalue()
    path = out / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def random_windows(
    width: int, height: int, size: tuple[int, int], n: int, rng: np.random.Generator, min_height: int = 32
) -> np.ndarray:
    """n boxes of the aspect of size (w, h), heights log-uniform from min_height up to what fits
    the photo, placed uniformly: many small windows and some large, as a pyramid scan sees them."""
    aspect = size[0] / size[1]
    top = min(height, width / aspect)
    low = min(min_height, top)
    h = np.exp(rng.uniform(np.log(low), np.log(top), n))
    w = h * aspect
    x1 = rng.uniform(0, 1, n) * (width - w)
    y1 = rng.uniform(0, 1, n) * (height - h)
    return np.stack([x1, y1, x1 + w, y1 + h], 1)


def negatives(
    inputs,
    out: str | Path,
    *,
    per_image: int = 20,
    size: str | tuple[int, int] = "64x64",
    seed: int = 0,
    min_height: int = 32,
    verbose: bool = True,
) -> dict:
    """Cut `per_image` random windows from each person-free photo into OUT (PNG, sha256 names).

    >>> imgclf.negatives(["street-scenes/no-person"], "data/background", per_image=30, size="96x160")
    """
    from imgclf.data.images import UnusableImage, read_rgb
    from imgclf.inference.predictor import expand_inputs

    size = NegativesSettings(out=out, per_image=per_image, size=size, seed=seed).size  # checked as declared
    out = output_folder(out, "--out")  # made once the settings are known good
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written, skipped, photos = 0, [], 0
    for path in sorted(str(p) for p in expand_inputs(inputs)):
        try:
            img = read_rgb(path)
        except UnusableImage as e:
            skipped.append({"path": path, "error": e.reason})
            continue
        photos += 1
        for box in random_windows(img.width, img.height, size, per_image, rng, min_height):
            save_crop(img, box, size, out)
            written += 1
    if verbose:
        print(
            f"{written} negative crops of {size[0]}x{size[1]} from {photos} photos -> {out}"
            + (f" ({len(skipped)} unreadable skipped)" if skipped else "")
        )
    return {"out": str(out), "photos": photos, "crops": written, "size": list(size), "skipped": skipped}

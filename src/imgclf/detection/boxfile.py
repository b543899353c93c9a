"""What every box-annotation reader shares: one annotated photo (`Photo`), a folder of them (`BoxSet`),
and the checks a box passes in any format, each failing as a UserError of one line that names the file
and the fix.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.data.images import UnusableImage, image_size, opened
from imgclf.data.spec import is_image

NORM_TOL = 0.001  # rounding slack of normalised coordinates (YOLO, a CSV in 0..1); a box within it is clipped
PIXEL_TOL = 1.0  # the same in pixels (VOC, COCO, a CSV); it also absorbs 0- vs 1-based off-by-ones


@dataclass
class Photo:
    path: str  # absolute path of the image file
    width: int  # upright size (EXIF orientation applied): the frame the boxes are in
    height: int
    boxes: np.ndarray  # (n, 4) float32 pixels x1, y1, x2, y2; n = 0 for a photo with nothing in it
    labels: list[str]  # class name per box
    split: str | None = None  # "train", "val" or "test" where the user's files say (detection.splits)


@dataclass
class BoxSet:
    photos: list[Photo]
    classes: list[str]  # YOLO: its names order; VOC: classes.txt order, else sorted names; COCO: by category id
    format: str  # "yolo" | "voc" | "coco" | "csv"
    root: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable images


def head_bytes(path: Path, n: int) -> bytes:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        return f.read(n)
    return b""


def shallowest(files: list[Path], names) -> Path | None:
    hits = [p for p in files if p.name.lower() in names]
    return min(hits, key=lambda p: (len(p.parts), str(p))) if hits else None


def mirror_path(path: Path, root: Path, src: str, dst: str) -> Path | None:
    """`path` with its last `src` folder below root swapped for `dst` (images/train/a.jpg -> labels/train/a.jpg)."""
    parts = list(path.relative_to(root).parts[:-1])
    hits = [i for i, part in enumerate(parts) if part.lower() == src]
    if hits:
        parts[hits[-1]] = dst
        return root.joinpath(*parts, path.name)
    return None


def pick(candidates: list[Path], near: list[Path]) -> Path | None:
    """The candidate in the first of the `near` folders holding one, else the only one, else None."""
    hit = next((p for d in near for p in candidates if p.parent == d), None)
    return hit or (candidates[0] if len(candidates) == 1 else None)


def by_file_name(files: list[Path]) -> dict[str, list[Path]]:
    """The images among `files`, by file name."""
    found: dict[str, list[Path]] = {}
    for p in files:
        if is_image(p):
            found.setdefault(p.name, []).append(p)
    return found


def locate(name: str, folders, by_name: dict[str, list[Path]]) -> Path | None:
    """The image an annotation file names: `name` under the first of `folders` that holds it, else the one
    image of that file name anywhere in the data folder (`by_name`), else None."""
    if not name:
        return None
    hit = next((d / name for d in folders if (d / name).is_file()), None)
    return hit or pick(by_name.get(Path(name).name, []), [])


def relative(path, root) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def upright_size(path: Path, skipped: list) -> tuple[int, int] | None:
    """The upright (width, height), or None with the image added to `skipped`."""
    try:
        w, h = image_size(path)
    except UnusableImage as e:
        skipped.append((str(path), e.reason))
        return None
    try:  # the EXIF block is in the header that Image.open parses anyway: cheap
        with opened(path, scalable=True) as img:
            turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # Orientation: the four turns by 90 degrees
        return (h, w) if turned else (w, h)
    except Exception:  # a malformed EXIF block only loses the rotation, as in images.read_rgb
        return w, h


def number(text, where: str, what: str) -> float:
    if text is None:
        raise UserError(f"{where}: {what} is missing: add it")
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} {text!r} is not a number: fix it") from None
    if not math.isfinite(v):
        raise UserError(f"{where}: {what} is {text}, not a finite number: fix it")
    return v


def clip_box(edges, w, h, tol, names, where: str, what: str) -> list[float]:
    """`edges` (x1, y1, x2, y2, in units where the image spans 0..w and 0..h) clipped to the image. A box with
    no area, or beyond the image by more than `tol`, is refused; `names` say how the user wrote each edge."""
    fix = f"fix or delete the {what}"
    if edges[2] <= edges[0] or edges[3] <= edges[1]:
        size = f"width = {edges[2] - edges[0]:g}, height = {edges[3] - edges[1]:g}"
        raise UserError(f"{where}: box has zero or negative size ({size}): {fix}")
    for i, v in enumerate(edges):
        limit = (w, h)[i - 2] if i >= 2 else 0
        if (v < -tol) if i < 2 else (v > limit + tol):
            shown = f"{names[i]} = {v:g} {'<' if i < 2 else '>'} {limit:g}"
            raise UserError(f"{where}: box outside the image ({shown}): {fix}")
    x1, y1, x2, y2 = max(edges[0], 0), max(edges[1], 0), min(edges[2], w), min(edges[3], h)
    if x2 <= x1 or y2 <= y1:  # within the tolerance, yet wholly beyond the edge: not one pixel in the photo
        raise UserError(f"{where}: box lies beyond the image's edge: {fix}")
    return [x1, y1, x2, y2]


def make_photo(path: Path, size, boxes: list, labels: list[str]) -> Photo:
    return Photo(str(path), size[0], size[1], np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels)


def read_text(path: Path, root: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: the byte-order mark of Windows editors
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{relative(path, root)}: cannot read it as text ({e}): fix or delete the file") from None

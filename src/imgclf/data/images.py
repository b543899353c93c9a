"""Read one image file into RGB, and resize it the single way training and prediction share.

Every failure a user's file can cause becomes `UnusableImage` with a short reason, so a caller
can skip the file with one warning line instead of crashing halfway through a dataset.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import warnings
from contextlib import ExitStack, contextmanager
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.core.errors import UserError
from imgclf.core.files import NotRegularFile, open_regular
from imgclf.data.formats import CAMERA_RAW, IMAGE_EXTENSIONS, NEEDS_DECODER

# PIL logs what is wrong with a malformed file at ERROR before raising ("More samples per pixel than can
# be decoded"); imgclf reports the file with its reason, and Python's last-resort handler printed PIL's
# line bare on stderr besides. Quiet unless the program set PIL's level itself.
if logging.getLogger("PIL").level == logging.NOTSET:
    logging.getLogger("PIL").setLevel(logging.CRITICAL)

RESIZE_MODES = ("squash", "crop", "pad")
# Refuse to decode more pixels: a tiny compressed file can claim gigapixels.
MAX_PIXELS = 100_000_000
# Bump when whether a file decodes, or what it decodes to, changes: cached decodes then expire.
DECODE_RULES = 2  # 2: JPEGs over MAX_PIXELS decode at reduced scale instead of being skipped
JPEG_START = b"\xff\xd8\xff"
PAD_GREY = 114
# One filter everywhere; Pillow's BILINEAR is antialiased when downscaling.
RESAMPLE = Image.Resampling.BILINEAR
# Integer pre-reduction for big downscales: much faster, visually the same as a full resample.
REDUCING_GAP = 3.0
# JPEGs are decoded at 1/2..1/8 scale only while that leaves >= this many times the target side.
DRAFT_GAP = 2
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class UnusableImage(Exception):
    """A file that cannot become a training or prediction input; `.reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


WEB_SCHEMES = ("http://", "https://")
URL_MAX_BYTES = 100_000_000
URL_TIMEOUT_S = 30.0


def is_web_url(item) -> bool:
    """An http(s) address: predict, scan and identify fetch the image it names (a path is not one)."""
    return isinstance(item, str) and item.lower().startswith(WEB_SCHEMES)


def is_image_url(item) -> bool:
    """A web address whose path ends in an image's extension (not a stream: inference.video)."""
    from urllib.parse import urlsplit

    return is_web_url(item) and os.path.splitext(urlsplit(item).path)[1].lower() in IMAGE_EXTENSIONS


def fetch_url(url: str) -> io.BytesIO:
    """The bytes at a web address, at most URL_MAX_BYTES, within URL_TIMEOUT_S a read; a failure is
    UnusableImage with the reason (the image is skipped and said, as an unreadable file is)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as r:
            data = r.read(URL_MAX_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise UnusableImage(f"cannot fetch: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise UnusableImage(f"cannot fetch: {getattr(e, 'reason', None) or e}") from None
    if len(data) > URL_MAX_BYTES:
        raise UnusableImage(f"cannot fetch: larger than {URL_MAX_BYTES // 1_000_000} MB")
    if not data:
        raise UnusableImage("empty file (0 bytes)")
    return io.BytesIO(data)


def read_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The first frame of the image at `path`, fully decoded, upright per EXIF, in mode RGB."""
    return _read(path, max_pixels, draft_side=None)


def read_scaled(
    path: str | os.PathLike | BinaryIO, side: int, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """read_rgb for a model that sees the photo at `side` px or less: a JPEG is decoded at the
    smallest of JPEG's own reduced scales (1/2, 1/4, 1/8) that keeps both sides >= `side` (a 12 MP
    phone photo in 18 ms instead of 60-120 on 2 cores). Also returns the photo's full upright
    (width, height), so answers can be given in the photo's own pixels."""
    return _read(path, max_pixels, draft_side=side, full_size=True)


def load_resized(
    path: str | os.PathLike | BinaryIO,
    size: int,
    mode: str = "squash",
    max_pixels: int = MAX_PIXELS,
    claimed: bool = False,
) -> np.ndarray:
    """read_rgb + resize: the (size, size, 3) uint8 model input for one file (a path, or a binary
    file object such as io.BytesIO(upload)). `claimed`: `max_pixels` bounds the pixels the header
    claims (the service's --max-pixels), not only those decoded."""
    return resize(_read(path, max_pixels, draft_side=size * DRAFT_GAP, claimed=claimed), size, mode)


def load_upto(path: str | os.PathLike, size: int, small: int) -> np.ndarray:
    """load_resized at `size`, but an image whose shorter side is at most 2 x `small` at `small`:
    one decode either way, and a tiny image is not upsampled only to be shrunk again (data.doctor)."""
    img = _read(path, MAX_PIXELS, draft_side=size * DRAFT_GAP)
    return resize(img, size if min(img.size) > 2 * small else small)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as stored in the file (before EXIF rotation), reading only the header."""
    with opened(path, scalable=True) as img:
        return img.size


def resize(img: Image.Image, size: int, mode: str = "squash") -> np.ndarray:
    """A (size, size, 3) uint8 array: `squash` ignores the aspect ratio and keeps the whole scene,
    `crop` fills the square and cuts the longer side's ends, `pad` letterboxes with grey.
    Any PIL mode is accepted and converted by `to_rgb`, as files are."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    img = to_rgb(img)
    if mode == "squash":
        out = img.resize((size, size), RESAMPLE, reducing_gap=REDUCING_GAP)
    elif mode == "crop":
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        # Cropping via `box` resamples the exact centre square, without a rounded intermediate size.
        out = img.resize((size, size), RESAMPLE, box=(left, top, left + side, top + side), reducing_gap=REDUCING_GAP)
    else:
        out = _letterbox(img, size)
    return np.array(out, dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def decode_seconds() -> float:
    """Seconds per pixel of decoding a photo and shrinking it (a PNG: slower to decode than a JPEG),
    measured once: what a photo's size costs before any model looks at it (the scans' estimates)."""
    import io

    from imgclf.core.work import timed

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    return timed(lambda: resize(read_rgb(io.BytesIO(data)), 300)) / (640 * 480)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as RGB, the same way for every file.

    Transparency is composited on white, as viewers show it, instead of exposing whatever colour
    hides under alpha 0. Deeper-than-8-bit data is scaled by its type's range, so a 16-bit mid grey
    stays mid grey rather than saturating.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        return _grey_to_rgb(np.asarray(img), 65535.0)
    if img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        return _grey_to_rgb(values, _full_scale(values, img.mode == "F"))
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def in_memory(image) -> Image.Image:
    """An image given in memory (not a path) as PIL: a PIL image as it is; a file's bytes (or an open
    binary file) decoded as a file is; an array (numpy, or
    anything with __array__: a CPU torch tensor) that is HxW, HxWx1/3/4 or channels first (3xHxW,
    as torchvision holds images), uint8 as it is, floats in [0, 1] or [0, 255], 16-bit and other
    integers scaled by their range, as files are (to_rgb)."""
    if isinstance(image, Image.Image):
        if 0 in image.size:  # resizing it would give a black square and a confident answer
            raise UnusableImage(f"empty image ({image.width}x{image.height} px)")
        return image
    if isinstance(image, (bytes, bytearray, memoryview)) or hasattr(image, "read"):
        return read_rgb(encoded(image))  # a file's bytes, as a web request or an object store gives them
    if not hasattr(image, "__array__"):
        raise TypeError(
            f"cannot read an image from {type(image).__name__}; give a path, PIL image, array or a file's bytes"
        )
    a = np.asarray(image)
    if _channels_first(a.shape):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim in (2, 3) and 0 in a.shape:
        raise UnusableImage(f"empty image (array of shape {a.shape})")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise UserError(f"an image array must be HxW, HxWx3, HxWx4 or 3xHxW; this one has shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind in "fiu" and a.dtype != np.uint8:
        full = 65535.0 if a.dtype == np.uint16 else _full_scale(a.astype(np.float64), a.dtype.kind == "f")
        a = np.clip(np.nan_to_num(a.astype(np.float64) * (255.0 / full)), 0, 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        raise UserError(f"an image array must hold numbers, not {a.dtype}")
    return Image.fromarray(np.ascontiguousarray(a))


def encoded(data) -> BinaryIO:
    """A file's bytes (or an open binary file) as a file object read from its start, as each reader
    (its header, then its pixels) expects."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(data))
    if getattr(data, "seekable", lambda: False)():  # a stream that cannot seek is read once, as it is
        data.seek(0)
    return data


def size_of(item) -> tuple[int, int]:
    """(width, height) of a path (its header only), PIL image or array (in_memory's layouts), before
    any pixel is decoded or copied: what the work limits are checked on."""
    if isinstance(item, Image.Image):
        return item.size
    if hasattr(item, "__array__"):
        shape = tuple(getattr(item, "shape", None) or np.shape(item))
        return (shape[2], shape[1]) if _channels_first(shape) else (shape[1], shape[0])
    if isinstance(item, (bytes, bytearray, memoryview)) or hasattr(item, "read"):
        return image_size(encoded(item))  # a file's bytes: their header, as a path's
    if not isinstance(item, (str, os.PathLike)):
        in_memory(item)  # anything else: its TypeError, naming what it takes
    return image_size(item)


def _channels_first(shape: tuple) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4)


def _read(
    path: str | os.PathLike, max_pixels: int, draft_side: int | None, full_size: bool = False, claimed: bool = False
):
    with opened(path, scalable=bool(draft_side)) as img:
        full = img.size
        if draft_side:
            # JPEG only (a no-op for other formats): decode at reduced scale, far faster.
            img.draft(None, (draft_side, draft_side))
        # The limit bounds what is decoded: a 108 or 200 MP phone photo's JPEG decodes at 1/8 scale
        # for a model (1.7 or 3.1 MP), while a PNG or a full-size read decodes every pixel it claims.
        if (full[0] * full[1] if claimed else img.width * img.height) > max_pixels:
            raise UnusableImage(f"too large: {full[0] * full[1]} pixels > limit {max_pixels}")
        # Decode everything now so a truncated file fails here, not later inside a resize.
        img.load()
        decoded = img.size
        out = to_rgb(_upright(img))
        if not full_size:
            return out
        # The EXIF rotation turned the decoded image a quarter turn when its sides swapped.
        turned = out.size != decoded and out.size == decoded[::-1]
        return out, (full[::-1] if turned else full)


@contextmanager
def opened(path: str | os.PathLike, scalable: bool = False) -> Iterator[Image.Image]:
    """The lazily opened image; any error raised while it is open becomes UnusableImage. `scalable`:
    the caller reads only the size, or decodes a JPEG at reduced scale, so PIL's limit on the pixels
    a file claims is lifted for JPEGs (the caller checks the pixels it will decode)."""
    try:
        with ExitStack() as files:
            # A file object (an upload held in memory by the web service) is checked by its caller; a
            # path is opened only when it is a regular file: a FIFO would block the read forever.
            if is_web_url(path):  # predict's https://.../a.jpg (the web service passes bytes, never a URL)
                path = fetch_url(path)
            if isinstance(path, (str, os.PathLike)) and (ext := os.path.splitext(path)[1].lower()) in CAMERA_RAW:
                raise UnusableImage(
                    f"camera RAW ({ext[1:].upper()}), which imgclf does not read: export it as JPEG or PNG"
                )
            f = encoded(path) if hasattr(path, "read") else files.enter_context(open_regular(path))
            if f is not path and os.fstat(f.fileno()).st_size == 0:
                raise UnusableImage("empty file (0 bytes)")
            with warnings.catch_warnings():
                # Our max_pixels check decides; PIL's warning threshold is a fixed global. Its notes on a
                # malformed file's metadata ("Corrupt EXIF data", "Metadata Warning, tag 259 ...") came out
                # as two lines of Python warning each; the file decodes, or is reported with its reason.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
                with _open_image(f, scalable) as img:
                    yield img
    except UnusableImage:
        raise
    # PIL's decoders raise many types on malformed input (OSError, SyntaxError, struct.error,
    # IndexError, EOFError...), so anything short of an interrupt counts as a bad file.
    except Exception as e:
        raise UnusableImage(_reason(e, path)) from e


def _open_image(f: BinaryIO, scalable: bool) -> Image.Image:
    """Image.open; with `scalable`, a JPEG claiming more pixels than PIL's limit is opened anyway."""
    try:
        return Image.open(f)
    except Image.DecompressionBombError:
        if not (scalable and f.seekable()):
            raise
        f.seek(0)
        if f.read(3) != JPEG_START:
            raise
        f.seek(0)
        # What Image.open does for a JPEG (an MPO too, as many phones write), less its size check.
        from PIL import JpegImagePlugin

        return JpegImagePlugin.jpeg_factory(f)


def skip_warning(path, reason: str) -> str:
    """The console line (rich markup) for a file left out of training, evaluation or an ensemble's
    scoring: the path and reason are the user's text, escaped so "photo[1].jpg" keeps its brackets."""
    from rich.markup import escape

    return f"[yellow]warning[/]: skipped {escape(str(path))}: {escape(reason)}"


def _reason(e: Exception, path=None) -> str:
    if isinstance(e, Image.DecompressionBombError):
        # Drop PIL's ", could be decompression bomb DOS attack." tail: the size says enough.
        return f"too large: {str(e).split(',')[0]}"
    if isinstance(e, UnidentifiedImageError):
        ext = os.path.splitext(path)[1].lower() if isinstance(path, (str, os.PathLike)) else ""
        if ext in NEEDS_DECODER:
            return f"a {ext[1:].upper()} photo this install cannot decode: {NEEDS_DECODER[ext]}"
        return "not an image (cannot identify format)"
    if isinstance(e, FileNotFoundError) and isinstance(path, (str, os.PathLike)) and os.path.islink(path):
        return f"a broken link: {os.readlink(path)} does not exist"
    if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotRegularFile)):
        return f"cannot read file: {e.strerror or e}"
    return f"truncated or corrupt image: {str(e) or type(e).__name__}"


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation as viewers do; a malformed EXIF block only loses the rotation."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _full_scale(values: np.ndarray, is_float: bool) -> float:
    """The full-scale value of wide ('I'/'F') data, which PIL gives without its original type:
    the smallest common range that holds the maximum, or the maximum itself beyond 16 bits."""
    top = float(values.max(initial=0.0, where=np.isfinite(values)))
    if is_float and top <= 1.0:
        return 1.0
    for full in (255.0, 65535.0):
        if top <= full:
            return full
    return top


def _grey_to_rgb(values: np.ndarray, full_scale: float) -> Image.Image:
    scaled = np.nan_to_num(values.astype(np.float64) * (255.0 / full_scale), nan=0.0)
    grey = np.clip(scaled, 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _letterbox(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    fit = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = Image.new("RGB", (size, size), (PAD_GREY,) * 3)
    canvas.paste(img.resize(fit, RESAMPLE, reducing_gap=REDUCING_GAP), ((size - fit[0]) // 2, (size - fit[1]) // 2))
    return canvas

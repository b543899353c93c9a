"""An uploaded image kept as a file training reads back (the feedback inbox, the prediction log)."""

from __future__ import annotations

import io

from imgclf.data.formats import IMAGE_EXTENSIONS
from imgclf.data.images import ALPHA_MODES, opened

# PIL's name of a decoded file's format -> the extension data.discover lists it under: what a kept
# upload (the feedback inbox, the prediction log) is saved as, so that training reads it back. MPO is a
# camera's multi-picture JPEG; PPM also covers PGM/PBM. HEIF and AVIF are read only where their
# decoders are (IMAGE_EXTENSIONS says).
FORMAT_EXT = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "DIB": "dib",
    "TIFF": "tif",
    "PPM": "ppm",
    "TGA": "tga",
    "JPEG2000": "jp2",
    "HEIF": "heic",
    "AVIF": "avif",
}
# Modes a PNG stores as they are; keepable converts any other (CMYK, YCbCr, F) to RGB(A).
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})


def keepable(data: bytes) -> tuple[bytes, str]:
    """(bytes, extension) to keep an uploaded image as (the feedback inbox, the prediction log) so
    that training reads it back: the bytes as sent where data.discover lists their format, else a
    lossless PNG of the first frame. The service decodes whatever Pillow can (ICO, PCX, PSD, ...);
    refusing such a file later, when someone labels it, would lose their correction. The PNG is the
    same bytes for the same upload, so keeping it twice still finds one file. UnusableImage when the
    bytes are not an image."""
    with opened(io.BytesIO(data), scalable=True) as img:  # a 200 MP phone JPEG is kept as it is
        ext = FORMAT_EXT.get(img.format or "")
        if ext and f".{ext}" in IMAGE_EXTENSIONS:
            return data, ext
        img.load()
        if img.mode not in _PNG_MODES:
            img = img.convert("RGBA" if img.mode in ALPHA_MODES else "RGB")
        buf = io.BytesIO()
        img.save(buf, "PNG")
    return buf.getvalue(), "png"

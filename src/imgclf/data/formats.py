"""Which files are images: the extensions imgclf reads, the phone formats this install can decode,
and what the others need (an install, or an export from camera RAW).

Importing it registers pillow-heif's opener where the heic extra is installed, so that every
Image.open in imgclf reads HEIC.
"""

from __future__ import annotations

# .jfif and .jpe: JPEGs as Windows saves pictures from the web (common in scraped datasets).
BASE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff", ".tga"}
    | {".pgm", ".ppm", ".pbm", ".pnm"}
)
HEIF_INSTALL = "pip install 'imgclf[heic]'"


def _phone_formats() -> tuple[frozenset[str], dict[str, str]]:
    """(the extensions of phone photos Pillow reads here, {extension: what to install} for the rest).
    iPhones save HEIC by default and Android phones may save AVIF. Pillow reads AVIF itself (11.3+
    wheels); HEIC needs the pillow-heif plugin, an extra because its wheels bundle x265 (GPLv2).
    Registering the plugin here makes every Image.open in imgclf read HEIC (~50 ms at import)."""
    from PIL import features

    readable, missing = set(), {}
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        readable |= {".heic", ".heif"}
    except ImportError:
        missing |= {".heic": HEIF_INSTALL, ".heif": HEIF_INSTALL}
    if features.check_codec("jpg_2000"):  # JPEG 2000 (microscopy, medical and archive scans): Pillow's wheels read it
        readable |= {".jp2", ".j2k"}
    if "avif" in features.modules and features.check_module("avif"):  # an older Pillow warns on check("avif")
        readable.add(".avif")
    else:
        missing[".avif"] = "pip install -U 'pillow>=11.3'"
    return frozenset(readable), missing


# Camera RAW (sensor data, a format per maker; DNG, CR2, NEF, ... are TIFF-like, so Pillow would read
# the small preview some of them hold and train on that): said, never sniffed (data.spec.NOT_IMAGES).
CAMERA_RAW = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef"}
    | {".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".raw"}
)
RAW_FIX = "a JPEG or PNG export (camera RAW is not read)"
_PHONE, _MISSING = _phone_formats()
NEEDS_DECODER = _MISSING | dict.fromkeys(CAMERA_RAW, RAW_FIX)
IMAGE_EXTENSIONS = BASE_EXTENSIONS | _PHONE

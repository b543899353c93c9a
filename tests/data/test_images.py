"""imgclf.data.images on real files of every accepted format, odd colour modes and broken files."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.data.formats import IMAGE_EXTENSIONS
from imgclf.data.images import (
    PAD_GREY,
    UnusableImage,
    image_size,
    in_memory,
    load_resized,
    read_rgb,
    read_scaled,
    resize,
    size_of,
)

RED, BLUE = (220, 30, 40), (30, 40, 220)


def _two_halves(w: int = 32, h: int = 24) -> Image.Image:
    """Left half red, right half blue: shows colours and any unwanted flip or rotation."""
    a = np.empty((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2 :] = RED, BLUE
    return Image.fromarray(a)


def _near(pixel, colour, tol: int) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - colour) <= tol))


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG claiming w x h pixels with no image data: what a decompression bomb looks like to open()."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_extensions_are_lowercase_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".pgm", ".pnm"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


# Colour tolerance a format's encoding needs. heic: iPhones' default (pillow-heif, the heic extra, which
# [test] installs); avif: Pillow's own.
TOLERANCE = {"jpg": 12, "png": 0, "bmp": 0, "webp": 12, "tiff": 0, "ppm": 0, "gif": 0, "heic": 16, "avif": 16}
TOLERANCE |= {"jfif": 12, "jpe": 12, "dib": 0, "tga": 0, "jp2": 12}  # web downloads on Windows; scans


@pytest.mark.parametrize("ext,tol", TOLERANCE.items())
def test_formats_read_as_rgb_with_right_colours(tmp_path, ext, tol):
    from imgclf.data.spec import is_image

    if ext == "heic":  # the [test] install has it; a GPU image without the heic extra skips
        pytest.importorskip("pillow_heif", reason="the heic extra (pillow-heif) is not installed")
    path = tmp_path / f"x.{ext}"
    _two_halves().save(path)
    assert is_image(path)  # discover takes it
    img = read_rgb(path)
    assert img.mode == "RGB" and img.size == (32, 24)
    assert image_size(path) == (32, 24)
    assert _near(img.getpixel((4, 12)), RED, tol) and _near(img.getpixel((27, 12)), BLUE, tol)


def test_pgm_grey(tmp_path):
    Image.new("L", (5, 4), 77).save(tmp_path / "g.pgm")
    assert np.all(np.asarray(read_rgb(tmp_path / "g.pgm")) == 77)


@pytest.mark.parametrize("ext", ["gif", "tiff"])
def test_multi_frame_gives_first_frame(tmp_path, ext):
    path = tmp_path / f"anim.{ext}"
    Image.new("RGB", (8, 8), RED).save(path, save_all=True, append_images=[Image.new("RGB", (8, 8), BLUE)])
    assert Image.open(path).n_frames == 2
    assert np.all(np.asarray(read_rgb(path)) == RED)


def test_grey_and_palette_convert(tmp_path):
    Image.new("L", (4, 4), 90).save(tmp_path / "l.png")
    Image.new("1", (4, 4), 1).save(tmp_path / "bw.png")
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, *BLUE] + [0] * 762)
    pal.save(tmp_path / "p.png")
    assert np.all(np.asarray(read_rgb(tmp_path / "l.png")) == 90)
    assert np.all(np.asarray(read_rgb(tmp_path / "bw.png")) == 255)
    assert np.all(np.asarray(read_rgb(tmp_path / "p.png")) == BLUE)


def test_transparency_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (*RED, 255)  # opaque: unchanged
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black: white
    rgba[0, 2] = (0, 0, 0, 128)  # half transparent black: mid grey
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(np.full((2, 2, 2), [0, 0], np.uint8), "LA").save(tmp_path / "la.png")
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([*RED, *BLUE] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.gif", transparency=1)
    out = np.asarray(read_rgb(tmp_path / "a.png")).astype(int)
    assert tuple(out[0, 0]) == RED and tuple(out[0, 1]) == (255, 255, 255) and np.all(abs(out[0, 2] - 127) <= 1)
    assert np.all(np.asarray(read_rgb(tmp_path / "la.png")) == 255)
    assert np.asarray(read_rgb(tmp_path / "p.gif")).tolist() == [[list(RED), [255, 255, 255]]]


def test_cmyk(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.tiff")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert np.all(np.asarray(read_rgb(tmp_path / "c.tiff")) == (255, 0, 0))
    assert _near(np.asarray(read_rgb(tmp_path / "c.jpg"))[4, 4], (255, 0, 0), 8)


def test_16_bit_and_wide_modes_keep_mid_grey(tmp_path):
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")
    Image.fromarray(np.full((4, 4), 32768, np.int32)).save(tmp_path / "i32.tiff")  # 16-bit data in "I"
    Image.fromarray(np.full((4, 4), 100, np.int32)).save(tmp_path / "i8.tiff")  # 8-bit data in "I"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tiff")  # [0, 1] floats
    for name, grey in (("g16.png", 128), ("i32.tiff", 128), ("i8.tiff", 100), ("f.tiff", 128)):
        out = np.asarray(read_rgb(tmp_path / name))
        assert out.dtype == np.uint8 and np.all(out == grey), name


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    _two_halves(40, 20).save(tmp_path / "r.jpg", exif=exif)
    img = read_rgb(tmp_path / "r.jpg")
    assert img.size == (20, 40)
    assert _near(img.getpixel((10, 5)), RED, 12) and _near(img.getpixel((10, 35)), BLUE, 12)
    assert load_resized(tmp_path / "r.jpg", 8, "pad")[:, :2].tolist() == [[[PAD_GREY] * 3] * 2] * 8


def test_read_scaled_decodes_a_large_jpeg_small_and_knows_its_full_size(tmp_path):
    """A 4000x3000 JPEG asked for 600 px comes back at JPEG's 1/4 scale (1000x750) with its full size;
    sideways per EXIF, both turned; a PNG (no reduced decoding) whole; the colours where they were."""
    big = _two_halves(4000, 3000)
    big.save(tmp_path / "big.jpg", quality=90)
    img, full = read_scaled(tmp_path / "big.jpg", 600)
    assert img.size == (1000, 750) and full == (4000, 3000)
    assert _near(img.getpixel((250, 375)), RED, 12) and _near(img.getpixel((750, 375)), BLUE, 12)
    assert read_scaled(tmp_path / "big.jpg", 1000)[0].size == (2000, 1500)  # 750 < 1000: half scale
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    big.save(tmp_path / "turned.jpg", quality=90, exif=exif)
    img, full = read_scaled(tmp_path / "turned.jpg", 600)
    assert img.size == (750, 1000) and full == (3000, 4000)
    assert read_rgb(tmp_path / "turned.jpg").size == full
    big.resize((800, 600)).save(tmp_path / "small.png")
    img, full = read_scaled(tmp_path / "small.png", 300)
    assert img.size == full == (800, 600)


def _truncated_jpeg(path):
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(path.with_suffix(".full.jpg"))
    data = path.with_suffix(".full.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_jpeg_over_the_pixel_limits_is_read_at_reduced_scale(tmp_path, monkeypatch):
    """A 108 or 200 MP phone photo claims more pixels than PIL's bomb limit and imgclf's own. A model
    sees it decoded at 1/8 scale, so a JPEG is read, not skipped; a PNG of that size is still refused."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # PIL's open() refuses over 2,000 pixels
    _two_halves(400, 300).save(tmp_path / "phone.jpg", quality=95)
    _two_halves(400, 300).save(tmp_path / "phone.png")
    assert image_size(tmp_path / "phone.jpg") == (400, 300)
    x = load_resized(tmp_path / "phone.jpg", 16, max_pixels=5_000)  # decoded at 50 x 38, then 16 x 16
    assert _near(x[8, 2], RED, 12) and _near(x[8, 13], BLUE, 12)
    img, full = read_scaled(tmp_path / "phone.jpg", 30, max_pixels=5_000)
    assert img.size == (50, 38) and full == (400, 300)
    with pytest.raises(UnusableImage, match="too large: 120000 pixels > limit 5000"):
        read_scaled(tmp_path / "phone.jpg", 200, max_pixels=5_000)  # a 200 px side needs every pixel
    for name in ("phone.png", "phone.jpg"):  # every pixel decoded: the claim decides
        with pytest.raises(UnusableImage, match="too large"):
            read_rgb(tmp_path / name, max_pixels=5_000)


def test_unusable_files_have_distinct_reasons(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("hello, not a picture")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    _two_halves().save(tmp_path / "ok.png")
    reasons = {}
    for name in ("empty.png", "cut.jpg", "text.jpg", "bomb.png", "missing.png"):
        with pytest.raises(UnusableImage) as e:
            read_rgb(tmp_path / name)
        reasons[name] = e.value.reason
    with pytest.raises(UnusableImage) as e:
        read_rgb(tmp_path / "ok.png", max_pixels=100)
    reasons["ok.png"] = e.value.reason
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["cut.jpg"].startswith("truncated or corrupt image")
    assert reasons["text.jpg"] == "not an image (cannot identify format)"
    assert reasons["bomb.png"].startswith("too large")
    assert reasons["ok.png"] == "too large: 768 pixels > limit 100"
    assert reasons["missing.png"].startswith("cannot read file")
    assert len(set(reasons.values())) == len(reasons)
    for name in ("empty.png", "text.jpg", "bomb.png"):
        with pytest.raises(UnusableImage):
            image_size(tmp_path / name)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the damage it tolerates
@pytest.mark.parametrize("ext", ["png", "jpg", "gif", "webp", "tiff", "bmp"])
def test_random_damage_never_leaks_a_pil_error(tmp_path, ext):
    _two_halves(16, 16).save(tmp_path / f"ok.{ext}")
    good = (tmp_path / f"ok.{ext}").read_bytes()
    rng = np.random.default_rng(1)
    for k in range(12):
        data = bytearray(good[: rng.integers(1, len(good))] if k % 2 else good)
        for i in rng.integers(0, len(data), 4):
            data[i] = rng.integers(0, 256)
        (tmp_path / f"bad.{ext}").write_bytes(bytes(data))
        try:
            assert load_resized(tmp_path / f"bad.{ext}", 8).shape == (8, 8, 3)
        except UnusableImage as e:
            assert e.reason


def test_resize_modes(tmp_path):
    band = np.full((20, 40, 3), 255, np.uint8)
    band[:, :4] = band[:, -4:] = (0, 200, 0)  # green bands at the far left and right
    img = Image.fromarray(band)
    for mode in ("squash", "crop", "pad"):
        out = resize(img, 16, mode)
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8, mode
    assert resize(img, 16, "squash")[8, 0, 1] == 200 and resize(img, 16, "squash")[8, 0, 0] < 50
    assert np.all(resize(img, 16, "crop") == 255)  # the centre square holds no band
    pad = resize(Image.new("RGB", (40, 20), "white"), 16, "pad")
    assert np.all(pad[:4] == PAD_GREY) and np.all(pad[12:] == PAD_GREY) and np.all(pad[4:12] == 255)
    with pytest.raises(ValueError):
        resize(img, 16, "stretch")


def test_load_resized_matches_resize_of_read_rgb(tmp_path):
    _two_halves(37, 23).save(tmp_path / "a.png")
    for mode in ("squash", "crop", "pad"):
        assert np.array_equal(
            load_resized(tmp_path / "a.png", 12, mode), resize(read_rgb(tmp_path / "a.png"), 12, mode)
        )
    # A big JPEG is decoded at reduced scale: same picture, within JPEG noise.
    _two_halves(400, 300).save(tmp_path / "big.jpg", quality=95)
    fast = load_resized(tmp_path / "big.jpg", 16).astype(int)
    full = resize(read_rgb(tmp_path / "big.jpg"), 16).astype(int)
    assert np.abs(fast - full).mean() < 3


def test_phone_photos_without_their_decoder_name_what_to_install(tmp_path, monkeypatch):
    """pillow-heif missing (an import that fails): .heic is no image extension, and a .heic file read
    anyway (a path given to predict) gets the install line as its reason, not "not an image"."""
    import sys

    from imgclf.data import formats, images

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # `import pillow_heif` raises ImportError
    readable, missing = formats._phone_formats()
    assert ".heic" not in readable and missing[".heic"] == "pip install 'imgclf[heic]'"
    monkeypatch.setattr(images, "NEEDS_DECODER", missing)
    (tmp_path / "x.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))  # a header Pillow alone cannot open
    with pytest.raises(UnusableImage, match=r"a HEIC photo this install cannot decode: pip install 'imgclf\[heic\]'"):
        read_rgb(tmp_path / "x.heic")


def test_images_with_extensions_that_say_nothing_are_found_by_their_header(tmp_path):
    """Scraped sets hold `photo.jpg_large`, wget's `photo.jpg.1` and files with no extension: images
    by their bytes. A README or notes file is not one, and a .txt is not even opened."""
    from pathlib import Path

    from imgclf.data.discover import discover
    from imgclf.data.spec import is_image

    for cls, colour in (("red", RED), ("blue", BLUE)):
        for name in ("a.jpg_large", "b.jpg.1", "c", "d.png"):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), colour).save(tmp_path / cls / name, format="PNG" if "png" in name else "JPEG")
    (tmp_path / "red" / "README").write_text("photos from the 2024 trip")
    (tmp_path / "red" / "notes.txt").write_bytes(b"\x89PNG\r\n\x1a\n")  # a .txt is never read as an image
    assert [is_image(tmp_path / "red" / n) for n in ("a.jpg_large", "b.jpg.1", "c", "README", "notes.txt")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    spec = discover(tmp_path)
    assert len(spec.paths) == 8 and sorted(Path(p).name for p in spec.ignored) == ["README", "notes.txt"]
    assert _near(read_rgb(tmp_path / "blue" / "c").getpixel((4, 4)), BLUE, 12)  # a JPEG with no extension


def test_arrays_as_users_hold_them_become_the_same_picture():
    """model.predict(array) took only uint8 HxW(x3): floats in [0, 1] (skimage, matplotlib), a
    torchvision-style 3xHxW tensor or 16-bit data stopped in PIL with "Cannot handle this data type"."""
    torch = pytest.importorskip("torch")
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[:, :4, 2] = 50
    want = np.asarray(in_memory(rgb))
    for given in (
        rgb / 255.0,  # floats in [0, 1]
        rgb.astype(np.float32),  # floats in [0, 255]
        rgb.transpose(2, 0, 1).copy(),  # channels first
        torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0),  # a torchvision tensor
        rgb.astype(np.uint16) * 257,  # 16-bit
        rgb.astype(np.int64),
    ):
        assert np.abs(np.asarray(in_memory(given)).astype(int) - want).max() <= 1, type(given)
        assert size_of(given) == (8, 6)
    assert in_memory(np.ones((6, 8, 1), bool)).mode == "L" and np.asarray(in_memory(np.ones((6, 8), bool))).max() == 255
    with pytest.raises(UserError, match=r"shape \(2, 6, 8, 3\)"):
        in_memory(np.zeros((2, 6, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="give a path, PIL image, array or a file.s bytes"):
        in_memory(12)


def test_a_malformed_file_is_reported_once_without_pil_s_own_lines(tmp_path):
    """PIL logs a bad TIFF header at ERROR before raising ("More samples per pixel than can be decoded"),
    and warns of corrupt metadata: with no logging configured both came out as bare stderr lines beside
    imgclf's own report of the file. In a fresh process, as the command line runs."""
    import subprocess
    import sys

    entries = [(256, 3, 1, 4), (257, 3, 1, 4), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2)]
    entries += [(273, 4, 1, 122), (277, 3, 1, 3331), (278, 3, 1, 4), (279, 4, 1, 48)]  # 3,331 samples a pixel
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(48))
    code = (
        "import sys\nfrom imgclf.data.images import UnusableImage, read_rgb\n"
        "try:\n    read_rgb(sys.argv[1])\nexcept UnusableImage as e:\n    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.tif")], capture_output=True, text=True)
    assert r.stdout.strip() == "not an image (cannot identify format)" and r.stderr == "", r.stderr

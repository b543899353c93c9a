"""The image decoder under hostile files: random bytes and real PNG/JPEG/... files with mutated or
truncated headers, saved into a class folder, are either decoded into a model input or skipped
with a reason (UnusableImage), never any other exception."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgclf.data.cache import build_cache
from imgclf.data.images import RESIZE_MODES, UnusableImage, load_resized

SIZE = 16
FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"}
# Magic numbers, so random tails reach each format's own parser instead of "cannot identify".
MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"P6\n",
]


def _encoded(fmt: str, mode: str, w: int, h: int) -> bytes:
    arr = np.random.default_rng(w * 31 + h).integers(0, 255, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def mutated_image(draw) -> tuple[str, bytes]:
    """A small real image of some format, with bytes replaced (mostly in the header, where sizes,
    chunk lengths and offsets live), an optional insertion, and an optional truncation."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    data = bytearray(
        _encoded(
            fmt, draw(st.sampled_from(["RGB", "L", "RGBA", "P"])), draw(st.integers(1, 24)), draw(st.integers(1, 24))
        )
    )
    span = draw(st.sampled_from([64, len(data)]))
    for pos, value in draw(
        st.lists(st.tuples(st.integers(0, min(span, len(data)) - 1), st.integers(0, 255)), max_size=6)
    ):
        data[pos] = value
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return FORMATS[fmt], bytes(data)


random_file = st.one_of(
    st.tuples(st.sampled_from(sorted(FORMATS.values())), st.binary(max_size=600)),
    st.tuples(
        st.sampled_from(sorted(FORMATS.values())),
        st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC), st.binary(max_size=600)),
    ),
)


def _decode_or_skip(path, mode: str = "squash") -> None:
    try:
        out = load_resized(path, SIZE, mode)
    except UnusableImage as e:
        assert e.reason.strip(), "a skipped file must say why"
        return
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(mutated_image(), random_file), st.sampled_from(RESIZE_MODES))
def test_any_file_in_a_class_folder_decodes_or_is_skipped(tmp_path, file, mode):
    ext, data = file
    path = tmp_path / "rose" / f"photo.{ext}"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    _decode_or_skip(path, mode)


def test_the_cache_skips_and_reports_broken_files(tmp_path):
    """Through the training path: good files decode, each broken one gets a reason and a zero row."""
    folder = tmp_path / "rose"
    folder.mkdir()
    good = _encoded("PNG", "RGB", 20, 12)
    files = {
        "good.png": good,
        "good.jpg": _encoded("JPEG", "RGB", 20, 12),
        "cut.png": good[: len(good) // 2],
        "header.png": good[:16] + b"\xff" * 8 + good[24:],
        "noise.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)),
        "empty.png": b"",
    }
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    result = build_cache(paths, SIZE, workers=1, progress=False)
    assert sorted(paths[i].name for i in result.bad) == ["cut.png", "empty.png", "header.png", "noise.jpg"]
    assert all(reason for reason in result.bad.values())
    assert result.images[0].any() and result.images[1].any() and not result.images[2].any()

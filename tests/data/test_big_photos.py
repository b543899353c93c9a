"""A phone's 108 or 200 MP photo: over PIL's decompression-bomb limits (a warning over 89 MP, an
error over 179 MP), read at reduced scale wherever imgclf reads a photo. Here the limits are lowered
so that a 400 x 300 JPEG stands for one; every warning is an error."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def phone_jpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # warns over 1,000 pixels, refuses over 2,000
    path = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield path


def test_every_header_reader_takes_it_without_a_warning(phone_jpeg):
    from imgclf.data.doctor import _header
    from imgclf.data.spec import has_image_header
    from imgclf.detection.boxfile import upright_size
    from imgclf.lifecycle.monitor import header_stats
    from imgclf.store.predlog import _header as upload_header

    data = phone_jpeg.read_bytes()
    assert _header(data) == ((400, 300), "RGB")
    assert upload_header(data) == {"width": 400, "height": 300, "mode": "RGB", "format": "JPEG"}
    assert header_stats(str(phone_jpeg)) == {"width": 400, "height": 300, "mode": "RGB"}
    assert upright_size(phone_jpeg, skipped := []) == (400, 300) and skipped == []
    renamed = phone_jpeg.with_name("IMG_0001.jpg_large")  # found by its header
    phone_jpeg.rename(renamed)
    assert has_image_header(renamed)


def test_the_report_shows_its_thumbnail_and_explain_its_overlay(phone_jpeg):
    import base64

    from imgclf.data.images import read_scaled
    from imgclf.reporting.data import thumbnail

    uri = thumbnail(str(phone_jpeg), 40)
    assert uri is not None and uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1])
    assert struct.unpack(">II", png[16:24]) == (40, 30)  # its IHDR: opening it would trip the lowered limit
    img, full = read_scaled(phone_jpeg, 40)  # what explain overlays: 1/4 scale here
    assert img.size == (100, 75) and full == (400, 300)

"""How a photo is searched for faces: at its own size, and at twice it only when that found none (a
face of 40-80 px), on Grace Hopper (matplotlib's sample) pasted into a person-free scene."""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

pytest.importorskip("dlib")

import imgclf.faces as F  # noqa: E402

GRACE = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
SCENE = Image.open(Path(load_sample_images().filenames[0])).convert("RGB")  # china.jpg, 640x427, no one


class Counting:
    """dlib's detector, noting the upsampling of each search."""

    def __init__(self, detector):
        self.detector, self.upsampling = detector, []

    def run(self, img, upsample, threshold):
        self.upsampling.append(upsample)
        return self.detector.run(img, upsample, threshold)


@pytest.fixture(scope="module")
def model():
    return F.FaceModel()


def scene_with_grace(height: int) -> Image.Image:
    photo = SCENE.copy()
    photo.paste(GRACE.resize((GRACE.width * height // GRACE.height, height)), (300, 100))
    return photo


@pytest.mark.parametrize(
    "height, searches",
    [
        (260, [0]),  # her face ~130 px: found at the photo's own size, no search at twice it
        (100, [0, 1]),  # ~50 px: too small for HOG as it is, found at twice the size
    ],
)
def test_a_street_photo_is_searched_at_twice_its_size_only_when_needed(model, monkeypatch, height, searches):
    counting = Counting(model.detector)
    monkeypatch.setattr(model, "detector", counting)
    faces = model.faces(scene_with_grace(height))
    assert len(faces) == 1 and faces[0].found == "detected"
    x1, y1, x2, y2 = faces[0].box
    assert 300 <= x1 < x2 <= 300 + height and 100 <= y1 < y2 <= 100 + height
    assert counting.upsampling == searches


def test_a_photo_without_a_face_is_searched_at_both_sizes(model, monkeypatch):
    counting = Counting(model.detector)
    monkeypatch.setattr(model, "detector", counting)
    assert model.faces(SCENE) == []
    assert counting.upsampling == [0, 1, 0, 1]  # as it is, then equalised (a dark scene's faces may show)

"""A photo enlarged to the detector's 300x300 input (a thumbnail, a small camera frame) is answered at
the higher THRESHOLD_SOFT: enlarged blur looked like people to the pretrained detector (docs/benchmarks/
presence.md, "Small photos"). Told from the view's detail, so a photo, a video frame and the
classifier's 300x300 input are answered alike; a threshold the user gives is raised by the same odds."""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from helpers import cli
from PIL import Image
from sklearn.datasets import load_sample_images

import imgclf
import imgclf.detection
from imgclf.data.images import resize
from imgclf.detection.boxes import on_even_terms
from imgclf.detection.classifier import DetectorClassifier
from imgclf.detection.detector import ENLARGED_ODDS, THRESHOLD, THRESHOLD_ALONE, THRESHOLD_SOFT, enlarged, raised

PORTRAIT = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
SCENE = Path(load_sample_images().filenames[0])  # china.jpg, 640x427, no one in it


def shrunk(path: Path, side: int) -> Image.Image:
    img = Image.open(path).convert("RGB")
    img.thumbnail((side, side))
    return img


@pytest.fixture(scope="module")
def detector():
    return imgclf.detection.load_detector()


def test_an_enlarged_view_is_told_by_its_detail_not_its_size():
    at_size = [resize(Image.open(p).convert("RGB"), 300) for p in (PORTRAIT, SCENE)]
    small = [resize(shrunk(p, 120), 300) for p in (PORTRAIT, SCENE)]
    assert enlarged(np.stack(at_size)).tolist() == [False, False]
    assert enlarged(np.stack(small)).tolist() == [True, True]
    # A 300x300 file that is itself a thumbnail blown up (a camera's digital zoom) is told too.
    assert enlarged(np.asarray(shrunk(SCENE, 120).resize((300, 300)))[None]).tolist() == [True]


def test_the_pretrained_default_answers_an_enlarged_photo_at_the_higher_threshold(detector):
    small, large = detector.detect(shrunk(PORTRAIT, 128)), detector.detect(Image.open(PORTRAIT).convert("RGB"))
    assert (small["threshold"], large["threshold"]) == (THRESHOLD_SOFT, THRESHOLD)
    assert small["present"] and all(b["score"] >= THRESHOLD_SOFT for b in small["boxes"])  # still found
    assert detector.detect(shrunk(SCENE, 128))["threshold"] == THRESHOLD_SOFT
    alone = detector.with_options(flip=False)  # the photo alone keeps its own default, raised as much
    assert (alone.threshold, alone.enlarged_threshold) == (THRESHOLD_ALONE, 0.356757)
    # A threshold given (or one `imgclf evaluate person` names on the answers' scale) moves both.
    given = detector.with_options(threshold=0.2)
    assert given.detect(shrunk(PORTRAIT, 128))["threshold"] == raised(0.2, ENLARGED_ODDS) == 0.44
    assert given.detect(Image.open(PORTRAIT).convert("RGB"))["threshold"] == 0.2
    assert "0.3 on a photo enlarged to the input" in detector.describe()


def test_answers_at_two_thresholds_are_put_on_one_scale(detector):
    """A video's FrameModel and the classifier hold one threshold: an enlarged frame's score is moved so
    that its own threshold lands on the detector's, and the classifier answers as the scan does."""
    at = {"score": THRESHOLD_SOFT, "threshold": THRESHOLD_SOFT}
    assert on_even_terms(at, THRESHOLD) == pytest.approx(THRESHOLD)
    assert on_even_terms({"score": 0.2, "threshold": THRESHOLD_SOFT}, THRESHOLD) < THRESHOLD  # absent stays absent
    assert on_even_terms({"score": 0.2, "threshold": THRESHOLD}, THRESHOLD) == 0.2
    model = DetectorClassifier(detector)
    photos = [shrunk(PORTRAIT, 128), shrunk(SCENE, 128), Image.open(PORTRAIT).convert("RGB")]
    for photo, answer in zip(photos, model.predict(photos)):
        scanned = detector.detect(photo)
        assert (answer["label"] == "person") == scanned["present"]
    probs, _ = detector.frame_probs([np.asarray(p) for p in photos])
    assert ((probs[:, 1] >= THRESHOLD) == [detector.detect(p)["present"] for p in photos]).all()


def test_the_exported_detector_states_the_rule_in_its_metadata(tmp_path):
    import onnx

    result = imgclf.export("person", out=tmp_path / "person.onnx", verbose=False)
    props = {p.key: p.value for p in onnx.load(result["path"]).metadata_props}
    assert props["threshold"] == str(THRESHOLD) and props["threshold_enlarged"].startswith(f"{THRESHOLD_SOFT:g} for a")
    assert result["max_score_diff"] < 1e-4


def test_the_scan_line_says_when_a_photo_was_answered_at_the_enlarged_threshold(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shrunk(PORTRAIT, 128).save(photos / "small.jpg")
    Image.open(PORTRAIT).convert("RGB").save(photos / "large.jpg")
    lines = {line.split()[0]: line for line in cli("scan", photos).stdout.splitlines() if line.startswith(str(photos))}
    assert "(at 0.3: enlarged)" in lines[str(photos / "small.jpg")]
    assert "enlarged" not in lines[str(photos / "large.jpg")] and "present" in lines[str(photos / "large.jpg")]

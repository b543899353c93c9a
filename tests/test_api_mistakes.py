"""The Python API given what a careless caller passes (a probe of every public function with wrong
values and types, 2026-12-02): each gets one UserError naming the argument, or a per-image `error`
where one image of many is empty, never a deep TypeError or a silently wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.core.errors import UserError
from imgclf.core.work import TooMuchWork, check_shape
from imgclf.data.images import UnusableImage, in_memory, size_of
from imgclf.inference.batch import predict_folder
from imgclf.lifecycle.monitor import read_log


def test_an_empty_image_in_memory_is_an_unusable_image_not_a_black_square():
    for empty in (Image.new("RGB", (0, 0)), Image.new("L", (5, 0)), np.zeros((0, 0, 3), np.uint8), np.zeros((4, 0))):
        with pytest.raises(UnusableImage, match="empty image"):
            in_memory(empty)
    with pytest.raises(UserError, match="must be HxW, HxWx3"):  # a wrong layout stays the caller's mistake
        in_memory(np.zeros((1, 1, 5, 5, 3), np.uint8))
    assert in_memory(np.zeros((4, 6), np.uint8)).size == (6, 4)


def test_a_scan_names_an_empty_image_and_reads_the_size_of_bytes(tmp_path):
    with pytest.raises(TooMuchWork, match="0 x 0 px: it holds no pixels"):
        check_shape(0, 0)
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    assert size_of((tmp_path / "a.png").read_bytes()) == (30, 20)  # was an 'open: path should be' error
    with pytest.raises(TypeError, match="cannot read an image from int"):
        size_of(5)


def test_arguments_of_the_wrong_kind_are_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="runs must be a list of run folders"):
        imgclf.ensemble("runs/a", tmp_path / "bundle")  # read a character at a time, it named "/" a bad run
    with pytest.raises(UserError, match=r"unknown rule key\(s\) min_dif; the rule takes: min_diff"):
        imgclf.compare(tmp_path / "a", tmp_path / "b", rule={"min_dif": 0.01})
    with pytest.raises(UserError, match="classes must be a list of class names"):
        imgclf.feedback_import(tmp_path, tmp_path / "inbox", classes="rose")
    assert not (tmp_path / "inbox").exists()
    with pytest.raises(UserError, match="on_epoch must be a function"):
        imgclf.train(tmp_path, on_epoch=5)  # it failed after the decoding and the probe
    with pytest.raises(UserError, match="workers must be at least 1 decoder"):
        predict_folder(None, tmp_path, tmp_path / "p.csv", workers=-1)  # a ValueError from the process pool


def test_a_file_that_is_not_a_prediction_log_is_named_not_read_as_an_empty_log(tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo)
    with pytest.raises(UserError, match=r"photo.jpg holds no prediction records \(\d+ lines"):
        read_log(photo)
    log = tmp_path / "predictions.jsonl"
    log.write_text('{"confidence": 0.9, "model": "m"}\n{"confidence": 0.8, "mo')  # a line cut by a crash
    records, _, bad = read_log(log)
    assert len(records) == 1 and bad == 1


@pytest.mark.slow
def test_predict_reads_top_k_as_declared_and_answers_an_empty_image_with_an_error(tiny_run):
    model = imgclf.load(tiny_run)
    photo = np.full((20, 20, 3), 128, np.uint8)
    (answer,) = model.predict(photo, top_k="2")  # the checked value is used: '<' between int and str before
    assert len(answer["top_k"]) == 2
    with pytest.raises(UserError, match="top_k must be an integer"):
        model.predict(photo, top_k=True)
    blank, good = model.predict([Image.new("RGB", (0, 0)), photo])
    assert blank == {"error": "empty image (0x0 px)"} and good["label"] in model.classes


def test_a_detector_is_resolved_once_for_a_scan_and_a_service(tmp_path):
    from imgclf.detection.detector import detector_kind

    classifier = tmp_path / "run"
    classifier.mkdir()
    (classifier / "model.json").write_text("{}")
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "detector.json").write_text("{}")
    assert detector_kind("person") == "pretrained" and detector_kind(tmp_path / "boxes") == "run"
    assert detector_kind("fasterrcnn_mobilenet_v3_large_fpn") == "hub"  # torchvision's, looked up when loaded
    photo = tmp_path / "a.jpg"
    Image.new("RGB", (64, 64)).save(photo)
    # A classifier run as the detector: the scan said "unknown detector" and listed torchvision's names.
    with pytest.raises(UserError, match=r"^--detector .*run: not a detector run folder \(it has no detector.json\)"):
        imgclf.scan(images=[photo], detector=str(classifier))
    with pytest.raises(UserError, match=r"^--detector .*gone/x: no such folder; give person"):
        imgclf.scan(images=[photo], detector=str(tmp_path / "gone" / "x"))

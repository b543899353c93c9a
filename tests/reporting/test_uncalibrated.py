"""A run whose validation split was too small to fit a softmax temperature: its report says the
confidences are the model's own, not that they were calibrated on a handful of images."""

from __future__ import annotations

import re
import shutil

import imgclf
from imgclf.reporting.data import calibrated, ece_card
from imgclf.store.run_meta import load_run_meta


def test_a_run_without_a_temperature_is_reported_as_not_calibrated(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run is read, never written into
    meta = load_run_meta(run)
    assert meta.calibration.temperature == 1.0 and "too few to fit one" in meta.calibration.skipped
    text = imgclf.report(run, verbose=False).read_text(encoding="utf-8")
    assert re.search(
        r"Confidence is <b>not calibrated</b>: no softmax temperature was fitted: \d+ validation images are too few to fit one \(it takes 20\); the confidences are the model.s own",
        text,
    )
    # Before: "Confidence is calibrated by one softmax temperature, T = 1.000, fitted on 3 validation images".
    assert "calibrated by one softmax temperature" not in text
    assert "ECE (not calibrated)" in text and "ECE (calibrated)" not in text
    # The model card: it said "Calibration and thresholds were fitted on 3 validation images", which fitted neither.
    assert re.search(r"The validation split \(\d+ images\) was too small to fit a calibration or a threshold", text)
    assert "fitted on" not in text.split("Model card")[-1]
    assert "Confidence (not calibrated): expected calibration error" in text
    assert re.search(r"none \(temperature 1\): \d+ validation images are too few", text)  # the model section
    # Its numbers once, on the test images: a "before" and "after" column repeated them.
    section = text.split('id="reliability"')[1].split("</section>")[0]
    assert ">test images</th>" in section and ">before</th>" not in section and ">after</th>" not in section


def test_a_fitted_temperature_is_called_calibrated():
    c = {"temperature": 1.37, "ece_after": 0.0412}
    assert calibrated(c) and ece_card(c) == ("0.041", "ECE (calibrated)")
    assert ece_card({**c, "temperature": 1.0}) == ("0.041", "ECE (not calibrated)")


def test_the_model_card_names_what_a_small_validation_split_fitted():
    from types import SimpleNamespace as NS

    from imgclf.reporting.card import _fitted_on_validation

    def card(t, decision=None, rejection=None):
        meta = NS(calibration=NS(temperature=t, n=40), temperature=t, decision=decision, rejection=rejection)
        return _fitted_on_validation(NS(meta=meta), 40)

    chosen, argmax = NS(rule="best_f1"), NS(rule="argmax: 3 validation images of a class are too few")
    assert (
        card(1.3, chosen)
        == "Calibration and the threshold were fitted on 40 validation images: treat them as approximate."
    )
    assert card(1.0, chosen) == "The threshold was fitted on 40 validation images: treat them as approximate."
    assert card(1.3, argmax) == "Calibration was fitted on 40 validation images: treat them as approximate."
    assert card(1.0, argmax).startswith("The validation split (40 images) was too small")
    assert card(1.0, None, NS(threshold=0.6)).startswith("The threshold was fitted")

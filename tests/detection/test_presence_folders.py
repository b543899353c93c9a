"""Labelled photos without boxes, as people name their folders, matched to a detector's two answers
(`imgclf evaluate person PHOTOS/`), and the note when the detector cannot see what they hold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from imgclf.detection.classifier import DetectorClassifier, folder_threshold, missed_note
from imgclf.evaluation.elsewhere import match_classes


def presence(positive: str = "person") -> DetectorClassifier:
    # The classifier's own code over a stand-in detector: the names are all this test reads.
    stub = SimpleNamespace(name="ssdlite-person", device="cpu", positive=positive, threshold=0.12, source={})
    return DetectorClassifier(stub)


def test_folders_named_as_people_name_them_are_the_two_answers():
    m = presence()
    given = ["Human", "non-human", "empty", "People", "No_People", "background", "nobody", "pos", "neg", "cats"]
    named, unknown = match_classes(given, m.classes, m.class_aliases)
    assert named == {
        "Human": "person",
        "non-human": "no person",
        "empty": "no person",
        "People": "person",
        "No_People": "no person",
        "background": "no person",
        "nobody": "no person",
        "pos": "person",
        "neg": "no person",
    }
    assert unknown == ["cats"]
    # A class's own name comes first: aliases never take a folder a class already names.
    assert match_classes(["person", "no-person"], m.classes, m.class_aliases)[0] == {
        "person": "person",
        "no-person": "no person",
    }


def test_another_detectors_answers_take_its_own_word():
    m = presence("car")
    named, unknown = match_classes(["cars", "no_cars", "empty", "human"], m.classes, m.class_aliases)
    assert named == {"cars": "car", "no_cars": "no car", "empty": "no car"} and unknown == ["human"]


def test_a_detector_that_misses_most_labelled_photos_is_told_what_to_use():
    m = presence()
    seen = {"per_class": {"person": {"recall": 0.0, "support": 100.0}, "no person": {"recall": 1.0, "support": 100}}}
    note = missed_note(m, seen, "crops/")
    assert note.startswith("the detector found 'person' in only 0% of the 100 photos labelled so")
    assert "imgclf train crops/" in note
    seen["per_class"]["person"]["recall"] = 0.85
    assert missed_note(m, seen, "crops/") == ""
    assert missed_note(m, {"per_class": {"no person": {"recall": 1.0, "support": 5}}}, "empty/") == ""


def answers(scores, threshold: float = 0.12) -> np.ndarray:
    """The classifier's probabilities for photos whose best boxes score `scores` (predict_logits' rule)."""
    lo = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    present = 1 / (1 + np.exp(-(lo(np.asarray(scores)) - lo(threshold))))
    return np.stack([1 - present, present], 1)


def test_the_threshold_labelled_folders_ask_for_is_named_as_the_box_evaluation_names_it():
    m = presence()
    labels = np.array([1] * 10 + [0] * 10)
    found, line = folder_threshold(m, labels, answers([0.9] * 10 + [0.15] * 4 + [0.05] * 6), "cam/")
    assert (found["threshold"], found["balanced_accuracy"], found["prior"]["balanced_accuracy"]) == (0.525, 1.0, 0.8)
    assert line == (
        "on these photos presence is told best at threshold 0.525 (balanced accuracy 1.000 against 0.800 at the "
        "detector's 0.12), chosen on them, so optimistic: imgclf scan PHOTOS --threshold 0.525, or train a "
        "classifier on them: imgclf train cam/"
    )
    # One photo's gain is noise: the detector's own threshold stays, and nothing is said.
    found, line = folder_threshold(m, labels, answers([0.9] * 10 + [0.15] + [0.05] * 9), "cam/")
    assert found["kept_prior"] and found["threshold"] == 0.12 and line == ""
    # A threshold that tells them apart no better than 3 in 4 is no answer (tight crops: missed_note's).
    found, line = folder_threshold(m, labels, answers([0.03] * 3 + [0.01] * 7 + [0.02] * 10), "crops/")
    assert found["balanced_accuracy"] == 0.65 and line == ""

"""One reading of a run's operating point (evaluation.operating_point), whoever asks: the loaded
model's answers, the service's decision field and the ONNX export's metadata agree with it."""

from __future__ import annotations

import numpy as np

from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.inference.onnx_export import metadata
from imgclf.store.run_meta import RunMeta

TWO = {
    "classes": ["no-person", "person"],
    "decision": {"positive_class": "person", "threshold": 0.8, "rule": "best_f1"},
}
THREE = {"classes": ["a", "b", "c"], "rejection": {"threshold": 0.6, "rule": "target_accuracy"}}
PLAIN = {"classes": ["a", "b", "c"]}


def test_two_classes_answer_by_the_threshold_on_the_positive_class():
    op = OperatingPoint.of(TWO)
    assert (op.rule, op.positive_class, op.threshold, op.chosen_by) == ("threshold", "person", 0.8, "best_f1")
    assert op.decide(np.array([0.25, 0.75]), TWO["classes"]) == 0  # argmax would say "person"
    assert op.decide(np.array([0.2, 0.8]), TWO["classes"]) == 1  # at the threshold counts
    assert op.threshold_for("person") == 0.8 and op.threshold_for("no-person") is None


def test_rejection_answers_unknown_below_its_threshold_and_argmax_never_does():
    op = OperatingPoint.of(THREE)
    assert op.decide(np.array([0.5, 0.3, 0.2]), THREE["classes"]) == -1
    assert op.decide(np.array([0.1, 0.7, 0.2]), THREE["classes"]) == 1
    assert op.threshold_for("a") is None
    assert OperatingPoint.of(PLAIN).decide(np.array([0.5, 0.3, 0.2]), PLAIN["classes"]) == 0
    # Whether an answer was the rule declining (the service's and the shards' unknown flag).
    assert op.declined("unknown") and not op.declined("a")
    assert not OperatingPoint.of(PLAIN).declined("unknown") and not OperatingPoint.of(TWO).declined("unknown")


def test_every_reader_describes_the_same_rule():
    assert OperatingPoint.of(TWO).answer_rule() == {"rule": "threshold", "positive_class": "person", "threshold": 0.8}
    assert OperatingPoint.of(THREE).answer_rule() == {"rule": "rejection", "threshold": 0.6, "unknown": False}
    assert OperatingPoint.of(PLAIN).answer_rule() == {"rule": "argmax"}
    assert OperatingPoint.of(THREE).description() == {
        "rule": "rejection",
        "threshold": 0.6,
        "label": "unknown",
        "chosen_by": "target_accuracy",
    }
    assert OperatingPoint.of(TWO).onnx_metadata() == {"decision_positive_class": "person", "decision_threshold": "0.8"}
    assert OperatingPoint.of(PLAIN).onnx_metadata() == {}


def test_the_onnx_metadata_carries_the_operating_point():
    meta = {
        **TWO,
        "input": {"size": 32, "resize": "squash"},
        "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3},
        "architecture": {"name": "simple_cnn"},
        "tta": "none",
    }
    props = metadata(RunMeta.from_dict(meta))
    assert props["decision_positive_class"] == "person" and props["decision_threshold"] == "0.8"
    assert "rejection_threshold" not in props

"""A run's operating point: how its calibrated probabilities become an answer. Read from model.json
once, here, so that predict, the service, scan, video and the ONNX export all apply the same rule.

    op = OperatingPoint.of(model.meta)
    op.rule                  # "threshold" (two classes), "rejection" (3+, may answer 'unknown') or "argmax"
    op.decide(probs_row, model.classes)      # class index, or -1 for 'unknown'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclf.settings.checks import UNKNOWN
from imgclf.store.run_meta import RunMeta


@dataclass(frozen=True)
class OperatingPoint:
    rule: str  # threshold | rejection | argmax
    threshold: float | None = None  # on the positive class's probability, or on the top one (rejection)
    positive_class: str | None = None  # two classes: the class the threshold is about
    chosen_by: str | None = None  # how training chose it: best_f1, target_recall, target_accuracy, ...
    label: str = UNKNOWN  # rejection: the answer below the threshold

    @classmethod
    def of(cls, meta: RunMeta) -> "OperatingPoint":
        """From a run's model.json: its "decision" (two classes) or "rejection" (3+) record, else argmax."""
        if d := meta.decision:
            return cls("threshold", float(d.threshold), d.positive_class, d.rule)
        if r := meta.rejection:
            return cls("rejection", float(r.threshold), None, r.rule, r.label)
        return cls("argmax")

    def decide(self, p: np.ndarray, classes: list[str]) -> int:
        """Class index for one probability row; -1 ('unknown') when rejection refuses to answer."""
        if self.rule == "threshold":
            pos = classes.index(self.positive_class)
            return pos if p[pos] >= self.threshold else 1 - pos
        top = int(np.argmax(p))
        return -1 if self.rule == "rejection" and p[top] < self.threshold else top

    def declined(self, label: str) -> bool:
        """Whether an answer's label is the rejection rule declining to name a class ('unknown')."""
        return self.rule == "rejection" and label == self.label

    def threshold_for(self, positive: str) -> float | None:
        """The recorded threshold when it is about `positive`, else None (scan and video then use even odds)."""
        return self.threshold if self.rule == "threshold" and self.positive_class == positive else None

    def answer_rule(self) -> dict:
        """The rule as the service reports it beside each answer (POST /predict's "decision")."""
        if self.rule == "threshold":
            return {"rule": "threshold", "positive_class": self.positive_class, "threshold": self.threshold}
        if self.rule == "rejection":
            return {"rule": "rejection", "threshold": self.threshold, "unknown": False}
        return {"rule": "argmax"}

    def description(self) -> dict:
        """The rule with how it was chosen (GET /model's "decision")."""
        if self.rule == "threshold":
            return {
                "rule": "threshold",
                "positive_class": self.positive_class,
                "threshold": self.threshold,
                "chosen_by": self.chosen_by,
            }
        if self.rule == "rejection":
            return {"rule": "rejection", "threshold": self.threshold, "label": self.label, "chosen_by": self.chosen_by}
        return {"rule": "argmax"}

    def onnx_metadata(self) -> dict[str, str]:
        """The ONNX file's metadata entries for it (strings, as ONNX metadata must be)."""
        if self.rule == "threshold":
            return {"decision_positive_class": self.positive_class, "decision_threshold": str(self.threshold)}
        if self.rule == "rejection":
            return {"rejection_threshold": str(self.threshold), "rejection_label": self.label}
        return {}

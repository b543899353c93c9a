"""Presence events of the positive class in a video: frames past the threshold, smoothed over time,
become events with a start, an end and a peak."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SMOOTH_S = 0.5
MIN_EVENT_S = 0.5
OPEN_SHARE, CLOSE_SHARE = 0.6, 0.4


class Smoother:
    """Exponential moving average with a time constant in seconds: a frame dt after the previous
    one weighs 1 - exp(-dt / tau), so the average forgets at the same pace at any frame rate."""

    def __init__(self, tau: float):
        self.tau, self.value, self.t = tau, None, None

    def update(self, x: np.ndarray | float, t: float):
        if self.value is None or self.tau == 0:
            self.value = x
        else:
            w = 1.0 - math.exp(-max(t - self.t, 0.0) / self.tau)
            self.value = self.value + w * (x - self.value)
        self.t = t
        return self.value


@dataclass
class Presence:
    """Presence events of `positive` from per-frame probabilities (see the module docstring)."""

    positive: str
    pos_index: int
    threshold: float
    tau: float
    min_event: float
    events: list[dict] = field(default_factory=list)
    present: bool = False

    def __post_init__(self):
        self.share = Smoother(self.tau)
        self.first_hit: float | None = None  # first frame past the threshold since the share was low
        self.last_hit_end: float | None = None
        self.peak = 0.0

    @classmethod
    def for_model(cls, model, tau: float = SMOOTH_S, min_event: float = MIN_EVENT_S) -> "Presence":
        from imgclf.evaluation.decision import positive_class
        from imgclf.evaluation.operating_point import OperatingPoint

        op = OperatingPoint.of(model.meta)
        pos = op.positive_class or model.classes[positive_class(model.classes)]
        threshold = op.threshold_for(pos)
        return cls(pos, model.classes.index(pos), 0.5 if threshold is None else threshold, tau, min_event)

    def update(self, t: float, dt: float, p_pos: float) -> bool:
        """Feed one classified frame at time t, standing for the dt seconds until the next one;
        returns whether the positive class is present."""
        hit = p_pos >= self.threshold
        share = self.share.update(1.0 if hit else 0.0, t)
        if hit:
            self.first_hit = t if self.first_hit is None else self.first_hit
            self.last_hit_end = t + dt
            self.peak = max(self.peak, p_pos)
        if not self.present:
            if share >= OPEN_SHARE and self.first_hit is not None:
                self.present = True
            elif share < CLOSE_SHARE and not hit:
                self.first_hit, self.peak = None, 0.0  # the hits so far were noise
        elif share < CLOSE_SHARE:
            self._close()
        return self.present

    def finish(self) -> list[dict]:
        """Close an event still open at the end of the video; the events found."""
        if self.present:
            self._close()
        return self.events

    def settings(self) -> dict:
        return {
            "positive_class": self.positive,
            "threshold": self.threshold,
            "smooth_s": self.tau,
            "open_share": OPEN_SHARE,
            "close_share": CLOSE_SHARE,
            "min_event_s": self.min_event,
        }

    def _close(self) -> None:
        start, end = self.first_hit, self.last_hit_end
        if end - start >= self.min_event:
            self.events.append(
                {
                    "start_s": round(start, 3),
                    "end_s": round(end, 3),
                    "duration_s": round(end - start, 3),
                    "peak_confidence": round(self.peak, 4),
                }
            )
        self.present, self.first_hit, self.peak = False, None, 0.0


@dataclass
class FrameModel:
    """What the video path asks of a model, for a detector alone (imgclf.detection): two classes
    (no person, person), a frame's label by the detector's threshold on its best box."""

    classes: list[str]
    threshold: float

    def answers(self, probs: np.ndarray, top_k: int = 1) -> list[dict]:
        out = []
        for p in probs:
            i = int(p[1] >= self.threshold)
            out.append({"label": self.classes[i], "confidence": float(p[i]), "top_k": [(self.classes[i], float(p[i]))]})
        return out

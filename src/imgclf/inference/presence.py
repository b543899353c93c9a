"""What a video holds over time. Presence events of the positive class (two classes): frames past
the threshold, smoothed over time, become events with a start, an end and a peak. Segments (any
number of classes): stretches of time that show one label, where a stretch shorter than the shortest
event is part of its neighbour rather than a segment of its own. A live source (a camera, a stream)
has no end to wait for: Changes says each change as it happens (and hands it to a callback)."""

from __future__ import annotations

import math
from collections.abc import Callable
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
        self.closed: tuple[float, float] | None = None  # (start, end) of the last event closed, kept or dropped

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
            # Open once the hits span the shortest event too: an event announced as it opens (Changes) is
            # one the record keeps. Opened sooner, a camera said "'Grace' present" and "gone after 0.5s"
            # for a visit of 0.49 s that events.json then left out.
            if (
                share >= OPEN_SHARE
                and self.first_hit is not None
                and self.last_hit_end - self.first_hit >= self.min_event
            ):
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
        start, end = self.closed = self.first_hit, self.last_hit_end
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
class _Stretch:
    label: str
    start: float
    end: float
    conf_sum: float = 0.0  # the smoothed confidence of the frames that answered `label`
    frames: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def take(self, other: "_Stretch") -> "_Stretch":
        """This stretch grown over `other` (its neighbour); `other`'s frames count only if they agreed."""
        same = other.label == self.label
        return _Stretch(
            self.label,
            min(self.start, other.start),
            max(self.end, other.end),
            self.conf_sum + (other.conf_sum if same else 0.0),
            self.frames + (other.frames if same else 0),
        )

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "start_s": round(self.start, 3),
            "end_s": round(self.end, 3),
            "duration_s": round(self.seconds, 3),
            "mean_confidence": round(self.conf_sum / max(self.frames, 1), 4),
        }


class Segments:
    """The video cut into stretches that each show one (smoothed) label. A run of stretches each
    shorter than `min_segment` (a label flickering between two close classes) is one segment of the
    label that held most of its time when the run lasts `min_segment` or more, and part of the
    segment before it (after it, at the start) otherwise: the table a user reads has no 0.1 s rows."""

    def __init__(self, min_segment: float = MIN_EVENT_S):
        self.min_segment = min_segment
        self.done: list[_Stretch] = []  # settled segments
        self.short: list[_Stretch] = []  # consecutive stretches under min_segment, not settled yet
        self.current: _Stretch | None = None

    def update(self, t: float, dt: float, label: str, confidence: float) -> None:
        """One classified frame at time t (standing for dt seconds) answered `label` (smoothed)."""
        if self.current is not None and self.current.label == label:
            self.current.end = t + dt
        else:
            self._settle(self.current)
            self.current = _Stretch(label, t, t + dt)
        self.current.conf_sum += confidence
        self.current.frames += 1

    def finish(self) -> list[dict]:
        self._settle(self.current)
        self.current = None
        self._settle_short(final=True)
        return [s.as_dict() for s in self.done]

    def _settle(self, stretch: _Stretch | None) -> None:
        if stretch is None:
            return
        if stretch.seconds < self.min_segment:
            self.short.append(stretch)
            return
        self._settle_short(final=False)
        self._append(stretch)

    def _settle_short(self, final: bool) -> None:
        """The run of short stretches before a long one (or the video's end)."""
        run, self.short = self.short, []
        if not run:
            return
        span = _Stretch(run[0].label, run[0].start, run[-1].end)
        if span.seconds >= self.min_segment or (final and not self.done):  # a segment of its own
            seconds: dict[str, float] = {}
            for s in run:
                seconds[s.label] = seconds.get(s.label, 0.0) + s.seconds
            span.label = max(seconds, key=seconds.get)
            for s in run:
                span = span.take(s)
            self._append(span)
        elif self.done:
            for s in run:
                self.done[-1] = self.done[-1].take(s)
        else:  # short stretches at the very start: the first long segment takes them
            self.short = run

    def _append(self, stretch: _Stretch) -> None:
        if self.short:  # what came before the first long segment
            for s in self.short:
                stretch = stretch.take(s)
            self.short = []
        if self.done and self.done[-1].label == stretch.label:
            self.done[-1] = self.done[-1].take(stretch)
        else:
            self.done.append(stretch)


class Changes:
    """Each change a video shows, when it happens: a presence track opening or closing, or (more than
    two classes) a new label once it has held for a segment's least length. Each is a dict,
    {"kind": "present" | "gone" | "label", "label", "t_s" (seconds into the video), "time" (the
    clock's, ISO 8601), and "duration_s" (gone) or "confidence" (label)}, handed to `on_change`, and
    said as one line by `say` (a live source, whose table of events waits until it stops):
    `14:02:11   12.3s  'person' present`, `... 'person' gone after 7.8s`, `... now 'cat' (confidence 0.91)`."""

    def __init__(self, say: Callable[[str], None] | None = None, on_change: Callable[[dict], None] | None = None):
        self.say, self.on_change = say, on_change
        self.present: set[str] = set()  # the tracks said present
        self.label: str | None = None  # the label said last

    def track(self, name: str, presence: Presence, t: float) -> None:
        """`presence` (the track of `name`) after its frame at t."""
        if presence.present and name not in self.present:
            self.present.add(name)
            self._emit(t, "present", name)
        elif not presence.present and name in self.present:
            self.present.discard(name)
            start, end = presence.closed  # the event as recorded: its first frame past the threshold to its last
            self._emit(t, "gone", name, duration_s=round(end - start, 3))

    def segment(self, segments: Segments, t: float) -> None:
        cur = segments.current
        if cur is not None and cur.seconds >= segments.min_segment and cur.label != self.label:
            self.label = cur.label
            self._emit(t, "label", cur.label, confidence=round(cur.conf_sum / max(cur.frames, 1), 4))

    def _emit(self, t: float, kind: str, label: str, **extra) -> None:
        from datetime import datetime

        change = {
            "kind": kind,
            "label": label,
            "t_s": round(t, 3),
            "time": datetime.now().isoformat(timespec="seconds"),
        }
        change.update(extra)
        if self.on_change is not None:
            self.on_change(change)
        if self.say is not None:
            what = {
                "present": f"'{label}' present",
                "gone": f"'{label}' gone after {extra.get('duration_s', 0):.1f}s",
                "label": f"now '{label}' (confidence {extra.get('confidence', 0):.2f})",
            }[kind]
            self.say(f"{change['time'][11:]}  {t:6.1f}s  {what}")


def print_found(console, presence: Presence | None, events: list[dict] | None, segments: list[dict], events_path):
    """The presence events of a two-class run (or scan), else the segments."""
    if presence is not None:
        _print_events(console, events, presence.positive)
    else:
        _print_segments(console, segments, events_path)


def _print_events(console, events: list[dict], positive: str) -> None:
    from rich.markup import escape  # a class name is the user's text
    from rich.table import Table

    if not events:
        console.print(f"no '{escape(positive)}' events")
        return
    table = Table(f"'{escape(positive)}' event", "start s", "end s", "duration s", "peak confidence")
    for i, e in enumerate(events, 1):
        table.add_row(
            str(i), f"{e['start_s']:.2f}", f"{e['end_s']:.2f}", f"{e['duration_s']:.2f}", f"{e['peak_confidence']:.3f}"
        )
    console.print(table)


SEGMENT_ROWS = 25  # printed; the events file (--out, --events) holds them all


def _print_segments(console, segments: list[dict], events_path) -> None:
    """What a video of a run with more than two classes shows, and when."""
    from rich.markup import escape  # a class name is the user's text
    from rich.table import Table

    table = Table("segment", "label", "start s", "end s", "duration s", "mean confidence")
    for i, s in enumerate(segments[:SEGMENT_ROWS], 1):
        table.add_row(
            str(i),
            escape(s["label"]),
            f"{s['start_s']:.2f}",
            f"{s['end_s']:.2f}",
            f"{s['duration_s']:.2f}",
            f"{s['mean_confidence']:.3f}",
        )
    console.print(table)
    if len(segments) > SEGMENT_ROWS:
        where = (
            f"all in {escape(str(events_path))}" if events_path else "--out FRAMES.csv writes them all to events.json"
        )
        console.print(f"… and {len(segments) - SEGMENT_ROWS} more segments ({where})")


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

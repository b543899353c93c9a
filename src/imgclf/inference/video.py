"""Classify the frames of a video file, a camera or a stream; for two-class runs, presence events.

    model = imgclf.load("runs/pedestrians-1")
    out = predict_video(model, "street.mp4", every=2, out_csv="frames.csv", out_video="annotated.mp4")
    out["events"]     # [{'start_s': 2.0, 'end_s': 5.0, 'duration_s': 3.0, 'peak_confidence': 0.99}, ...]

Time smoothing. Per-class probabilities are averaged with an exponential moving average whose
time constant is in *seconds* (`smooth`), not frames, so the same setting means the same thing
at 5 or 60 fps and with any `every`: each classified frame weighs 1 - exp(-dt / smooth).

Presence events (two classes). A run's threshold can be far from 0.5 (0.95 for a recall target),
and a moving average of probabilities then reacts in a time that depends on how sure the model
is. Events are therefore decided on the *share of recent frames past the run's threshold* (the
same exponential average, of 0/1 decisions) with hysteresis: an event opens when it reaches 0.6
and closes when it falls below 0.4, so one odd frame neither opens nor ends one, and events
shorter than `min_event` seconds are dropped. Smoothing decides *whether*; the raw frames say
*when*: an event starts at the first frame past the threshold that led to it and ends after the
last one, so the reported times do not lag by the smoothing delay.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import commit, open_stream, output_file, write_json
from imgclf.core.work import sigterm_as_ctrl_c
from imgclf.data.images import is_image_url
from imgclf.inference.presence import (
    MIN_EVENT_S,
    SMOOTH_S,
    Changes,
    Presence,
    Segments,
    Smoother,
    print_found,
)
from imgclf.inference.video_frames import URL_SCHEMES, VIDEO_EXTENSIONS, open_source, read_frames

FILE_BATCH = 32  # frames scored together when reading a file (a live source: one at a time)
LIVE_FPS_EVERY_S = 5.0


def is_video_source(source: str) -> bool:
    """True for a video file name, a stream URL or a camera index ("0"); not for the web address of
    an image (https://.../photo.jpg), which is predicted as a photo."""
    s = str(source)
    stream = s.lower().startswith(URL_SCHEMES) and not is_image_url(s)
    return s.isdigit() or stream or Path(s).suffix.lower() in VIDEO_EXTENSIONS


def predict_video(
    model,
    source,
    every: int = 1,
    smooth: float = SMOOTH_S,
    out_csv: str | os.PathLike | None = None,
    out_video: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    show_fps: bool = True,
    max_frames: int | None = None,
    min_event: float = MIN_EVENT_S,
    scanner=None,
    fit=None,
    on_change: Callable[[dict], None] | None = None,
) -> dict:
    """Classify every `every`-th frame of `source` (a file, a camera index such as 0 or "0", or an
    rtsp/http(s) URL), smoothing probabilities over `smooth` seconds (0: none). Writes per classified
    frame a CSV row to `out_csv` (frame, time_s, label and confidence of that frame alone, the smoothed
    label, smoothed probability per class, and `present` for two-class runs), every frame with its smoothed label drawn to `out_video` (mp4v), and for two-class runs
    the presence events of the positive class to `events_path` (default: events.json beside the
    CSV). Ctrl-C (or SIGTERM) stops a live source cleanly, with everything written. Returns frames,
    classified, seconds, fps, the events (None with more than two classes) and the files written.
    With `scanner` (an imgclf.scanning.Scanner, or an imgclf.detection.Detector with `model` None) each
    frame is scanned instead of classified whole: its positive probability is the best window's or
    box's, events come from it, and the boxes are drawn; `fit` bounds each frame's scan (fitted_to_frames).
    `on_change(change)`: called as each change happens (presence.Changes); a live source prints them too."""
    import cv2
    from rich.markup import escape  # the source's name is the user's path or URL, not markup

    from imgclf.settings.predict import check_predict

    every, smooth = check_predict(every=every, smooth=smooth).values()
    out_csv, out_video, events_path = (
        output_file(p, flag) if p is not None else None
        for p, flag in ((out_csv, "--out"), (out_video, "--video-out"), (events_path, "--events"))
    )
    cap, live, name = open_source(source)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else None  # cameras and streams often report 0 or nonsense
    console = _console(show_fps)
    scanner = fitted_to_frames(scanner, fit, cap, name, console) if fit is not None else scanner
    model = model or scanner.frame_model()  # a detector alone: two classes, no <positive> and <positive>
    presence = _presence(model, scanner, smooth, min_event)
    if events_path is None and out_csv is not None:
        events_path = Path(out_csv).with_name("events.json")
    say = (lambda line: console.print(escape(line))) if live else None  # a camera's changes, as they come
    session = _Session(
        model,
        Smoother(smooth),
        presence,
        _CsvOut(out_csv, model.classes, presence is not None),
        _VideoOut(out_video, fps or 25.0),
        step=every / fps if fps and not live else None,
        scanner=scanner,
        segments=Segments(min_event),
        changes=Changes(say, on_change) if say or on_change else None,
    )
    n_frames, n_classified, start = _run(session, cap, live, fps, every, max_frames, scanner, show_fps, console, name)
    if n_frames == 0:
        raise UserError(f"no frames could be read from {name}: is it a video OpenCV/FFmpeg can decode?")
    seconds = time.perf_counter() - start
    events, segments = _finish(session, presence, events_path, name, {"smooth_s": smooth, "min_segment_s": min_event})
    result = {
        "source": name,
        "frames": n_frames,
        "classified": n_classified,
        "seconds": round(seconds, 3),
        "fps": round(n_frames / seconds, 1),
        "source_fps": fps,
        "events": events,
        "segments": segments,
        **{k: str(v) if v else None for k, v in (("csv", out_csv), ("video", out_video), ("events_path", events_path))},
    }
    console.print(
        f"{escape(name)}: {n_frames} frames ({n_classified} {'scanned' if scanner else 'classified'}) in {seconds:.1f}s: "
        f"{result['fps']:.1f} fps processed" + (f" (source {fps:g} fps)" if fps else "")
    )
    print_found(console, presence, events, segments, events_path)
    return result


def _finish(session, presence: Presence | None, events_path, name: str, settings: dict):
    """(presence events or None, segments), written to `events_path` when there is one."""
    events = presence.finish() if presence is not None else None
    if events is not None and session.changes is not None:  # an event open at the end has ended: say so
        session.changes.track(presence.positive, presence, session.prev_t or 0.0)
    segments = session.segments.finish()
    if events_path is not None:
        found = {"events": events} if events is not None else {}
        settings = presence.settings() if presence is not None else settings
        write_json(events_path, {"source": name, **settings, **found, "segments": segments})
    return events, segments


def fitted_to_frames(scanner, fit, cap, name: str, console):
    """`fit(width, height)`: the scanner for frames of that size within the time limit, or TooMuchWork
    (api.finding.frames_within). Called once, from the size the source reports, before a frame is
    read (a source that reports none, as some streams do, is not bounded): a video over it is
    refused in one line, a crop scanner's smallest window may be raised to fit."""
    import cv2
    from rich.markup import escape

    from imgclf.core.work import TooMuchWork

    width, height = (round(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
    if width < 1 or height < 1:
        return scanner
    try:
        fitted = fit(width, height)
    except TooMuchWork as e:
        cap.release()
        raise TooMuchWork(f"{name} (each frame): {e}", e.status) from None
    if console is not None and getattr(fitted, "min_size", None) != getattr(scanner, "min_size", None):
        console.print(f"{escape(name)}: smallest window raised to {fitted.min_size} px to fit each frame's time limit")
    return fitted


def _presence(model, scanner, smooth: float, min_event: float) -> Presence | None:
    """Presence events for two-class runs, and for scans: a frame's positive probability is its best
    window's or box's."""
    if scanner is not None:
        pos = model.classes.index(scanner.positive)
        return Presence(scanner.positive, pos, scanner.threshold, smooth, min_event)
    return Presence.for_model(model, smooth, min_event) if len(model.classes) == 2 else None


@sigterm_as_ctrl_c()  # SIGTERM (a service manager's stop) ends the run as Ctrl-C does: what is done is written
def _run(session, cap, live: bool, fps, every: int, max_frames, scanner, show_fps: bool, console, name: str):
    """Read, batch and classify the frames until the source ends (or Ctrl-C ends a live one); the
    session is closed either way. Returns (frames read, frames classified, start time)."""
    import cv2
    from rich.markup import escape

    model = session.model
    batch = 1 if live else FILE_BATCH
    n_frames = n_classified = 0
    complete = False
    start = last_note = time.perf_counter()
    try:
        for index, t, frame, classify in read_frames(cap, live, fps, every, max_frames, session.video.enabled):
            n_frames += 1
            n_classified += classify
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if classify else None
            x = (rgb if scanner is not None else model.preprocess(rgb)) if classify else None
            session.add(index, t, frame, x)
            # Bounded by classified frames (batching) and by held frames (memory, with --every).
            if session.n_inputs >= batch or len(session.pending) >= 4 * FILE_BATCH:
                session.flush()
            if live and show_fps and time.perf_counter() - last_note > LIVE_FPS_EVERY_S:
                last_note = time.perf_counter()
                console.print(f"{escape(name)}: {n_frames} frames, {n_frames / (last_note - start):.1f} fps")
        session.flush()
        complete = True
    except KeyboardInterrupt:
        if not live:
            raise
        complete = True  # stopping a camera or stream is the normal way to end it
    finally:
        cap.release()
        session.close(complete)
    return n_frames, n_classified, start


class _Session:
    """Frames waiting to be scored in one batch, and where their results go, in frame order."""

    def __init__(
        self,
        model,
        ema: Smoother,
        presence: Presence | None,
        rows: "_CsvOut",
        video: "_VideoOut",
        step: float | None,
        scanner,
        segments: Segments,
        changes: Changes | None = None,
    ):
        self.model, self.ema, self.presence, self.rows, self.video = model, ema, presence, rows, video
        self.segments, self.changes = segments, changes  # said as they come (a live source) or handed to a callback
        self.scanner = scanner
        self.step = step  # seconds between classified frames; None: measured (live)
        self.pending: list[tuple[int, float, np.ndarray | None, np.ndarray | None]] = []
        self.n_inputs, self.prev_t, self.state = 0, None, None

    def add(self, index: int, t: float, frame: np.ndarray | None, x: np.ndarray | None) -> None:
        self.pending.append((index, t, frame if self.video.enabled else None, x))
        self.n_inputs += x is not None

    def flush(self) -> None:
        xs = [x for *_, x in self.pending if x is not None]
        if self.scanner is not None:
            probs, boxes = self.scanner.frame_probs(xs, len(self.model.classes))
        else:
            probs = self.model.predict_proba(np.stack(xs)) if xs else np.zeros((0, len(self.model.classes)))
            boxes = [None] * len(probs)
        boxes = iter(boxes)
        scored = iter(zip(probs, self.model.answers(probs)))
        for index, t, frame, x in self.pending:
            if x is not None:
                p, raw = next(scored)
                smoothed = self.ema.update(p, t)
                present = None
                dt = self.step or (t - self.prev_t if self.prev_t is not None else 0.0)
                if self.presence is not None:
                    present = self.presence.update(t, dt, float(p[self.presence.pos_index]))
                self.prev_t = t
                answer = self.model.answers(smoothed[None])[0]
                self.segments.update(t, dt, answer["label"], answer["confidence"])
                if self.changes is not None and self.presence is not None:
                    self.changes.track(self.presence.positive, self.presence, t)
                elif self.changes is not None:
                    self.changes.segment(self.segments, t)
                self.state = (answer, present, next(boxes))
                self.rows.write(index, t, raw, self.state[0], smoothed, present)
            if frame is not None:
                self.video.write(frame, self.state)
        self.rows.flush()
        self.pending, self.n_inputs = [], 0

    def close(self, complete: bool) -> None:
        self.rows.close()
        self.video.close(complete)


class _CsvOut:
    """Per classified frame, flushed as it goes so a live run can be followed (tail -f)."""

    def __init__(self, path, classes: list[str], two_class: bool):
        self.f = None
        if path is None:
            return
        self.stream = open_stream(path)
        self.f = self.stream.file
        self.w = csv.writer(self.f, lineterminator="\n")
        self.two_class = two_class
        self.w.writerow(
            [
                "frame",
                "time_s",
                "label",
                "confidence",
                "smoothed_label",
                "smoothed_confidence",
                *(f"p_{c}" for c in classes),
                *(["present"] if two_class else []),
            ]
        )

    def write(self, index, t, raw: dict, smoothed_answer: dict, smoothed: np.ndarray, present) -> None:
        if self.f is None:
            return
        self.w.writerow(
            [
                index,
                f"{t:.3f}",
                raw["label"],
                f"{raw['confidence']:.4f}",
                smoothed_answer["label"],
                f"{smoothed_answer['confidence']:.4f}",
                *(f"{v:.4f}" for v in smoothed),
                *([int(present)] if self.two_class else []),
            ]
        )

    def flush(self) -> None:
        if self.f is not None:
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.stream.close()


class _VideoOut:
    """The annotated copy: each frame with the latest smoothed label drawn on it. Written under a
    temporary name and renamed when complete, so a half-written file never takes the name."""

    def __init__(self, path, fps: float):
        self.path, self.fps, self.vw = (Path(path) if path else None), fps, None
        self.enabled = path is not None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")

    def write(self, frame: np.ndarray, state) -> None:
        import cv2

        if self.vw is None:
            h, w = frame.shape[:2]
            self.vw = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.vw.isOpened():
                raise UserError(f"cannot write the video {self.path}: use a .mp4 (or .avi) name in a writable folder")
        self.vw.write(_annotate(frame, state))

    def close(self, complete: bool) -> None:
        if self.vw is not None:
            self.vw.release()
            if complete:
                commit(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def _annotate(frame: np.ndarray, state) -> np.ndarray:
    import cv2

    if state is None:
        return frame
    answer, present, boxes = state
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.4, w / 640)
    colour = (0, 0, 255) if present else (0, 200, 0)
    if present:
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), colour, max(2, int(4 * scale)))
    for b in boxes or []:  # --scan: where in the frame
        cv2.rectangle(
            out, (int(b["x1"]), int(b["y1"])), (int(b["x2"]), int(b["y2"])), (0, 0, 255), max(1, int(2 * scale))
        )
    text = f"{answer['label']} {answer['confidence']:.2f}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, max(1, int(scale)))
    cv2.rectangle(out, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(out, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, max(1, int(scale)), cv2.LINE_AA)
    return out


def _console(show: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not show, highlight=False, soft_wrap=True)

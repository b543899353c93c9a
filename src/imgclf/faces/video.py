"""Who appears in a video or camera, and when they leave: `imgclf faces identify GALLERY door.mp4 --out DIR`.

Each sampled frame's faces are named as photos are; each enrolled person (and "unknown") has their
own presence track with the video path's hysteresis (imgclf.inference.presence: a smoothed share of
recent frames must rise past 60 % to open an event and fall under 40 % to close it, and events
shorter than half a second are dropped), so one missed or misnamed frame neither ends nor starts a
visit. Writes DIR/frames.csv (frame, time_s, faces: "name:similarity" joined by spaces), DIR/events.json
({name, start_s, end_s, duration_s, peak_similarity} per visit) and, with `video_out`, the frames
with the faces boxed and named.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import open_stream, write_json

SAMPLE_FPS = 5.0  # frames named a second by default: a 640x480 frame costs ~0.1 s on a laptop CPU


def identify_video(
    model,
    gallery,
    source,
    out,
    *,
    every: int | None = None,
    smooth: float = 0.5,
    video_out=None,
    max_frames=None,
    max_seconds: float | None = None,
    verbose=True,
    on_change=None,
) -> dict:
    """Who appears in the video and when. Each frame is held to `max_seconds` (default
    core.work.MAX_SECONDS) as a photo's face search is, from the size the source reports, before a
    frame is read: a video whose frames would each take longer is refused in one line. SIGTERM ends
    the run as Ctrl-C does."""
    import cv2

    from imgclf.core.work import MAX_SECONDS, check_shape, sigterm_as_ctrl_c
    from imgclf.faces import cost
    from imgclf.inference.video import fitted_to_frames
    from imgclf.inference.video_frames import open_source
    from imgclf.settings.faces import check_identify

    checked = check_identify(every=every, max_seconds=max_seconds)  # their declared rules (settings.faces)
    every, limit = checked["every"], checked["max_seconds"] or MAX_SECONDS
    cap, live, name = open_source(source)

    def fit(width: int, height: int):
        check_shape(width, height)
        cost.check(model, width, height, limit)
        return model

    fitted_to_frames(model, fit, cap, name, None)  # before a frame is read, or anything written
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else None
    every = every or (max(1, round(fps / SAMPLE_FPS)) if fps and not live else 1)
    tracks = Tracks(
        gallery, smooth, step=every / fps if fps and not live else None, live=live and verbose, on_change=on_change
    )
    start = time.perf_counter()
    with sigterm_as_ctrl_c():
        frames, sampled = _run(model, gallery, cap, live, fps, every, max_frames, tracks, out, video_out)
    if frames == 0:
        raise UserError(f"no frames could be read from {name}: is it a video OpenCV/FFmpeg can decode?")
    events, seconds = tracks.finish(), time.perf_counter() - start
    settings = {"source": name, "every": every, "threshold": gallery.threshold, "smooth_s": smooth}
    write_json(out / "events.json", {**settings, "events": events})
    if verbose:
        print(f"{name}: {frames} frames ({sampled} named, every {every}) in {seconds:.1f}s")
        for e in events:
            print(
                f"  {e['name']}: {e['start_s']:.1f}s - {e['end_s']:.1f}s (peak similarity {e['peak_similarity']:.3f})"
            )
        print(f"wrote {out}/frames.csv, events.json" + (f", {video_out}" if video_out else ""))
    return {**settings, "frames": frames, "named": sampled, "seconds": round(seconds, 3), "events": events}


class Tracks:
    """One presence track a person (and one for "unknown"), fed each named frame's faces."""

    def __init__(self, gallery, smooth: float, step: float | None, live: bool = False, on_change=None):
        from imgclf.faces.gallery import UNKNOWN
        from imgclf.inference.presence import MIN_EVENT_S, Changes, Presence

        people = [*gallery.people, UNKNOWN]
        self.tracks = {p: Presence(p, 0, gallery.threshold, smooth, MIN_EVENT_S) for p in people}
        self.step, self.prev_t = step, None  # seconds between named frames; None: measured (live)
        # A camera or stream: who comes and goes is printed as it happens, not only when it stops;
        # `on_change` hears it too, from a file as well.
        say = (lambda line: print(line, flush=True)) if live else None
        self.changes = Changes(say, on_change) if say or on_change else None

    def update(self, t: float, faces: list[dict]) -> None:
        from imgclf.faces.gallery import UNKNOWN

        best: dict[str, float] = {}
        for f in faces:  # a stranger's similarity is to someone else: any unknown face counts
            score = 1.0 if f["name"] == UNKNOWN else f["similarity"]
            best[f["name"]] = max(best.get(f["name"], 0.0), score)
        dt = self.step or (t - self.prev_t if self.prev_t is not None else 0.0)
        for person, track in self.tracks.items():
            track.update(t, dt, best.get(person, 0.0))
            if self.changes is not None:
                self.changes.track(person, track, t)
        self.prev_t = t

    def finish(self) -> list[dict]:
        events = []
        for person, track in self.tracks.items():
            track.finish()
            if self.changes is not None:  # a visit open when the camera stopped has ended: say so
                self.changes.track(person, track, self.prev_t or 0.0)
            for e in track.events:
                peak = e.pop("peak_confidence")
                events.append({"name": person, **e, "peak_similarity": peak})
        return sorted(events, key=lambda e: e["start_s"])


def _run(model, gallery, cap, live, fps, every, max_frames, tracks: Tracks, out: Path, video_out) -> tuple[int, int]:
    """Name the sampled frames into frames.csv and the tracks, draw every frame when asked; (frames, named)."""
    import cv2
    import numpy as np
    from PIL import Image

    from imgclf.faces import name_faces
    from imgclf.inference.video_frames import read_frames

    writer = _frames_out(video_out, fps or 25.0)
    frames = sampled = 0
    drawn: list[dict] = []
    with open_stream(out / "frames.csv") as f:
        rows = csv.writer(f, lineterminator="\n")
        rows.writerow(["frame", "time_s", "faces"])
        try:
            for index, t, frame, named in read_frames(cap, live, fps, every, max_frames, writer is not None):
                frames += 1
                if named:
                    sampled += 1
                    drawn = name_faces(model, gallery, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))["faces"]
                    tracks.update(t, drawn)
                    rows.writerow([index, f"{t:.3f}", " ".join(f"{x['name']}:{x['similarity']:.3f}" for x in drawn)])
                if writer is not None:
                    writer.write(np.ascontiguousarray(_draw(frame, drawn)))
        except KeyboardInterrupt:
            if not live:
                raise  # stopping a camera or stream is the normal way to end it; a file's is not
        finally:
            cap.release()
            if writer is not None:
                writer.release(complete=frames > 0)
    return frames, sampled


def _frames_out(path, fps: float):
    if path is None:
        return None
    import cv2

    return _LazyWriter(cv2, str(Path(path).expanduser()), fps)


class _LazyWriter:
    """cv2.VideoWriter opened at the first frame, when its size is known, into a temporary .mp4 file
    (OpenCV picks the container from the name) renamed onto the path when the video is whole."""

    def __init__(self, cv2, path: str, fps: float):
        self.cv2, self.path, self.fps, self.w, self.tmp = cv2, Path(path), fps, None, None

    def write(self, frame) -> None:
        if self.w is None:
            from imgclf.core.files import new_temp

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = new_temp(self.path.parent, f".{self.path.stem}.", ".mp4")
            h, w = frame.shape[:2]
            self.w = self.cv2.VideoWriter(str(self.tmp), self.cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self.w.write(frame)

    def release(self, complete: bool) -> None:
        from imgclf.core.files import commit

        if self.w is None:
            return
        self.w.release()
        if complete:
            commit(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _draw(frame, faces: list[dict]):
    import cv2

    from imgclf.faces.gallery import UNKNOWN

    frame = frame.copy()
    for f in faces:
        colour = (150, 150, 150) if f["name"] == UNKNOWN else (255, 160, 40)  # BGR
        cv2.rectangle(frame, (f["x1"], f["y1"]), (f["x2"], f["y2"]), colour, 2)
        cv2.putText(
            frame,
            f"{f['name']} {f['similarity']:.2f}",
            (f["x1"], max(12, f["y1"] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
        )
    return frame

"""Frames from a video file, a camera index or a stream URL: opened with OpenCV, read in batches from
files and one at a time (dropping what falls behind) from live sources."""

from __future__ import annotations

import os
import time
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.data.images import is_web_url

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
MAX_BAD_READS = 25  # consecutive unreadable frames before a source counts as ended


def open_source(source):
    import cv2

    # FFmpeg's own log (e.g. "[mov,mp4,... @ 0x55..] moov atom not found" above the one-line error below,
    # a damaged frame's decoding errors mid-stream) to fatal errors only; OpenCV reads the variable when
    # it opens its first capture. A user who set it keeps theirs.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    s = str(source)
    # A web address of a video file (https://host/clip.mp4) is a file: its frames are timed by its
    # frame rate, not by the clock as a camera's or a live stream's are.
    live = s.isdigit() or (s.lower().startswith(URL_SCHEMES) and not _web_video_file(s))
    # OpenCV logs each backend it tried as a warning; the UserError below says it in one line.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        cap, hint = _capture(s, live)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise UserError(hint)
    return cap, live, s


def _capture(s: str, live: bool):
    import cv2

    if s.isdigit():
        cap = cv2.VideoCapture(int(s))
        hint = (
            f"camera {s} could not be opened: check it is connected, not used by another program, "
            f"and that this user may read it (ls -l /dev/video*); cameras are numbered from 0"
        )
    elif live or s.lower().startswith(URL_SCHEMES):
        cap = cv2.VideoCapture(s)
        hint = f"cannot open the stream {s}: check the URL, the network and that FFmpeg supports its protocol"
    else:
        path = str(Path(s).expanduser())
        if not Path(path).is_file():
            raise UserError(f"no such video file: {s}")
        cap = cv2.VideoCapture(path)
        hint = f"cannot read {s} as a video (OpenCV/FFmpeg does not recognise it): is the file complete?"
        if cap.isOpened() and not _decodes(cap):
            # Opened but no frame decodes: a codec OpenCV's FFmpeg lacks (AV1), which PyAV reads.
            from imgclf.inference.video_av import codec_name, open_with_pyav

            codec = codec_name(cap)
            cap.release()
            return open_with_pyav(path, codec), hint
        cap.release()  # the frames read to find out are read again
        cap = cv2.VideoCapture(path)
    return cap, hint


def _decodes(cap) -> bool:
    """Whether one of the first frames decodes (a damaged first frame or two is not the codec)."""
    return any(cap.read()[0] for _ in range(3))


def _web_video_file(s: str) -> bool:
    from urllib.parse import urlsplit

    return is_web_url(s) and Path(urlsplit(s).path).suffix.lower() in VIDEO_EXTENSIONS


def read_frames(cap, live: bool, fps: float | None, every: int, max_frames: int | None, keep_all: bool):
    """(index, time_s, BGR frame or None, classify?) for each frame; unreadable frames are skipped,
    and MAX_BAD_READS of them in a row end the source. Frames not classified are only decoded when
    the annotated video needs them."""
    t0, index, bad = time.perf_counter(), 0, 0
    while max_frames is None or index < max_frames:
        classify = index % every == 0
        if classify or keep_all:
            ok, frame = cap.read()
            ok = ok and frame is not None and frame.size > 0
        else:
            ok, frame = cap.grab(), None
        if not ok:
            bad += 1
            if bad >= MAX_BAD_READS:
                return
            if not live:
                index += 1  # a broken frame of a file still takes its place in time
            continue
        bad = 0
        t = index / fps if fps and not live else time.perf_counter() - t0
        yield index, t, frame, classify
        index += 1

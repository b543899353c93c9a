"""A video file OpenCV cannot decode, read with PyAV (the `video` extra) behind cv2.VideoCapture's
interface. OpenCV's wheels carry an FFmpeg without an AV1 decoder: AV1 clips (web downloads, newer
phones and cameras) open, then give no frame. PyAV's wheels decode them with dav1d."""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError

VIDEO_INSTALL = "pip install 'imgclf[video]'"


def codec_name(cap) -> str:
    """The codec OpenCV read from the file's header: 'AV1', or its four characters ('codec vvc1')."""
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ") if code > 0 else ""
    if text.lower() == "av01":
        return "AV1"
    return f"codec {text}" if text.isprintable() and text else "codec unknown"


def open_with_pyav(path: str, codec: str) -> AVCapture:
    """The file opened with PyAV; UserError saying what to install when PyAV is missing."""
    try:
        import av
    except ImportError:
        raise UserError(
            f"cannot decode {path}: OpenCV's FFmpeg has no decoder for its video ({codec}); "
            f"{VIDEO_INSTALL} (PyAV) reads it"
        ) from None
    try:
        return AVCapture(av.open(path))
    except (av.error.FFmpegError, IndexError) as e:  # no video stream, or a file FFmpeg cannot parse
        raise UserError(f"cannot read {path} as a video, with OpenCV nor PyAV: {e}") from None


class AVCapture:
    """The cv2.VideoCapture methods imgclf's video readers call (isOpened, read, grab, get, release),
    frames turned upright as the file's display matrix says (OpenCV does that for the files it reads)."""

    def __init__(self, container):
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame threads: AV1 decodes at a fraction of the speed without
        self._frames = container.decode(self._stream)
        self._turn = 0  # quarter turns counter-clockwise, from the first frame's rotation
        first = self._next()
        self._ahead = first  # read() hands it out first: the size is known before a frame is asked for
        if first is not None:
            self._turn = round(getattr(first, "rotation", 0) or 0) // 90 % 4

    def _next(self):
        import av

        try:
            return next(self._frames)
        except (StopIteration, av.error.FFmpegError):
            return None

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._container is not None

    def _take(self):
        frame, self._ahead = (self._ahead if self._ahead is not None else self._next()), None
        return frame

    def grab(self) -> bool:
        return self._take() is not None

    def read(self):
        frame = self._take()
        if frame is None:
            return False, None
        bgr = frame.to_ndarray(format="bgr24")
        return True, np.ascontiguousarray(np.rot90(bgr, self._turn)) if self._turn else bgr

    def get(self, prop: int) -> float:
        import cv2

        ctx = self._stream.codec_context
        width, height = (ctx.height, ctx.width) if self._turn % 2 else (ctx.width, ctx.height)
        if prop == cv2.CAP_PROP_FPS:
            return float(self._stream.average_rate or self._stream.guessed_rate or 0)
        return {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height}.get(prop, 0.0)

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

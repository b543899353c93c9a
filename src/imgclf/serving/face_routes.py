"""POST /faces/identify: every face in one uploaded photo, named from the service's gallery or "unknown".

    imgclf serve runs/photos-1 --faces staff-gallery
    curl -F file=@door.jpg localhost:8000/faces/identify
    # {"gallery": "staff-gallery", "people": 40, "threshold": 0.937, "width": 640, "height": 480,
    #  "faces": [{"x1": 212, "y1": 80, "x2": 290, "y2": 158, "name": "Ada", "similarity": 0.962, "found": "detected"}]}

The gallery is read again when its file changes (`imgclf faces add` / `remove` while serving take
effect on the next request). dlib's objects are not thread-safe, so one photo is worked on at a
time, in a worker thread; the photo's shape passes the same caps as /scan before it is decoded.
GET /model says `"faces": {"people": N, "threshold": T, "backend": B, "precision": P}` when a gallery
is served (`imgclf serve --faces-backend onnx-int8`: the int8 embedder); without one the route does
not exist (404).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from imgclf.core.errors import UserError
from imgclf.serving.caps import check_shape, header_size
from imgclf.serving.explain_routes import ONE_IMAGE_BODY
from imgclf.serving.limits import Rejected, rejection, request_images


class Faces:
    """The served gallery and face model, loaded on first use and reloaded when the gallery changes."""

    def __init__(self, folder: str | None, backend: str = "auto"):
        self.folder = Path(folder) if folder else None
        self.backend = backend  # the embedder's (FaceModel): auto, onnx, onnx-int8 or torch
        self.lock = threading.Lock()
        self.model = None
        self.gallery = None
        self.stamp = None
        if self.folder is not None:
            from imgclf.faces import FaceModel, load_gallery

            load_gallery(self.folder)  # a missing or foreign gallery stops `imgclf serve` with one line
            if backend != "auto":  # named outright: so does a missing int8 model (auto waits for the first photo)
                self.model = FaceModel(backend=backend)

    def info(self) -> dict | None:
        if self.folder is None:
            return None
        from imgclf.faces import load_gallery
        from imgclf.faces.model import engine_of

        g = self.gallery or load_gallery(self.folder)
        backend = engine_of("auto", self.backend)[1]
        return {
            "people": len(g.people),
            "threshold": g.threshold,
            "backend": backend,
            "precision": "int8" if backend.endswith("-int8") else "fp32",
        }

    def identify(self, data: bytes, settings) -> dict:
        from imgclf.data.images import UnusableImage, read_rgb
        from imgclf.faces import FaceModel, load_gallery, name_faces
        from imgclf.faces.gallery import FILE

        width, height = header_size(data, settings.max_pixels)
        check_shape(width, height, settings)
        with self.lock:
            try:
                self.model = self.model or FaceModel(backend=self.backend)
                stamp = (self.folder / FILE).stat().st_mtime_ns
                if stamp != self.stamp:
                    self.gallery, self.stamp = load_gallery(self.folder, self.model), stamp
            except (UserError, OSError) as e:  # models not installed, or the gallery went away
                raise Rejected(503, str(e), "unavailable") from e
            try:
                img = read_rgb(io.BytesIO(data), settings.max_pixels)
            except UnusableImage as e:
                raise rejection(e.reason, settings.max_pixels) from e
            answer = name_faces(self.model, self.gallery, img)
            return {"people": len(self.gallery.people), "threshold": self.gallery.threshold, **answer}


def register(app, holder, settings, guarded) -> None:
    faces = Faces(settings.faces, settings.faces_backend)
    app.state.faces = faces

    def advertise(h) -> None:
        h.current.info["faces"] = faces.info()

    advertise(holder)
    holder.on_change(advertise)
    if faces.folder is None:  # no gallery, no route: a plain 404, and nothing about faces in /openapi.json
        return

    @app.post(
        "/faces/identify",
        summary="Name every face in a photo from the service's gallery, or 'unknown'",
        dependencies=guarded,
        openapi_extra={"requestBody": ONE_IMAGE_BODY},
        responses={
            400: {"description": "no image, or several images"},
            413: {"description": "body, pixel count or long side over the limit"},
            415: {"description": "not an image"},
            422: {"description": "corrupt image, or aspect ratio over the limit"},
            503: {"description": "the face models are not installed, or the gallery's folder went away"},
        },
    )
    async def identify(request: Request):
        """One photo as a multipart file part or as the raw body. Boxes are in the photo's pixels."""
        files = await request_images(request, settings)
        if len(files) != 1:
            raise Rejected(
                400, f"POST /faces/identify takes one image, got {len(files)}: send one request per image", "too_many"
            )
        answer = await run_in_threadpool(faces.identify, files[0][1], settings)
        return JSONResponse({"gallery": faces.folder.name, **answer})

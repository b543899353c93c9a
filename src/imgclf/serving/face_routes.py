"""POST /faces/identify: every face in one uploaded photo, named from the service's gallery or "unknown".

    imgclf serve runs/photos-1 --faces staff-gallery
    curl -F file=@door.jpg localhost:8000/faces/identify
    # {"gallery": "staff-gallery", "people": 40, "threshold": 0.937, "width": 640, "height": 480,
    #  "faces": [{"x1": 212, "y1": 80, "x2": 290, "y2": 158, "name": "Ada", "similarity": 0.962, "found": "detected"}]}

The gallery is read again when its file changes (`imgclf faces add` / `remove` while serving take
effect on the next request). Work bounded as /scan's (scan_routes): the photo's shape passes the same
caps before it is decoded, and its seconds, estimated from its header and the face search's cost
measured when the model loads (faces.cost), the same `max_scan_seconds` (413 over, at once); then it
waits in the scan queue (serving.scan_queue: one photo worked on at a time, /scan's or this route's,
which also keeps dlib's objects, not thread-safe, to one thread), with the same deadline and 503 +
Retry-After, and a shutdown stops it between the searches.
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
from imgclf.core.work import Stop, TooMuchWork
from imgclf.serving.caps import check_shape, header_size
from imgclf.serving.explain_routes import ONE_IMAGE_BODY
from imgclf.serving.limits import Rejected, rejection, request_images


class Faces:
    """The served gallery and face model, loaded on first use and reloaded when the gallery changes."""

    def __init__(self, folder: str | None, backend: str = "auto"):
        self.folder = Path(folder) if folder else None
        self.backend = backend  # the embedder's (FaceModel): auto, onnx, onnx-int8 or torch
        self.lock = threading.RLock()
        self.model = None
        self.gallery = None
        self.stamp = None
        if self.folder is not None:
            from imgclf.faces import FaceModel, load_gallery

            load_gallery(self.folder)  # a missing or foreign gallery stops `imgclf serve` with one line
            if backend != "auto":  # named outright: so does a missing int8 model (auto waits for the first photo)
                from imgclf.faces.cost import pixel_seconds

                self.model = FaceModel(backend=backend)
                pixel_seconds(self.model)  # its cost measured now, as _load does

    def info(self) -> dict | None:
        if self.folder is None:
            return None
        from imgclf.faces import load_gallery
        from imgclf.models.face.model import engine_of

        g = self.gallery or load_gallery(self.folder)
        backend = engine_of("auto", self.backend)[1]
        return {
            "people": len(g.people),
            "threshold": g.threshold,
            "backend": backend,
            "precision": "int8" if backend.endswith("-int8") else "fp32",
        }

    def plan(self, data: bytes, settings) -> float:
        """The photo's estimated seconds (faces.cost), once its shape and estimate pass the limits
        (413 / 422), from its header alone: before it queues. The first photo loads the model."""
        from imgclf.faces.cost import check

        width, height = header_size(data, settings.max_pixels)
        check_shape(width, height, settings)
        try:
            return check(self.model or self._load(), width, height, settings.max_scan_seconds, "--max-scan-seconds")
        except TooMuchWork as e:
            raise Rejected(e.status, str(e), "too_much_work") from None

    def identify(self, data: bytes, settings, stop: Stop | None = None) -> dict:
        from imgclf.data.images import UnusableImage, read_scaled
        from imgclf.faces import load_gallery, name_faces
        from imgclf.faces.gallery import FILE
        from imgclf.models.face.model import DETECT_SIDE

        with self.lock:
            model = self.model or self._load()
            try:
                stamp = (self.folder / FILE).stat().st_mtime_ns
                if stamp != self.stamp:
                    self.gallery, self.stamp = load_gallery(self.folder, model), stamp
            except (UserError, OSError) as e:  # the gallery went away, or is damaged
                raise Rejected(503, str(e), "unavailable") from e
            if stop is not None:
                stop.check()
            try:
                img, size = read_scaled(io.BytesIO(data), DETECT_SIDE, settings.max_pixels)
            except UnusableImage as e:
                raise rejection(e.reason, settings.max_pixels) from e
            answer = name_faces(model, self.gallery, img, stop=stop, size=size)
            return {"people": len(self.gallery.people), "threshold": self.gallery.threshold, **answer}

    def _load(self):
        """The face model, loaded once, its search's cost measured then (faces.cost) under the lock:
        dlib's objects run in one thread at a time."""
        from imgclf.faces import FaceModel
        from imgclf.faces.cost import pixel_seconds

        with self.lock:
            if self.model is None:
                try:
                    model = FaceModel(backend=self.backend)
                except UserError as e:  # the models are not installed
                    raise Rejected(503, str(e), "unavailable") from e
                pixel_seconds(model)
                self.model = model
            return self.model


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
            413: {"description": "body, pixel count, long side or estimated seconds over the limit"},
            415: {"description": "not an image"},
            422: {"description": "corrupt image, or aspect ratio over the limit"},
            503: {
                "description": "scan queue full, the request's deadline passed, the service shutting down (with "
                "Retry-After), the face models not installed, or the gallery's folder gone"
            },
        },
    )
    async def identify(request: Request):
        """One photo as a multipart file part or as the raw body. Boxes are in the photo's pixels."""
        files = await request_images(request, settings)
        if len(files) != 1:
            raise Rejected(
                400, f"POST /faces/identify takes one image, got {len(files)}: send one request per image", "too_many"
            )
        data = files[0][1]
        # Refused from its size and the search's cost before it queues: an over-limit request never waits.
        await run_in_threadpool(faces.plan, data, settings)
        stop = Stop(app.state.cancel, settings.scan_deadline_s)
        answer = await app.state.scan_queue.run(stop, faces.identify, data, settings)
        return JSONResponse({"gallery": faces.folder.name, **answer})

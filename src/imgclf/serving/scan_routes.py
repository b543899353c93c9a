"""POST /scan: find the model's positive class in one uploaded photo (the page draws the boxes).

    curl -F file=@street.jpg 'localhost:8000/scan?iou=0.3'
    # {"model": "person-1", "width": 640, "height": 480, "present": true, "score": 0.98, "threshold": 0.62,
    #  "positive": "person", "boxes": [{"x1": 212.0, "y1": 80.5, "x2": 268.3, "y2": 221.7, "score": 0.98}],
    #  "windows": 5210, "seconds": 0.21}

A scan is hundreds of forward passes' worth of work, so it skips the micro-batcher (built for many
small requests) and runs in a worker thread; one scan at a time (a lock) keeps a burst of scans
from starving /predict of CPU. GET /model says `"scan": true` when the model has a class to find.
"""
from __future__ import annotations

import io
import threading

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import UserError
from .explain_routes import ONE_IMAGE_BODY
from .limits import Rejected, read_body, rejection, split_images


def register(app, holder, settings, guarded) -> None:
    lock = threading.Lock()
    cache: dict = {}            # (model id, *options) -> Scanner; rebuilt after a swap

    def advertise(h) -> None:
        # /model's info comes from the holder's snapshot: mark it there, again after every swap.
        h.current.info["scan"] = _can_scan(h.current.model)

    advertise(holder)
    holder.on_change(advertise)

    @app.post("/scan", summary="Find the positive class in a whole photo: sliding window + NMS",
              dependencies=guarded, openapi_extra={"requestBody": ONE_IMAGE_BODY},
              responses={400: {"description": "no image, several images, unknown class, bad iou"},
                         413: {"description": "body or pixel count over the limit"},
                         415: {"description": "not an image"}, 422: {"description": "corrupt image"}})
    async def scan(request: Request,
                   positive: str | None = Query(None, description="class to find [default: the run's positive class]"),
                   iou: float = Query(0.3, gt=0, le=1, description="NMS IoU"),
                   min_size: int | None = Query(None, ge=8, description="smallest window height in px [default: 64]"),
                   threshold: float | None = Query(None, gt=0, lt=1, description="positive probability to keep "
                                                   "a window [default: the run's decision threshold, else 0.5]")):
        """One photo as a multipart file part or as the raw body. Boxes are in the photo's pixels."""
        served = holder.current         # one model for the whole request, even if a swap lands meanwhile
        body = await read_body(request.headers.get("content-length"), request.stream(), settings.max_upload_bytes,
                               request.headers.get("expect", "").lower() == "100-continue")
        files = split_images(body, request.headers.get("content-type", ""), settings.max_images)
        if len(files) != 1:
            raise Rejected(400, f"POST /scan takes one image, got {len(files)}: send one request per image", "too_many")
        options = {"positive": positive, "iou": iou, "min_size": min_size, "threshold": threshold}
        answer = await run_in_threadpool(_scan, served.model, files[0][1], options, settings.max_pixels, cache, lock)
        return JSONResponse({"model": served.info["name"], **answer})


def _can_scan(model) -> bool:
    from ..scanning import positive_class

    try:
        positive_class(model, None)
        return True
    except UserError:
        return False


def _scan(model, data: bytes, options: dict, max_pixels: int, cache: dict, lock: threading.Lock) -> dict:
    from ..data.images import UnusableImage, read_rgb
    from ..scanning import Scanner

    try:
        img = read_rgb(io.BytesIO(data), max_pixels)
    except UnusableImage as e:
        raise rejection(e.reason, max_pixels) from e
    key = (id(model), *options.values())
    with lock:
        if key not in cache:
            try:
                scanner = Scanner(model, **options)
            except UserError as e:
                raise Rejected(400, str(e), "bad_request") from e
            if any(k[0] != id(model) for k in cache):
                cache.clear()           # a swapped-out model: drop its scanners
            cache[key] = scanner
        result = cache[key].scan(img)
    result.pop("_windows")
    return result

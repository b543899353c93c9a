"""POST /scan: find people (or the model's positive class) in one uploaded photo (the page draws the boxes).

    curl -F file=@street.jpg 'localhost:8000/scan?iou=0.3'
    # {"model": "person-1", "width": 640, "height": 480, "present": true, "score": 0.98, "threshold": 0.62,
    #  "positive": "person", "boxes": [{"x1": 212.0, "y1": 80.5, "x2": 268.3, "y2": 221.7, "score": 0.98}],
    #  "windows": 5210, "seconds": 0.21}

Two engines: a served run trained on crops (with a class named like person, or `positive=`) is slid
over the photo (imgclf.scanning); any other run, or `detector=person`, gets the pretrained person
detector (imgclf.detection: one forward pass, boxes with a `label`, and a `count`), in the engine
`imgclf serve --detector-backend` names (onnx-int8: its int8 model); GET /model's "detector" says which.

A crop scan is hundreds of forward passes' worth of work, so it skips the micro-batcher (built for many
small requests) and runs in a worker thread, one scan at a time with a short queue and a deadline
(serving.scan_queue: 503 + Retry-After past them). GET /model says `"scan": true` when the model has
a class to find, and gives the scan limits and what a 640 x 480 photo costs.

A photo's cost is known before it is decoded, before it queues: its header gives its shape
(serving.caps), the model's measured cost its seconds (scanning.cost, detection.cost); over the
limits it is refused at once (413 / 422). A crop scan whose min_size the client left out has its
smallest window raised until the scan fits `max_scan_seconds` instead (the answer's `min_size`).
The scanners (each holding its own copy of the network's trunk) are cached by what changes
the network, the model and the class, in a small LRU; the per-request options (threshold, iou,
min_size) make a shallow copy that shares the cached trunk.
"""

from __future__ import annotations

import functools
import io
from dataclasses import replace
from pathlib import Path

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from imgclf.core.errors import UserError
from imgclf.core.work import Stop, TooMuchWork
from imgclf.serving.caps import check_shape, check_windows, header_size
from imgclf.serving.explain_routes import ONE_IMAGE_BODY
from imgclf.serving.limits import Rejected, rejection, request_images
from imgclf.serving.params import Param, Parameters, check_class
from imgclf.settings.checks import Number
from imgclf.settings.scan import RULES as SCAN_RULES

SCANNERS = 4  # cached (model, class) scanners: one model serves at a time, with few classes to find
DETECTORS = ("person",)
TILES = ("1x1", "2x1", "1x2", "2x2", "3x2", "2x3", "3x3")  # a fixed list: an exact enum in the OpenAPI spec
NAMES = {"min_size": "min_size", "limit": "--max-scan-seconds"}  # how a refusal names what to change
QUERY = Parameters(
    detector=Param(
        "person: scan with the service's detector (imgclf serve --detector: the pretrained person detector, "
        "or a fine-tuned detector run) [default: the run's crop model when it has a class to find, else person]",
        choices=DETECTORS,
    ),
    positive=Param("class to find [default: the run's positive class]"),
    iou=Param("NMS IoU [default: 0.3 for a crop model, the detector's own (0.6) for a detector]", SCAN_RULES["iou"]),
    min_size=Param(
        "smallest window height in px [default: the run's recorded one, else 64, raised until the scan fits the "
        "service's time limit (GET /model: service.max_scan_seconds)]",
        Number(int, 8, 100_000, optional=True),  # stricter than imgclf scan's rule: a service's floor
    ),
    threshold=Param(
        "positive probability to keep a window [default: the run's decision threshold, else 0.5]",
        SCAN_RULES["threshold"],
    ),
    tiles=Param(
        "detector only: also look at COLUMNSxROWS overlapping tiles of the photo, for people small in it (one "
        "more pass a tile) [default: 1x1, the whole photo]",
        choices=TILES,
    ),
)


def register(app, holder, settings, guarded) -> None:
    queue = app.state.scan_queue  # shared with POST /faces/identify: one photo's work at a time
    scanners = functools.lru_cache(maxsize=SCANNERS)(_scanner)
    app.state.scanners = scanners  # its cache_info() shows the cache's size (tests, debugging)
    from imgclf.detection.detector import detector_kind

    detector_kind(settings.detector)  # a folder that is no detector run: one line at start-up, not a 500 per /scan
    if settings.detector_backend != "auto":  # named outright: a missing int8 model stops the start-up, in one line
        loaded_detector(settings.detector, settings.detector_backend)
    detector = _detector_info(settings)

    def advertise(h) -> None:
        # /model's info comes from the holder's snapshot: mark it there, again after every swap.
        h.current.info["detector"] = detector
        crop = _can_scan(h.current.model)
        h.current.info["scan"] = crop or _detector_installed(settings.detector)
        h.current.info["scan_with"] = "crop model" if crop else ("detector person" if h.current.info["scan"] else None)
        scanners.cache_clear()  # a swapped-out model's scanners hold its network: drop them
        if crop:  # the model's cost, measured now (when it loads), not on the first photo sent
            h.current.info["scan_cost"] = _vga_cost(h.current.model, scanners, settings)

    advertise(holder)
    holder.on_change(advertise)
    # `positive` names one of the classes: the spec lists them (checked against the served model).
    query = Parameters(
        **{**QUERY.params, "positive": replace(QUERY.params["positive"], listed=tuple(holder.model.classes))}
    )

    @app.post(
        "/scan",
        summary="Find people (or the run's positive class) in a whole photo: pretrained detector or sliding window",
        dependencies=guarded,
        openapi_extra={"requestBody": ONE_IMAGE_BODY, "parameters": query.openapi()},
        responses={
            400: {"description": "no image, several images, a model with no class to find"},
            403: {"description": "a cross-site post to a keyless service"},
            413: {"description": "body, pixel count, long side, window count or estimated seconds over the limit"},
            415: {"description": "not an image"},
            422: {
                "description": "corrupt image, aspect ratio over the limit, a bad query parameter, `tiles` (the "
                "detector's) in a crop-model scan"
            },
            503: {
                "description": "scan queue full, the scan's deadline passed, the service shutting down (with "
                "Retry-After), or the pretrained detector's weights not installed on the server"
            },
        },
    )
    async def scan(request: Request, q: dict = Depends(query)):
        """One photo as a multipart file part or as the raw body. Boxes are in the photo's pixels."""
        served = holder.current  # one model for the whole request, even if a swap lands meanwhile
        crop = q["positive"] is not None or served.info.get("scan_with") == "crop model"
        detector = q["detector"] or (None if crop else "person")
        positive = None if detector else check_class("positive", q["positive"], served.model.classes)
        files = await request_images(request, settings)
        if len(files) != 1:
            raise Rejected(400, f"POST /scan takes one image, got {len(files)}: send one request per image", "too_many")
        stop = Stop(app.state.cancel, settings.scan_deadline_s)
        data = files[0][1]
        if detector:
            options = {k: q[k] for k in ("iou", "threshold", "tiles")}
            found = await run_in_threadpool(_planned_detector, settings.detector, data, options, settings)
            answer = await queue.run(stop, _detect, found, data, settings)
            return JSONResponse({"model": served.info["name"], "detector": Path(settings.detector).name, **answer})
        if q["tiles"] is not None:
            raise Rejected(
                422,
                "tiles is an option of the detector (detector=person); a crop model's scan covers the photo with min_size",
                "bad_request",
            )
        options = {k: q[k] for k in ("iou", "min_size", "threshold")}
        options["iou"] = 0.3 if options["iou"] is None else options["iou"]
        # Refused from its size and the model's cost before it queues: an over-limit request never waits.
        scanner, est = await run_in_threadpool(_planned_scan, served.model, data, positive, options, settings, scanners)
        answer = await queue.run(stop, _scan, scanner, data, settings)
        return JSONResponse({"model": served.info["name"], **answer, "estimated_seconds": round(est["seconds"], 3)})


def _can_scan(model) -> bool:
    from imgclf.scanning import positive_class

    try:
        positive_class(model, None)
        return True
    except UserError:
        return False


def _detector_installed(name: str) -> bool:
    from imgclf.models.person import weights

    if (Path(name) / "detector.json").is_file():  # a fine-tuned detector run
        return True
    try:
        weights.graph_file()
        return True
    except UserError:
        return False


@functools.lru_cache(maxsize=2)
def loaded_detector(name: str, backend: str = "auto"):
    """/scan's detector, loaded once (serve_run wraps the same one for /predict when no run is served)."""
    from imgclf.detection import load_detector

    return load_detector(name, "auto", backend)


def _detector_info(settings) -> dict | None:
    """GET /model's "detector": /scan's detector, the engine it runs in and the precision it computes in."""
    from imgclf.core.device import device_named
    from imgclf.detection.engines import ENGINES, resolved

    if not _detector_installed(settings.detector):
        return None
    device = device_named("auto")
    backend = resolved(settings.detector_backend, device)
    return {
        "name": Path(settings.detector).name,
        "backend": backend,
        "engine": ENGINES.get(backend, f"PyTorch on {device}"),
        "precision": "int8" if backend.endswith("-int8") else "fp32",
    }


def _planned_detector(name: str, data: bytes, options: dict, settings):
    """The detector for this photo, once its shape and estimated seconds pass the limits: a fixed
    cost (one 300x300 pass) and the photo's decoding."""
    from imgclf.detection.cost import check

    width, height = header_size(data, settings.max_pixels)
    check_shape(width, height, settings)
    try:
        detector = loaded_detector(name, settings.detector_backend)
    except UserError as e:  # its weights are not installed here
        raise Rejected(503, str(e), "unavailable") from e
    try:
        detector = detector.with_options(**options)
        check(detector, width, height, settings.max_scan_seconds, NAMES["limit"])
    except TooMuchWork as e:
        raise Rejected(e.status, str(e), "too_much_work") from None
    return detector


def _detect(detector, data: bytes, settings, stop: Stop) -> dict:
    from imgclf.data.images import UnusableImage, read_scaled

    stop.check()
    try:  # decoded no larger than the detector needs; the answer is in the photo's own pixels
        img, size = read_scaled(io.BytesIO(data), detector.decode_side, settings.max_pixels)
    except UnusableImage as e:
        raise rejection(e.reason, settings.max_pixels) from e
    return detector.detect_batch([img], [size])[0]


def _scanner(model, positive: str | None):
    from imgclf.scanning import Scanner

    try:
        return Scanner(model, positive)
    except UserError as e:
        raise Rejected(400, str(e), "bad_request") from e


def _planned_scan(model, data: bytes, positive: str | None, options: dict, settings, scanners):
    """(the scanner for this photo, its estimate), once its shape, window count and estimated seconds
    pass the limits (a min_size the client left out raised until it fits: scanning.cost.fit)."""
    from imgclf.scanning.cost import fit

    width, height = header_size(data, settings.max_pixels)
    check_shape(width, height, settings)
    try:
        scanner = scanners(model, positive).with_options(**options)
    except UserError as e:
        raise Rejected(422, str(e), "bad_request") from e
    try:
        scanner, est = fit(scanner, width, height, settings.max_scan_seconds, NAMES)
    except TooMuchWork as e:
        raise Rejected(e.status, str(e), "too_much_work") from None
    check_windows(scanner, width, height, settings.max_windows)
    return scanner, est


def _scan(scanner, data: bytes, settings, stop: Stop) -> dict:
    from imgclf.data.images import UnusableImage, read_rgb

    stop.check()
    try:  # decoded in the queue's turn: one scanned photo's pixels in memory at a time
        img = read_rgb(io.BytesIO(data), settings.max_pixels)
    except UnusableImage as e:
        raise rejection(e.reason, settings.max_pixels) from e
    result = scanner.scan(img, stop)
    result.pop("_windows")
    return result


def _vga_cost(model, scanners, settings) -> dict | None:
    """What a 640 x 480 photo costs this model with the service's defaults: /model tells clients."""
    from imgclf.scanning.cost import fit
    from imgclf.scanning.window import DEFAULT_MIN_SIZE

    try:
        fitted, est = fit(scanners(model, None), 640, 480, settings.max_scan_seconds, NAMES)
    except TooMuchWork:
        return {"photo": "640x480", "fits": False}
    except (Rejected, UserError):  # no default class to scan for after all: nothing to say
        return None
    return {
        "photo": "640x480",
        "fits": True,
        "seconds": round(est["seconds"], 3),
        "min_size": fitted.min_size or DEFAULT_MIN_SIZE,
    }

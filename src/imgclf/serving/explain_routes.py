"""POST /explain: where the network looked, for one uploaded image (the page's "show where it looked").

    curl -F file=@rose.jpg 'localhost:8000/explain?method=gradcam'
    # {"model": "flowers-1", "label": "rose", "confidence": 0.91, "target": "rose", "method": "gradcam",
    #  "overlay": "data:image/png;base64,...", "heatmap": [[0.0, 0.1, ...], ...]}   (14 x 14, 0..1)

A CAM needs gradients and hooks on the network, so it never goes through the micro-batcher: it
runs in a worker thread, one at a time (a lock), on a private copy of the served network, so
predictions running meanwhile on the shared network are untouched.
"""

from __future__ import annotations

import io
import threading

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from imgclf.core.errors import UserError
from imgclf.serving.caps import check_shape, header_size
from imgclf.serving.limits import IMAGE, Rejected, decode, request_images
from imgclf.serving.params import Param, Parameters, check_class

HEATMAP_SIDE = 14
OVERLAY_SIDE = (256, 512)  # longer side of the returned overlay: readable, yet a small answer
ONE_IMAGE_BODY = {  # one image: a file part named `file`, or the raw body
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": IMAGE}, "required": ["file"]},
        },
        "image/*": {"schema": IMAGE},
        "application/octet-stream": {"schema": IMAGE},
    },
}


def register(app, holder, settings, guarded) -> None:
    from imgclf.settings.checks import EXPLAIN_METHODS

    lock = threading.Lock()
    cache: dict = {}  # the served model and its Explainer (private network copy); rebuilt after a swap
    query = Parameters(
        method=Param(" | ".join(EXPLAIN_METHODS), choices=EXPLAIN_METHODS, default="gradcam"),
        target=Param("class to explain [default: the answered class]", listed=tuple(holder.model.classes)),
    )

    @app.post(
        "/explain",
        summary="Where the network looked: a class activation map for one image",
        dependencies=guarded,
        openapi_extra={"requestBody": ONE_IMAGE_BODY, "parameters": query.openapi()},
        responses={
            400: {"description": "no image, several images"},
            403: {"description": "a cross-site post to a keyless service"},
            413: {"description": "body, pixel count or long side over the limit"},
            415: {"description": "not an image"},
            422: {"description": "corrupt image, aspect ratio over the limit, a bad query parameter"},
            501: {"description": "this model cannot be explained (ensemble, ONNX backend)"},
        },
    )
    async def explain(request: Request, q: dict = Depends(query)):
        """One image as a multipart file part or as the raw body. Answers the model's label and
        confidence (as /predict), the explained class, an overlay PNG as a data URL and the heatmap
        averaged down to 14 x 14 (rows top to bottom, values 0..1)."""
        served = holder.current  # one model for the whole request, even if a swap lands meanwhile
        model = served.model
        method, target = q["method"], check_class("target", q["target"], model.classes)
        files = await request_images(request, settings)
        if len(files) != 1:
            raise Rejected(
                400, f"POST /explain takes one image, got {len(files)}: send one request per image", "too_many"
            )
        answer = await run_in_threadpool(_explain, model, files[0][1], method, target, settings, cache, lock)
        return JSONResponse({"model": served.info["name"], **answer})


def _explain(model, data: bytes, method: str, target: str | None, settings, cache: dict, lock: threading.Lock) -> dict:
    import base64

    from imgclf.data.images import read_rgb
    from imgclf.inference.explain import Explainer, overlay, png_bytes, small_heatmap

    check_shape(*header_size(data, settings.max_pixels), settings)  # a 20000 x 1 strip: refused unread
    x = decode(data, model.img_size, model.resize_mode, settings.max_pixels)
    original = read_rgb(io.BytesIO(data), settings.max_pixels)
    probs = model.predict_proba(x[None])
    answer = model.answers(probs)[0]
    with lock:
        if cache.get("model") is not model:
            try:
                cache.update(model=model, explainer=Explainer(model, copy=True))
            except UserError as e:
                raise Rejected(501, f"this model cannot be explained: {e}", "unsupported") from None
        explainer = cache["explainer"]
        t = explainer.target_index(probs[0], answer["label"], target)
        heat = explainer.heatmaps(x[None], [t], method)[0]
    picture = png_bytes(overlay(original, heat, model.resize_mode, side=OVERLAY_SIDE))
    return {
        "label": answer["label"],
        "confidence": answer["confidence"],
        "target": model.classes[t],
        "method": method,
        "overlay": "data:image/png;base64," + base64.b64encode(picture).decode("ascii"),
        "heatmap": small_heatmap(heat, HEATMAP_SIDE),
    }

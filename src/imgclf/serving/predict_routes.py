"""POST /predict: one or several images in, calibrated answers out (and, with --log-predictions,
each answer logged for `imgclf monitor`)."""

from __future__ import annotations

import hashlib

import numpy as np
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.serving.limits import IMAGE, Rejected, decode, request_images
from imgclf.serving.params import Param, Parameters
from imgclf.settings.checks import Number
from imgclf.store import predlog


def predict_body(max_images: int) -> dict:
    """The request body as the route checks it: at least one image part, at most `max_images`."""
    files = {"type": "array", "items": IMAGE, "minItems": 1, "maxItems": max_images}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": files}, "required": ["file"]}},
            "image/*": {"schema": IMAGE},
            "application/octet-stream": {"schema": IMAGE},
        },
    }


PREDICT_EXAMPLE = {
    "model": "flowers-1",
    "results": [
        {
            "filename": "rose.jpg",
            "label": "rose",
            "confidence": 0.91,
            "top_k": [{"label": "rose", "p": 0.91}, {"label": "tulip", "p": 0.06}],
            "decision": {"rule": "argmax"},
        }
    ],
}
ERRORS = {
    400: "malformed multipart, no image, empty image",
    401: "missing or wrong API key",
    403: "cross-site post to a keyless service that logs predictions",
    408: "the body stalled",
    421: "Host header not served here (--allowed-host)",
    413: "body or pixel count over the limit",
    415: "not an image / unsupported Content-Type",
    422: "corrupt or truncated image, more images than --max-images, a bad or unknown query parameter",
    503: "queue full: retry after Retry-After seconds",
}


def register(app, holder, settings, dependencies: list, runner, plog, metrics) -> None:
    """Add the route to `app`; `dependencies` guard it (the API key, or same-origin posts when it logs)."""
    query = Parameters(
        top_k=Param(f"classes per image [default {settings.top_k}]", Number(int, 1, 1000, optional=True))
    )

    @app.post(
        "/predict",
        summary="Classify one or several images",
        dependencies=dependencies,
        openapi_extra={"requestBody": predict_body(settings.max_images), "parameters": query.openapi()},
        responses={
            200: {"content": {"application/json": {"example": PREDICT_EXAMPLE}}},
            **{code: {"description": text} for code, text in ERRORS.items()},
        },
    )
    async def predict(request: Request, q: dict = Depends(query)):
        """Images as multipart/form-data file parts (any field name; several allowed), or one image as
        the raw body (Content-Type image/... or application/octet-stream)."""
        served = holder.current  # one model for this whole request, even if a swap lands meanwhile
        model = served.model
        with runner.arriving():
            files = await request_images(request, settings)
            hashes = [] if plog else None  # sha256 per image, for the prediction log
            inputs = await run_in_threadpool(
                _decode_all, files, model.img_size, model.resize_mode, settings.max_pixels, hashes
            )
        usable = [x for x in inputs if not isinstance(x, Rejected)]
        if not usable:
            for x in inputs[1:]:
                metrics.errors.labels(x.reason).inc()
            raise inputs[0]
        probs = await runner.submit(np.stack(usable), model.predict_proba)
        answers = iter(zip(model.answers(probs, q["top_k"] or settings.top_k), probs))
        rule = OperatingPoint.of(model.meta)
        decision = rule.answer_rule()
        results = []
        for i, ((name, data), x) in enumerate(zip(files, inputs)):
            entry = {"filename": name} if name else {}
            if isinstance(x, Rejected):
                metrics.errors.labels(x.reason).inc()
                entry.update(error=x.detail, status=x.status_code)
            else:
                a, p = next(answers)
                metrics.predictions.labels(a["label"]).inc()
                if plog and plog.sampled(hashes[i]):
                    rec = predlog.record(
                        sha256=hashes[i],
                        model=served.info["name"],
                        version=served.version,
                        answer=a,
                        probs=p,
                        classes=model.classes,
                        decision=decision["rule"],
                    )
                    if plog.write(rec, data, x):
                        entry["prediction_id"] = rec["id"]
                entry.update(
                    label=a["label"],
                    confidence=a["confidence"],
                    top_k=[{"label": c, "p": p} for c, p in a["top_k"]],
                    decision={**decision, "unknown": True} if rule.declined(a["label"]) else decision,
                )
            results.append(entry)
        # Plain JSON types already: skip FastAPI's jsonable_encoder walk, a tenth of a millisecond each.
        return JSONResponse({"model": served.info["name"], "version": served.version, "results": results})


def _decode_all(
    files: list[tuple[str, bytes]], size: int, resize: str, max_pixels: int, hashes: list | None = None
) -> list:
    """Each image's model input, or the Rejected saying why it has none (one thread for the lot);
    each image's sha256 appended to `hashes` when given."""
    out = []
    for _, data in files:
        if hashes is not None:
            hashes.append(hashlib.sha256(data).hexdigest())
        try:
            out.append(decode(data, size, resize, max_pixels))
        except Rejected as e:
            out.append(e)
    return out

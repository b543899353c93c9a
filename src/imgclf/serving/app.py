"""The FastAPI app: routes over one loaded model.

    from imgclf.serving import ServeSettings, create_app
    app = create_app(imgclf.load("runs/flowers-1"), ServeSettings(api_key="s3cret"))
    # uvicorn.run(app) — or simply: imgclf serve runs/flowers-1 --api-key s3cret

The model sits in a `ModelHolder` (serving.holder): each request reads `holder.model` once and uses
that model throughout, so a hot swap (`imgclf serve --registry DIR`) lands between requests.

One rule for bad images: a request in which no image can be classified gets a 4xx for the whole
request (the first image's reason); a request with several images, some usable, gets 200 and an
`error` entry (with its would-be `status`) in place of each unusable image's answer.
"""
from __future__ import annotations

import hashlib
import hmac
from contextlib import asynccontextmanager
from importlib import resources

import numpy as np
from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .. import __version__, predlog
from ..evaluation.rejection import UNKNOWN
from ..validation import Number
from .batching import DirectRunner, MicroBatcher
from .guards import HostAllowList, same_origin_only
from .holder import ModelHolder
from .info import service_info
from .limits import Rejected, decode, read_body, split_images
from .metrics import MetricsMiddleware, ServiceMetrics
from .params import Param, Parameters
from .settings import ServeSettings
from .slow_clients import BodyTimeout

# The page is served from here with every script and style inline; the policy lets it talk only to
# this server, and lets the browser show uploaded files and the camera (blob:, mediastream:).
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'self' blob: data:; media-src 'self' blob: mediastream:; base-uri 'none'; form-action 'none'")
PREDICT_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
PREDICT_EXAMPLE = {"model": "flowers-1", "results": [{
    "filename": "rose.jpg", "label": "rose", "confidence": 0.91,
    "top_k": [{"label": "rose", "p": 0.91}, {"label": "tulip", "p": 0.06}], "decision": {"rule": "argmax"}}]}
ERRORS = {400: "malformed multipart, no image, empty image", 401: "missing or wrong API key",
          403: "cross-site post to a keyless service that logs predictions", 408: "the body stalled",
          421: "Host header not served here (--allowed-host)",
          413: "body, image count or pixel count over the limit", 415: "not an image / unsupported Content-Type",
          422: "corrupt or truncated image, a bad query parameter", 503: "queue full: retry after Retry-After seconds"}


def create_app(model_or_holder, settings: ServeSettings | None = None) -> FastAPI:
    """The service for a loaded `imgclf.load(...)` model (torch or ONNX backend), or for a
    `ModelHolder` whose model may be swapped while it serves."""
    settings = settings or ServeSettings()
    holder = model_or_holder if isinstance(model_or_holder, ModelHolder) else ModelHolder(model_or_holder)
    first = holder.model
    metrics = ServiceMetrics(first.classes)
    _follow_in_metrics(holder, metrics)
    # Requests pass their own model's function to submit(); this default only serves other callers.
    runner = (MicroBatcher(first.predict_proba, settings.max_batch, settings.max_wait_ms, settings.max_queue, metrics)
              if settings.batching else DirectRunner(first.predict_proba, metrics))
    service = service_info(settings)
    plog = _prediction_log(settings, metrics)
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_app):
        await runner.start()
        holder.start()
        if plog:
            plog.start()
        yield
        holder.stop()
        await runner.stop()
        if plog:
            plog.close()

    app = FastAPI(title=f"imgclf: {holder.name}", version=__version__, lifespan=lifespan,
                  description=f"Image classification with the imgclf run '{holder.name}' "
                              f"({len(first.classes)} classes). The browser page is at /.")
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.state.settings = settings                              # the server reads its deadlines from here
    app.add_middleware(BodyTimeout, seconds=settings.read_timeout_s)
    app.add_middleware(HostAllowList, allowed=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)     # outermost: sees every answer, CORS included
    # Without a key the routes carry no security scheme at all, so the OpenAPI spec asks for none.
    guarded = [Security(_key_check(settings.api_key))] if settings.api_key else []
    # Routes that write (the inbox; the prediction log) take browser requests from our own page only
    # when there is no key: with one, another site's page cannot send it (serving.guards).
    writes = guarded or [Depends(same_origin_only(settings.cors))]

    @app.exception_handler(Rejected)
    async def refused(_request: Request, e: Rejected):
        metrics.errors.labels(e.reason).inc()
        return JSONResponse({"detail": e.detail}, e.status_code, headers=e.headers)

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/health", summary="Liveness: 200 while the service runs (never needs the API key)")
    async def health():
        return {"status": "ok", "model": holder.name}

    @app.get("/model", summary="The model: classes, input, calibration, decision rule, test metrics",
             dependencies=guarded)
    async def model_metadata():
        return {**holder.info, "service": service}

    @app.get("/metrics", summary="Prometheus metrics (text format)", dependencies=guarded,
             response_class=PlainTextResponse)
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    query = Parameters(top_k=Param(f"classes per image [default {settings.top_k}]",
                                   Number(int, 1, 1000, optional=True)))

    @app.post("/predict", summary="Classify one or several images", dependencies=writes if plog else guarded,
              openapi_extra={"requestBody": PREDICT_BODY, "parameters": query.openapi()},
              responses={200: {"content": {"application/json": {"example": PREDICT_EXAMPLE}}},
                         **{code: {"description": text} for code, text in ERRORS.items()}})
    async def predict(request: Request, q: dict = Depends(query)):
        """Images as multipart/form-data file parts (any field name; several allowed), or one image as
        the raw body (Content-Type image/... or application/octet-stream)."""
        served = holder.current         # one model for this whole request, even if a swap lands meanwhile
        model = served.model
        with runner.arriving():
            body = await read_body(request.headers.get("content-length"), request.stream(), settings.max_upload_bytes,
                                   request.headers.get("expect", "").lower() == "100-continue")
            files = split_images(body, request.headers.get("content-type", ""), settings.max_images)
            hashes = [] if plog else None      # sha256 per image, for the prediction log
            inputs = await run_in_threadpool(_decode_all, files, model.img_size, model.resize_mode, settings.max_pixels,
                                             hashes)
        usable = [x for x in inputs if not isinstance(x, Rejected)]
        if not usable:
            for x in inputs[1:]:
                metrics.errors.labels(x.reason).inc()
            raise inputs[0]
        probs = await runner.submit(np.stack(usable), model.predict_proba)
        answers = iter(zip(model.answers(probs, q["top_k"] or settings.top_k), probs))
        decision = _decision_rule(model.meta)
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
                    rec = predlog.record(sha256=hashes[i], model=served.info["name"], version=served.version, answer=a,
                                         probs=p, classes=model.classes, decision=decision["rule"])
                    if plog.write(rec, data, x):
                        entry["prediction_id"] = rec["id"]
                entry.update(label=a["label"], confidence=a["confidence"],
                             top_k=[{"label": c, "p": p} for c, p in a["top_k"]],
                             decision={**decision, "unknown": True} if a["label"] == UNKNOWN else decision)
            results.append(entry)
        # Plain JSON types already: skip FastAPI's jsonable_encoder walk, a tenth of a millisecond each.
        return JSONResponse({"model": served.info["name"], "version": served.version, "results": results})

    from .feedback_routes import register as register_feedback
    register_feedback(app, holder, settings, writes, plog)
    from .explain_routes import register as register_explain
    register_explain(app, holder, settings, guarded)
    from .scan_routes import register as register_scan
    register_scan(app, holder, settings, guarded)
    return app


def _prediction_log(settings: ServeSettings, metrics: ServiceMetrics):
    """The --log-predictions writer, or None when the service logs nothing."""
    if not settings.log_predictions:
        return None
    return predlog.PredictionLog(settings.log_predictions, settings.log_sample, settings.log_images == "keep",
                                 settings.log_max_mb, on_drop=metrics.log_dropped.inc)


def _follow_in_metrics(holder: ModelHolder, metrics: ServiceMetrics) -> None:
    """The served version as a gauge, swaps as a counter (ok / failed)."""
    metrics.model_version.set(holder.version or 0)
    seen = {"ok": holder.swaps, "failed": holder.failures}

    def note(h: ModelHolder) -> None:
        metrics.model_version.set(h.version or 0)
        for result, count in (("ok", h.swaps), ("failed", h.failures)):
            if count > seen[result]:
                metrics.swaps.labels(result).inc(count - seen[result])
                seen[result] = count

    holder.on_change(note)


def _decode_all(files: list[tuple[str, bytes]], size: int, resize: str, max_pixels: int,
                hashes: list | None = None) -> list:
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


def _decision_rule(meta: dict) -> dict:
    if meta.get("decision"):
        d = meta["decision"]
        return {"rule": "threshold", "positive_class": d["positive_class"], "threshold": d["threshold"]}
    if meta.get("rejection"):
        return {"rule": "rejection", "threshold": meta["rejection"]["threshold"], "unknown": False}
    return {"rule": "argmax"}


def _key_check(expected: str):
    """A dependency that lets a request through only with the key, as `X-API-Key: KEY` or
    `Authorization: Bearer KEY`. Keys are compared as SHA-256 digests with hmac.compare_digest:
    constant time, and their length does not show either."""
    header, bearer = APIKeyHeader(name="X-API-Key", auto_error=False), HTTPBearer(auto_error=False)
    want = hashlib.sha256(expected.encode()).digest()

    async def require_key(key: str | None = Security(header),
                          credentials: HTTPAuthorizationCredentials | None = Security(bearer)):
        given = key if key is not None else credentials.credentials if credentials else None
        if given is None:
            raise Rejected(401, "missing API key: send the header 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                           "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), want):
            raise Rejected(401, "wrong API key", "unauthorized", headers={"WWW-Authenticate": "Bearer"})

    return require_key

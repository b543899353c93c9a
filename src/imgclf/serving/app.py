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
import threading
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from imgclf.core.device import device_type
from imgclf.core.version import __version__
from imgclf.serving.batching import DirectRunner, MicroBatcher, forwards_at_once, model_threads
from imgclf.serving.guards import HostAllowList, same_origin_only
from imgclf.serving.holder import ModelHolder
from imgclf.serving.info import service_info
from imgclf.serving.limits import Rejected
from imgclf.serving.metrics import MetricsMiddleware, ServiceMetrics
from imgclf.serving.scan_queue import ScanQueue
from imgclf.serving.slow_clients import BodyTimeout
from imgclf.settings.serve import ServeSettings
from imgclf.store import predlog

# The page is served from here with every script and style inline; the policy lets it talk only to
# this server, and lets the browser show uploaded files and the camera (blob:, mediastream:).
PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' blob: data:; media-src 'self' blob: mediastream:; base-uri 'none'; form-action 'none'"
)


def create_app(model_or_holder, settings: ServeSettings | None = None) -> FastAPI:
    """The service for a loaded `imgclf.load(...)` model (torch or ONNX backend), or for a
    `ModelHolder` whose model may be swapped while it serves."""
    settings = settings or ServeSettings()
    settings.check_folders()
    holder = model_or_holder if isinstance(model_or_holder, ModelHolder) else ModelHolder(model_or_holder)
    first = holder.model
    metrics = ServiceMetrics(first.classes)
    _follow_in_metrics(holder, metrics)
    # Requests pass their own model's function to submit(); this default only serves other callers.
    runner = (
        MicroBatcher(
            first.predict_proba,
            settings.max_batch,
            settings.max_wait_ms,
            settings.max_queue,
            metrics,
            workers=forwards_at_once(model_threads(first), cpu=device_type(first.device_name) == "cpu"),
        )
        if settings.batching
        else DirectRunner(first.predict_proba, metrics)
    )
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

    app = FastAPI(
        title=f"imgclf: {holder.name}",
        version=__version__,
        lifespan=lifespan,
        description=f"Image classification with the imgclf run '{holder.name}' "
        f"({len(first.classes)} classes). The browser page is at /.",
    )
    _add_middleware(app, settings, metrics)
    app.state.cancel = threading.Event()  # set on shutdown (serving.server): running scans stop between batches
    # /scan and /faces/identify: one photo's work at a time, a short queue, a deadline (serving.scan_queue)
    app.state.scan_queue = ScanQueue(settings.scan_queue, settings.scan_deadline_s, settings.max_scan_seconds)
    # Without a key the routes carry no security scheme at all, so the OpenAPI spec asks for none.
    guarded = [Security(_key_check(settings.api_key))] if settings.api_key else []
    # Routes that write (the inbox; the prediction log) or cost seconds of work (/scan, /explain) take
    # browser requests from our own page only when there is no key: with one, another site's page
    # cannot send it (serving.guards).
    writes = guarded or [Depends(same_origin_only(settings.cors))]

    @app.exception_handler(Rejected)
    async def refused(_request: Request, e: Rejected):
        metrics.errors.labels(e.reason).inc()
        return JSONResponse({"detail": e.detail}, e.status_code, headers=e.headers)

    _read_routes(app, holder, page, service, metrics, guarded)

    from imgclf.serving.predict_routes import register as register_predict

    register_predict(app, holder, settings, writes if plog else guarded, runner, plog, metrics)
    from imgclf.serving.feedback_routes import register as register_feedback

    register_feedback(app, holder, settings, writes, plog)
    from imgclf.serving.explain_routes import register as register_explain

    register_explain(app, holder, settings, writes)
    from imgclf.serving.scan_routes import register as register_scan

    register_scan(app, holder, settings, writes)
    from imgclf.serving.face_routes import register as register_faces

    register_faces(app, holder, settings, guarded)
    return app


def _add_middleware(app: FastAPI, settings: ServeSettings, metrics: ServiceMetrics) -> None:
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.state.settings = settings  # the server reads its deadlines from here
    app.add_middleware(BodyTimeout, seconds=settings.read_timeout_s)
    app.add_middleware(HostAllowList, allowed=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every answer, CORS included


def _read_routes(
    app: FastAPI, holder: ModelHolder, page: str, service: dict, metrics: ServiceMetrics, guarded: list
) -> None:
    """GET /, /health, /model and /metrics."""

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/health", summary="Liveness: 200 while the service runs (never needs the API key)")
    async def health():
        return {"status": "ok", "model": holder.name}

    @app.get(
        "/model", summary="The model: classes, input, calibration, decision rule, test metrics", dependencies=guarded
    )
    async def model_metadata():
        return {**holder.info, "service": service}

    @app.get(
        "/metrics", summary="Prometheus metrics (text format)", dependencies=guarded, response_class=PlainTextResponse
    )
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def _prediction_log(settings: ServeSettings, metrics: ServiceMetrics):
    """The --log-predictions writer, or None when the service logs nothing."""
    if not settings.log_predictions:
        return None
    return predlog.PredictionLog(
        settings.log_predictions,
        settings.log_sample,
        settings.log_images == "keep",
        settings.log_max_mb,
        on_drop=metrics.log_dropped.inc,
    )


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


def _key_check(expected: str):
    """A dependency that lets a request through only with the key, as `X-API-Key: KEY` or
    `Authorization: Bearer KEY`. Keys are compared as SHA-256 digests with hmac.compare_digest:
    constant time, and their length does not show either."""
    header, bearer = APIKeyHeader(name="X-API-Key", auto_error=False), HTTPBearer(auto_error=False)
    want = hashlib.sha256(expected.encode()).digest()

    async def require_key(
        key: str | None = Security(header), credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ):
        given = key if key is not None else credentials.credentials if credentials else None
        if given is None:
            raise Rejected(
                401,
                "missing API key: send the header 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                "unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), want):
            raise Rejected(401, "wrong API key", "unauthorized", headers={"WWW-Authenticate": "Bearer"})

    return require_key

"""Prometheus metrics of one service instance (GET /metrics, text exposition format).

Each app gets its own registry, so several services in one process (tests, notebooks) never mix
their counts. Routes are labelled by the app's own paths only: a client probing random URLs
cannot grow the label set.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ROUTES = frozenset(
    {"/", "/predict", "/health", "/model", "/metrics", "/openapi.json", "/docs", "/feedback", "/explain", "/scan"}
)


class ServiceMetrics:
    def __init__(self, classes: list[str]):
        disable_created_metrics()  # the *_created timestamp series double the page and say little
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "imgclf_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "imgclf_request_seconds",
            "Request latency (first byte in to last byte out)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "imgclf_predictions",
            "Answered images by predicted label (after the run's threshold or 'unknown' rule)",
            ["label"],
            registry=r,
        )
        self.errors = Counter("imgclf_errors", "Refused requests and images by reason", ["reason"], registry=r)
        self.batch_size = Histogram("imgclf_batch_size", "Images per forward pass", buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("imgclf_queue_images", "Images waiting for the model", registry=r)
        self.model_version = Gauge(
            "imgclf_model_version",
            "Registry version of the served model (0: a run served outside a registry)",
            registry=r,
        )
        self.swaps = Counter(
            "imgclf_model_swaps",
            "Hot swaps to another registry version, by result (ok, failed: the old model goes on serving)",
            ["result"],
            registry=r,
        )
        self.log_dropped = Counter(
            "imgclf_prediction_log_dropped",
            "Predictions not logged because the log writer fell behind (--log-predictions)",
            registry=r,
        )
        for label in classes:  # every class appears from the start, at 0
            self.predictions.labels(label)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering, unlike BaseHTTPMiddleware):
    counts every HTTP request by route and status, and times it."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}  # what the client gets if the app dies before answering
        start = time.perf_counter()

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, str(status["code"])).inc()

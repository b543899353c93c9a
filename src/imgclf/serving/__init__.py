"""The prediction web service: `imgclf serve RUN`, `imgclf.serve(run)` (FastAPI + uvicorn).

The package is `serving`, not `serve`: importing a subpackage `imgclf.serve` would replace the
`imgclf.serve()` function on the package.

    POST /predict   images (multipart or raw bytes) -> top-k classes, calibrated confidence, decision
    POST /feedback  an image (or a logged prediction's id) and its right label -> the feedback inbox
    GET  /          the browser page: drop or pick images, or classify the webcam live
    GET  /health    GET /model    GET /metrics (Prometheus)    GET /openapi.json

Modules: limits (what a client may send; the settings themselves are imgclf.settings.serve), caps (work caps from an
image's shape for /scan and /explain), params (query parameters, by imgclf.settings.checks's rules),
fields (/feedback's labels and text), guards (Host allow-list, same-origin writes), slow_clients
(header and body deadlines), batching (micro-batches or one forward per request), metrics, info
(/model), holder (the model, swappable while serving), hotswap (following a registry alias),
feedback_routes, explain_routes, scan_routes, app (routes), server (uvicorn), page.html. The
prediction log is imgclf.store.predlog.
FastAPI and uvicorn are imported only here, so `import imgclf` stays light.
"""

from __future__ import annotations

from imgclf.serving.app import create_app
from imgclf.serving.holder import ModelHolder
from imgclf.serving.server import BackgroundServer, run_server
from imgclf.settings.serve import ServeSettings

__all__ = ["create_app", "run_server", "BackgroundServer", "ServeSettings", "ModelHolder"]

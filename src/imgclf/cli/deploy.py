"""`imgclf export` and `serve`: a trained run as an ONNX file, or as a web service."""

from __future__ import annotations

from typing import Optional

import typer

from imgclf.cli.app import app, with_settings
from imgclf.settings.export import ExportSettings
from imgclf.settings.predict import BACKEND_HELP, TTA_HELP
from imgclf.settings.serve import ServeSettings


@app.command()
@with_settings(ExportSettings)
def export(
    run: str = typer.Argument(
        ...,
        help="Run folder; a detector run folder; person (the pretrained person detector); or faces (the face embedder, --int8 only).",
    ),
    settings: dict = None,
):
    """Export RUN's network to ONNX (classes and preprocessing in its metadata), checked against PyTorch."""
    # Every option comes from its declaration (settings.export.ExportSettings); api.export checks them.
    from imgclf import api

    api.export(run, **settings)


@app.command()
@with_settings(ServeSettings, after="tta")
def serve(
    run: Optional[str] = typer.Argument(
        None,
        help="Run folder, ensemble bundle or detector run; leave out to serve the pretrained person detector "
        "(or give --registry).",
    ),
    registry: Optional[str] = typer.Option(
        None,
        help="Serve the registry's --alias version and swap in each version "
        "it is promoted or rolled back to, while serving",
    ),
    alias: str = typer.Option("production", help="The alias followed with --registry"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help=TTA_HELP),
    settings: dict = None,
):
    """Serve RUN over HTTP: POST /predict, POST /feedback, a browser page at /, /health, /model, /metrics,
    /openapi.json. With --registry, promoted versions are swapped in while serving. With no RUN, the
    pretrained person detector: /predict says whether a person is present, /scan where."""
    # The limits, logging and access options are imgclf.serving.ServeSettings' declarations (with_settings).
    from imgclf import api
    from imgclf.serving.server import check_port

    check_port(port)  # before the model loads: a bad port is a typo, not worth the wait
    api.serve(
        run, registry=registry, alias=alias, host=host, port=port, backend=backend, device=device, tta=tta, **settings
    )

"""`imgclf export` and `serve`: a trained run as an ONNX file, or as a web service."""

from __future__ import annotations

from typing import Optional

import typer

from imgclf.cli.app import app, with_settings
from imgclf.settings.export import ExportSettings
from imgclf.settings.serve import ServeJobSettings, ServeSettings


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
@with_settings(ServeJobSettings, into="job")  # the outer's options come first in --help
@with_settings(ServeSettings)
def serve(
    run: Optional[str] = typer.Argument(
        None,
        help="Run folder, ensemble bundle or detector run; leave out to serve the pretrained person detector "
        "(or give --registry).",
    ),
    settings: dict = None,
    job: dict = None,
):
    """Serve RUN over HTTP: POST /predict, POST /feedback, a browser page at /, /health, /model, /metrics,
    /openapi.json. With --registry, promoted versions are swapped in while serving. With no RUN, the
    pretrained person detector: /predict says whether a person is present, /scan where."""
    # Every option comes from its declaration (settings.serve: ServeJobSettings, which model and where it
    # listens; ServeSettings, the limits, logging and access) via with_settings; api.serve checks them
    # before the model loads.
    from imgclf import api

    api.serve(run, **job, **settings)

"""`imgclf export` and `serve`: a trained run as an ONNX file, or as a web service."""

from __future__ import annotations

from typing import Optional

import typer

from imgclf.cli.app import app, with_settings
from imgclf.settings.predict import BACKEND_HELP, TTA_HELP
from imgclf.settings.serve import ServeSettings


@app.command()
def export(
    run: str = typer.Argument(
        ...,
        help="Run folder; a detector run folder; person (the pretrained person detector); or faces (the face embedder, --int8 only).",
    ),
    format: str = typer.Option("onnx", help="onnx (the only format for now)"),
    out: Optional[str] = typer.Option(None, help="File to write [default: RUN/model.onnx]"),
    opset: Optional[int] = typer.Option(None, help="ONNX opset [default: the exporter's]"),
    data: Optional[str] = typer.Option(
        None, help="Folder of images to check parity on [default: the run's test split]"
    ),
    check: bool = typer.Option(True, help="Check ONNX Runtime against PyTorch (fails above 1e-4 probability)."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Write RUN/model.int8.onnx instead: int8, calibrated on the run's training images, kept only "
        "when its test accuracy is within --max-loss of fp32's (--data: where the run's data moved to). "
        "A detector: its int8 graph, calibrated on --calibration's photos",
    ),
    max_loss: Optional[float] = typer.Option(
        None,
        help="With --int8: accuracy points int8 may lose against fp32 [default: 1]; a detector: percent of "
        "photos whose present/absent answer it may change [default: 5]",
    ),
    calibration: Optional[str] = typer.Option(
        None,
        help="With --int8, a detector: a folder of 20+ of your photos, scenes like those it will scan (people in "
        "some) [default: a detector run's training photos; the pretrained one needs them]",
    ),
):
    """Export RUN's network to ONNX (classes and preprocessing in its metadata), checked against PyTorch."""
    from imgclf import api

    api.export(
        run,
        format=format,
        out=out,
        data=data,
        opset=opset,
        check=check,
        int8=int8,
        max_loss=max_loss,
        calibration=calibration,
    )


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

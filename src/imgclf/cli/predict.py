"""`imgclf predict`, `evaluate`, `ensemble`, `explain`, `report`: using a trained run (its export and
service: cli/deploy.py)."""

from __future__ import annotations

from typing import List, Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import BACKEND_HELP, DATA_HELP, MOVED_DATA, TTA_HELP, Format, app


@app.command()
def predict(
    run: str = typer.Argument(..., help="Run folder (or its model.safetensors)."),
    paths: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(1, help="How many classes to show per image."),
    format: Format = typer.Option(Format.table, help="table | json | csv"),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help=TTA_HELP),
    backend: Optional[str] = typer.Option(
        None,
        help=f"{BACKEND_HELP}; a detector (person, a detector run) with --ray: imgclf scan's backends "
        "[default: torch; with --ray, onnx on CPU workers and torch on GPUs]",
    ),
    out: Optional[str] = typer.Option(
        None,
        help="Stream predictions into this CSV (parallel decoding, batches, "
        "progress); run again with the same --out to resume. A video: per-frame CSV. "
        "With --ray: the folder for the shards [default: ./predictions-<name of PATHS>/].",
    ),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Predict on a Ray cluster (pip install 'imgclf[ray]'): bare --ray = this machine or $RAY_ADDRESS; "
        "else ray://HOST:10001 or HOST:6379. Writes Parquet shards into --out (a folder); rerun to resume.",
    ),
    shard_size: int = typer.Option(1024, help="With --ray: images per shard file (one worker's unit of work)."),
    shard_format: str = typer.Option(
        "parquet", help="With --ray: parquet | csv (the columns of --out x.csv, with decision and unknown)."
    ),
    every: int = typer.Option(1, help="Video: classify every Nth frame."),
    smooth: float = typer.Option(0.5, help="Video: time constant of the probability smoothing, seconds (0: off)."),
    video_out: Optional[str] = typer.Option(
        None, help="Video: write a copy with the label drawn on each frame (.mp4)."
    ),
    events: Optional[str] = typer.Option(
        None, help="Video, two classes: presence events JSON [default: events.json beside --out]"
    ),
    scan: bool = typer.Option(
        False,
        "--scan",
        help="Video: scan each frame for the positive class (a model trained "
        "on crops; see imgclf scan) instead of classifying it whole; boxes drawn.",
    ),
    max_seconds: Optional[float] = typer.Option(
        None,
        help="Video with --scan: the longest one frame's scan may take, estimated before a frame is read; the "
        "smallest window is raised to fit, a video that still does not is refused [default: 10]",
    ),
):
    """Predict the class of images with a trained run; or of the frames of a video file, camera index
    (0) or stream URL (rtsp://, http(s)://), given as the only PATH. With --ray, PATHS are folders,
    glob patterns, list files (.txt, .csv, .parquet) or URIs (s3://...) that every node can read."""
    from imgclf import api

    if ray is not None:  # the workers load the model, not this process
        api.predict_on_ray(
            run,
            paths,
            out,
            address=ray,
            top_k=top_k,
            backend=backend or "auto",
            shard_size=shard_size,
            format=shard_format,
            device=device,
            tta=tta,
        )
        return
    from imgclf.inference.video import is_video_source

    model = api.load(run, device, tta=tta, backend=backend or "torch")
    if len(paths) == 1 and is_video_source(paths[0]):
        options = {"every": every, "smooth": smooth, "events": events, "scan": scan, "max_seconds": max_seconds}
        api.predict_video(model, paths[0], out_csv=out, out_video=video_out, **options)
        return
    if out is not None:
        api.predict_folder(model, paths, out, top_k=top_k)
        return
    render.predictions(model.predict(paths, top_k=top_k), format, top_k)


@app.command()
def evaluate(
    run: str = typer.Argument(..., help="Run folder."),
    data: Optional[str] = typer.Argument(None, help="Labeled data [default: the run's own held-out test split]."),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help=TTA_HELP),
    data_root: Optional[str] = typer.Option(None, "--data", help=DATA_HELP + "; for its own test split, not DATA"),
):
    """Re-evaluate a trained run: on its test split, or on another labeled folder."""
    from imgclf import api

    m = api.evaluate(api.load(run, device, tta=tta), data, data_root=data_root)
    render.print_json({k: m[k] for k in ("accuracy", "top_k_accuracy", "log_loss", "macro_avg", "n")})


@app.command()
def ensemble(
    runs: List[str] = typer.Argument(..., help="Two or more run folders trained on the same classes."),
    out: str = typer.Option(..., help="Bundle folder to write."),
    target_accuracy: Optional[float] = typer.Option(
        None,
        help="3+ classes: answer 'unknown' below the confidence that "
        "gives this validation accuracy (on the members' shared split)",
    ),
    target_coverage: Optional[float] = typer.Option(None, help="3+ classes: keep this fraction of validation images"),
    device: str = typer.Option("auto"),
):
    """Bundle runs into one model that averages their calibrated probabilities; evaluate it on their shared test split."""
    from imgclf import api

    run = api.ensemble(runs, out, target_accuracy=target_accuracy, target_coverage=target_coverage, device=device)
    print(run.path)


@app.command()
def explain(
    run: str = typer.Argument(..., help="Run folder (or REGISTRY/ALIAS)."),
    images: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    class_: Optional[str] = typer.Option(None, "--class", help="Explain this class [default: the answered class]"),
    method: str = typer.Option(
        "gradcam", help="gradcam | gradcam++ | xgradcam | layercam | eigencam | scorecam | hirescam"
    ),
    out: str = typer.Option("explanations", help="Folder for the overlay PNGs."),
    device: str = typer.Option("auto"),
):
    """Show where the network looked: writes OUT/<image>-<method>-<class>.png, the image with a heatmap over it."""
    from imgclf import api

    results = api.explain(run, images, method=method, target=class_, out=out, device=device)
    render.explanations(results, method)


@app.command()
def report(
    run: str = typer.Argument(..., help="Run folder."),
    device: str = typer.Option("auto"),
    data_root: Optional[str] = MOVED_DATA,
):
    """Write RUN/report.html: one self-contained page with the data, model, settings, curves and test evaluation."""
    from imgclf import api

    print(api.report(api.load(run, device), data_root=data_root))

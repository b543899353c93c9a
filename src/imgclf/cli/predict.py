"""`imgclf predict`, `evaluate`, `ensemble`, `explain`, `report`: using a trained run (its export and
service: cli/deploy.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import app, with_settings
from imgclf.core.errors import UserError
from imgclf.settings.examine import EnsembleSettings, EvaluateSettings, ExplainSettings, ReportSettings
from imgclf.settings.predict import PredictSettings


@app.command()
@with_settings(PredictSettings, after="paths")
def predict(
    run: str = typer.Argument(
        ...,
        help="Run folder (or its model.safetensors); person: the pretrained person detector, answering "
        "person or no person (a detector run likewise).",
    ),
    paths: Optional[List[str]] = typer.Argument(
        None,
        help="Image files, folders (searched recursively), archives (.zip), lists (.txt: a path a line; .csv), "
        "web addresses (https://.../a.jpg), or - for an image on standard input.",
    ),
    settings: dict = None,
):
    """Predict the class of images with a trained run; or of the frames of a video file, camera index
    (0) or stream URL (rtsp://, http(s)://), given as the only PATH. With --ray, PATHS are folders,
    glob patterns, list files (.txt, .csv, .parquet) or URIs (s3://...) that every node can read."""
    # Every predict setting's option comes from its declaration (settings.predict) via with_settings.
    from imgclf import api

    s = PredictSettings.of(settings)  # a bad value: one line naming its flag, before a model is loaded
    device, format = s.device, s.format
    if not paths:
        raise UserError(_what_to_predict(run))
    if s.ray is not None:  # the workers load the model, not this process
        options = {"top_k": s.top_k, "shard_size": s.shard_size, "format": s.shard_format, "tta": s.tta}
        api.predict_on_ray(run, paths, s.out, address=s.ray, backend=s.backend or "auto", device=device, **options)
        return
    from imgclf.inference.video import is_video_source

    videos = [p for p in paths if is_video_source(p)]
    if videos and (len(videos) < len(paths) or (len(videos) > 1 and (s.out or s.video_out or s.events))):
        raise UserError(_one_video_at_a_time(videos, len(paths)))
    if videos:  # each in turn, its segments or events printed; the API picks the engine a scan needs
        for video in videos:
            api.predict_video(
                run,
                video,
                every=s.every,
                smooth=s.smooth,
                events=s.events,
                scan=s.scan,
                out_csv=s.out,
                out_video=s.video_out,
                max_seconds=s.max_seconds,
                device=device,
                backend=s.backend or "auto",
                tta=s.tta,
            )
        return
    if given := [f for f, v in (("--video-out", s.video_out), ("--events", s.events), ("--scan", s.scan)) if v]:
        # a video's own outputs asked of images: the file the user waits for would never come
        raise UserError(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for a video (a file, camera index or "
            "stream URL as the only PATH); for images: imgclf predict RUN PATHS [--out FILE.csv]"
        )
    from imgclf.inference.batch import check_inputs

    if "-" in paths:  # `curl URL | imgclf predict RUN -`: one image's bytes on standard input
        if s.out is not None or paths.count("-") > 1:
            raise UserError("'-' reads one image from standard input, once, and not into --out: save it to a file")
        paths = [sys.stdin.buffer.read() if p == "-" else p for p in paths]
    check_inputs([p for p in paths if isinstance(p, str)])  # a mistyped photo: one line before the model loads
    model = api.load(run, device, tta=s.tta, backend=s.backend or "auto")
    if s.out is not None:
        done = api.predict_folder(model, paths, s.out, top_k=s.top_k)
        # Rows a rerun found done count as read: a resumed file whose rest is unreadable is no failure.
        render.none_read(done["predicted"] + done["errors"] + done["skipped"], done["errors"])
        return
    results = model.predict(paths, top_k=s.top_k)
    for r in results:
        r.setdefault("path", "-")  # the image read from standard input: the table and CSV say so
    render.predictions(results, format, s.top_k)
    render.none_read(results)
    if format == "table" and (hint := _evaluate_hint(run, paths, model)):
        typer.echo(hint, err=True)  # beside the table, not in what a pipe reads


def _evaluate_hint(run, paths: list, model) -> str:
    """One folder whose sub-folders are named as the model's classes holds labelled images: `evaluate`
    scores them against those labels, which a table of answers leaves to the reader."""
    from imgclf.evaluation.elsewhere import match_classes

    if len(paths) != 1 or not isinstance(paths[0], str) or not Path(paths[0]).is_dir():
        return ""
    if hasattr(model, "detector"):  # a detector is scored on boxes, which folder names do not give
        from imgclf.store.runs import PRETRAINED_DETECTORS

        return f"where, and how many: imgclf scan {paths[0]}" if str(run) in PRETRAINED_DETECTORS else ""
    named, _ = match_classes(sorted(d.name for d in Path(paths[0]).iterdir() if d.is_dir()), list(model.classes))
    if not named:
        return ""
    shown = ", ".join(f"{n}/" for n in list(named)[:3]) + (", ..." if len(named) > 3 else "")
    return (
        f"these images sit in folders named as the model's classes ({shown}): to score them against "
        f"those labels, with a report: imgclf evaluate {run} {paths[0]}"
    )


def _one_video_at_a_time(videos: list[str], n_paths: int) -> str:
    if len(videos) < n_paths:
        return f"{videos[0]} is a video: predict videos apart from images (imgclf predict RUN {videos[0]})"
    return (
        f"--out, --video-out and --events name one video's files, and {len(videos)} videos were given: "
        "predict them one at a time"
    )


@app.command()
@with_settings(EvaluateSettings, after="data")
def evaluate(
    run: str = typer.Argument(
        ...,
        help="Run folder; a detector (person, a detector run) with DATA of photos with boxes, or of person/ and "
        "no-person/ folders (presence only); a face gallery with DATA/<person>/.",
    ),
    data: Optional[str] = typer.Argument(None, help="Labeled data [default: the run's own held-out test split]."),
    settings: dict = None,
):
    """Re-evaluate a trained run: on its test split, or on another labeled folder (with a report)."""
    from imgclf import api
    from imgclf.workflows import evaluated_as

    # Every option comes from its declaration (settings.examine.EvaluateSettings), checked before the
    # run is read; --tta goes to the loaded model, the rest to api.evaluate.
    EvaluateSettings(**settings)
    tta, device = settings.pop("tta", None), settings.get("device", "auto")
    if (kind := evaluated_as(run)) and tta is not None:
        raise UserError(f"--tta is a classifier run's, not a {kind}'s")
    model = run if kind else api.load(run, device, tta=tta, backend="auto")
    api.evaluate(model, data, **settings)


@app.command()
@with_settings(EnsembleSettings, into="own")  # the outer's options come first in --help
@with_settings(only=("target_accuracy", "target_coverage", "device"))  # rejection and device as train declares them
def ensemble(
    runs: List[str] = typer.Argument(..., help="Two or more run folders trained on the same classes."),
    own: dict = None,
    settings: dict = None,
):
    """Bundle runs into one model that averages their calibrated probabilities; evaluate it on their shared test split."""
    from imgclf import api

    print(api.ensemble(runs, own["out"], **settings).path)


@app.command()
@with_settings(ExplainSettings, after="images")
def explain(
    run: str = typer.Argument(..., help="Run folder (or REGISTRY/ALIAS)."),
    images: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    settings: dict = None,
):
    """Show where the network looked: writes OUT/<image>-<method>-<class>.png, the image with a heatmap over it."""
    from imgclf import api

    results = api.explain(run, images, **{"out": "explanations", **settings})  # the command writes the overlays
    render.explanations(results, settings.get("method", "gradcam"))
    render.none_read(results)  # every image unreadable: exit 2, as predict and scan do


@app.command()
@with_settings(ReportSettings)
def report(run: str = typer.Argument(..., help="Run folder."), settings: dict = None):
    """Write RUN/report.html: one self-contained page with the data, model, settings, curves and test evaluation."""
    from imgclf import api
    from imgclf.workflows import evaluated_as

    s = ReportSettings.of(settings)  # checked before the run loads
    # A detector is refused by name before its seconds of loading.
    model = run if evaluated_as(run) == "detector" else api.load(run, s.device)
    print(api.report(model, data_root=s.data_root))


def _what_to_predict(run: str) -> str:
    """`imgclf predict photo.jpg`: the run was forgotten, not the photos. Name the newest run here."""
    from imgclf.workflows import evaluated_as

    runs = sorted(Path("runs").glob("*/model.json"), key=lambda p: p.stat().st_mtime)
    if (Path(run).is_dir() and (Path(run) / "model.json").exists()) or evaluated_as(run) == "detector":
        return f"give the images to predict after the run: imgclf predict {run} PHOTO_OR_FOLDER..."
    example = runs[-1].parent if runs else "RUN"
    return f"give the run first, then the images: imgclf predict {example} {run}" + (
        " (the newest run here)" if runs else " (train one with: imgclf train DATA)"
    )

"""`imgclf scan` and `negatives`: finding people (or a trained class) in whole photos."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import app, with_settings
from imgclf.core.errors import UserError
from imgclf.settings.scan import ScanSettings


@app.command()
@with_settings(ScanSettings, after="detector")
def scan(
    targets: List[str] = typer.Argument(
        ...,
        metavar="[RUN] PHOTOS...",
        help="Photos or folders (searched recursively), or one video file, camera index (0) or stream URL, "
        "scanned by the pretrained person detector; "
        "or first a run folder (or REGISTRY/ALIAS) of a model trained on crops, slid over the photos.",
    ),
    detector: Optional[str] = typer.Option(
        None,
        help="The detector when no run is given: person (the pretrained SSDLite, offline), a detector run "
        "folder (imgclf train BOXES/), or a torchvision COCO detector such as ssdlite320_mobilenet_v3_large or "
        "fasterrcnn_mobilenet_v3_large_fpn (weights downloaded once) [default: person]",
    ),
    out: Optional[str] = typer.Option(None, help="Write boxes.csv, scan.json and annotated/ here."),
    mine: Optional[str] = typer.Option(
        None,
        help="Save every window that fires as a crop PNG here (give person-free "
        "photos: hard negatives to add to the negative class).",
    ),
    no_verifier: bool = typer.Option(False, "--no-verifier", help="Scan without the run's recorded verifier."),
    backend: str = typer.Option(
        "auto",
        help="Detector: what runs it, auto (ONNX Runtime on a CPU, PyTorch on a GPU) | onnx | onnx-int8 (made by "
        "imgclf export person --int8 --calibration PHOTOS/) | openvino (pip install 'imgclf[openvino]') | torch",
    ),
    device: str = typer.Option("auto"),
    settings: dict = None,
):
    """Find people in whole photos: present or absent, how many, where (boxes). No run: the pretrained
    person detector. A run trained on crops: its classifier slid over each photo (multi-scale, NMS)."""
    # Every scan setting's option comes from its declaration (settings.scan) via with_settings.
    from imgclf import api
    from imgclf.inference.video import is_video_source
    from imgclf.store.runs import names_pretrained_detector

    if len(targets) > 1 and names_pretrained_detector(targets[0]):
        if detector not in (None, targets[0]):  # `imgclf scan person PHOTOS`, as predict and serve take it
            raise UserError(f"{targets[0]} and --detector {detector} are two detectors: give one of them")
        detector, targets = targets[0], targets[1:]
    if len(targets) == 1 and is_video_source(targets[0]):  # a video file, camera index or stream URL
        video(api, targets[0], detector, out, device, backend, settings)
        return
    if no_verifier:
        settings["verify"] = False
    results = api.scan(
        targets[0],
        targets[1:] or None,
        detector=detector,
        out=out,
        mine=mine,
        backend=backend,
        device=device,
        **settings,
    )
    render.scans(results)
    render.none_read(results)


@app.command()
def negatives(
    photos: List[str] = typer.Argument(..., help="Photos or folders known to hold no instance of the object."),
    out: str = typer.Option(..., help="Folder for the crops (e.g. data/no-person)."),
    per_image: int = typer.Option(20, help="Random windows per photo."),
    size: str = typer.Option("64x64", help="Crop size WxH: the positive crops' size (INRIA: 96x160)."),
    seed: int = typer.Option(0),
):
    """Cut random windows (multi-scale) from object-free photos: the negative class for a crop detector."""
    from imgclf import api

    api.negatives(photos, out, per_image=per_image, size=size, seed=seed)


def video(api, source: str, detector, out, device: str, backend: str, settings: dict):
    """`imgclf scan door.mp4 [--out DIR]`: people frame by frame, presence events (enter/leave), and
    with --out DIR its frames.csv, events.json and annotated.mp4."""

    from imgclf.detection import load_detector

    s = ScanSettings.of(settings)
    found = load_detector(detector or "person", device, backend, find=s.classes).with_options(
        threshold=s.threshold, iou=s.iou, tiles=s.tiles, flip=s.flip
    )
    folder = Path(out) if out else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    api.predict_video(
        None,
        source,
        detector=found,
        out_csv=folder / "frames.csv" if folder else None,
        out_video=folder / "annotated.mp4" if folder else None,
        events=folder / "events.json" if folder else None,
        device=device,
        max_seconds=s.max_seconds,
    )

"""`imgclf scan` and `negatives`: finding people (or a trained class) in whole photos."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from imgclf.cli import render
from imgclf.cli.app import app, with_settings
from imgclf.core.errors import UserError
from imgclf.settings.scan import NegativesSettings, ScanJobSettings, ScanSettings


@app.command()
@with_settings(ScanJobSettings, into="job")  # the outer's options come first in --help
@with_settings(ScanSettings)
def scan(
    targets: List[str] = typer.Argument(
        ...,
        metavar="[RUN] PHOTOS...",
        help="Photos or folders (searched recursively), or one video file, camera index (0) or stream URL, "
        "scanned by the pretrained person detector; "
        "or first a run folder (or REGISTRY/ALIAS) of a model trained on crops, slid over the photos.",
    ),
    # verify=False's spelling on the command line (settings.scan's --verifier takes a run folder)
    no_verifier: bool = typer.Option(False, "--no-verifier", help="Scan without the run's recorded verifier."),
    settings: dict = None,
    job: dict = None,
):
    """Find people in whole photos: present or absent, how many, where (boxes). No run: the pretrained
    person detector. A run trained on crops: its classifier slid over each photo (multi-scale, NMS)."""
    # Every option but --no-verifier comes from its declaration (settings.scan) via with_settings.
    from imgclf import api
    from imgclf.inference.video import is_video_source
    from imgclf.store.runs import names_pretrained_detector

    j = ScanJobSettings.of(job)  # a bad value: one line naming its flag, before a photo is read
    detector, out, mine, backend, device = j.detector, j.out, j.mine, j.backend, j.device
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
@with_settings(NegativesSettings, after="photos")
def negatives(
    photos: List[str] = typer.Argument(..., help="Photos or folders known to hold no instance of the object."),
    settings: dict = None,
):
    """Cut random windows (multi-scale) from object-free photos: the negative class for a crop detector."""
    from imgclf import api

    api.negatives(photos, **settings)


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

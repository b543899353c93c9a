"""`imgclf scan` and `negatives`: finding people (or a trained class) in whole photos."""

from __future__ import annotations

from typing import List, Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import app, floats


# long: one option per flag, each with its help text
@app.command()
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
    classes: Optional[str] = typer.Option(
        None, help="Comma-separated classes to find, e.g. car,person (a COCO detector's) [default: person]"
    ),
    positive: Optional[str] = typer.Option(
        None,
        help="The class to find [default: the run's positive class, else "
        "a class named like person/human/pedestrian/positive]",
    ),
    scales: Optional[str] = typer.Option(
        None,
        help="Comma-separated pyramid scales, e.g. 1,0.8,0.64 (at scale s the "
        "window covers crop size / s image px) [default: from --min-size down "
        "in steps of 0.8 while the window fits]",
    ),
    stride: Optional[int] = typer.Option(
        None,
        help="Window step in px of the model input [default: input/8, or the "
        "network's own stride for a fully convolutional scan]",
    ),
    min_size: Optional[int] = typer.Option(
        None, help="Smallest window height in image px [default: the run's recorded one, else 64]"
    ),
    iou: Optional[float] = typer.Option(
        None,
        help="NMS: a box overlapping a better one by more than this IoU is dropped "
        "[default: the detector's 0.6; a crop-model scan's 0.3]",
    ),
    threshold: Optional[float] = typer.Option(
        None,
        help="Detector: the score a box needs (and presence) [default: the detector's recorded one]. "
        "Crop model: positive probability to keep a window; with a verifier, its photo-level "
        "threshold [default: the recorded one, else the run's decision threshold, else 0.5]",
    ),
    tiles: Optional[str] = typer.Option(
        None,
        help="Detector: also look at COLUMNSxROWS overlapping tiles of each photo (e.g. 2x2), each at the "
        "detector's full input size: people small in a wide photo are found (INRIA people pasted into street "
        "photos: AP@0.5 0.55 -> 0.78 at 2x2), at one more pass a tile [default: 1x1, the whole photo only]",
    ),
    margin: Optional[str] = typer.Option(
        None,
        help="Context around the object in the training crops, as a fraction "
        "of the window on each side: one number, X,Y (INRIA 96x160 crops: "
        "0.167,0.1) or LEFT,TOP,RIGHT,BOTTOM (negative: past the window); boxes "
        "are placed by it [default: the run's recorded one "
        "(RUN/scan_window.json), else 0]",
    ),
    method: str = typer.Option("auto", help="auto | fcn (fully convolutional) | windows"),
    vote: Optional[bool] = typer.Option(
        None,
        "--vote/--no-vote",
        help="Move each firing window's box to the "
        "score-weighted mean of the firing windows around it (IoU >= 0.5) before "
        "NMS (--no-vote: each window's own box) "
        "[default: the run's recorded choice, else --vote]",
    ),
    out: Optional[str] = typer.Option(None, help="Write boxes.csv, scan.json and annotated/ here."),
    mine: Optional[str] = typer.Option(
        None,
        help="Save every window that fires as a crop PNG here (give person-free "
        "photos: hard negatives to add to the negative class).",
    ),
    verifier: Optional[str] = typer.Option(
        None,
        help="A run trained on the same crops (e.g. the default ImageNet "
        "backbone) that re-scores each photo's best windows and decides presence; "
        "the scan's boxes are kept only in photos it passes [default: the run's "
        "recorded verifier, if any]",
    ),
    verifier_top: Optional[int] = typer.Option(
        None, help="Windows a photo the verifier re-scores [default: the recorded number, else 4]"
    ),
    no_verifier: bool = typer.Option(False, "--no-verifier", help="Scan without the run's recorded verifier."),
    box_threshold: Optional[float] = typer.Option(
        None,
        help="With a verifier: the scan score a window needs to "
        "become a box [default: the recorded one, else the run's "
        "threshold]",
    ),
    max_seconds: Optional[float] = typer.Option(
        None,
        help="Longest a photo's scan may take, estimated from its size and the model's measured cost before "
        "it is read: a photo over it is skipped with a note (a crop-model scan with no --min-size or --scales "
        "has its smallest window raised to fit instead). Photos over 12000 px a side or 10:1 are refused "
        "too; a video: each frame, a video over it refused before a frame is read [default: 10]",
    ),
    backend: str = typer.Option(
        "auto",
        help="Detector: what runs it, auto (ONNX Runtime on a CPU, PyTorch on a GPU) | onnx | onnx-int8 (made by "
        "imgclf export person --int8 --calibration PHOTOS/) | openvino (pip install 'imgclf[openvino]') | torch",
    ),
    device: str = typer.Option("auto"),
):
    """Find people in whole photos: present or absent, how many, where (boxes). No run: the pretrained
    person detector. A run trained on crops: its classifier slid over each photo (multi-scale, NMS)."""
    from imgclf import api
    from imgclf.inference.video import is_video_source

    if len(targets) == 1 and is_video_source(targets[0]):  # a video file, camera index or stream URL
        video(
            api,
            targets[0],
            detector,
            classes.split(",") if classes else None,
            threshold,
            iou,
            tiles,
            out,
            device,
            backend,
            max_seconds,
        )
        return
    results = api.scan(
        targets[0],
        targets[1:] or None,
        detector=detector,
        classes=classes.split(",") if classes else None,
        positive=positive,
        scales=floats(scales, "--scales"),
        stride=stride,
        min_size=min_size,
        iou=iou,
        out=out,
        mine=mine,
        threshold=threshold,
        margin=tuple(floats(margin, "--margin")) if margin else None,
        method=method,
        vote=vote,
        verify=False if no_verifier else verifier,
        verify_top=verifier_top,
        box_threshold=box_threshold,
        max_seconds=max_seconds,
        backend=backend,
        tiles=tiles,
        device=device,
    )
    render.scans(results)


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


def video(
    api,
    source: str,
    detector,
    classes,
    threshold: float | None,
    iou: float | None,
    tiles,
    out,
    device: str,
    backend: str = "auto",
    max_seconds: float | None = None,
):
    """`imgclf scan door.mp4 [--out DIR]`: people frame by frame, presence events (enter/leave), and
    with --out DIR its frames.csv, events.json and annotated.mp4."""
    from pathlib import Path

    from imgclf.detection import load_detector

    found = load_detector(detector or "person", device, backend, find=classes).with_options(
        threshold=threshold, iou=iou, tiles=tiles
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
        max_seconds=max_seconds,
    )

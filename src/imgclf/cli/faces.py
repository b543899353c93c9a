"""`imgclf faces enrol | add | remove | list | identify`: who is in the photo, from a gallery of people
enrolled from a few photos each (imgclf.faces)."""

from __future__ import annotations

from typing import List, Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import app
from imgclf.core.errors import UserError

faces_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Name the people in photos from a gallery enrolled from a few photos each (pretrained dlib face "
    "models, offline); a face like no one enrolled is 'unknown'.",
)
app.add_typer(faces_app, name="faces")
GALLERY = typer.Argument(..., help="Gallery folder (made by imgclf faces enrol).")
KEEP = typer.Option(False, "--keep-photos", help="Also keep each enrolled face's crop in GALLERY/photos/NAME/.")
BACKEND = typer.Option(
    "auto",
    help="The face embedder's engine: auto (ONNX Runtime on a CPU, PyTorch on a GPU) | onnx | onnx-int8 "
    "(int8, made once by imgclf export faces --int8 --calibration PHOTOS/) | torch",
)


@faces_app.command("enrol")
def enrol(
    known: str = typer.Argument(..., help="Folder with one subfolder of photos per person, named after them."),
    out: str = typer.Option(..., "--out", help="The new gallery's folder."),
    far: float = typer.Option(
        0.05,
        help="Share of strangers the 'unknown' threshold may name as someone, measured on the enrolment photos "
        "(lower: fewer strangers named, more enrolled people missed)",
    ),
    keep_photos: bool = KEEP,
    backend: str = BACKEND,
):
    """Enrol everyone in KNOWN: one face from each photo (a photo with none, or several, is reported)."""
    from imgclf import faces

    faces.enrol(known, out, far=far, keep_photos=keep_photos, backend=backend)


@faces_app.command("add")
def add(
    gallery: str = GALLERY,
    name: str = typer.Argument(..., help="The person: enrolled already, or new."),
    photos: List[str] = typer.Argument(..., help="Photos or folders of NAME."),
    keep_photos: bool = KEEP,
    backend: str = BACKEND,
):
    """Add photos of NAME to GALLERY (the threshold is chosen again); interrupted, the gallery is unchanged."""
    from imgclf import faces

    faces.add(gallery, name, photos, keep_photos=keep_photos, backend=backend)


@faces_app.command("remove")
def remove(gallery: str = GALLERY, name: str = typer.Argument(..., help="The person to delete.")):
    """Delete NAME from GALLERY: their embeddings and any kept photos."""
    from imgclf import faces

    faces.remove(gallery, name)


@faces_app.command("list")
def list_people(gallery: str = GALLERY):
    """Enrolled people and how many photos each."""
    from imgclf import faces

    render.print_table(["name", "photos"], [[n, c] for n, c in faces.people(gallery).items()])


@faces_app.command("identify")
def identify(
    gallery: str = GALLERY,
    photos: List[str] = typer.Argument(..., help="Photos or folders (searched recursively)."),
    out: Optional[str] = typer.Option(None, help="Write faces.csv, faces.json and annotated/ here."),
    threshold: Optional[float] = typer.Option(
        None, help="Cosine similarity a face needs to be named [default: the gallery's recorded one]"
    ),
    every: Optional[int] = typer.Option(
        None, help="A video: name the faces of every N-th frame [default: about 5 frames a second]"
    ),
    video_out: Optional[str] = typer.Option(
        None, help="A video: also write its frames with the faces named here (.mp4)"
    ),
    max_seconds: Optional[float] = typer.Option(
        None,
        help="A video: the longest one frame's face search may take, estimated from the frame size the video "
        "reports before a frame is read; a video over it is refused [default: 10]",
    ),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Identify on a Ray cluster (pip install 'imgclf[ray]'): bare --ray = this machine or $RAY_ADDRESS; "
        "Parquet shards (path, count, faces as JSON) into --out; rerun to resume; the workers run --backend",
    ),
    backend: str = BACKEND,
):
    """Every face in PHOTOS, named from GALLERY or 'unknown'; one CSV row a face with --out. A video
    file, camera index (0) or stream URL instead: who appears and leaves (--out DIR: frames.csv, events.json)."""
    from imgclf import faces

    if ray is not None:  # the workers load the gallery and the face models, not this process
        from imgclf import api

        if threshold is not None:
            raise UserError("--threshold is not taken with --ray: the workers use the gallery's recorded one")
        api.predict_on_ray(gallery, photos if len(photos) > 1 else photos[0], out, address=ray, backend=backend)
        return
    results = faces.identify(
        gallery,
        photos,
        out=out,
        threshold=threshold,
        every=every,
        video_out=video_out,
        backend=backend,
        max_seconds=max_seconds,
    )
    if isinstance(results, dict):  # a video: identify_video printed its events
        return
    if out is None:
        rows = [
            [r.get("path", ""), f"{f['x1']},{f['y1']},{f['x2']},{f['y2']}", f["name"], f"{f['similarity']:.3f}"]
            for r in results
            for f in r.get("faces", [])
        ]
        render.print_table(["image", "box", "name", "similarity"], rows)

"""`imgclf faces enrol | add | remove | list | identify`: who is in the photo, from a gallery of people
enrolled from a few photos each (imgclf.faces)."""

from __future__ import annotations

from typing import List

import typer

from imgclf.cli import render
from imgclf.cli.app import app, with_settings
from imgclf.core.errors import UserError
from imgclf.settings.faces import EnrolSettings, IdentifySettings, check_enrol

faces_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Name the people in photos from a gallery enrolled from a few photos each (pretrained dlib face "
    "models, offline); a face like no one enrolled is 'unknown'.",
)
app.add_typer(faces_app, name="faces")
GALLERY = typer.Argument(..., help="Gallery folder (made by imgclf faces enrol).")
# Every option below comes from its declaration (settings.faces) via with_settings: help, spelling, check.


@faces_app.command("enrol")
@with_settings(EnrolSettings)
def enrol(
    known: str = typer.Argument(..., help="Folder with one subfolder of photos per person, named after them."),
    settings: dict = None,
):
    """Enrol everyone in KNOWN: one face from each photo (a photo with none, or several, is reported)."""
    s = EnrolSettings.of(settings)  # a bad value: one line naming its flag, before the face models load
    from imgclf import faces

    faces.enrol(known, **s.values())


@faces_app.command("add")
@with_settings(EnrolSettings, only=("keep_photos", "backend"), after="photos")
def add(
    gallery: str = GALLERY,
    name: str = typer.Argument(..., help="The person: enrolled already, or new."),
    photos: List[str] = typer.Argument(..., help="Photos or folders of NAME."),
    settings: dict = None,
):
    """Add photos of NAME to GALLERY (the threshold is chosen again); interrupted, the gallery is unchanged."""
    options = check_enrol(**settings)  # a bad value: one line naming its flag, before the face models load
    from imgclf import faces

    faces.add(gallery, name, photos, **options)


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
@with_settings(IdentifySettings, after="photos")
def identify(
    gallery: str = GALLERY,
    photos: List[str] = typer.Argument(..., help="Photos or folders (searched recursively)."),
    settings: dict = None,
):
    """Every face in PHOTOS, named from GALLERY or 'unknown'; one CSV row a face with --out. A video
    file, camera index (0) or stream URL instead: who appears and leaves (--out DIR: frames.csv, events.json)."""
    s = IdentifySettings.of(settings)  # a bad value: one line naming its flag, before the face models load
    if s.ray is not None:  # the workers load the gallery and the face models, not this process
        from imgclf import api

        if s.threshold is not None:
            raise UserError("--threshold is not taken with --ray: the workers use the gallery's recorded one")
        api.predict_on_ray(gallery, photos if len(photos) > 1 else photos[0], s.out, address=s.ray, backend=s.backend)
        return
    from imgclf import faces

    options = {"threshold": s.threshold, "every": s.every, "video_out": s.video_out, "backend": s.backend}
    results = faces.identify(gallery, photos, out=s.out, max_seconds=s.max_seconds, **options)
    if isinstance(results, dict):  # a video: identify_video printed its events
        return
    if s.out is None:
        rows = [
            [r.get("path", ""), f"{f['x1']},{f['y1']},{f['x2']},{f['y2']}", f["name"], f"{f['similarity']:.3f}"]
            for r in results
            for f in r.get("faces", [])
        ]
        render.print_table(["image", "box", "name", "similarity"], rows)
    render.none_read(results)

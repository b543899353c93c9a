"""Who is in the photo: find faces, enrol people from a few photos each, name them or say "unknown".

    imgclf.faces.enrol("known/", "staff-gallery")             # known/<name>/*.jpg, whole photos or crops
    imgclf.faces.add("staff-gallery", "Ada", ["ada1.jpg"])
    imgclf.faces.identify("staff-gallery", ["door.jpg"], out="who")   # who/faces.csv, annotated/
    imgclf.faces.remove("staff-gallery", "Ada")

Modules: model (dlib's pretrained detector, landmarks and embedding, from the package index) ·
gallery (the enrolled embeddings in one file; nearest-mean or logistic naming; the "unknown"
threshold chosen on the enrolment photos) · texture (a light-normalised second descriptor, weighed
in where the enrolment photos say it helps) · enrolment (reading a person's photos) · outputs
(faces.csv, faces.json, annotated photos).
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import output_folder
from imgclf.faces.enrolment import append, check_name, enrol_photos, place_crop_faces
from imgclf.faces.gallery import FAR, UNKNOWN, Gallery, load_gallery, new_gallery
from imgclf.faces.summary import summarize
from imgclf.models.face.model import WHOLE, Face, FaceModel
from imgclf.settings.faces import check_enrol, check_identify

__all__ = ["enrol", "add", "remove", "identify", "people", "load_gallery", "FaceModel", "Face", "Gallery", "UNKNOWN"]


def enrol(
    known,
    out=None,
    *,
    far: float = FAR,
    keep_photos: bool = False,
    model: FaceModel | None = None,
    backend: str = "auto",
    verbose: bool = True,
) -> dict:
    """Enrol every person in `known` (one folder per person, named after them) into a new gallery at
    `out` (default galleries/<known's name>-<n>, as a run's runs/<data>-<n>). One face is taken from
    each photo; a photo with no face, or several of like size, is reported and left out. `far`: the
    share of strangers the threshold may let through. `backend`: the embedder's (FaceModel;
    "onnx-int8" once `imgclf export faces --int8` made it). A bad setting is refused in one line
    naming its option, by its declared rule (settings.faces.EnrolSettings)."""
    far = check_enrol(out=out, far=far, keep_photos=keep_photos, backend=backend)["far"]
    known = Path(known).expanduser()
    if not known.exists():
        raise UserError(f"{known} is not a folder; give a folder with one subfolder of photos per person")
    if out is None:
        from imgclf.store.runs import new_run_dir

        out = new_run_dir(known, base="galleries")
    out = output_folder(out, "--out")
    import numpy as np

    from imgclf.data.discover import find

    # Read as `imgclf train` reads data: a folder per person, also zipped, a CSV of names, Ada_0001.jpg.
    spec = find(known)
    if not spec.classes:
        raise UserError(
            f"{known} has no subfolders: put each person's photos in a folder named after them, e.g. {known}/Ada/1.jpg"
        )
    if (out / "gallery.safetensors").exists():
        raise UserError(
            f"{out} already holds a gallery: add people with imgclf faces add {out} NAME PHOTOS, or give a new --out"
        )
    model = model or FaceModel(backend=backend)
    if verbose:
        print(model.describe() + (f"\n  data: {spec.note}" if spec.note else ""))
    g = new_gallery(model, far)
    report = {"skipped": [], "crops": [], "whole": []}
    for label, name in enumerate(spec.classes):
        photos = [Path(spec.paths[i]) for i in np.flatnonzero(spec.labels == label)]
        vectors, sources, textures = enrol_photos(model, name, photos, g, out if keep_photos else None, report, verbose)
        if len(vectors):
            g = append(g, name, vectors, sources, textures)
        elif verbose:
            print(f"  {name}: no usable photo, not enrolled")
    if not g.people:
        raise UserError(f"no face could be enrolled from {known}: every photo was skipped (see above)")
    place_crop_faces(model, g, report, verbose)
    g = g.rebuilt(g.people, g.embeddings, g.owner, g.sources)
    g.save(out)
    return summarize(g, out, report, verbose, "enrolled")


def add(
    gallery,
    name: str,
    photos,
    *,
    keep_photos: bool = False,
    model: FaceModel | None = None,
    backend: str = "auto",
    verbose: bool = True,
) -> dict:
    """Enrol `photos` (files or folders) as `name` (new or already enrolled) in `gallery`; the threshold
    and naming method are chosen again. Atomic: interrupted, the gallery is as it was."""
    from imgclf.faces.gallery import changing
    from imgclf.inference.predictor import expand_inputs

    name = check_name(name)
    check_enrol(keep_photos=keep_photos, backend=backend)
    model = model or FaceModel(backend=backend)
    with changing(gallery):
        g = load_gallery(gallery, model)
        report = {"skipped": []}
        vectors, sources, textures = enrol_photos(
            model, name, list(expand_inputs(photos)), g, Path(gallery) if keep_photos else None, report, verbose
        )
        if not len(vectors):
            raise UserError(f"none of the photos gave a face to enrol as {name} (see above); nothing changed")
        g = g.with_faces(name, vectors, sources, textures)
        g.save(gallery)
    return summarize(g, gallery, report, verbose, f"added {len(vectors)} photo(s) of {name};")


def remove(gallery, name: str, *, verbose: bool = True) -> dict:
    """Delete `name` from `gallery`: their embeddings, and their kept photos if any. Atomic."""
    import shutil

    from imgclf.faces.gallery import changing

    with changing(gallery):
        g = load_gallery(gallery).without(name)
        g.save(gallery)
        photos = Path(gallery) / "photos" / name
        if photos.is_dir():
            shutil.rmtree(photos)
    return summarize(g, gallery, {"skipped": []}, verbose, f"removed {name};")


def people(gallery) -> dict[str, int]:
    """Enrolled names and how many photos each."""
    return load_gallery(gallery).counts()


def identify(
    gallery,
    images,
    *,
    out=None,
    threshold: float | None = None,
    every: int | None = None,
    video_out=None,
    max_frames: int | None = None,
    model: FaceModel | None = None,
    backend: str = "auto",
    max_seconds: float | None = None,
    verbose: bool = True,
    on_change=None,
):
    """Every face in each photo, named from `gallery` or "unknown": one answer per image,
    {path, faces: [{x1, y1, x2, y2, name, similarity, found}], width, height} ({path, error} for an
    unreadable file, skipped and reported). `out` writes faces.csv, faces.json and annotated/.
    `backend`: the embedder's (FaceModel; "onnx-int8" once `imgclf export faces --int8` made it).
    `images` may instead be one video file, camera index or stream URL: who appears and leaves
    (imgclf.faces.video; `every` frame sampled, `video_out` the annotated frames, each frame's face
    search held to `max_seconds`, default 10), as a dict; `on_change(change)` hears each arrival and
    departure as it happens ({"kind": "present" | "gone", "label": name, "t_s", "time", ...}). A bad
    setting is refused in one line naming its option, by its declared rule (settings.faces.IdentifySettings),
    before a model is loaded."""
    given = dict(out=out, threshold=threshold, every=every, video_out=video_out, max_seconds=max_seconds)
    checked = check_identify(**given, backend=backend)
    threshold, every, max_seconds = checked["threshold"], checked["every"], checked["max_seconds"]
    model = model or FaceModel(backend=backend)
    g = gallery if isinstance(gallery, Gallery) else load_gallery(gallery, model)
    if threshold is not None:  # this call's only: a copy, the caller's gallery keeps its own
        import dataclasses

        g = dataclasses.replace(g, threshold=threshold)
    video = _video_source(images)
    if video is not None:
        from imgclf.faces.video import identify_video

        if out is None:
            raise UserError(
                f"a video needs --out DIR for its frames.csv and events.json, e.g. --out {Path(video).stem}-faces"
            )
        return identify_video(
            model,
            g,
            video,
            out,
            every=every,
            video_out=video_out,
            max_frames=max_frames,
            max_seconds=max_seconds,
            verbose=verbose,
            on_change=on_change,
        )
    return _identify_photos(model, g, None if isinstance(gallery, Gallery) else str(gallery), images, out, verbose)


def _identify_photos(model, g: Gallery, where: str | None, images, out, verbose: bool) -> list[dict]:
    """identify on photos: `where` the gallery's folder (None for one given in memory)."""
    from imgclf.inference.predictor import expand_inputs

    if verbose:
        method = g.method + (f" with the texture at {g.blend.weight}" if g.blend else "")
        print(f"{model.describe()}; {len(g.people)} people enrolled, {method}, threshold {g.threshold:.3f}")
    writer, items, results = None, expand_inputs(images), []
    # Which photos were enrolled, as well as where: a person added or removed since makes an interrupted
    # identify's answers stale, and it is then refused rather than resumed.
    enrolled = hashlib.sha256("".join(s["sha256"] for s in g.sources).encode()).hexdigest()[:16]
    settings = {"gallery": where, "enrolled": enrolled, "threshold": g.threshold, "method": g.method, "model": g.model}
    if out is not None:  # resumable: the same command after a Ctrl-C names only the photos not answered yet
        from imgclf.faces.outputs import face_outputs

        writer = face_outputs(out, resumable=settings)
        items, results = writer.resume(items, verbose)
    with writer or nullcontext():  # an identify that fails or is stopped lets go of its --out folder
        results += [_identify_one(model, g, item, writer, verbose) for item in items]
        if writer:
            writer.close()  # with the settings it was made with
    if verbose:
        faces = [f for r in results for f in r.get("faces", [])]
        named = sum(f["name"] != UNKNOWN for f in faces)
        bad = sum("error" in r for r in results)
        whole = sum(f.get("found") == WHOLE for f in faces)
        print(
            f"{len(faces)} face(s) in {len(results) - bad} image(s): {named} named, {len(faces) - named} unknown"
            + (f" ({whole} of them small photos with no face detected, read whole as face crops)" if whole else "")
            + (f"; {bad} unreadable, skipped" if bad else "")
            + (f"; wrote {out}/faces.csv, faces.json, annotated/" if out else "")
        )
    return results


def _identify_one(model, g, item, writer, verbose) -> dict:
    """One photo's answer (path, faces, width, height), or {path, error} for an unreadable file."""
    from imgclf.data.images import UnusableImage, read_scaled
    from imgclf.models.face.model import DETECT_SIDE

    entry = {"path": str(item)} if isinstance(item, (str, Path)) else {}
    try:
        # A camera's photo decoded at no less than the side the faces are searched at (JPEG's reduced
        # scales), not whole: a 12 MP photo's full decode was a fifth of its answer's time.
        img, size = read_scaled(item, DETECT_SIDE) if isinstance(item, (str, Path)) else (_rgb(item), None)
    except UnusableImage as e:
        entry["error"] = e.reason
        if verbose:
            print(f"  skipped {item}: {e.reason}")
        if writer:  # in faces.json too, with its reason; journalled, so a resumed identify skips it
            writer.add(entry, None)
        return entry
    entry.update(name_faces(model, g, img, size=size))
    if not entry["faces"] and verbose:
        print(f"  {entry.get('path', 'image')}: no face found")
    if writer:
        writer.add(entry, img)
    return entry


def name_faces(model: FaceModel, g: Gallery, img, threshold: float | None = None, stop=None, size=None) -> dict:
    """One photo's answer: {faces: [...], width, height}. `stop` (core.work.Stop): see FaceModel.faces.
    `size`: the photo's full (width, height) where `img` is a reduced decode of it (read_scaled): the
    boxes, width and height are then the full photo's."""
    import numpy as np

    from imgclf.faces.texture import of_faces

    faces = model.faces(img, stop=stop, crop_box=g.crop_box)
    textures = of_faces(img, faces) if g.uses_texture else None
    names = g.name(np.stack([f.embedding for f in faces]), threshold, textures) if faces else []
    width, height = size or img.size
    sx, sy = width / img.width, height / img.height
    return {
        "faces": [
            {
                "x1": round(f.box[0] * sx),
                "y1": round(f.box[1] * sy),
                "x2": round(f.box[2] * sx),
                "y2": round(f.box[3] * sy),
                "name": n,
                "similarity": s,
                "found": f.found,
            }
            for f, (n, s) in zip(faces, names)
        ],
        "width": width,
        "height": height,
    }


def _video_source(images) -> str | None:
    from imgclf.inference.video import is_video_source

    items = images if isinstance(images, (list, tuple)) else [images]
    if len(items) == 1 and isinstance(items[0], int) and not isinstance(items[0], bool):
        return str(items[0])  # a camera index, as OpenCV numbers them
    if (
        len(items) == 1
        and isinstance(items[0], (str, Path))
        and is_video_source(str(items[0]))
        and not Path(items[0]).is_dir()
    ):
        return str(items[0])
    return None


def _rgb(item):
    from imgclf.data.images import in_memory, to_rgb

    return to_rgb(in_memory(item))

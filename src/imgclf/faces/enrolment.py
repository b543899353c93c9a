"""Reading a person's enrolment photos into a gallery: one face a photo (a photo with none, or several of
like size, is reported and left out), its embedding and texture, and where a collection of face crops
holds its faces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.faces.gallery import UNKNOWN, Gallery
from imgclf.faces.texture import DIM, region, texture
from imgclf.models.face.model import WHOLE, Face, relative_box

DOMINANT = 3.0  # a photo with several faces enrols its biggest only when it is this many times the next one's area


def enrol_photos(model, name, paths, g, keep, report, verbose):
    """Embed one face from each photo of `name`: (vectors, sources, textures), skipping with a reason."""
    from imgclf.data.images import UnusableImage, read_rgb

    known = {s["sha256"] for s in g.sources}
    vectors, sources, textures = [], [], []
    for path in paths:
        path = Path(path)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            img = read_rgb(path)
        except (UnusableImage, OSError) as e:
            _skip(report, path, getattr(e, "reason", None) or type(e).__name__, verbose)
            continue
        if digest in known:
            _skip(report, path, "already enrolled (same file)", verbose)
            continue
        faces = model.faces(img, crop_box=g.crop_box)
        if not faces:
            _skip(report, path, "no face found (crop the face, or use a photo where it is larger)", verbose)
            continue
        if len(faces) > 1 and _area(faces[0]) < DOMINANT * _area(faces[1]):
            _skip(
                report,
                path,
                f"{len(faces)} faces of like size: which is {name} is not guessed (crop the photo)",
                verbose,
            )
            continue
        face = faces[0]
        if face.found == WHOLE:  # enrol learns where its crops hold their faces, then cuts these again
            report.setdefault("whole", []).append((len(g.sources) + len(sources), path))
        else:
            report.setdefault("crops", []).append(relative_box(face.box, (img.height, img.width)))
        known.add(digest)
        vectors.append(face.embedding)
        textures.append(texture(region(img, face.box)))
        sources.append({"file": f"{name}/{path.name}", "sha256": digest, "box": list(face.box), "found": face.found})
        if keep is not None:
            from imgclf.core.files import atomic_path

            dest = keep / "photos" / name / f"{digest[:16]}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                img.crop(face.box).save(tmp, format="JPEG", quality=92)
    if verbose and paths:
        print(f"  {name}: {len(vectors)} of {len(paths)} photo(s)")
    if not vectors:
        return np.zeros((0, 128), np.float32), sources, np.zeros((0, DIM), np.float32)
    return np.stack(vectors), sources, np.stack(textures)


def place_crop_faces(model, g: Gallery, report, verbose) -> None:
    """Learn where this gallery's face crops hold their faces (models.face.model.crop_box_of: the
    detector's boxes on the crops it found a face in), and embed again the crops taken whole."""
    from imgclf.data.images import read_rgb
    from imgclf.models.face.model import crop_box_of

    g.crop_box, whole = crop_box_of(report.pop("crops")), report.pop("whole")
    for i, path in whole if g.crop_box else []:
        face = model.crop_face(read_rgb(path), g.crop_box)
        g.embeddings[i], g.sources[i]["box"] = face.embedding, list(face.box)
    if verbose and g.crop_box and whole:
        box = ", ".join(f"{v:.0%}" for v in g.crop_box)
        print(f"  {len(whole)} crop(s) with no face found: the face taken at x1, y1, x2, y2 = {box} of each")


def append(g: Gallery, name, vectors, sources, textures) -> Gallery:
    """Add without re-choosing (enrol chooses once, at the end)."""
    g.people.append(name)
    g.embeddings = np.concatenate([g.embeddings, vectors]).astype(np.float32)
    g.textures = np.concatenate([g.textures, textures]).astype(np.float32)
    g.owner = np.concatenate([g.owner, np.full(len(vectors), len(g.people) - 1, np.int64)])
    g.sources.extend(sources)
    return g


def _skip(report, path, reason, verbose):
    report["skipped"].append({"file": str(path), "reason": reason})
    if verbose:
        print(f"  skipped {path}: {reason}")


def _area(face: Face) -> int:
    x1, y1, x2, y2 = face.box
    return (x2 - x1 + 1) * (y2 - y1 + 1)


def check_name(name: str) -> str:
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or name == UNKNOWN:
        raise UserError(f"{name!r} cannot be a person's name here (it becomes a folder name; {UNKNOWN!r} is reserved)")
    return name

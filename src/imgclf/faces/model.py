"""Find, align and embed faces with dlib's pretrained models, whose weights come from the package index.

`face-recognition-models` 0.3.0 (the weights the `face_recognition` library uses; package MIT, the
two files used here CC0 by Davis King) ships dlib's 5-point landmark model and its ResNet face
embedding (128 numbers a face, 99.38 % on LFW); `dlib-bin` is dlib's prebuilt wheel (Boost licence).
The 68-point model in the same package is not used: its iBUG 300-W training data forbids
commercial use. Faces are found with dlib's HOG detector (built into dlib, no file), aligned on 5
landmarks to a 150x150 chip, and embedded; embeddings are scaled to unit length, so two faces
compare by cosine similarity (1 = the same picture).

A small photo (FACE_CROP px or less on its longest side) in which no face is found is taken as a
face crop: its whole area is the face. Crop datasets (a face per file, often in extreme light)
defeat the detector but embed well; a large photo with no face found is reported, never guessed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError

PACKAGE = "face-recognition-models"
VERSION = "0.3.0"
MODULE = "face_recognition_models"
FILES = {  # role -> (file in the package's models/ folder, SHA-256 of the released file)
    "landmarks": (
        "shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    ),
    "embedding": (
        "dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    ),
}
INSTALL = f"pip install '{PACKAGE}=={VERSION}' dlib-bin"
NAME = "dlib-resnet-v1"  # the embedding: galleries record it, and refuse to mix embeddings of two models
FACE_CROP = 300  # px: a photo this small with no face found is a face crop (see the module's docstring)
DETECT_SIDE = 1280  # px: bigger photos are searched at this size (HOG's cost grows with the pixels)
UPSAMPLE_BELOW = 800  # px: HOG finds faces of 80 px and more; a smaller photo is searched at twice its
# size too, so that 40 px faces are found (a bigger one would cost 4x the time for faces rarely that small)
CHIP = 150  # px: the aligned face the embedding network reads (dlib's size)


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the photo's pixels
    embedding: np.ndarray  # (128,) float32, unit length
    found: str  # "detected", or "whole photo" for a small photo taken as a face crop
    score: float  # the HOG detector's score (0 for a whole photo)


def weight_files() -> dict[str, Path]:
    """The installed, verified model files by role, or a UserError saying how to install or repair them."""
    from imgclf.models.packaged import sha256

    spec = importlib.util.find_spec(MODULE)  # its __init__ needs pkg_resources: find it without running it
    folder = (
        Path(list(spec.submodule_search_locations)[0]) / "models" if spec and spec.submodule_search_locations else None
    )
    out = {}
    for role, (name, digest) in FILES.items():
        path = folder / name if folder else None
        if path is None or not path.is_file():
            raise UserError(f"the face models are not installed: {INSTALL}")
        if sha256(path) != digest:
            raise UserError(
                f"{path} is not the file {PACKAGE} {VERSION} ships (SHA-256 differs): it was changed or is "
                f"damaged, so imgclf will not load it. Reinstall it: pip install --force-reinstall '{PACKAGE}=={VERSION}'"
            )
        out[role] = path
    return out


class FaceModel:
    """dlib's detector, landmarks and embedding, loaded once. Not shared between threads: dlib's
    objects hold scratch memory (a service keeps one per worker behind a lock)."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise UserError(f"dlib is not installed: {INSTALL}") from None
        files = weight_files()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(files["landmarks"]))
        self.net = dlib.face_recognition_model_v1(str(files["embedding"]))
        self.name = NAME
        self.weights = {role: FILES[role][1] for role in FILES}

    def faces(self, img, whole_photo: bool | None = None) -> list[Face]:
        """Every face in an RGB PIL image, biggest first. `whole_photo`: take the whole photo as the
        face when none is found (default: when the photo is FACE_CROP px or smaller)."""
        rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
        found = self.find(rgb)
        if not found:
            h, w = rgb.shape[:2]
            if whole_photo is False or (whole_photo is None and max(h, w) > FACE_CROP):
                return []
            found = [(self.dlib.rectangle(0, 0, w - 1, h - 1), 0.0)]
            how = "whole photo"
        else:
            how = "detected"
        shapes = self.dlib.full_object_detections([self.landmarks(rgb, r) for r, _ in found])
        vectors = np.asarray(self.net.compute_face_descriptor(rgb, shapes), dtype=np.float32).reshape(len(found), -1)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return [Face(_box(r, rgb.shape), v, how, round(float(s), 3)) for (r, s), v in zip(found, vectors)]

    def find(self, rgb: np.ndarray) -> list:
        """HOG detections as (dlib.rectangle in the photo's pixels, score), biggest first."""
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = rgb
        if scale < 1.0:
            from PIL import Image

            small = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        upsample = 1 if max(h, w) * scale <= UPSAMPLE_BELOW else 0
        rects, scores, _ = self.detector.run(small, upsample, 0.0)
        out = []
        for r, s in zip(rects, scores):
            if scale < 1.0:
                r = self.dlib.rectangle(*(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())))
            out.append((r, float(s)))
        return sorted(out, key=lambda rs: -rs[0].area())

    def describe(self) -> str:
        return f"faces: dlib HOG detector, 5-point alignment, {self.name} embedding ({PACKAGE} {VERSION})"


def _box(r, shape) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    return (max(0, r.left()), max(0, r.top()), min(w - 1, r.right()), min(h - 1, r.bottom()))

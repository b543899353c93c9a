"""Find, align and embed faces with dlib's pretrained models, whose weights come from the package index.

`face-recognition-models` 0.3.0 (the weights the `face_recognition` library uses; package MIT, the
two files used here CC0 by Davis King) ships dlib's 5-point landmark model and its ResNet face
embedding (128 numbers a face, 99.38 % on LFW); `dlib-bin` is dlib's prebuilt wheel (Boost licence).
The 68-point model in the same package is not used: its iBUG 300-W training data forbids
commercial use. Faces are found with dlib's HOG detector (built into dlib, no file), aligned on 5
landmarks to a 150x150 chip, the chip's brightness histogram equalised, and embedded by dlib's
network rebuilt in PyTorch (imgclf.models.face.resnet: dlib's own numbers to 4e-7, run in ONNX Runtime at
~8 ms a face against dlib-bin's ~140 ms); embeddings are scaled to unit length, so two faces compare
by cosine similarity (1 = the same picture).

Why equalise: dlib's detector and network were made on ordinary photos. On faces relit hard
(bench/faces.py's orl-light: a light from one side, exposure 0.25-1.5x, gamma 0.5-2.5) equalising
the chip's luminance raised top-1 from 0.887 to 0.940 with 5 photos a person (CLAHE and a gamma to
mid-grey helped less); equalising a face-crop-sized photo before detection too found 392 faces of
400 instead of 335 and raised it to 0.994 (0.879 -> 0.973 from one photo), ORL unchanged (1.000).
A larger photo is searched as it is (equalising a street scene, whose histogram is the street's,
cost faces pasted into scenes 0.3 points), and equalised only when nothing was found in it.

A small photo (FACE_CROP px or less on its longest side) in which no face is found is taken as a
face crop. Crop datasets (a face per file, often in extreme light) defeat the detector but embed
well; a large photo with no face found is reported, never guessed. Where in the crop the face is
taken to be (`crop_box`) is learnt from the same collection: the median of the boxes the detector
drew on the crops in which it did find a face (a gallery's enrolment photos, a run's training
images), since dlib's landmark model was trained on the detector's boxes, not on whole crops. On
orl-shadow (ORL lit as Extended Yale B is; a face found in 41 %) that raised top-1 from five photos a
person from 0.420 (the whole crop) to 0.502 (bench/faces.py); orl-light 0.994 -> 0.997, ORL 1.000
either way. With fewer than MIN_CROP_FACES such crops the whole photo is the box.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.settings.faces import check_identify

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
# The embedding, as galleries record it: they refuse to mix embeddings of two models (or of another
# preprocessing of the chip, which moves every embedding).
NAME = "dlib-resnet-v1-equalized"
FACE_CROP = 300  # px: a photo this small with no face found is a face crop (see the module's docstring)
DETECT_SIDE = 1280  # px: bigger photos are searched at this size (HOG's cost grows with the pixels)
UPSAMPLE_BELOW = 800  # px: HOG finds faces of 80 px and more; a smaller photo in which none was found is
# searched again at twice its size, so that 40 px faces are found (see find)
CHIP = 150  # px: the aligned face the embedding network reads (dlib's size)
PADDING = 0.25  # of the chip around the face: dlib's compute_face_descriptor's
MIN_CROP_FACES = 5  # detected faces in face crops needed to learn where a crop's face lies (crop_box)
WHOLE = "whole photo"  # Face.found of a small photo taken as a face crop


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the photo's pixels
    embedding: np.ndarray  # (128,) float32, unit length
    found: str  # "detected", or WHOLE for a small photo taken as a face crop
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
    """dlib's detector and landmarks and the embedding network, loaded once. Not shared between
    threads: dlib's objects hold scratch memory (a service keeps one behind a lock). `device`:
    "cpu" (ONNX Runtime), "cuda" (PyTorch), or "auto" (cuda when there is a GPU). `backend`: the
    embedder's, auto (onnx on the CPU, torch on a GPU) | onnx | onnx-int8 (faces/int8.py) | torch."""

    def __init__(self, device: str = "auto", backend: str = "auto"):
        check_identify(backend=backend)  # its declared rule (settings.faces): one line, before dlib loads
        try:
            import dlib
        except ImportError:
            raise UserError(f"dlib is not installed: {INSTALL}") from None
        from imgclf.models.face.resnet import Embedder

        files = weight_files()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(files["landmarks"]))
        device, backend = engine_of(device, backend)
        self.embed = Embedder(files["embedding"], FILES["embedding"][1], backend=backend, device=device)
        self.name = NAME
        self.weights = {role: FILES[role][1] for role in FILES}

    def faces(self, img, whole_photo: bool | None = None, stop=None, crop_box=None) -> list[Face]:
        """Every face in an RGB PIL image, biggest first. `whole_photo`: take the photo as a face crop
        when none is found (default: when the photo is FACE_CROP px or smaller), its face at
        `crop_box` (shares of the width and height, see crop_box_of; None: the whole photo). `stop`
        (core.work.Stop): checked between the searches and before the embedding."""
        rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
        rgb, found, how = self.located(rgb, whole_photo, stop, crop_box)
        if not found:
            return []
        chips = np.stack([self.chip(rgb, r) for r, _ in found])
        vectors = self.embed(chips)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return [Face(box_of(r, rgb.shape), v, how, round(float(s), 3)) for (r, s), v in zip(found, vectors)]

    def crop_face(self, img, crop_box) -> Face:
        """The face of an RGB PIL face crop where crop_box puts it, without a search (for a crop the
        detector found nothing in, once the collection's crop_box is known)."""
        rgb = self.as_searched(np.ascontiguousarray(np.asarray(img.convert("RGB"))))
        rect = self.crop_rect(rgb.shape, crop_box)
        vector = self.embed(self.chip(rgb, rect)[None])[0]
        return Face(box_of(rect, rgb.shape), vector / np.linalg.norm(vector), WHOLE, 0.0)

    def located(
        self, rgb: np.ndarray, whole_photo: bool | None = None, stop=None, crop_box=None
    ) -> tuple[np.ndarray, list, str]:
        """The search behind faces(), on an HxWx3 uint8 RGB array: (the photo its chips are cut from,
        [(dlib.rectangle, score)] biggest first, "detected" or WHOLE)."""
        from imgclf.core.work import check

        crop = max(rgb.shape[:2]) <= FACE_CROP
        rgb = self.as_searched(rgb)  # a face crop equalised: the face is most of the photo
        found = self.find(rgb)
        check(stop)
        if not found and not crop:  # a dark or washed-out scene: its faces may show once equalised
            found = self.find(equalized(rgb))
        check(stop)
        if found:
            return rgb, found, "detected"
        if whole_photo is False or (whole_photo is None and not crop):
            return rgb, [], "detected"
        return rgb, [(self.crop_rect(rgb.shape, crop_box), 0.0)], WHOLE

    def crop_rect(self, shape, crop_box=None):
        """The dlib.rectangle where a face crop of this shape holds its face (crop_box_of), else the whole of it."""
        h, w = shape[:2]
        if crop_box is None:
            return self.dlib.rectangle(0, 0, w - 1, h - 1)
        x1, y1, x2, y2 = crop_box
        return self.dlib.rectangle(round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h))

    @staticmethod
    def as_searched(rgb: np.ndarray) -> np.ndarray:
        """The photo searched first and cut from: a face crop (FACE_CROP px or less) equalised, since the
        face is most of it; a larger photo as it is."""
        return equalized(rgb) if max(rgb.shape[:2]) <= FACE_CROP else rgb

    def chip(self, rgb: np.ndarray, rect) -> np.ndarray:
        """The face in `rect` aligned on its 5 landmarks to CHIP x CHIP px, its luminance equalised."""
        return equalized(self.dlib.get_face_chip(rgb, self.landmarks(rgb, rect), size=CHIP, padding=PADDING))

    def find(self, rgb: np.ndarray) -> list:
        """HOG detections as (dlib.rectangle in the photo's pixels, score), biggest first."""
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = rgb
        if scale < 1.0:
            from PIL import Image

            small = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        # Searched at its own size first, at twice it only when that found none: twice the size costs
        # about 9x (a 640 px street photo: 197 ms against 22 ms; a 200 px crop 28 ms against 7 ms) and
        # finds only faces of 40-80 px. The price: a 40-80 px face beside a bigger one is not found.
        rects, scores, _ = self.detector.run(small, 0, 0.0)
        if not rects and max(h, w) * scale <= UPSAMPLE_BELOW:
            rects, scores, _ = self.detector.run(small, 1, 0.0)
        out = []
        for r, s in zip(rects, scores):
            if scale < 1.0:
                r = self.dlib.rectangle(*(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())))
            out.append((r, float(s)))
        return sorted(out, key=lambda rs: -rs[0].area())

    def describe(self) -> str:
        engine = "ONNX Runtime" if self.embed.session is not None else f"PyTorch on {self.embed.device}"
        engine += ", int8" if self.embed.backend == "onnx-int8" else ""
        return f"faces: dlib HOG detector, 5-point alignment, {self.name} embedding ({PACKAGE} {VERSION}; {engine})"


def engine_of(device: str = "auto", backend: str = "auto") -> tuple[str, str]:
    """(device, backend) the embedder runs on: auto is ONNX Runtime on a CPU, PyTorch on a GPU. An ONNX
    Runtime backend named outright takes the CPU even where there is a GPU (it runs nowhere else)."""
    if device == "auto":
        from imgclf.core.device import on_cpu

        if on_cpu("auto"):  # without torch where no GPU can be there
            device = "cpu"
        else:
            import torch

            device = "cuda" if torch.cuda.is_available() and backend in ("auto", "torch") else "cpu"
    elif device != "cpu":  # a GPU named where there is none, or a misspelt one: the classifier's one line
        from imgclf.core.device import pick_device

        device = str(pick_device(device))
    if backend == "auto":
        backend = "onnx" if device == "cpu" else "torch"
    return device, backend


def equalized(rgb: np.ndarray) -> np.ndarray:
    """The RGB image with its luminance histogram equalised (colour kept)."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def relative_box(box, shape) -> list[float] | None:
    """A face's box (x1, y1, x2, y2 px) as shares of its photo's width and height, for crop_box_of;
    None unless the photo is a face crop (FACE_CROP px or smaller)."""
    h, w = shape[:2]
    if max(h, w) > FACE_CROP:
        return None
    return [box[0] / w, box[1] / h, box[2] / w, box[3] / h]


def crop_box_of(boxes) -> list[float] | None:
    """Where this collection's face crops hold their face: the median of the detector's boxes on the
    crops where it found one (relative_box; Nones left out), as shares of the width and height.
    None with fewer than MIN_CROP_FACES: the whole crop is taken then."""
    boxes = [b for b in boxes if b is not None]
    if len(boxes) < MIN_CROP_FACES:
        return None
    return [round(float(v), 4) for v in np.median(np.asarray(boxes, np.float64), axis=0)]


def box_of(r, shape) -> tuple[int, int, int, int]:
    """A dlib.rectangle as (x1, y1, x2, y2) px, clipped to the photo."""
    h, w = shape[:2]
    return (max(0, r.left()), max(0, r.top()), min(w - 1, r.right()), min(h - 1, r.bottom()))

"""A classifier on dlib's face embedding: what a run holds when its leaderboard kept the face embedding.

Each image's biggest face is found, aligned and embedded (model.FaceModel: dlib's HOG detector, 5
landmarks, the ResNet embedding, 128 numbers of unit length), or the whole image where no face is
found; a linear head (a logistic regression fitted by training.faceprobe) maps the embedding to
class logits. Nothing but the head is learnt: the embedding was trained by dlib on millions of
faces, which is why five photos a person are enough where a network trained on the user's photos
needs hundreds.

The module takes what every other network takes (a normalised image batch at the run's size), so
prediction, calibration, test-time augmentation, the service and video run it unchanged. It runs
dlib and ONNX Runtime on the CPU inside forward(): it has no gradients, and it cannot be traced,
so ONNX export and Grad-CAM refuse it in one line.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from imgclf.core.errors import UserError
from imgclf.models.headonly import HeadOnly

DIM = 128  # numbers in dlib's embedding
NOT_EXPORTABLE = (
    "this run's model is dlib's face embedding with a linear head (its leaderboard kept it): the face "
    "search runs in dlib, so it runs in PyTorch only and has no ONNX graph or Grad-CAM map; train with "
    "--faces off for a network that exports"
)


class FaceEmbeddingClassifier(HeadOnly):
    """Normalised images (N, 3, S, S) -> class logits, through the biggest face's embedding."""

    not_exportable = not_explainable = NOT_EXPORTABLE

    def __init__(self, num_classes: int, mean, std, embedding: str | None = None, crop_box=None):
        super().__init__(DIM, num_classes, mean, std)
        self.crop_box = crop_box  # where a face crop with no face found holds it (model.crop_box_of)
        from imgclf.models.face.model import NAME

        if embedding not in (None, NAME):  # model.json names another embedding than the one installed
            raise UserError(f"this run was made with the face embedding {embedding}; imgclf {NAME} cannot run it")
        self._faces = None
        # dlib's detector and landmark model keep scratch memory: a service's batcher and scan threads
        # may call forward() at once, so the search runs one call at a time.
        self._lock = threading.Lock()

    def __getstate__(self):  # a copy (deepcopy, pickle) gets its own lock and loads dlib again
        return {k: v for k, v in super().__getstate__().items() if k not in ("_lock", "_faces")}

    def __setstate__(self, state):
        super().__setstate__(state)
        self._faces, self._lock = None, threading.Lock()

    @property
    def faces(self):
        if self._faces is None:  # dlib and the embedder load on first use, on the CPU (ONNX Runtime)
            from imgclf.models.face.model import FaceModel

            self._faces = FaceModel(device="cpu")
        return self._faces

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = self.pixels(x)
        with self._lock:
            emb = torch.from_numpy(embed_images(self.faces, images, crop_box=self.crop_box)[0]).to(x.device)
        return self.head(emb)


def embed_images(
    faces, images: np.ndarray, mirror: bool = False, crop_box=None, learn_box: bool = False, advance=None
) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(embeddings (N, 128), found (N,) bool: a face was detected rather than the image taken as a
    face crop, the crop box used) of uint8 RGB images (N, H, W, 3) by `faces` (model.FaceModel).
    `crop_box`: where a face crop holds its face (model.crop_box_of); `learn_box`: learn it from the
    faces these images hold first. `mirror`: each chip's mirror image too, after the N originals (2N
    rows): a second training view for the price of an embedding, without a second search.
    `advance(1)` is called after each image's search (a progress bar's)."""
    from imgclf.models.face.model import box_of, crop_box_of, relative_box

    chips, found, boxes = [], [], []
    for img in images:
        rgb, where, how = faces.located(np.ascontiguousarray(img), whole_photo=True, crop_box=crop_box)
        found.append(how == "detected")
        boxes.append(relative_box(box_of(where[0][0], rgb.shape), rgb.shape) if found[-1] else None)
        # a crop taken whole waits for the box learnt from the others (cut again below)
        chips.append(faces.chip(rgb, where[0][0]) if found[-1] or not learn_box else None)
        if advance is not None:
            advance(1)
    if learn_box:
        crop_box = crop_box_of(boxes)
        for i, chip in enumerate(chips):
            if chip is None:
                rgb = faces.as_searched(np.ascontiguousarray(images[i]))
                chips[i] = faces.chip(rgb, faces.crop_rect(rgb.shape, crop_box))
    batch = np.stack(chips) if chips else np.zeros((0, 150, 150, 3), np.uint8)
    if mirror:
        batch = np.concatenate([batch, batch[:, :, ::-1]])
    vectors = faces.embed(np.ascontiguousarray(batch)) if len(batch) else np.zeros((0, DIM), np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    return vectors.astype(np.float32), np.array(found, bool), crop_box

"""Models that are a fixed descriptor with a learnt linear head, not a network from the registry:
what a run holds when its leaderboard kept dlib's face embedding (models.face.classifier) or the
light-normalised texture (models.texture). Each takes a normalised image batch like any network, so
prediction, calibration, test-time augmentation, the service and video run it unchanged; each runs
outside autograd (dlib, NumPy), so it has no ONNX graph or Grad-CAM map and says so in one line.
"""

from __future__ import annotations

from imgclf.core.errors import UserError
from imgclf.models.face.classifier import FACE_EMBEDDING, FaceEmbeddingClassifier
from imgclf.models.texture import TEXTURE, TextureClassifier

NAMES = (FACE_EMBEDDING, TEXTURE)  # the architectures' names in model.json


def build(name: str, num_classes: int, mean, std, kwargs: dict):
    """The untrained module for model.json's architecture `name` (one of NAMES) and its kwargs."""
    if name == FACE_EMBEDDING:
        return FaceEmbeddingClassifier(num_classes, mean, std, **kwargs)
    return TextureClassifier(num_classes, mean, std, **kwargs)


def refuse_untraceable(net) -> None:
    """One line for a network that has no ONNX graph or Grad-CAM map (one of these)."""
    if not getattr(net, "exportable", True):
        raise UserError(net.not_exportable)

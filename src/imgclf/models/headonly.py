"""Models that are a fixed descriptor with a learnt linear head, not a network from the registry:
what a run holds when its leaderboard kept dlib's face embedding (models.face.classifier), the
light-normalised texture (models.texture) or the person detector's view of the photo
(models.person.classifier). Each takes a normalised image batch like any network, so prediction,
calibration, test-time augmentation, the service and video run it unchanged. None has feature maps
for a Grad-CAM map; the face embedding reads the uint8 pixels outside autograd (dlib), so it has no
ONNX graph either, while the texture and the person detector are tensor operations and export. Each
says what it cannot do in one line.
"""

from __future__ import annotations

import numpy as np
import torch

from imgclf.core.errors import UserError
from imgclf.models import FACE_EMBEDDING, PERSON_DETECTOR, TEXTURE
from imgclf.models import HEAD_ONLY as NAMES

__all__ = ["FACE_EMBEDDING", "NAMES", "PERSON_DETECTOR", "TEXTURE", "HeadOnly"]


class HeadOnly(torch.nn.Module):
    """A linear head on a descriptor of the uint8 pixels. `mean`/`std`: the run's normalisation, undone
    to read the pixels the head was fitted on. Subclasses say why they cannot be exported or explained."""

    exportable = False  # read by the ONNX paths (inference.onnx_export, the evaluation after training)
    not_exportable = "this run's model has no ONNX graph"  # what refuse_unexportable says
    not_explainable = "this run's model has no feature maps for a Grad-CAM map"  # what refuse_unexplainable says

    def __init__(self, dim: int, num_classes: int, mean, std):
        super().__init__()
        self.head = torch.nn.Linear(dim, num_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_run(cls, num_classes: int, mean, std, size: int, kwargs: dict) -> HeadOnly:
        """The untrained module for a run: its classes, normalisation, input side (S) and model.json's
        architecture kwargs. A descriptor whose parameters changed says here how older runs read."""
        return cls(num_classes, mean, std, **kwargs)

    def get_classifier(self) -> torch.nn.Linear:
        return self.head

    def pixels(self, x: torch.Tensor) -> np.ndarray:
        """(N, S, S, 3) uint8: the images `x` (normalised, N x 3 x S x S) as a descriptor outside torch reads them."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            raise UserError(self.not_exportable)
        pixels = ((x.float() * self.std + self.mean) * 255).round().clamp(0, 255).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()


def refuse_unexportable(net) -> None:
    """One line for a network that has no ONNX graph (the face embedding)."""
    if not getattr(net, "exportable", True):
        raise UserError(net.not_exportable)


def refuse_unexplainable(net) -> None:
    """One line for a model with no feature maps to explain (either descriptor)."""
    if isinstance(net, HeadOnly):
        raise UserError(net.not_explainable)

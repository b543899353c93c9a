"""A classifier on the pretrained person detector's view of a photo: what a run holds when its
leaderboard kept it (training.personprobe).

The detector (SSDLite-MobileNetV2, trained on people; models.person) looks at the whole photo
squashed to 300x300, as `imgclf scan` does, and three numbers of what it saw go through a linear
head (a logistic regression): its best person box's score as log-odds, and that box's width and
height as shares of the photo. Nothing but the head is learnt, which is why a few dozen photos a
class are enough for presence, where a network trained on them learns the backgrounds.

The detector's weights are the run's own (saved in model.safetensors with the head), so a run needs
no installed package to predict. Tensor operations only: it exports to ONNX and runs in ONNX
Runtime; it has no Grad-CAM map (the question it answers is where the person is: `imgclf scan`).
"""

from __future__ import annotations

import torch

from imgclf.core.errors import UserError
from imgclf.models.headonly import HeadOnly
from imgclf.models.person.anchors import DecodedSSD
from imgclf.models.person.ssdlite import SIZE, SSDLite

DIM = 3  # best person score's log-odds, its box's width and height
SCORE_EPS = 1e-4  # scores are clipped this far from 0 and 1 before their log-odds
NAME = "ssdlite-person"  # the detector, as model.json names it


class PersonDetectorClassifier(HeadOnly):
    """Normalised images (N, 3, 300, 300) -> class logits, through the person detector's best box."""

    exportable = True
    not_explainable = (
        "this run's model is the pretrained person detector with a linear head (its leaderboard kept it): it "
        "has no Grad-CAM map; where the person is: imgclf scan PHOTOS (boxes), or train with --person off"
    )

    def __init__(self, num_classes: int, mean, std, detector: str | None = None):
        super().__init__(DIM, num_classes, mean, std)
        if detector not in (None, NAME):
            raise UserError(f"this run was made with the detector {detector}; imgclf has {NAME}")
        self.ssd = DecodedSSD(SSDLite(classes=1))  # the pretrained weights: load_pretrained, or the run's file

    def load_pretrained(self) -> PersonDetectorClassifier:
        """The detector's weights from the package index (models.person.weights: verified, converted once)."""
        from safetensors.torch import load_file

        from imgclf.models.person.weights import pretrained_weights

        self.ssd.net.load_state_dict(load_file(str(pretrained_weights())))
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) of normalised images at SIZE px: the best person box's score (log-odds), width, height."""
        if x.shape[-1] != SIZE or x.shape[-2] != SIZE:
            raise UserError(f"the person detector reads {SIZE}x{SIZE} images, not {x.shape[-1]}x{x.shape[-2]}")
        return self.describe((x.float() * self.std + self.mean) * 255.0)

    def describe(self, pixels: torch.Tensor) -> torch.Tensor:
        """features() of uint8-range RGB (N, 3, SIZE, SIZE), as the detector reads a photo."""
        boxes, scores = self.ssd(pixels)
        score, best = scores[..., 0].max(1)
        box = boxes.gather(1, best[:, None, None].expand(-1, 1, 4))[:, 0]
        p = score.clamp(SCORE_EPS, 1 - SCORE_EPS)
        return torch.stack([torch.log(p) - torch.log1p(-p), box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

"""torchvision's COCO detectors, for users who are online (or have the weights in torch's hub cache):
80 object classes, e.g. `imgclf scan street/ --detector fasterrcnn_mobilenet_v3_large_fpn --classes car,person`.

The weights come from download.pytorch.org into torch's cache ($TORCH_HOME/hub/checkpoints) the
first time, as torchvision fetches them, and are read back from there after (offline too). The
network runs in PyTorch with torchvision's own pre- and post-processing (resize, normalise, NMS);
its boxes come back in the photo's pixels like the pretrained person detector's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from imgclf.core.errors import UserError
from imgclf.detection.boxes import answer, box_record

# The COCO detectors torchvision ships, fastest first on a CPU; any other name of
# torchvision.models.detection with COCO weights also works.
KNOWN = (
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)
THRESHOLD = 0.5  # torchvision's detectors score boxes as class probabilities: 0.5 is their usual cut


@dataclass
class HubDetector:
    """A torchvision detector answering for `wanted` classes (the others are dropped)."""

    net: torch.nn.Module
    classes: list[str]  # the classes it reports (a subset of COCO's)
    name: str
    categories: list[str]  # COCO's names by torchvision label index
    threshold: float = THRESHOLD
    positive: str = "person"
    iou: float = 0.5  # torchvision's own NMS inside the model; kept for describe()
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: dict = field(default_factory=dict)
    tiles: tuple[int, int] = (1, 1)  # always: these detectors see the photo at its own size (up to ~800 px)

    def describe(self) -> str:
        return (
            f"detector {self.name} (torchvision, COCO; finding {', '.join(self.classes)}; PyTorch on {self.device}); "
            f"'{self.positive}' present at score >= {self.threshold:g}"
        )

    def with_options(
        self,
        threshold: float | None = None,
        iou: float | None = None,
        tiles: str | tuple | None = None,
        flip: bool | None = None,
    ) -> "HubDetector":
        from imgclf.settings.scan import check_scan, parse_tiles

        check_scan(threshold=threshold)
        if tiles is not None and parse_tiles(tiles) != (1, 1):
            raise UserError(
                f"--tiles is for the 300x300 pretrained detector and detector runs; {self.name} already "
                "looks at the photo at its own size"
            )
        if flip:
            raise UserError(
                f"--flip is for the pretrained detector and detector runs; {self.name} looks at the photo alone"
            )
        return replace(self, threshold=self.threshold if threshold is None else threshold)

    # torchvision's detectors resize a photo's shorter side to 800 px (SSDLite: 320) themselves.
    decode_side = 800

    def detect_batch(self, images: list, sizes: list | None = None) -> list[dict]:
        """As Detector.detect_batch: `sizes` are the full photos' where the images are reduced decodes."""
        from torchvision.transforms.functional import pil_to_tensor

        start = time.perf_counter()
        with torch.inference_mode():
            outs = self.net([pil_to_tensor(img).to(self.device).float() / 255 for img in images])
        per = (time.perf_counter() - start) / max(len(images), 1)
        sizes = sizes or [img.size for img in images]
        return [self._answer(size, img.size, out, per) for img, size, out in zip(images, sizes, outs)]

    def detect(self, img) -> dict:
        return self.detect_batch([img])[0]

    def _answer(self, size, seen, out: dict, seconds: float) -> dict:
        width, height = size
        found, top = [], 0.0
        scale = np.array([width / seen[0], height / seen[1]] * 2, dtype=np.float32)
        for box, label, score in zip(
            out["boxes"].cpu().numpy() * scale, out["labels"].cpu().numpy(), out["scores"].cpu().numpy()
        ):
            name = self.categories[int(label)]
            if name == self.positive:  # presence asks about every box, whatever the threshold
                top = max(top, float(score))
            if name in self.classes and score >= self.threshold:
                found.append(box_record(*np.clip(box, 0, [width, height, width, height]), score, name))
        return answer(self, size, found, top, seconds)

    def frame_model(self):
        from imgclf.inference.presence import FrameModel

        return FrameModel([f"no {self.positive}", self.positive], self.threshold)

    def frame_probs(self, frames: list, n_classes: int = 2):
        from PIL import Image

        results = self.detect_batch([Image.fromarray(f) for f in frames])
        top = np.array([r["score"] for r in results]).reshape(-1)
        return np.stack([1 - top, top], 1) if len(results) else np.zeros((0, 2)), [r["boxes"] for r in results]


def load_hub_detector(name: str, classes: list[str] | None, device: torch.device) -> HubDetector:
    """torchvision detector `name` with its COCO weights (downloaded once into torch's cache)."""
    from torchvision.models import get_model, get_model_weights

    try:
        weights = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise UserError(
            f"unknown detector '{name}': use person, a detector run folder, or one of torchvision's COCO "
            f"detectors: {', '.join(KNOWN)}"
        ) from None
    categories = list(weights.meta["categories"])
    wanted = classes or ["person"]
    unknown = [c for c in wanted if c not in categories or c in ("__background__", "N/A")]
    if unknown:
        names = sorted(c for c in categories if c not in ("__background__", "N/A"))
        raise UserError(f"--classes: '{unknown[0]}' is not a COCO class; choose from {', '.join(names)}")
    try:
        net = get_model(name, weights=weights, weights_backbone=None)
    except (OSError, RuntimeError) as e:  # URLError is an OSError: offline, and not in the cache
        raise UserError(
            f"cannot get {name}'s weights ({type(e).__name__}: {str(e)[:120]}): they download once from "
            "download.pytorch.org into $TORCH_HOME/hub/checkpoints; offline, use --detector person"
        ) from None
    source = {"torchvision": name, "weights": weights.url.rsplit("/", 1)[-1], "licence": "BSD-3-Clause (torchvision)"}
    return HubDetector(
        net.eval().to(device), wanted, name, categories, positive=wanted[0], device=device, source=source
    )

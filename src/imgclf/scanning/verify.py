"""A second look at the scan's best windows: a stronger crop classifier re-scores them.

The scan's own network must be cheap per pixel (it runs over every window of a pyramid), so it is a
small network learnt from a few thousand crops, and it fires on what those crops never showed it:
the dogs, kitchens and giraffes of person-free street photos. A network with ImageNet features
(the default `imgclf train` run on the same crops: EfficientNet-Lite0) knows those things, but costs
~100x more per window. Run only on the few best windows per photo (after NMS), it decides presence
(the scan's own windows place the boxes, scanner.Scanner._verified), at a fixed cost per photo
whatever its size:

    scanner = Scanner(fast_model, "person", verify=Verifier(lite0_model, "person", top=8))
"""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.settings.scan import check_scan

# Windows re-scored per photo: its cost is fixed, K crops through the verifier. bench/scan.py, both
# folds pooled, presence ROC-AUC 4 vs 8 windows: split 0 0.914 vs 0.904, split 1 0.928 vs 0.915,
# split 2 0.818 vs 0.840 (more windows, more chances for a person-free photo's clutter to score
# high), at 12-14 vs 10-11 photos/s on 2 threads.
TOP = 4


def load_verifier(run, device: str = "auto"):
    """A verifier run loaded for speed: on a CPU in ONNX Runtime (RUN/model.onnx, exported on first
    use; 21 vs 30 ms for 4 crops of a 96 px Lite0 on one thread, the same probabilities to 1e-9).
    It keeps the run's own test-time flips: without them (K crops, not 2K) bench/scan.py's photo
    thresholds, chosen on the mining half, transferred worse (pooled balanced accuracy 0.755 vs
    0.855, ROC-AUC 0.907 vs 0.915). A GPU keeps PyTorch."""
    import sys

    from imgclf.core.device import pick_device
    from imgclf.inference.load import load_model

    if pick_device(device).type == "cpu":
        try:
            return load_model(run, device, backend="onnx")
        except (OSError, ImportError, RuntimeError) as e:  # e.g. a read-only folder: no model.onnx
            print(f"verifier: ONNX Runtime not used ({type(e).__name__}: {e}); running it in PyTorch", file=sys.stderr)
    return load_model(run, device)


class Verifier:
    """The verifier model, its positive class and operating point, and how many windows it sees."""

    def __init__(self, model, positive: str, *, top: int = TOP, threshold: float | None = None):
        if positive not in model.classes:
            raise UserError(
                f"the verifier has no class '{positive}' (its classes: {', '.join(model.classes)}); "
                "train it on the same crops as the scanned model"
            )
        top = check_scan(verify_top=top)["verify_top"]
        self.model, self.positive, self.top = model, positive, int(top)
        self.pos = model.classes.index(positive)
        # The verifier's operating point is the photo's: its recorded threshold when it is about
        # this class (bench/scan.py records a photo-level one), else even odds.
        recorded = OperatingPoint.of(model.meta).threshold_for(positive)
        self.threshold = float(threshold if threshold is not None else recorded if recorded is not None else 0.5)

    def describe(self) -> str:
        name = getattr(self.model, "path", None) or "the verifier"
        return f"the best {self.top} windows (after NMS) re-scored by {name}"

    def score(self, img, windows: np.ndarray) -> np.ndarray:
        """Positive probabilities (n,) of the windows (n, 4: x1, y1, x2, y2 in image pixels), each
        cropped from the photo and resized as the verifier's training crops were."""
        if not len(windows):
            return np.zeros(0)
        width, height = img.size
        crops = []
        for x1, y1, x2, y2 in windows:
            box = (
                int(round(max(0, x1))),
                int(round(max(0, y1))),
                int(round(min(width, x2))),
                int(round(min(height, y2))),
            )
            crops.append(self.model.preprocess(img.crop(box)))
        return self.model.predict_proba(np.stack(crops))[:, self.pos]

"""What every loaded classifier does alike, whatever runs its network: read and resize the images,
calibrate, apply the run's decision rule, answer; evaluate. Torch-free: a subclass supplies
predict_logits (inference.model.Model: PyTorch; inference.onnx_runtime.OnnxModel: ONNX Runtime alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from imgclf.core.errors import UserError
from imgclf.data.discover import files_to_predict, no_images
from imgclf.data.images import UnusableImage, encoded, in_memory, is_web_url, load_resized, resize
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.evaluation.rejection import UNKNOWN
from imgclf.models.arrays import softmax
from imgclf.store.run_meta import RunMeta


class Predictor:
    """A run's classifier. Subclasses set meta, path, classes, img_size, resize_mode and tta, and
    implement predict_logits."""

    meta: RunMeta
    path: Path | None
    classes: list[str]
    img_size: int
    resize_mode: str
    tta: str

    def __init__(self, meta: RunMeta, path: Path | None = None):
        self.meta, self.path = meta, path
        self.classes = meta.classes
        self.img_size = meta.input.size
        self.resize_mode = meta.input.resize
        # Test-time augmentation the run was evaluated (and calibrated) with; settable per call site.
        self.tta = meta.tta

    def __repr__(self) -> str:  # what a notebook shows for imgclf.load(...)
        names = ", ".join(self.classes[:5]) + (f", … ({len(self.classes)} in all)" if len(self.classes) > 5 else "")
        return (
            f"<imgclf model {str(self.path or '(in memory)')!r}: {names}; {self.meta.architecture_name} at {self.img_size} px, "
            f"{self.backend} on {self.device_name}>"
        )

    @property
    def backend(self) -> str:
        raise NotImplementedError

    @property
    def device_name(self) -> str:
        """Where the network runs, in words ("cpu", "cuda:0"), for what prints it."""
        return str(self.device)

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """Raw logits (N, C) for preprocessed uint8 images (N, size, size, 3)."""
        raise NotImplementedError

    def preprocess(self, image) -> np.ndarray:
        """A path, PIL image or array (data.images.in_memory) -> the model's uint8 input (size, size, 3)."""
        if isinstance(image, (str, Path)):
            return load_resized(image, self.img_size, self.resize_mode)
        return resize(in_memory(image), self.img_size, self.resize_mode)  # PIL, numpy, a CPU torch tensor

    def with_tta(self, tta: str | None) -> "Predictor":
        """This model with test-time augmentation `tta` instead of the run's own (None: keep it)."""
        if tta is not None:
            from imgclf.settings.predict import check_predict

            self.tta = check_predict(tta=tta)["tta"]
        return self

    @property
    def temperature(self) -> float:
        return self.meta.temperature

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, C): softmax of logits / the run's fitted temperature."""
        return softmax(self.predict_logits(images) / self.temperature)

    def predict(self, inputs, top_k: int = 1) -> list[dict]:
        """One dict per image: path (when given), label, confidence, top_k [(label, p)...], or error.

        Folders are searched recursively; an unreadable file gives an entry with `error`, never a crash.
        """
        top_k = check_top_k(top_k)
        items = list(expand_inputs(inputs))
        arrays, ok, results = [], [], []
        for item in items:
            entry = {"path": str(item)} if isinstance(item, (str, Path)) else {}
            try:
                arrays.append(self.preprocess(item))
                ok.append(len(results))
            except UnusableImage as e:
                entry["error"] = e.reason
            results.append(entry)
        if arrays:
            for row, answer in zip(ok, self.answers(self.predict_proba(np.stack(arrays)), top_k)):
                results[row].update(answer)
        return results

    def answers(self, probs: np.ndarray, top_k: int = 1) -> list[dict]:
        """Per probability row: label (after the run's threshold or 'unknown' rule), confidence and
        top_k [(label, p)...]. Shared by predict, batch prediction and the web service."""
        k = max(1, min(top_k, len(self.classes)))
        op, out = self.operating_point, []
        for p in probs:
            order = np.argsort(-p)[:k]
            label = op.decide(p, self.classes)
            out.append(
                {
                    "label": self.classes[label] if label >= 0 else UNKNOWN,
                    "confidence": float(p[label] if label >= 0 else p.max()),
                    "top_k": [(self.classes[i], float(p[i])) for i in order],
                }
            )
        return out

    @property
    def operating_point(self) -> OperatingPoint:
        # Read from meta each time: training records the decision into meta after building the model.
        return OperatingPoint.of(self.meta)

    def decide(self, p: np.ndarray) -> int:
        """Class index for one probability row: the run's two-class threshold if it has one, else
        argmax; -1 (UNKNOWN) when the run has a rejection threshold and the top probability is below it."""
        return self.operating_point.decide(p, self.classes)

    def evaluate(self, data: str | Path | None = None) -> dict:
        from imgclf.evaluation.elsewhere import evaluate_model

        return evaluate_model(self, data)


def check_top_k(top_k) -> int:
    """top_k=: classes per answer, by `imgclf predict --top-k`'s declared rule (settings.predict: 1 to
    1000, the service's too), or one line naming the keyword."""
    from imgclf.settings.predict import RULES

    return RULES["top_k"].check("top_k", top_k)


def expand_inputs(inputs) -> Iterable:
    """Each image in `inputs` (one, or a list): a folder's image files, a path or URL as it is, a 4-D
    array's images one by one, a file's bytes as a file object, anything else (PIL, an array) as it is."""
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    # A mistyped path among several is said before the first image's work, not after it (faces
    # identify answered the photos before it, then stopped).
    for item in inputs:
        if isinstance(item, str) and not item.strip():  # Path("") is the current folder: every image there
            raise UserError("an empty path (an unset variable?): give an image, a folder or a URL")
        if isinstance(item, (str, Path)) and not is_web_url(item) and not Path(item).expanduser().exists():
            raise UserError(f"no such file or folder: {item}")
    found, empty = False, []  # folders (archives, lists) that held no image: said when nothing else came
    for item in inputs:
        if is_web_url(item):
            found = True
            yield item  # fetched when decoded (data.images): a failure is that image's error
        elif isinstance(item, (str, Path)):
            p = Path(item).expanduser()
            if (inside := files_to_predict(p)) is not None:
                found, empty = found or bool(inside), empty + ([] if inside else [item])
                yield from map(str, inside)
            elif p.exists():
                found = True
                yield str(p)
            else:
                raise UserError(f"no such file or folder: {item}")
        else:
            found = True
            if hasattr(item, "__array__") and np.ndim(item) == 4:  # a batch: N x H x W x C or N x C x H x W
                yield from item
            elif isinstance(item, (bytes, bytearray, memoryview)):
                yield encoded(item)  # read twice (its size, then its pixels) by detectors: a file object
            else:
                yield item
    if empty and not found:
        raise no_images(empty)

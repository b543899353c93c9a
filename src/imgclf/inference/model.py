"""A trained model loaded from a run folder: predict and evaluate.

Loading reads JSON and safetensors only, rebuilding the network from the registry by name, so a
run folder from anywhere can never execute code on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from imgclf.core.device import amp_dtype, pick_device
from imgclf.core.errors import UserError
from imgclf.data.discover import files_to_predict
from imgclf.data.images import UnusableImage, is_web_url, load_resized, resize
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.evaluation.rejection import UNKNOWN
from imgclf.models.forward import predict_logits, softmax
from imgclf.store.run_meta import RunMeta, load_run_meta
from imgclf.store.runs import find_run


class Model:
    def __init__(
        self,
        net: torch.nn.Module,
        meta: RunMeta,
        device: torch.device,
        path: Path | None = None,
        channels_last: bool = False,
    ):
        # channels_last: the network's and its batches' memory layout (torch_model's choice on a CPU).
        self.channels_last = channels_last
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net, self.meta, self.device, self.path = net.eval(), meta, device, path
        self.classes: list[str] = meta.classes
        self.img_size: int = meta.input.size
        self.resize_mode: str = meta.input.resize
        self.amp = amp_dtype(device, training=False)
        # Test-time augmentation the run was evaluated (and calibrated) with; settable per call site.
        self.tta: str = meta.tta

    def preprocess(self, image) -> np.ndarray:
        """A path, PIL image or HxWx3 uint8 array -> the model's uint8 input (size, size, 3)."""
        from PIL import Image

        if isinstance(image, (str, Path)):
            return load_resized(image, self.img_size, self.resize_mode)
        if isinstance(image, Image.Image):
            return resize(image, self.img_size, self.resize_mode)
        if isinstance(image, np.ndarray):
            return resize(Image.fromarray(image), self.img_size, self.resize_mode)
        raise TypeError(f"cannot predict on {type(image).__name__}; give a path, PIL image or numpy array")

    def with_tta(self, tta: str | None) -> "Model":
        """This model with test-time augmentation `tta` instead of the run's own (None: keep it)."""
        if tta is not None:
            from imgclf.settings.predict import check_predict

            self.tta = check_predict(tta=tta)["tta"]
        return self

    @property
    def temperature(self) -> float:
        return self.meta.temperature

    @property
    def backend(self) -> str:
        """What runs the network: "torch", or the name the ONNX Runtime and OpenVINO wrappers give
        themselves ("onnx", "onnx-int8", "openvino", "openvino-int8": inference.load.BACKENDS)."""
        return getattr(getattr(self, "net", None), "backend", "torch")  # an ensemble: its members, in PyTorch

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """Raw logits (N, C) for preprocessed uint8 images (N, size, size, 3)."""
        norm = self.meta.normalization
        return predict_logits(
            self.net,
            images,
            norm.mean,
            norm.std,
            self.device,
            amp=self.amp,
            tta=self.tta,
            channels_last=self.channels_last,
        )

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, C): softmax of logits / the run's fitted temperature."""
        return softmax(self.predict_logits(images) / self.temperature)

    def predict(self, inputs, top_k: int = 1) -> list[dict]:
        """One dict per image: path (when given), label, confidence, top_k [(label, p)...], or error.

        Folders are searched recursively; an unreadable file gives an entry with `error`, never a crash.
        """
        check_top_k(top_k)
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
        from imgclf.evaluation.scoring import evaluate_model

        return evaluate_model(self, data)


def load_run(run: str | Path, device: str = "auto", tta: str | None = None) -> Model:
    """One run's network in PyTorch (ensembles and the ONNX backend: inference.load.load_model)."""
    run = find_run(run)
    return torch_model(run, load_run_meta(run), device, tta)


def torch_model(run: Path, meta: RunMeta, device: str = "auto", tta: str | None = None) -> Model:
    """The Model for a found run and its read model.json, its network in PyTorch on `device`."""
    dev = pick_device(device)
    # On a CPU batches arrive channels-last (decoded HxWx3); with the weights laid out alike oneDNN's
    # convolutions ran Lite0 at 128 px 2.2x as fast on 2 cores (62 -> 137 images/s; NCHW weights
    # against NHWC batches took a slow path). The training loop does the same. (Not measured on a GPU.)
    cpu = dev.type == "cpu"
    return Model(load_torch_net(run, meta).to(dev), meta, dev, run, channels_last=cpu).with_tta(tta)


def check_top_k(top_k) -> int:
    """top_k=: classes per answer, by `imgclf predict --top-k`'s declared rule (settings.predict: 1 to
    1000, the service's too), or one line naming the keyword."""
    from imgclf.settings.predict import RULES

    return RULES["top_k"].check("top_k", top_k)


def _head_only(name: str):
    """The class of a descriptor-with-a-head model (models.headonly) by its model.json name."""
    from imgclf.models.headonly import FACE_EMBEDDING, PERSON_DETECTOR

    if name == FACE_EMBEDDING:
        from imgclf.models.face.classifier import FaceEmbeddingClassifier

        return FaceEmbeddingClassifier
    if name == PERSON_DETECTOR:
        from imgclf.models.person.classifier import PersonDetectorClassifier

        return PersonDetectorClassifier
    from imgclf.models.texture import TextureClassifier

    return TextureClassifier


def load_torch_net(run: Path, meta: RunMeta) -> torch.nn.Module:
    """The run's network rebuilt from the registry by name, with its safetensors weights (CPU, eval mode)."""
    from imgclf.models import create_model, headonly
    from imgclf.store.checkpoint import load_weights
    from imgclf.store.run_schema import verify_weights

    arch = meta.architecture
    try:
        if arch.name in headonly.NAMES:  # a descriptor with a head (its leaderboard kept it): no registry entry
            norm = meta.normalization
            net = _head_only(arch.name).from_run(len(meta.classes), norm.mean, norm.std, meta.input.size, arch.kwargs)
        else:
            net = create_model(
                arch.name,
                num_classes=len(meta.classes),
                in_chans=arch.in_chans,
                img_size=meta.input.size,
                **arch.kwargs,
            )
    except UserError:
        raise
    except (TypeError, ValueError, RuntimeError, MemoryError) as e:  # kwargs edited into nonsense
        raise UserError(
            f"{run / 'model.json'}: architecture {arch.name} cannot be built from its recorded "
            f"kwargs ({type(e).__name__}: {_first_line(e)})"
        ) from None
    verify_weights(run, meta.weights_sha256)
    state = load_weights(run / "model.safetensors")
    bad = next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:  # a diverged training: every answer would be NaN
        raise UserError(
            f"{run / 'model.safetensors'} holds NaN or infinite weights ({bad}): the training diverged; "
            "train again with a lower --lr"
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(
            f"{run / 'model.safetensors'} does not fit the architecture in model.json ({_first_line(e)})"
        ) from None
    return net.eval()


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300]


def expand_inputs(inputs) -> Iterable:
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    for item in inputs:
        if is_web_url(item):
            yield item  # fetched when decoded (data.images): a failure is that image's error
        elif isinstance(item, (str, Path)):
            p = Path(item).expanduser()
            if (inside := files_to_predict(p)) is not None:
                yield from map(str, inside)
            elif p.exists():
                yield str(p)
            else:
                raise UserError(f"no such file or folder: {item}")
        else:
            yield item

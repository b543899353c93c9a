"""A trained model loaded from a run folder: predict and evaluate.

Loading reads JSON and safetensors only, rebuilding the network from the registry by name, so a
run folder from anywhere can never execute code on load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imgclf.core.device import amp_dtype, pick_device
from imgclf.core.errors import UserError
from imgclf.inference.predictor import Predictor
from imgclf.models.forward import predict_logits
from imgclf.store.run_meta import RunMeta, load_run_meta
from imgclf.store.runs import find_run


class Model(Predictor):
    """A run's network in PyTorch (or behind its nn.Module interface: OnnxNet)."""

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
        super().__init__(meta, path)
        self.net, self.device = net.eval(), device
        self.amp = amp_dtype(device, training=False)

    @property
    def backend(self) -> str:
        """What runs the network: "torch", or the name the ONNX Runtime wrapper gives itself ("onnx",
        "onnx-int8", "openvino", "openvino-int8": inference.load.BACKENDS)."""
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


class OnnxNet(torch.nn.Module):
    """forward(x: float (N, C, H, W) tensor) -> logits (N, classes) tensor on x's device, by ONNX Runtime."""

    def __init__(self, session, backend: str = "onnx"):
        super().__init__()
        self.session, self.backend = session, backend  # backend: "onnx" (fp32) or "onnx-int8"
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ascontiguousarray: TTA's shifted crops are strided views, and ORT wants dense buffers.
        feed = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run([self.output_name], {self.input_name: feed})
        return torch.from_numpy(logits).to(x.device)


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

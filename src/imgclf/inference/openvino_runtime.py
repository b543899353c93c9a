"""Run a run's exported graph in OpenVINO (pip install 'imgclf[openvino]'), behind the torch.nn.Module interface.

    model = imgclf.load("runs/photos-1", backend="openvino")        # RUN/model.onnx (exported when missing)
    model = imgclf.load("runs/photos-1", backend="openvino-int8")   # RUN/model.int8.onnx (imgclf export --int8)

OpenVINO reads the same ONNX files ONNX Runtime runs, the int8 one's QDQ nodes included, so there is
one fp32 and one int8 artefact per run whatever the engine. Like OnnxNet, `OpenVinoNet` takes the
normalised float batch and returns logits, so preprocessing, TTA, calibration and thresholds are the
predictor's own on every backend.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from imgclf.core.errors import UserError


class OpenVinoNet(torch.nn.Module):
    """forward(x: float (N, C, H, W) tensor) -> logits (N, classes) tensor on x's device, by OpenVINO on the CPU."""

    def __init__(self, compiled, backend: str = "openvino"):
        super().__init__()
        self.compiled, self.backend = compiled, backend
        # An infer request runs one call at a time; the service's --no-batching pool calls from
        # several threads at once, so each thread keeps its own.
        self._local = threading.local()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        feed = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        # Copied: the request's output buffer is overwritten by its next call.
        logits = np.array(request.infer({0: feed})[0], dtype=np.float32)
        return torch.from_numpy(logits).to(x.device)


def open_openvino(path: str | Path, backend: str = "openvino"):
    """OpenVinoNet for an ONNX file, compiled for this machine's CPU with as many threads as torch uses."""
    try:
        import openvino as ov
    except ImportError:
        raise UserError(f"--backend {backend} needs OpenVINO: pip install 'imgclf[openvino]'") from None
    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),  # the same share of the cores as the other backends
        "PERFORMANCE_HINT": "LATENCY",  # one stream: the predictor sends one batch at a time
        # fp32 stays fp32: on CPUs with bf16 instructions OpenVINO would otherwise compute in bf16,
        # and answers would drift from the export's checked ones.
        "INFERENCE_PRECISION_HINT": "f32",
    }
    try:
        return OpenVinoNet(core.compile_model(core.read_model(str(path)), "CPU", config), backend)
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with its own multi-line text
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"OpenVINO cannot run {path} ({type(e).__name__}: {first})") from None


def load_openvino_net(run: Path, backend: str, device: str = "auto"):
    """OpenVinoNet for the run's fp32 (`openvino`) or int8 (`openvino-int8`) ONNX file, and the CPU."""
    import importlib.util

    from imgclf.inference.onnx_export import fresh_onnx
    from imgclf.inference.quantize import int8_path

    if importlib.util.find_spec("openvino") is None:  # before an export that would be for nothing
        raise UserError(f"--backend {backend} needs OpenVINO: pip install 'imgclf[openvino]'")
    if device not in ("auto", "cpu"):
        raise UserError(f"--backend {backend} runs on the CPU; use --device cpu (or auto), not {device}")
    path = int8_path(run) if backend == "openvino-int8" else fresh_onnx(run)
    return open_openvino(path, backend), torch.device("cpu")

"""Run a run's network in ONNX Runtime behind the torch.nn.Module interface.

    model = imgclf.load("runs/photos-1", backend="onnx")     # exports RUN/model.onnx on first use
    model.predict("photos/new.jpg")

`OnnxNet` takes the normalised float batch a torch network would and returns logits as a tensor,
so the predictor's batching, test-time augmentation, calibration and thresholds run unchanged on
either backend (see imgclf.inference.onnx_export for the graph's input contract).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from imgclf.core.device import check_int8_graph, ort_options
from imgclf.core.errors import UserError


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


def open_session(path: str | Path, device: torch.device | None = None):
    """An InferenceSession on `path` (CUDA when `device` is CUDA and ORT has that provider, else CPU);
    a file ONNX Runtime cannot read is a UserError naming it."""
    import onnxruntime as ort

    opts = ort_options()
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        else:
            print(
                "note: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); running ONNX on CPU",
                file=sys.stderr,
            )
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
        raise UserError(
            f"{path} is not an ONNX model ONNX Runtime can run ({type(e).__name__}: "
            f"{str(e).strip()[:200]}); re-export it with: imgclf export {Path(path).parent}"
        ) from None
    check_int8_graph(path, session)
    return session


def model_props(proto) -> dict[str, str]:
    """An ONNX model's metadata_props as a dict."""
    return {p.key: p.value for p in proto.metadata_props}

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

from imgclf.core.device import ort_options
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
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
        raise UserError(
            f"{path} is not an ONNX model ONNX Runtime can run ({type(e).__name__}: "
            f"{str(e).strip()[:200]}); re-export it with: imgclf export {Path(path).parent}"
        ) from None


def int8_file(fp32: Path) -> Path:
    """Where the int8 graph of the fp32 ONNX graph `fp32` lives: beside it."""
    return fp32.with_name(fp32.name.replace(".onnx", ".int8.onnx"))


def int8_beside(fp32: Path, what: str, other: str, make: str) -> Path:
    """The int8 graph of `fp32` when it was made from that very file (its sha256, recorded in the int8
    graph at export); else one line: `what` has none, or it was made from `other`; `make` says how to
    make it (never made here: it needs the user's photos, and may be refused)."""
    import onnx

    from imgclf.models.packaged import sha256

    path = int8_file(fp32)
    if not path.is_file():
        raise UserError(f"{what} has no int8 model; make one with: {make}")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if props.get("weights_sha256") != sha256(fp32):
        raise UserError(f"{path} was made from {other}; make it again: {make}")
    return path

"""Run a run's network in ONNX Runtime, without torch.

    model = imgclf.load("runs/photos-1", backend="onnx")     # exports RUN/model.onnx on first use
    model.predict("photos/new.jpg")

`OnnxModel` is a Predictor whose forward pass is ONNX Runtime on numpy (models.arrays: the same
standardisation, batches and test-time views as PyTorch's), so `imgclf predict` on an exported run
never imports torch (one photo of the default Lite0: 0.9-1.1 s against 3.9-4.7 s with torch
loaded, on 2 cores). What needs torch (an explanation, a scan's crop model, export checks) asks for
`.net` (inference.model.OnnxNet), and pays the import then.
See imgclf.inference.onnx_export for the graph's input contract.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from imgclf.core.device import check_int8_graph, ort_options
from imgclf.core.errors import UserError
from imgclf.inference.predictor import Predictor
from imgclf.models.arrays import logits_of
from imgclf.store.run_meta import RunMeta


def open_session(path: str | Path, device=None, threads: int | None = None):
    """An InferenceSession on `path` (CUDA when `device` is CUDA and ORT has that provider, else CPU);
    a file ONNX Runtime cannot read is a UserError naming it. `threads`: a run's own (default: as
    many as torch uses, core.device.ort_options)."""
    import onnxruntime as ort

    opts = ort_options()
    if threads:
        opts.intra_op_num_threads = threads
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


class OnnxModel(Predictor):
    """A run's classifier in ONNX Runtime, from an open session on its graph (the CPU, or CUDA where the
    session has that provider: ORT copies the numpy batches over)."""

    amp = None
    channels_last = False

    def __init__(self, session, meta: RunMeta, path: Path | None = None, backend: str = "onnx"):
        super().__init__(meta, path)
        self.session, self._backend, self._net = session, backend, None
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def device(self):
        import torch

        return torch.device("cpu")

    @property
    def device_name(self) -> str:
        # torch-free: a service that answers in ONNX Runtime prints this at start without importing torch
        return "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    @property
    def net(self):
        """The session behind torch's nn.Module interface, for what runs networks in torch."""
        if self._net is None:
            from imgclf.inference.model import OnnxNet

            self._net = OnnxNet(self.session, self._backend)
        return self._net

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        norm = self.meta.normalization

        def run(x: np.ndarray) -> np.ndarray:
            return self.session.run([self.output_name], {self.input_name: x})[0]

        return logits_of(run, images, norm.mean, norm.std, self.tta)

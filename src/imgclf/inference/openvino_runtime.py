"""Run a run's exported graph in OpenVINO (pip install 'imgclf[openvino]'), behind ONNX Runtime's session interface.

    model = imgclf.load("runs/photos-1", backend="openvino")        # RUN/model.onnx (exported when missing)
    model = imgclf.load("runs/photos-1", backend="openvino-int8")   # RUN/model.int8.onnx (imgclf export --int8)

OpenVINO reads the same ONNX files ONNX Runtime runs, the int8 one's QDQ nodes included, so there is
one fp32 and one int8 artefact per run whatever the engine. `OpenVinoSession` answers the calls
imgclf makes of an ONNX Runtime session (`run`, `get_inputs`, `get_outputs`, `get_providers`), so a
classifier in OpenVINO is the same torch-free OnnxModel (preprocessing, TTA, calibration and
thresholds as on every backend), and the person detector runs it the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from imgclf.core.device import threads_like_torch
from imgclf.core.errors import UserError


class OpenVinoSession:
    """An OpenVINO-compiled graph with the ONNX Runtime session calls imgclf uses, on the CPU."""

    # The detector's views run in turn here (detection.engines.run_each): two of them at once from a
    # thread pool once hung in a test run, both threads inside OpenVINO's input copy.
    one_run_at_a_time = True

    def __init__(self, compiled, backend: str = "openvino", threads: int = 0):
        self.compiled, self.backend = compiled, backend
        self._options = SimpleNamespace(intra_op_num_threads=threads)  # 0: every core, as ORT says it
        self._inputs = [SimpleNamespace(name=port.get_any_name()) for port in compiled.inputs]
        self._outputs = [SimpleNamespace(name=port.get_any_name()) for port in compiled.outputs]
        # An infer request runs one call at a time; the service's --no-batching pool calls from
        # several threads at once, so each thread keeps its own.
        self._local = threading.local()

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def get_session_options(self):
        return self._options  # the service sizes its pool of forwards by these threads (serving.batching)

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]  # what a CPU session says: OpenVINO here runs on the CPU only

    def run(self, names, feeds: dict) -> list[np.ndarray]:
        """The outputs `names` (None: all) for the one input in `feeds`, as ONNX Runtime returns them."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        (x,) = feeds.values()  # imgclf's graphs take one input
        out = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        wanted = range(len(self._outputs)) if names is None else [self._index(n) for n in names]
        # Copied: the request's output buffers are overwritten by its next call.
        return [np.array(out[i], dtype=np.float32) for i in wanted]

    def _index(self, name: str) -> int:
        return next(i for i, o in enumerate(self._outputs) if o.name == name)


def open_openvino(path: str | Path, backend: str = "openvino") -> OpenVinoSession:
    """OpenVinoSession for an ONNX file, compiled for this machine's CPU."""
    try:
        import openvino as ov
    except ImportError:
        raise UserError(f"--backend {backend} needs OpenVINO: pip install 'imgclf[openvino]'") from None
    core = ov.Core()
    config = {
        "PERFORMANCE_HINT": "LATENCY",  # one stream: the predictor sends one batch at a time
        # fp32 stays fp32: on CPUs with bf16 instructions OpenVINO would otherwise compute in bf16,
        # and answers would drift from the export's checked ones.
        "INFERENCE_PRECISION_HINT": "f32",
    }
    threads = threads_like_torch()
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads  # the same share of the cores as the other engines
    try:
        return OpenVinoSession(core.compile_model(core.read_model(str(path)), "CPU", config), backend, threads)
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with its own multi-line text
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"OpenVINO cannot run {path} ({type(e).__name__}: {first})") from None


def load_openvino_session(run: Path, backend: str, device: str = "auto") -> OpenVinoSession:
    """OpenVinoSession for the run's fp32 (`openvino`) or int8 (`openvino-int8`) ONNX file."""
    import importlib.util

    from imgclf.inference.onnx_export import fresh_onnx
    from imgclf.inference.quantize import int8_path

    if importlib.util.find_spec("openvino") is None:  # before an export that would be for nothing
        raise UserError(f"--backend {backend} needs OpenVINO: pip install 'imgclf[openvino]'")
    if device not in ("auto", "cpu"):
        raise UserError(f"--backend {backend} runs on the CPU; use --device cpu (or auto), not {device}")
    return open_openvino(int8_path(run) if backend == "openvino-int8" else fresh_onnx(run), backend)

"""Load what a run folder holds: one network (PyTorch or ONNX Runtime) or an ensemble bundle. The
PyTorch modules are imported only where the run needs them: an exported run predicts without torch."""

from __future__ import annotations

from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.inference.onnx_runtime import OnnxModel
from imgclf.store.run_meta import load_run_meta
from imgclf.store.runs import find_run

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8")


def load_model(run: str | Path, device: str = "auto", tta: str | None = None, backend: str = "torch"):
    """The trained model in RUN (a run folder, REGISTRY/ALIAS or an ensemble bundle). `backend="auto"`:
    ONNX Runtime on a CPU where RUN/model.onnx holds the run's weights (training on a CPU writes it),
    else PyTorch; it never exports on its own. `backend="onnx"`
    runs the network in ONNX Runtime from RUN/model.onnx (exported first when missing or made from
    other weights), `backend="onnx-int8"` from RUN/model.int8.onnx (made by `imgclf export RUN
    --int8`); `openvino` and `openvino-int8` run those two files in OpenVINO (the openvino extra);
    preprocessing, TTA and calibration stay the same."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    run = find_run(run)
    meta = load_run_meta(run)
    if backend == "auto":
        session = _current_onnx(run, meta, device)
        if session is not None:
            return OnnxModel(session, meta, run).with_tta(tta)
        backend = "torch"
    if meta.is_ensemble:
        from imgclf.inference.ensemble import EnsembleModel

        if backend != "torch":
            raise UserError(
                f"{run} is an ensemble bundle, which runs on the torch backend only; "
                f"drop --backend {backend} (or export and load its member runs one by one)"
            )
        return EnsembleModel.from_bundle(run, meta, device, tta)
    if backend == "onnx":
        from imgclf.inference.onnx_export import load_onnx_session

        return OnnxModel(load_onnx_session(run, device), meta, run).with_tta(tta)
    if backend == "onnx-int8":
        from imgclf.inference.quantize import load_int8_session

        return OnnxModel(load_int8_session(run, device), meta, run, backend).with_tta(tta)
    if backend.startswith("openvino"):  # the same torch-free predictor, OpenVINO answering ORT's calls
        from imgclf.inference.openvino_runtime import load_openvino_session

        return OnnxModel(load_openvino_session(run, backend, device), meta, run, backend).with_tta(tta)
    from imgclf.inference.model import torch_model

    return torch_model(run, meta, device, tta)


def _current_onnx(run: Path, meta, device: str = "auto"):
    """What backend auto stands for: an ONNX Runtime session on a CPU where RUN/model.onnx was made from
    the run's weights, else None: PyTorch. On 2 cores ONNX Runtime predicts the default Lite0 at
    128 px at 180 images/s against PyTorch's 85-89 (the same answers: training checks the file against
    PyTorch); exporting one first would cost ~8 s, so a run without the file (trained on a GPU, or
    copied without it) runs in PyTorch."""
    from imgclf.core.device import on_cpu
    from imgclf.inference.onnx_export import load_onnx_session

    if meta.is_ensemble or not on_cpu(device):
        return None
    return load_onnx_session(run, device, export=False)

"""What runs a detector's graph on a CPU: ONNX Runtime on its fp32 graph (made once: onnx_file) or
on the int8 one that `imgclf export NAME --int8` made (detection/int8.py), or OpenVINO on the fp32
one. The detector calls `session.run(None, {"input": x})` whichever it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.core.device import device_type
from imgclf.core.errors import UserError
from imgclf.settings.checks import DETECTOR_BACKENDS

if TYPE_CHECKING:
    from imgclf.models.person.anchors import DecodedSSD

# No openvino-int8 (which the classifier has): OpenVINO 2026.4 ran the detector's int8 graph at 86 ms
# a photo, 12x its fp32 graph's 7 ms and ONNX Runtime's int8 7 ms (2 threads, docs/benchmarks/int8.md).
BACKENDS = DETECTOR_BACKENDS  # declared with the settings that name them (settings.checks)
ENGINES = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime, int8", "openvino": "OpenVINO"}


def resolved(backend: str, device) -> str:
    """The engine `backend` stands for on `device` (a torch.device, or "cpu"): auto is ONNX Runtime on a
    CPU, PyTorch on a GPU."""
    if backend != "auto":
        return backend
    return "onnx" if device_type(device) == "cpu" else "torch"


def open_engine(backend: str, fp32: Path, device, name: str):
    """What runs the detector's graph for `backend` (not torch): an ONNX Runtime session on the fp32
    graph `fp32` or its int8 one, or OpenVINO on `fp32` behind the same `run(None, {"input": x})`."""
    from imgclf.inference.onnx_runtime import open_session

    path = int8_path(fp32, name) if backend.endswith("-int8") else fp32
    if backend.startswith("openvino"):
        if device_type(device) != "cpu":
            raise UserError(f"--backend {backend} runs on the CPU; use --device cpu (or auto), not {device}")
        from imgclf.inference.openvino_runtime import open_openvino

        return open_openvino(path, backend)
    if backend == "onnx-int8" and device_type(device) != "cpu":
        raise UserError(f"--backend onnx-int8 runs on the CPU; use --device cpu (or auto), not {device}")
    if device_type(device) != "cpu":
        return open_session(path, device)
    return open_session(path, threads=view_threads())


# Views (a photo and its mirror, tiles, a batch of photos) each run alone, this many at once, each on
# its share of the cores: on 2 cores two one-thread runs at once took 24 ms where two two-thread runs in
# turn took 34 (a photo alone: 22 ms on one thread, 17 on two). This network is too small to keep
# many threads busy in one run.
VIEWS_AT_ONCE = 2
_pool = None


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads: it starts its own pool


os.register_at_fork(after_in_child=_forget_pool)


def view_threads() -> int:
    """Threads for one run of a view: the cores torch would use, shared by VIEWS_AT_ONCE runs."""
    from imgclf.core.cpus import usable_cpus
    from imgclf.core.device import threads_like_torch

    return max(1, (threads_like_torch() or usable_cpus()) // VIEWS_AT_ONCE)


def run_each(session, x) -> list:
    """`session.run(None, {"input": view})` for each view of `x` (N, 3, S, S) alone: an ONNX Runtime
    session VIEWS_AT_ONCE at a time (it lets go of the GIL while it runs), a session that says
    `one_run_at_a_time` (OpenVINO's) in turn; the outputs in order."""
    from concurrent.futures import ThreadPoolExecutor

    global _pool

    def run(i: int):
        return session.run(None, {"input": x[i : i + 1]})

    if len(x) < 2 or getattr(session, "one_run_at_a_time", False):
        return [run(i) for i in range(len(x))]
    if _pool is None:
        _pool = ThreadPoolExecutor(VIEWS_AT_ONCE, thread_name_prefix="imgclf-views")
    return list(_pool.map(run, range(len(x))))


def int8_path(fp32: Path, name: str) -> Path:
    """The int8 graph of the detector's fp32 graph, checked to be made from it (inference.onnx_runtime)."""
    from imgclf.models.packaged import int8_beside
    from imgclf.store.runs import PRETRAINED_DETECTORS

    make = f"imgclf export {name} --int8" + (" --calibration PHOTOS/" if name in PRETRAINED_DETECTORS else "")
    return int8_beside(fp32, f"the detector {name}", f"another graph than the detector {name} has now", make)


def onnx_file(model: DecodedSSD, path: Path) -> Path:
    """`model` exported to ONNX at `path` once (atomically), reused after."""
    if not path.is_file():
        export_onnx(model, path)
    return path


def export_onnx(model: DecodedSSD, path: Path) -> None:
    """uint8-range float RGB `input` (N, 3, 300, 300) -> `boxes` (N, A, 4) normalised x1 y1 x2 y2 and
    `scores` (N, A, classes), batch axis dynamic; written atomically."""
    import torch

    from imgclf.core.files import atomic_path
    from imgclf.models.person import SIZE
    from imgclf.models.tracing import trace_onnx

    model = model.to("cpu").eval()
    # Traced and optimised (models.tracing): the box decoding's constant reshapes folded, the graph
    # ran a batch of 4 in 41 ms against 85 ms as traced plainly (2 cores).
    graph = trace_onnx(model, torch.zeros(1, 3, SIZE, SIZE), "input", ["boxes", "scores"])
    with atomic_path(path) as tmp:
        tmp.write_bytes(graph)

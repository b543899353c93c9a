"""What runs the face embedding network (resnet.py) on a CPU: ONNX Runtime, on its fp32 graph (exported
into imgclf's cache on first use) or on the int8 graph `imgclf export faces --int8` made from it
(faces/int8.py), which is never made here: it needs photos with faces, and may be refused.
"""

from __future__ import annotations

from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.settings.checks import FACES_BACKENDS

CHIP = 150  # px: the aligned face the network reads (resnet.CHIP)
BACKENDS = FACES_BACKENDS  # the embedder's engines (FaceModel), declared in settings.checks


def session(make_net, path: Path, int8: bool = False):
    """An ONNX Runtime CPU session, on every core this process may use, on the network `make_net()`
    builds, exported to ONNX at `path` (once; reused after, and then no network is built, nor torch
    imported); `int8`: on the int8 graph made from that one."""
    import onnxruntime as ort

    from imgclf.core.cpus import usable_cpus
    from imgclf.core.device import check_int8_graph, ort_options

    if not path.is_file():
        export(make_net(), path)
    if int8:
        path = int8_path(path)
    opts = ort_options()
    opts.intra_op_num_threads = usable_cpus()
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
        raise UserError(
            f"{path} is not a usable ONNX file ({type(e).__name__}): delete it and it is made again"
        ) from None
    check_int8_graph(path, session)
    return session


def export(net, path: Path) -> None:
    """`net` as an ONNX graph at `path`, written atomically, its batch axis dynamic."""
    import torch

    from imgclf.core.files import atomic_path
    from imgclf.models.tracing import trace_onnx

    graph = trace_onnx(net.to("cpu").eval(), torch.zeros(1, 3, CHIP, CHIP), "input", ["embedding"])
    with atomic_path(path) as tmp:
        tmp.write_bytes(graph)


def int8_path(fp32: Path) -> Path:
    """The int8 graph of the embedder's fp32 graph, checked to be made from it (inference.onnx_runtime)."""
    from imgclf.models.packaged import int8_beside

    make = "imgclf export faces --int8 --calibration PHOTOS/"
    return int8_beside(fp32, "the face embedder", "another face network than the one installed", make)

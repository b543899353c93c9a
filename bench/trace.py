"""Benchmark: how the network's ONNX graph is made, and how fast ONNX Runtime runs it on a CPU.

Three graphs of the same network (random weights: speed does not depend on them), each run by ONNX
Runtime with imgclf's session options:
- plain trace: the TorchScript exporter as training used it before 2026-11-29 (the linear probe, the
  evaluation after training and the installed RUN/model.onnx);
- imgclf's trace (models.tracing.trace_onnx): the same exporter with timm's "same" padding fixed for
  the input size, then onnxscript's optimiser;
- torch.export: the dynamo exporter (`imgclf export`'s first choice), the speed to match.
Columns: export seconds, images/s over batches of 64 (the detector: 4), the median of 30
single-image calls, and the largest logit difference against PyTorch on the batch (the detector:
its boxes against the plain trace's). Then the same for the pretrained person detector's graph
(plain trace against imgclf's). Not a test: nothing is asserted.

    python bench/trace.py
    python bench/trace.py --models lite0 --sizes 128
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
import warnings

import numpy as np
import tables  # bench/tables.py: the table printed and written as CSV
import torch


def plain_trace(net, example, outputs=("logits",)) -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(
        net, (example,), buf, input_names=["input"], output_names=list(outputs), opset_version=17, dynamo=False,
        dynamic_axes={n: {0: "batch"} for n in ["input", *outputs]},
    )  # fmt: skip
    return buf.getvalue()


def torch_export(net, example) -> bytes:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        torch.onnx.export(
            net, (torch.cat([example, example]),), path, input_names=["input"], output_names=["logits"],
            dynamo=True, external_data=False, dynamic_shapes=({0: torch.export.Dim("batch")},),
        )  # fmt: skip
        return open(path, "rb").read()


def detector_rows(table) -> None:
    """The pretrained person detector (SSDLite, 300 px, its box decoding in the graph): plain trace
    against imgclf's, batches of 4 photos, and the largest box difference between the two."""
    from imgclf.core.console import silent_stdout
    from imgclf.detection.detector import SIZE, load_detector
    from imgclf.models.tracing import trace_onnx

    net = load_detector("person", "cpu", backend="torch").net.eval()
    example = torch.zeros(1, 3, SIZE, SIZE)
    x = np.random.default_rng(0).uniform(0, 255, (4, 3, SIZE, SIZE)).astype(np.float32)
    outs = ["boxes", "scores"]
    makers = {
        "plain trace": lambda: plain_trace(net, example, outs),
        "imgclf's trace": lambda: trace_onnx(net, example, "input", outs),
    }
    first = None
    for label, make in makers.items():
        start = time.perf_counter()
        with silent_stdout():
            graph = make()
        seconds = time.perf_counter() - start
        per_s, one_ms, got = measure(graph, x)
        first = got if first is None else first
        diff = float(np.abs(got - first).max())
        table.add(["person detector", SIZE, label, *_cells(seconds, per_s, one_ms, diff)])


def _cells(seconds: float, per_s: float, one_ms: float, diff: float) -> list:
    return [tables.V(seconds, ".1f"), tables.V(per_s, ".0f"), tables.V(one_ms, ".1f"), tables.V(diff, ".1e")]


def measure(graph: bytes, x: np.ndarray) -> tuple[float, float, np.ndarray]:
    import onnxruntime as ort

    from imgclf.core.device import ort_options

    s = ort.InferenceSession(graph, sess_options=ort_options(), providers=["CPUExecutionProvider"])
    out = s.run(None, {"input": x})[0]
    passes = []  # the median pass: this VM's neighbours make single passes noisy
    for _ in range(7):
        start = time.perf_counter()
        s.run(None, {"input": x})
        passes.append(time.perf_counter() - start)
    per_s = len(x) / statistics.median(passes)
    one = []
    for i in range(30):
        t = time.perf_counter()
        s.run(None, {"input": x[i % len(x)][None]})
        one.append(time.perf_counter() - t)
    return per_s, 1000 * statistics.median(one), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="lite0,timm/resnet18", help="comma-separated imgclf model names")
    ap.add_argument("--sizes", default="96,128,224")
    ap.add_argument("--no-detector", action="store_true", help="leave out the person detector's rows")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from imgclf.core.console import silent_stdout
    from imgclf.models import create_model
    from imgclf.models.tracing import trace_onnx

    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    header = ["model", "px", "graph", "export s", "img/s (batch 64)", "batch-1 ms", "max logit diff"]
    table = tables.Table("graphs", header, title="")
    for name in args.models.split(","):
        for side in map(int, args.sizes.split(",")):
            net = create_model(name, num_classes=10, img_size=side).eval()
            example = torch.zeros(1, 3, side, side)
            x = np.random.default_rng(0).standard_normal((64, 3, side, side), dtype=np.float32)
            with torch.no_grad():
                want = net(torch.from_numpy(x)).numpy()
            makers = {
                "plain trace": plain_trace,
                "imgclf's trace": lambda n, e: trace_onnx(n, e, "input", ["logits"]),
                "torch.export": torch_export,
            }
            for label, make in makers.items():
                start = time.perf_counter()
                with silent_stdout():
                    graph = make(net, example)
                seconds = time.perf_counter() - start
                per_s, one_ms, got = measure(graph, x)
                diff = float(np.abs(got - want).max())
                table.add([name, side, label, *_cells(seconds, per_s, one_ms, diff)])
    if not args.no_detector:
        detector_rows(table)


if __name__ == "__main__":
    main()

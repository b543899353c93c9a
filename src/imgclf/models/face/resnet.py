"""dlib's face embedding network (dlib_face_recognition_resnet_model_v1.dat) rebuilt in PyTorch, its
weights read straight from dlib's file, run in ONNX Runtime or PyTorch: the 128 numbers dlib's
compute_face_descriptor gives for a 150x150 chip, many times faster than dlib-bin (built without BLAS).

    embed = Embedder(dat_path, sha256)      # converted once into imgclf's cache, then reused
    embed(chips)                            # (N, 150, 150, 3) uint8 RGB -> (N, 128) float32

The file is dlib's `serialize(net)`. Each layer writes its subnetwork before its own details, so
after the loss layer come one version number per layer (outermost first), the input layer, then
every layer's details in the order they compute. Tags and skips write only their version: the
wiring (which tag a skip or add_prev reads) is in dlib's C++ type, not in the file, so FaceResNet
spells it out (dlib's examples/dnn_face_recognition_ex.cpp) and the conversion checks each layer of
the file against it. torch and onnxruntime are imported on first use; reading the file needs NumPy.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError

EXPORT = "v1"  # in the cached files' names: a change to FaceResNet or the conversion gets new files
CHIP = 150  # px: the aligned face the network reads
BATCH = 16  # chips per run: on 2 cores ONNX Runtime took 7 ms a chip at 16, 9 ms alone; bounds memory
# (channels, residual blocks, whether the first one halves the map) of alevel4 .. alevel0, in the
# order they run (dlib's template nests them, so the innermost, alevel4, runs first).
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class DatError(ValueError):
    """The file is not what the reader expects: damaged, cut short, or another network."""


class _Reader:
    """dlib's serialization (dlib/serialize.h, dlib/float_details.h, dlib/dnn/tensor.h) over bytes."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DatError(f"it ends at byte {len(self.data)}, inside a record starting near byte {self.pos}")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def int(self) -> int:
        # A control byte (bit 7: negative; low 4 bits: how many bytes follow), then |value| little-endian.
        ctrl = self.take(1)[0]
        if ctrl & 0x0F > 8 or ctrl & 0x70:
            raise DatError(f"byte {self.pos - 1} is not one of dlib's integers")
        value = int.from_bytes(self.take(ctrl & 0x0F), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        # float_details: mantissa * 2**exponent. The code writes the mantissa first, though the
        # comment atop serialize.h says the exponent comes first. 32000-32002: inf, -inf, nan.
        mantissa, exponent = self.int(), self.int()
        return {32000: math.inf, 32001: -math.inf, 32002: math.nan}.get(exponent, math.ldexp(mantissa, exponent))

    def string(self) -> str:
        return self.take(self.int()).decode("latin-1")

    def at_name(self) -> bool:
        """Whether a layer's name (its length, then letters) starts here, not a version number: an
        integer's control byte never has bits 0x70 set, every ASCII letter has 0x40."""
        return self.data[self.pos + 2 : self.pos + 3].isalpha()

    def tensor(self) -> np.ndarray:
        """(num_samples, k, nr, nc) float32, k-major like NCHW. Version 2 (dlib since 2016) stores
        raw little-endian IEEE floats; version 1 a float_details per number."""
        version, shape = self.int(), tuple(self.int() for _ in range(4))  # num_samples, k, nr, nc
        if version == 2:
            return np.frombuffer(self.take(4 * math.prod(shape)), "<f4").astype(np.float32).reshape(shape)
        if version == 1:
            return np.array([self.float() for _ in range(math.prod(shape))], np.float32).reshape(shape)
        raise DatError(f"a tensor of version {version} near byte {self.pos}")

    def alias(self) -> tuple[int, ...]:
        """An alias_tensor: only the shape of a slice of the layer's params tensor."""
        if self.int() != 1:
            raise DatError(f"an alias_tensor of an unknown version near byte {self.pos}")
        return tuple(self.int() for _ in range(4))


def _con(r: _Reader) -> dict:
    params = r.tensor().reshape(-1)  # all filters, then the biases
    v = [r.int() for _ in range(7)]  # filters, rows, cols, stride y, x, padding y, x
    filters, _ = r.alias(), r.alias()
    [r.float() for _ in range(4)]  # learning-rate and weight-decay multipliers: training only
    # (out, in, rows, cols): torch's layout; and dlib's conv is a correlation, as torch's is.
    weight, bias = params[: math.prod(filters)].reshape(filters), params[math.prod(filters) :]
    return {"weight": weight, "bias": bias, "stride": np.array(v[3:5]), "padding": np.array(v[5:7])}


def _affine(r: _Reader) -> dict:
    params, gamma, _ = r.tensor().reshape(-1), r.alias(), r.alias()
    n = math.prod(gamma)
    # mode 0: a gamma and beta per channel (after a conv); 1: per value (after an fc).
    return {"gamma": params[:n], "beta": params[n:], "mode": np.array(r.int())}


def _pool(r: _Reader) -> dict:
    v = [r.int() for _ in range(6)]  # window rows, cols (0: the whole map), stride y, x, padding y, x
    return {"size": np.array(v[:2]), "stride": np.array(v[2:4]), "padding": np.array(v[4:6])}


def _fc(r: _Reader) -> dict:
    outputs, inputs, params = r.int(), r.int(), r.tensor().reshape(-1)
    r.alias(), r.alias()
    bias = r.int() == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    [r.float() for _ in range(4)]
    weight = params[: inputs * outputs].reshape(inputs, outputs).T  # dlib computes x @ W
    return {"weight": weight, **({"bias": params[inputs * outputs :]} if bias else {})}


def _input_rgb(r: _Reader) -> dict:
    mean = [r.float() for _ in range(3)]  # red, green, blue: dlib feeds (pixel - mean) / 256
    return {"mean": np.array(mean, np.float32), "size": np.array([r.int(), r.int()])}


READERS = {  # dlib's name (with its format's version) for each layer type -> its reader
    "con_4": _con,
    "affine_": _affine,
    "relu_": lambda r: {},
    "max_pool_2": _pool,
    "avg_pool_2": _pool,
    "add_prev_": lambda r: {},
    "fc_2": _fc,
    "input_rgb_image_sized": _input_rgb,
    "loss_metric_2": lambda r: {"margin": np.array(r.float()), "distance_threshold": np.array(r.float())},
}


def _layer(r: _Reader) -> tuple[str, dict]:
    at, name = r.pos, r.string()
    if name not in READERS:
        raise DatError(f"a layer of unknown type {name[:40]!r} at byte {at}")
    return name, READERS[name](r)


def _parse(data: bytes) -> list[tuple[str, dict]]:
    r = _Reader(data)
    if r.int() != 1:
        raise DatError("it does not start with a dlib loss layer")
    loss = _layer(r)
    versions = []  # add_layer: 2 (3 for the one on the input layer); tag and skip layers: 1
    while not r.at_name():
        versions.append(r.int())
    layers = [_layer(r)]
    while r.pos < len(data):
        layers.append(_layer(r))
        # Then its add_layer's own state (dlib/dnn/core.h): 3 flags and 3 tensors, left over from
        # training (empty in a cleaned network); on the input layer a 4th number in version 3.
        if r.take(3).strip(b"01"):  # dlib writes a bool as the ASCII digit
            raise DatError(f"bytes {r.pos - 3}-{r.pos - 1} are not 3 of dlib's booleans")
        [r.tensor() for _ in range(3)]
        if len(layers) == 2 and versions[-1:] == [3]:
            r.int()
    if len(layers) - 1 != sum(v != 1 for v in versions):
        raise DatError(f"{len(layers) - 1} layers follow {sum(v != 1 for v in versions)} layer headers")
    return layers + [loss]


def read_dat(path: str | Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The layers of a serialized dlib network in the order they compute, the input layer first and
    the loss layer last: (dlib's layer name, its numbers), e.g. ("con_4", {"weight", "bias",
    "stride", "padding"}). Tags and skips are not in the file. A damaged file is a one-line UserError."""
    path = Path(path)
    try:
        return _parse(path.read_bytes())
    except (ValueError, OverflowError) as e:  # DatError, or numbers that do not fit their shapes
        raise UserError(f"{path} is not a readable dlib network file: {e}") from None


# The network: dlib's examples/dnn_face_recognition_ex.cpp.
def _add_zero_padded(a, b):
    """dlib's add_prev: tensors of different shapes add as if each were zero-padded at the end of every
    dimension (channels, rows, columns) to the larger. After a downsampling block the shortcut has
    fewer channels; and on an 8x8 map the block's strided 3x3 conv gives 3x3 where the shortcut's 2x2
    average pool gives 4x4 (and 1x1 against 2x2 on 4x4), so the block fills only the top-left corner."""
    import torch.nn.functional as F

    if a.shape == b.shape:
        return a + b
    k, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    a, b = (F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, k - t.shape[1])) for t in (a, b))
    return a + b


@functools.cache
def _face_resnet():
    """The FaceResNet class, defined on first use: torch is imported only then."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def conv(cin: int, cout: int, size: int, stride: int) -> nn.Conv2d:
        # dlib pads by size // 2 only at stride 1: its strided convolutions are not padded.
        return nn.Conv2d(cin, cout, size, stride, size // 2 if stride == 1 else 0)

    class Affine(nn.Module):
        """dlib's affine layer, a batch norm folded for inference: x * gamma + beta per channel."""

        def __init__(self, channels: int):
            super().__init__()
            self.gamma, self.beta = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

        def forward(self, x):
            return x * self.gamma[:, None, None] + self.beta[:, None, None]

    class Residual(nn.Module):
        """ares / ares_down: relu(two 3x3 convs, each followed by an affine, plus the input); a
        downsampling block strides its first conv by 2 and 2x2-average-pools the shortcut."""

        def __init__(self, cin: int, cout: int, down: bool):
            super().__init__()
            self.down = down
            self.conv1, self.affine1 = conv(cin, cout, 3, 2 if down else 1), Affine(cout)
            self.conv2, self.affine2 = conv(cout, cout, 3, 1), Affine(cout)

        def forward(self, x):
            y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
            return F.relu(_add_zero_padded(y, F.avg_pool2d(x, 2) if self.down else x))

    class FaceResNet(nn.Module):
        """dlib's face embedding network: float RGB (N, 3, 150, 150) in 0..255 -> (N, 128), the raw
        descriptor dlib returns (not scaled to unit length)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.zeros(3))  # the input layer's, read from the file
            self.conv, self.affine = conv(3, 32, 7, 2), Affine(32)
            blocks, cin = [], 32
            for cout, n, down in LEVELS:
                for i in range(n):
                    blocks.append(Residual(cin, cout, down and i == 0))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(256, 128, bias=False)

        def forward(self, x):
            x = (x - self.mean[:, None, None]) / 256.0  # dlib's input_rgb_image
            x = F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)
            return self.fc(self.blocks(x).mean((2, 3)))  # avg_pool_everything, fc_no_bias

    return FaceResNet


def __getattr__(name: str):
    if name == "FaceResNet":  # resnet.FaceResNet without importing torch along with this module
        return _face_resnet()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dlib_layers(net) -> list[tuple[str, str, dict]]:
    """Each layer of dlib's file in order: (its name, the FaceResNet submodule taking its numbers or
    "", the settings the file must give it)."""

    def con(name: str) -> list:
        c, affine = net.get_submodule(name), name.replace("conv", "affine")
        return [("con_4", name, {"stride": c.stride, "padding": c.padding}), ("affine_", affine, {"mode": 0})]

    def pool(kind: str, size: int, stride: int) -> tuple:
        return (kind, "", {"size": (size, size), "stride": (stride, stride), "padding": (0, 0)})

    relu, add = ("relu_", "", {}), ("add_prev_", "", {})
    out = [("input_rgb_image_sized", "", {"size": (CHIP, CHIP)}), *con("conv"), relu, pool("max_pool_2", 3, 2)]
    for i, block in enumerate(net.blocks):
        shortcut = [pool("avg_pool_2", 2, 2)] if block.down else []
        out += [*con(f"blocks.{i}.conv1"), relu, *con(f"blocks.{i}.conv2"), *shortcut, add, relu]
    # avg_pool_everything is avg_pool_<0,0,1,1>: a window of 0 is the whole map.
    return out + [pool("avg_pool_2", 0, 1), ("fc_2", "fc", {}), ("loss_metric_2", "", {})]


def state_dict(layers: list[tuple[str, dict]], net) -> dict[str, np.ndarray]:
    """read_dat's layers as `net`'s (a FaceResNet's) state dict. Each layer is checked to be the one the
    network has there, with the same shapes and settings: another network is refused, never misread."""
    order, shapes, state = _dlib_layers(net), net.state_dict(), {}
    if [name for name, _ in layers] != [name for name, _, _ in order]:
        raise DatError(f"its {len(layers)} layers are not the {len(order)} of dlib's face ResNet v1")
    for i, ((name, numbers), (_, prefix, settings)) in enumerate(zip(layers, order)):
        for key, value in numbers.items():
            target = f"{prefix}.{key}" if prefix else key
            if key in settings:
                got, want = value.tolist(), np.asarray(settings[key]).tolist()
            elif target in shapes:
                got, want = value.shape, tuple(shapes[target].shape)
                state[target] = np.ascontiguousarray(value, np.float32)
            elif prefix:
                raise DatError(f"layer {i} ({name}) has a {key}, which dlib's face ResNet has not")
            else:
                continue  # the loss layer's margin and distance threshold: training only
            if got != want:
                raise DatError(f"layer {i} ({name}) has {key} {got}, not {want}")
    return state


def weights_file(dat_path: Path, digest: str) -> Path:
    """The network's weights as safetensors in imgclf's cache, converted from `dat_path` (whose SHA-256
    must be `digest`) on first use and reused after."""
    from imgclf.data.cache import cache_file

    path = cache_file("weights", f"dlib-face-resnet-{digest[:12]}-{EXPORT}.safetensors")
    if path.is_file():
        return path
    from safetensors.numpy import save_file

    from imgclf.core.files import atomic_path
    from imgclf.models.packaged import sha256

    dat_path = Path(dat_path)
    if not dat_path.is_file() or sha256(dat_path) != digest:
        raise UserError(f"{dat_path} is not the face network file expected (SHA-256 {digest[:12]}...): reinstall it")
    try:
        state = state_dict(read_dat(dat_path), _face_resnet()())
    except DatError as e:
        raise UserError(f"{dat_path} is not dlib's face network: {e}") from None
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"source": dat_path.name, "sha256": digest})
    return path


class Embedder:
    """dlib's face embedding: aligned chips (N, 150, 150, 3) uint8 RGB as dlib.get_face_chip cuts them
    -> (N, 128) float32, the descriptors dlib's compute_face_descriptor gives. backend "onnx": ONNX
    Runtime on the CPU (the graph exported once into the cache beside the weights); "onnx-int8": its
    int8 graph (`imgclf export faces --int8`, faces/int8.py); "torch": PyTorch on `device`."""

    def __init__(self, dat_path: str | Path, digest: str, backend: str = "onnx", device: str = "cpu"):
        if backend not in ("onnx", "onnx-int8", "torch"):
            raise UserError(f"backend must be onnx, onnx-int8 or torch, not '{backend}'")
        from imgclf.core.device import device_type

        if backend != "torch" and device_type(device) != "cpu":
            raise UserError(f"the {backend} backend runs on the CPU; use backend='torch' for device '{device}'")
        self.backend, self.device, self._net = backend, device, None
        self.weights = weights_file(Path(dat_path), digest)
        self.graph = self.weights.with_suffix(".onnx")  # the fp32 graph, exported on first use
        if backend != "torch":
            from imgclf.models.face.engine import session

            # The network is built in torch only to export the graph the first time: once it is
            # there, `imgclf faces identify` answers without importing torch.
            self.session = session(lambda: self.net, self.graph, int8=backend == "onnx-int8")
        else:
            import torch

            self.session, self.device = None, torch.device(device)
            self.net  # noqa: B018 - built now, so a damaged weights file is told at once

    @property
    def net(self):
        """The network in PyTorch, built from the cached weights on first use (torch; export)."""
        if self._net is None:
            import torch
            from safetensors.torch import load_file

            net = _face_resnet()()
            try:
                net.load_state_dict(load_file(str(self.weights)))
            except Exception as e:  # noqa: BLE001 - safetensors and torch raise several types for a damaged file
                raise UserError(
                    f"{self.weights} is damaged ({type(e).__name__}): delete it and it is made again"
                ) from None
            self._net = net.eval().to(self.device if self.backend == "torch" else torch.device("cpu"))
        return self._net

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP, CHIP, 3):
            raise UserError(f"face chips must be (N, {CHIP}, {CHIP}, 3) uint8 RGB, not {chips.shape} {chips.dtype}")
        out = [self._run(chips[i : i + BATCH]) for i in range(0, len(chips), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)

    def _run(self, chips: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.session is not None:
            return self.session.run(None, {"input": x})[0]
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

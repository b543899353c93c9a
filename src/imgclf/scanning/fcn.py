"""The fully convolutional scan: the conv trunk runs once over a whole resampled image, and each
window's logits come from pooling its part of the feature map and applying the head.

A window-by-window scan repeats the trunk over the ~90% that neighbouring windows share; here each
pixel is convolved once per pyramid level. The two agree except near each window's border, where
the window scan sees zero padding and this one sees the neighbouring pixels (tests/test_scan.py
measures the difference).

Supported: `simple_cnn` (trunk, then adaptive average pool to 2x2 and a dense head) and
`resnet_fast` (trunk, global max pool, linear head). Other networks scan window by window.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgclf.store.run_meta import Normalization


@dataclass
class FcnParts:
    trunk: nn.Module
    grid: int  # the head pools each window into grid x grid cells
    pool: str  # "avg" | "max"
    head: Callable[[torch.Tensor], torch.Tensor]  # (N, C, grid, grid) -> logits
    stride: int  # input px per feature-map cell
    raw_input: bool = False  # the trunk takes uint8 pixels, not standardised floats


def fcn_parts(net: nn.Module, size: int, normalization: Normalization | None = None) -> FcnParts | None:
    """The net split into trunk / pooling / head, or None when it is not a shape this knows, or the
    input size is not a whole number of feature cells (then windows and feature cells misalign).
    With the run's `normalization` (its mean and std in [0, 1] units) a trunk that starts with a conv
    takes raw uint8 pixels (`raw_input`): the standardisation is folded into that conv."""
    from imgclf.models.resnet_fast import ResNetFast

    if isinstance(net, ResNetFast):
        parts = FcnParts(nn.Sequential(net.stem, net.stages), 1, "max", lambda z: net.head(z.flatten(1)) * net.scale, 0)
    elif isinstance(net, nn.Sequential):
        layers = list(net)
        at = next((i for i, m in enumerate(layers) if isinstance(m, nn.AdaptiveAvgPool2d)), None)
        if (
            at is None
            or not isinstance(net[at].output_size, int)
            or any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)) for m in layers[:at])
        ):
            return None
        head = nn.Sequential(*layers[at + 1 :])
        trunk = _relu_after_pool(list(_fused(layers[:at])))
        first = trunk[0]
        raw = (
            normalization is not None
            and isinstance(first, nn.Conv2d)
            and first.padding_mode == "zeros"
            and isinstance(first.padding, tuple)
        )
        if raw:
            trunk = _standardising(trunk, normalization)
        parts = FcnParts(nn.Sequential(*trunk), net[at].output_size, "avg", head, 0, raw)
    else:
        return None
    # Channels-last: the pyramid's levels have odd sizes (400x180, 205x92, ...) where the default
    # layout's conv and pooling kernels are slow; measured 2.8x faster over a 640x480 photo's levels
    # (simple_cnn, 1 and 2 threads). A copy, so the model's own weights keep their layout.
    parts.trunk = copy.deepcopy(parts.trunk).to(memory_format=torch.channels_last)
    with torch.no_grad():
        cells = parts.trunk(torch.zeros(1, 3, size, size, dtype=torch.uint8 if parts.raw_input else None)).shape[-1]
    if size % cells or cells % parts.grid:
        return None
    parts.stride = size // cells
    return parts


def _fused(layers: list[nn.Module]) -> nn.Sequential:
    """The layers with each conv -> BatchNorm pair folded into one conv (a copy; the model's own
    layers stay as they are): at scan time the network runs over whole photos, and a separate
    BatchNorm pass over every full-resolution feature map costs a quarter of the conv time."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out, i = [], 0
    while i < len(layers):
        a = layers[i]
        b = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and not a.training and not b.training:
            out.append(fuse_conv_bn_eval(a, b))
            i += 2
        else:
            out.append(a)
            i += 1
    return nn.Sequential(*out)


def _relu_after_pool(layers: list[nn.Module]) -> list[nn.Module]:
    """ReLU -> MaxPool reordered to MaxPool -> ReLU: the same numbers (both are monotonic, so they
    commute), with the ReLU over a quarter of the values. A photo's full-resolution feature maps
    are most of a scan's memory traffic (trunk 28 -> 21 ms over a 640x480 photo, 2 threads)."""
    out = list(layers)
    for i in range(len(out) - 1):
        if isinstance(out[i], nn.ReLU) and isinstance(out[i + 1], nn.MaxPool2d):
            out[i], out[i + 1] = out[i + 1], nn.ReLU()
    return out


class _MeanPadded(nn.Module):
    """uint8 pixels -> float32, channels-last, with the conv's zero padding moved outside it as
    the mean colour: after standardisation the mean is 0, so the folded conv below sees exactly
    what the original saw at the image border. One pass instead of convert, divide, subtract."""

    def __init__(self, pad: tuple[int, int], fill: torch.Tensor):
        super().__init__()
        self.pad = pad
        self.register_buffer("fill", fill.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (py, px), (n, c, h, w) = self.pad, x.shape
        out = torch.empty((n, c, h + 2 * py, w + 2 * px), device=x.device, memory_format=torch.channels_last)
        out[:, :, py : py + h, px : px + w] = x
        for rows, cols in (
            (slice(0, py), slice(None)),
            (slice(py + h, None), slice(None)),
            (slice(py, py + h), slice(0, px)),
            (slice(py, py + h), slice(px + w, None)),
        ):
            out[:, :, rows, cols] = self.fill  # the border only: a frame py / px pixels wide
        return out


def _standardising(trunk: list[nn.Module], normalization: Normalization) -> list[nn.Module]:
    """The first conv folded with (x / 255 - mean) / std, taking raw pixels (0..255): its weights
    scaled by 1 / (255 std) per input channel, its bias less the weights' response to the mean
    image. A copy; the model's own conv stays as it is."""
    conv = trunk[0]
    mean = torch.tensor(normalization.mean, dtype=torch.float32)
    std = torch.tensor(normalization.std, dtype=torch.float32)
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups, bias=True
    )
    with torch.no_grad():
        w = conv.weight.detach().float()
        folded.weight.copy_(w / (255.0 * std.view(1, -1, 1, 1)))
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        folded.bias.copy_(bias - (w * (mean / std).view(1, -1, 1, 1)).sum((1, 2, 3)))
    device = conv.weight.device
    return [_MeanPadded(conv.padding, 255.0 * mean).to(device), folded.to(device), *trunk[1:]]


@torch.no_grad()
def window_logits(parts: FcnParts, x: torch.Tensor, size: int, flip: bool = False, stop=None) -> torch.Tensor:
    """Logits (ny, nx, classes) of every size x size window at steps of `parts.stride` px over the
    image x (1, 3, H, W): uint8 when `parts.raw_input`, else normalised; H and W = size + a multiple
    of the stride. `flip` averages with the mirrored image, as the window scan's flip TTA does: the
    mirrored image's grid is the same set of windows in reverse column order. `stop` (core.work.Stop)
    is checked between the trunk's layers: a large level is seconds of convolutions."""
    logits = _logits(parts, x, size, stop)
    if flip:
        logits = 0.5 * (logits + _logits(parts, x.flip(-1), size, stop).flip(1))
    return logits


def _logits(parts: FcnParts, x: torch.Tensor, size: int, stop=None) -> torch.Tensor:
    from imgclf.core.work import check

    fmap = x if parts.raw_input else x.contiguous(memory_format=torch.channels_last)
    for layer in parts.trunk:
        check(stop)
        fmap = layer(fmap)
    f = size // parts.stride  # window side in feature cells
    q = f // parts.grid  # one pooling cell of the head's grid
    pooled = (F.avg_pool2d if parts.pool == "avg" else F.max_pool2d)(fmap, q, stride=1)
    ny, nx = fmap.shape[-2] - f + 1, fmap.shape[-1] - f + 1
    cells = [pooled[0, :, a * q : a * q + ny, b * q : b * q + nx] for a in range(parts.grid) for b in range(parts.grid)]
    feats = torch.stack(cells, -1).permute(1, 2, 0, 3)  # ny, nx, C, grid*grid
    feats = feats.reshape(ny * nx, -1, parts.grid, parts.grid)
    return parts.head(feats).reshape(ny, nx, -1)

"""SSDLite with a MobileNetV2 trunk, built to load the TensorFlow Object Detection API's
`ssdlite_mobilenet_v2` graphs tensor for tensor (the pretrained person detector, see weights.py).

Three details make it match TensorFlow rather than torchvision's SSDLite:
- TensorFlow's 'SAME' padding: a stride-2 convolution on an even-sized input pads one pixel at
  the bottom/right only; PyTorch's symmetric padding would shift every box by a pixel.
- The box head reads MobileNetV2's 15th block *expansion* (576 channels at 19x19), not a block
  output, and the extra layers are 1x1 -> depthwise 3x3 s2 -> 1x1, each with BatchNorm + ReLU6.
- BatchNorm epsilon is 1e-3 (TF-slim), not PyTorch's 1e-5.

Outputs are raw: box encodings (N, anchors, 4) as (ty, tx, th, tw) and class logits
(N, anchors, classes + 1) with the background first; boxes.py decodes them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from imgclf.models.person import SIZE  # noqa: E402, F401 - the input side, imported from here too

EPS = 1e-3  # TF-slim's BatchNorm epsilon
# MobileNetV2's inverted residual blocks: (expansion, out channels, repeats, first stride)
BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# SSD's extra feature maps after the trunk: (1x1 channels, output channels)
EXTRAS = [(256, 512), (128, 256), (128, 256), (64, 128)]
ANCHORS = [3, 6, 6, 6, 6, 6]  # per location, per feature map (the lowest has the reduced set)


class ConvBN(nn.Sequential):
    """Convolution (no bias) + BatchNorm (+ ReLU6) with TensorFlow's 'SAME' padding."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, 0, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=EPS),
            *([nn.ReLU6(inplace=True)] if act else []),
        )
        self.k, self.stride = k, stride

    def forward(self, x):
        return super().forward(same_pad(x, self.k, self.stride))


def same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """Pad as TensorFlow's 'SAME' does: the odd pixel of padding goes after, not before."""
    if k == 1:
        return x
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((math.ceil(int(size) / stride) - 1) * stride + k - int(size), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, 3, stride, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x, keep_expansion: bool = False):
        h = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(h))
        if self.residual:
            out = out + x
        return (out, h) if keep_expansion else out


class Head(nn.Module):
    """SSDLite's predictor on one feature map: depthwise 3x3 + BN + ReLU6, then a 1x1 with bias."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = ConvBN(cin, cin, 3, groups=cin)
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(self.depthwise(x))


class SSDLite(nn.Module):
    """(N, 3, 300, 300) float in [-1, 1] -> (box encodings (N, A, 4), class logits (N, A, classes + 1))."""

    def __init__(self, classes: int = 1):
        super().__init__()
        self.classes = classes
        self.stem = ConvBN(3, 32, 3, 2)
        blocks, cin = [], 32
        for t, c, n, s in BLOCKS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.last = ConvBN(320, 1280)
        extras, cin = [], 1280
        for mid, cout in EXTRAS:
            extras.append(nn.Sequential(ConvBN(cin, mid), ConvBN(mid, mid, 3, 2, groups=mid), ConvBN(mid, cout)))
            cin = cout
        self.extras = nn.ModuleList(extras)
        channels = [576, 1280] + [c for _, c in EXTRAS]
        self.box_heads = nn.ModuleList(Head(c, a * 4) for c, a in zip(channels, ANCHORS))
        self.class_heads = nn.ModuleList(Head(c, a * (classes + 1)) for c, a in zip(channels, ANCHORS))

    def features(self, x) -> list[torch.Tensor]:
        x = self.stem(x)
        maps = []
        for i, block in enumerate(self.blocks):
            if i == 13:  # the 19x19 map the lowest head reads is this block's expansion
                x, expansion = block(x, keep_expansion=True)
                maps.append(expansion)
            else:
                x = block(x)
        x = self.last(x)
        maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def forward(self, x):
        boxes, logits = [], []
        for fmap, box_head, class_head in zip(self.features(x), self.box_heads, self.class_heads):
            n = fmap.shape[0]
            # NHWC order, anchors last: the order the anchor generator lays anchors out in
            boxes.append(box_head(fmap).permute(0, 2, 3, 1).reshape(n, -1, 4))
            logits.append(class_head(fmap).permute(0, 2, 3, 1).reshape(n, -1, self.classes + 1))
        return torch.cat(boxes, 1), torch.cat(logits, 1)

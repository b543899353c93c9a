"""A small residual CNN for speed at low resolution, in the spirit of the airbench CIFAR-10 nets
(Keller Jordan, 2024): conv -> max-pool -> BN -> GELU per stage, residual 3x3 convs after it,
then global max-pool and a linear head. Three stages of width (64, 128, 256) by default.

Bigger inputs are first brought down by stride-2 stem convs until the first stage sees at most
64 px, so compute stays bounded for any image size (a 224 px input costs about what 56 px does).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register

STAGE_INPUT_MAX = 64


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    # BN momentum 0.2 (PyTorch's default is 0.1): running statistics settle within short runs.
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out, momentum=0.2),
            nn.GELU()]


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetFast(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, img_size: int, widths: list[int], depth_per_stage: int,
                 stem_width: int):
        super().__init__()
        stem, side, c = [], img_size, in_chans
        while side > STAGE_INPUT_MAX:
            stem += _conv_bn(c, stem_width, stride=2)
            side, c = (side + 1) // 2, stem_width
        stem += _conv_bn(c, stem_width)
        stages, c = [], stem_width
        for w in widths:
            stage = [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w, momentum=0.2),
                     nn.GELU()]
            stage += [Residual(w) for _ in range(depth_per_stage - 1)]
            stages.append(nn.Sequential(*stage))
            c = w
        self.stem, self.stages = nn.Sequential(*stem), nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(c, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.pool(x).flatten(1))


@register("resnet_fast", widths=[64, 128, 256], depth_per_stage=2, stem_width=32)
def resnet_fast(num_classes: int, in_chans: int, img_size: int, widths, depth_per_stage: int, stem_width: int):
    return ResNetFast(num_classes, in_chans, img_size, list(widths), depth_per_stage, stem_width)

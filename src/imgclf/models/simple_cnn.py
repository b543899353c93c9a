"""The textbook CNN: blocks of conv -> (BatchNorm) -> ReLU, then max-pool; flatten; dense; logits."""
from __future__ import annotations

import torch.nn as nn

from .registry import register


@register("simple_cnn", depth=3, width=32, convs_per_block=2, kernel_size=3, dropout=0.3, batch_norm=True, hidden=256)
def simple_cnn(num_classes: int, in_chans: int, img_size: int, depth: int, width: int, convs_per_block: int,
               kernel_size: int, dropout: float, batch_norm: bool, hidden: int) -> nn.Module:
    layers, c_in = [], in_chans
    for b in range(depth):
        c_out = width * 2 ** b
        for _ in range(convs_per_block):
            layers += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.MaxPool2d(2))
    # A fixed 2x2 grid before flattening: the dense head then fits every input size.
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(c_in * 4, hidden), nn.ReLU(inplace=True),
               nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)

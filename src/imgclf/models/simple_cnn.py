"""The textbook CNN: blocks of (conv -> BatchNorm -> ReLU) x n then max-pool; dense -> dropout -> logits."""

from __future__ import annotations

import torch.nn as nn

from imgclf.models.builders import register


@register("simple_cnn")
def simple_cnn(
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 32,
    *,
    depth: int = 3,
    width: int = 32,
    convs_per_block: int = 2,
    kernel_size: int = 3,
    dropout: float = 0.3,
    batch_norm: bool = True,
    hidden: int = 256,
) -> nn.Module:
    """`depth` blocks; block b has `convs_per_block` convs of `width * 2**b` channels. Any img_size works."""
    layers, c_in = [], in_chans
    for b in range(depth):
        c_out = width * 2**b
        for _ in range(convs_per_block):
            # A conv followed by BatchNorm needs no bias: BN's shift replaces it.
            layers.append(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        # ceil_mode keeps odd borders and never pools a 1-px map away, so small inputs survive deep nets.
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    # A fixed 2x2 grid before flattening keeps coarse layout while the dense head fits every input size.
    layers += [
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c_in * 4, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    ]
    return nn.Sequential(*layers)

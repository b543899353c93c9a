"""The textbook CNN: blocks of (conv -> BatchNorm -> ReLU) x n then max-pool; dense -> dropout -> logits."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from imgclf.models.builders import register


class GridPool(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d that exports to ONNX at every input size. The ONNX exporter refuses an
    adaptive pool whose output size does not divide the map (simple_cnn at 40 or 56 px: a 5 or 7 px
    map), so that run got no model.onnx and predicted in PyTorch. Exporting at such a size, the same bins
    (PyTorch's: floor(i*n/o) to ceil((i+1)*n/o)) are averaged by two matrix products; the map's size
    is fixed in an exported graph anyway. Training and PyTorch inference keep the native op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        out = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        with warnings.catch_warnings():  # the tracer warns that the size becomes a constant: it is one here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % out[0] == 0 and w % out[1] == 0:  # even bins: the exporter's own pooling op, as before
            return super().forward(x)
        return _bins(h, out[0], x) @ x @ _bins(w, out[1], x).T


def _bins(n: int, o: int, like: torch.Tensor) -> torch.Tensor:
    """(o, n): row i averages adaptive pooling's bin i of n values."""
    m = torch.zeros(o, n, dtype=like.dtype, device=like.device)
    for i in range(o):
        lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


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
        GridPool(2),
        nn.Flatten(),
        nn.Linear(c_in * 4, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    ]
    return nn.Sequential(*layers)

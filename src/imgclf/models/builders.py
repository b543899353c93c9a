"""The in-house architectures by name: each model module decorates its builder with
`@register(name)`; models.factory.create_model looks them up here."""

from __future__ import annotations

from typing import Callable

import torch

Builder = Callable[..., torch.nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register `builder(num_classes, in_chans, img_size, *, setting=default, ...)` as `name`."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY[name] = builder
        return builder

    return wrap

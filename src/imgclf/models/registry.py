"""One door to every architecture: `create_model(name, ...)` (timm's pattern).

In-house models register themselves with `@register(name, **defaults)`; adding one touches one
file. Any timm architecture is reached as `timm/<arch>`. Construction depends only on the
arguments, which a run records in model.json, so a saved run rebuilds without network or code.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import UserError

_REGISTRY: dict[str, tuple[Callable[..., torch.nn.Module], dict]] = {}


def register(name: str, **defaults):
    def wrap(builder: Callable[..., torch.nn.Module]):
        _REGISTRY[name] = (builder, defaults)
        return builder
    return wrap


def list_models() -> list[str]:
    """Registered in-house names. timm architectures (hundreds) are used as `timm/<arch>`."""
    _import_builtins()
    return sorted(_REGISTRY)


def model_defaults(name: str) -> dict:
    """Default keyword settings of a model, so a run can record every setting it used."""
    if name.startswith("timm/"):
        return {}
    _import_builtins()
    return dict(_lookup(name)[1])


def create_model(name: str, num_classes: int, in_chans: int = 3, img_size: int = 32, weights: str | None = None,
                 pretrained: bool = False, **kwargs) -> torch.nn.Module:
    if name.startswith("timm/"):
        from .timm_models import create_timm_model

        return create_timm_model(name[len("timm/"):], num_classes, in_chans, weights, pretrained, **kwargs)
    _import_builtins()
    builder, defaults = _lookup(name)
    if weights or pretrained:
        raise UserError(f"--weights/--pretrained apply to timm models (timm/<arch>), not to '{name}'")
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} for model '{name}'; it takes: {', '.join(defaults)}")
    return builder(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **{**defaults, **kwargs})


def _lookup(name: str):
    if name not in _REGISTRY:
        raise UserError(f"unknown model '{name}'; available: {', '.join(sorted(_REGISTRY))}, "
                         "or any timm architecture as timm/<arch> (e.g. timm/resnet18)")
    return _REGISTRY[name]


def _import_builtins() -> None:
    from . import resnet_fast, simple_cnn  # noqa: F401  (importing registers them)

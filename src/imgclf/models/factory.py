"""One door to every architecture: `create_model(name, ...)`, after timm's pattern.

An in-house model is a builder function decorated with `@register(name)`; its keyword defaults
are its settings, so adding an architecture touches one file. Any timm architecture is reached
as `timm/<arch>`. Construction depends only on the arguments, which a run records in model.json,
so a saved run rebuilds offline.
"""

from __future__ import annotations

import inspect

import torch

from imgclf.core.errors import UserError
from imgclf.models.builders import _REGISTRY, Builder, register  # noqa: F401  (register: re-exported)
from imgclf.models.packaged import expand_short_name

_SHAPE_ARGS = ("num_classes", "in_chans", "img_size")  # given by the data, not settings of the model


def list_models() -> list[str]:
    """The in-house architectures. Any of timm's (hundreds) is also available as `timm/<arch>`."""
    _import_builtins()
    return sorted(_REGISTRY)


def check_model(name: str) -> None:
    """A UserError now for a model name that `create_model` would refuse only after the decoding."""
    name = expand_short_name(name)[0]
    if name.startswith("timm/"):
        from imgclf.models.timm_models import check_arch

        check_arch(name[len("timm/") :])
    else:
        _lookup(name)


def model_defaults(name: str) -> dict:
    """Every setting of model `name` with its default, so a run can record all it used.

    timm models take timm's keyword arguments, which have no fixed list: `{}` for `timm/<arch>`.
    """
    name = expand_short_name(name)[0]
    if name.startswith("timm/"):
        return {}
    params = inspect.signature(_lookup(name)).parameters.values()
    # Tuples become lists so the recorded settings compare equal after a JSON/YAML round trip.
    return {
        p.name: list(p.default) if isinstance(p.default, tuple) else p.default
        for p in params
        if p.name not in _SHAPE_ARGS
    }


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 32,
    weights: str | None = None,
    pretrained: bool = False,
    **kwargs,
) -> torch.nn.Module:
    """Build a fresh model that maps (B, in_chans, img_size, img_size) images to (B, num_classes) logits.

    `name` is one of `list_models()` or `timm/<arch>` for any timm architecture; `kwargs` are the
    model's settings (see `model_defaults`). `weights` is a local .safetensors/.pth file, or an
    earlier imgclf run of the same architecture (its model.safetensors): the tensors that fit by
    name and shape are loaded, so a model pretrained on a big dataset starts a small one with
    other classes. `pretrained` (download from the Hugging Face hub) applies to timm models only.

        >>> net = create_model("simple_cnn", num_classes=10, img_size=32, width=16)
    """
    name = expand_short_name(name)[0]  # lite0 -> timm/tf_efficientnet_lite0, as --model takes it
    if name.startswith("timm/"):
        from imgclf.models.timm_models import create_timm_model

        return create_timm_model(name[len("timm/") :], num_classes, in_chans, img_size, weights, pretrained, **kwargs)
    settings = model_defaults(name)
    if pretrained:
        raise UserError(
            f"--pretrained applies to timm models (timm/<arch>), not to '{name}': no weights are "
            f"published for it; start from your own with --weights (an earlier imgclf run of '{name}')"
        )
    unknown = sorted(set(kwargs) - set(settings))
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} for model '{name}'; it takes: {', '.join(settings)}")
    net = _REGISTRY[name](num_classes, in_chans, img_size, **kwargs)
    if weights:
        from imgclf.models.pretrained import run_weight_file
        from imgclf.models.timm_models import load_matching

        path = run_weight_file(weights)
        load_matching(net, path, name, stacklevel=3)
        net.weights_origin = {"source": "file", "path": str(path)}
        if getattr(net, "whiten", False):
            net.whiten = False  # resnet_fast: keep the loaded stem; training would re-whiten it from the data
    return net


def _lookup(name: str) -> Builder:
    _import_builtins()
    if name not in _REGISTRY:
        import timm

        from imgclf.models.packaged import SHORT_NAMES

        # `--model resnet50`, as Keras and fastai name it: timm knows it under timm/.
        hint = f"; did you mean timm/{name}? (--pretrained loads its ImageNet weights)" if timm.is_model(name) else ""
        raise UserError(
            f"unknown model '{name}'{hint}; available: {', '.join([*SHORT_NAMES, *sorted(_REGISTRY)])}, "
            "or any timm architecture as timm/<arch> (e.g. timm/resnet18)"
        )
    return _REGISTRY[name]


def _import_builtins() -> None:
    from imgclf.models import resnet_fast, simple_cnn  # noqa: F401  (importing a model module registers it)

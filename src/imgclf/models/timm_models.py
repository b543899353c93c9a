"""Any timm architecture as `timm/<arch>`, with weights from the hub (online) or a local file.

Local files load through safetensors or `torch.load(weights_only=True)`: never arbitrary pickles.
Tensors whose shapes differ (the classifier head when the class count changes) are dropped, so an
ImageNet checkpoint fine-tunes onto any number of classes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import UserError

MIN_MATCHED = 0.5     # below this share of matched tensors the file is for another architecture


def create_timm_model(arch: str, num_classes: int, in_chans: int, weights: str | None, pretrained: bool,
                      **kwargs) -> torch.nn.Module:
    import timm

    if not timm.is_model(arch):
        raise UserError(f"unknown timm architecture '{arch}'; find names with: "
                         f"python -c \"import timm; print(timm.list_models('*{arch[:6]}*'))\"")
    try:
        model = timm.create_model(arch, pretrained=pretrained and weights is None, num_classes=num_classes,
                                  in_chans=in_chans, **kwargs)
    except (OSError, RuntimeError) as e:
        if pretrained and weights is None:
            raise RuntimeError(f"could not download pretrained weights for timm/{arch} ({type(e).__name__}: {e}). "
                               "Go online, or pass a local weight file with --weights PATH") from None
        raise
    if weights:
        load_matching(model, weights, arch)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # weights_only refuses pickled code: the file is not a plain state dict
        raise UserError(f"{path} is not a plain tensor state dict that loads safely ({e.__class__.__name__}); "
                         "convert it to .safetensors") from None
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    # Strip DataParallel/DDP prefixes, common in shared checkpoints.
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_matching(model: torch.nn.Module, path: str | Path, arch: str) -> None:
    sd = read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if len(matched) < MIN_MATCHED * len(own):
        raise UserError(f"{path} does not look like weights for timm/{arch}: only {len(matched)} of "
                         f"{len(own)} tensors match by name and shape")
    model.load_state_dict(matched, strict=False)
    skipped = sorted(set(own) - set(matched))
    if skipped:
        warnings.warn(f"loaded {len(matched)}/{len(own)} tensors from {path}; newly initialised: "
                      f"{', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}", stacklevel=2)

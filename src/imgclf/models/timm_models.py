"""Any timm architecture as `timm/<arch>`, with weights from the hub (online) or a local file.

Local files load through safetensors or `torch.load(weights_only=True)`: never arbitrary pickles.
Tensors whose shapes differ (the classifier head when the class count changes) are dropped, so an
ImageNet checkpoint fine-tunes onto any number of classes. A local file takes precedence over
`pretrained` (no download is tried), so runs with `--weights` work offline; see pretrained.py for
the order (file, local cache, download) and the message when none works.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from imgclf.core.errors import UserError
from imgclf.models.pretrained import missing_weights, weights_source

log = logging.getLogger(__name__)
MIN_MATCHED = 0.5  # below this share of matched tensors the file is for another architecture
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
_HUB_ERRORS: tuple[type[Exception], ...] = (OSError, RuntimeError)  # huggingface_hub's errors are OSErrors
try:  # huggingface_hub >= 1.0 talks httpx, whose network errors are not
    import httpx

    _HUB_ERRORS += (httpx.HTTPError,)
except ImportError:  # pragma: no cover - older huggingface_hub (requests: OSErrors)
    pass


def check_arch(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        raise UserError(
            f"unknown timm architecture '{arch}'; find names with: "
            f"python -c \"import timm; print(timm.list_models('*{arch[:6]}*'))\""
        )


def create_timm_model(
    arch: str, num_classes: int, in_chans: int, img_size: int, weights: str | None, pretrained: bool, **kwargs
) -> torch.nn.Module:
    import timm

    check_arch(arch)
    cfg = timm.get_pretrained_cfg(arch)
    if cfg is not None and cfg.fixed_input_size:
        # ViT-like models bake the input size into position embeddings; CNNs take any size and no img_size.
        kwargs.setdefault("img_size", img_size)
    source, path = weights_source(arch, weights, pretrained)
    if source == "cache":
        # timm's own loader reads the cached file (its checkpoint filters, head swap): no network.
        kwargs["pretrained_cfg_overlay"] = {**kwargs.get("pretrained_cfg_overlay", {}), "file": str(path)}
    try:
        model = timm.create_model(
            arch, pretrained=source in ("cache", "download"), num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except _HUB_ERRORS as e:  # hub, URL and offline failures
        if source != "download":
            raise
        raise missing_weights(arch, f"the download failed: {type(e).__name__}: {str(e)[:200]}") from None
    if source == "file":
        load_matching(model, path, f"timm/{arch}")
    elif source == "package":  # ImageNet weights: only the 1000-class head is expected not to fit
        load_matching(model, path, f"timm/{arch}", expect_fresh=("classifier.",))
    # Recorded in model.json: where the starting weights came from.
    model.weights_origin = {"source": source, "path": str(path) if path else None}
    if source == "package":
        from imgclf.models.packaged import PACKAGED

        if arch in PACKAGED:  # the report names the pip package the ImageNet weights came from
            model.weights_origin["package"] = PACKAGED[arch].package
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a plain (no pickled code) torch checkpoint, unwrapped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code; truncated or foreign files fail here too
        raise UserError(
            f"{path} is not a plain tensor state dict that loads safely ({type(e).__name__}); "
            "give a .safetensors file or a .pth/.pt/.bin state dict"
        ) from None
    # Training scripts wrap the weights: {"state_dict": ..., "optimizer": ..., "epoch": ...}.
    sd = next((sd[k] for k in CONTAINER_KEYS if isinstance(sd, dict) and isinstance(sd.get(k), dict)), sd)
    if not isinstance(sd, dict):
        raise UserError(f"{path} holds a {type(sd).__name__}, not a state dict of tensors")
    # Strip DataParallel/DDP prefixes, common in shared checkpoints.
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_matching(
    model: torch.nn.Module, path: str | Path, name: str, stacklevel: int = 4, expect_fresh: tuple[str, ...] = ()
) -> None:
    """Load the tensors of `path` that fit `model` (the architecture `name`) by name and shape; warn
    what stays freshly initialised (unless all of it starts with one of `expect_fresh`)."""
    sd = read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if len(matched) < MIN_MATCHED * len(own):
        raise UserError(
            f"{path} does not look like weights for {name}: only {len(matched)} of "
            f"{len(own)} tensors match by name and shape"
        )
    model.load_state_dict(matched, strict=False)
    fresh = [k for k in own if k not in matched]
    msg = f"loaded {len(matched)}/{len(own)} tensors from {path}"
    if [k for k in fresh if not k.startswith(expect_fresh)]:  # a new head is expected; the rest deserves the user's eye
        warnings.warn(
            f"{msg}; newly initialised: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}", stacklevel=stacklevel
        )  # the caller of create_model
    else:
        log.info(msg)

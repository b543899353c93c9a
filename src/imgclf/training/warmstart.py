"""Warm start: a new network begins from an earlier run's weights, its head grown by class name.

`imgclf update` adds classes to a model in production. Classes are kept in sorted order, so a new
name can land between old ones ("daisy, rose" + "lily" -> "daisy, lily, rose"): copying the old
classifier's rows by position would swap classes. `grow_head` copies them by NAME, and starts each
new class's row at the mean of the old rows (its bias at the mean bias) plus a little noise, so a
new class begins near the average logit: neither dominant nor hopeless, and not identical to
another class (which would keep their gradients identical).

    net = create_model("simple_cnn", num_classes=3)
    warm_start(net, "runs/flowers-1", ["daisy", "lily", "rose"])    # every old weight copied
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from imgclf.core.errors import UserError
from imgclf.store.run_meta import load_run_meta
from imgclf.store.runs import find_run

NEW_ROW_NOISE = 0.01  # x the old rows' std: breaks the tie between several new classes


def classifier_name(net: nn.Module, num_classes: int) -> str:
    """The module name of the final classifier: timm's get_classifier(), else the last Linear (or 1x1
    conv) with one output per class (resnet_fast's `head`, simple_cnn's last layer)."""
    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        for name, module in net.named_modules():
            if module is head and isinstance(module, (nn.Linear, nn.Conv2d)):
                return name
    found = [
        name
        for name, m in net.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == num_classes)
        or (isinstance(m, nn.Conv2d) and m.out_channels == num_classes and m.kernel_size == (1, 1))
    ]
    if not found:
        raise UserError(
            f"cannot find the classifier layer of {type(net).__name__} (no layer with {num_classes} "
            "outputs): use imgclf update --mode full"
        )
    return found[-1]


@torch.no_grad()
def grow_head(
    net: nn.Module, state: dict[str, torch.Tensor], old_classes: list[str], new_classes: list[str], seed: int = 0
) -> dict:
    """Load `state` (trained on `old_classes`) into `net` (built for `new_classes`, a superset).

    Every tensor outside the classifier is copied as it is; the classifier's rows are copied by class
    name and new rows initialised near the mean. Returns {"classifier", "copied", "new"}."""
    lost = [c for c in old_classes if c not in new_classes]
    if lost:
        raise UserError(f"the new class list drops {', '.join(lost)}: an update keeps every old class")
    head = classifier_name(net, len(new_classes))
    target = net.state_dict()
    rows = torch.tensor([new_classes.index(c) for c in old_classes])
    fresh = torch.tensor([i for i, c in enumerate(new_classes) if c not in old_classes], dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if key not in target:
            raise UserError(
                f"the earlier run's weights do not fit this network ({key} is not in it): "
                "the architecture changed; use imgclf update --mode full"
            )
        if key.startswith(head + ".") and value.shape[:1] == (len(old_classes),):
            grown = torch.empty_like(target[key])
            grown[rows] = value.to(grown.dtype)
            if len(fresh):
                spread = value.float().std(0) if len(old_classes) > 1 else value.float().abs()
                noise = torch.randn((len(fresh), *value.shape[1:]), generator=g) * spread * NEW_ROW_NOISE
                grown[fresh] = (value.float().mean(0) + noise).to(grown.dtype)
            value = grown
        elif value.shape != target[key].shape:
            raise UserError(
                f"the earlier run's weights do not fit this network ({key}: {tuple(value.shape)} vs "
                f"{tuple(target[key].shape)}): use imgclf update --mode full"
            )
        out[key] = value
    net.load_state_dict(out, strict=True)
    return {"classifier": head, "copied": len(old_classes), "new": [new_classes[i] for i in fresh.tolist()]}


def warm_start(net: nn.Module, run: str | Path, classes: list[str]) -> str:
    """Start `net` from RUN's model.safetensors (see grow_head); returns a line saying what was done."""
    from imgclf.models.headonly import FACE_EMBEDDING, NAMES, PERSON_DETECTOR
    from imgclf.store.checkpoint import load_weights
    from imgclf.store.run_schema import verify_weights

    run = find_run(run)
    meta = load_run_meta(run)
    verify_weights(run, meta.weights_sha256)  # a damaged parent would pass its damage on to every update
    if meta.architecture_name in NAMES:
        # Its descriptor is fixed (dlib's network, the texture, the person detector): what it learnt is a
        # logistic regression, which its candidate refits on the old and new images together (its config
        # keeps faces/texture/person on).
        what = {FACE_EMBEDDING: "the face embedding", PERSON_DETECTOR: "the person detector"}.get(
            meta.architecture_name, "the texture"
        )
        return f"warm start from {run}: it kept {what}, whose head is refitted on every image; {type(net).__name__} starts from its own weights"
    info = grow_head(net, load_weights(run / "model.safetensors"), meta.classes, classes)
    # The stem was whitened from the parent's training images and trained on; re-whitening it from
    # the new data would throw that away (training.loop calls init_from_data when the model has it).
    if getattr(net, "whiten", False):
        net.whiten = False
    new = f"; new class rows {', '.join(info['new'])} start at the mean of the old ones" if info["new"] else ""
    return f"warm start from {run}: every weight copied, classifier '{info['classifier']}' rows by class name{new}"


def parent_normalization(run: str | Path) -> tuple[list[float], list[float]]:
    """The parent's input mean/std: its weights were learnt on inputs normalised this way."""
    n = load_run_meta(find_run(run)).normalization
    return n.mean, n.std

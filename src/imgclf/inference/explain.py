"""Where the network looked: class activation maps (Grad-CAM and relatives) for any run.

    imgclf explain runs/flowers-1 rose.jpg --method gradcam++      # writes rose-gradcam++-rose.png
    imgclf.explain("runs/flowers-1", ["rose.jpg"])[0]["heatmap"]   # (size, size) floats in 0..1

The CAM methods come from the maintained `grad-cam` package (pytorch_grad_cam), imported only
here. What imgclf adds: the target layer picked automatically for every model family, the run's
own preprocessing (resize mode, normalisation), and overlays drawn in the original image's geometry.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path, output_folder, read_json, write_json
from imgclf.inference.predictor import expand_inputs
from imgclf.models.headonly import refuse_unexplainable
from imgclf.settings.checks import EXPLAIN_METHODS

# imgclf name -> pytorch_grad_cam class. EigenCAM is class-agnostic: it shows the main component
# of the features whatever the target; ScoreCAM needs no gradients but one forward per channel.
METHODS = dict(
    zip(
        EXPLAIN_METHODS,
        ("GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "EigenCAM", "ScoreCAM", "HiResCAM"),
        strict=True,
    )
)
# A pooled map is a summary of the features, not where they are: never a target layer.
_NOT_TARGETS = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)
BATCH = 16
DISPLAY_MIN, DISPLAY_MAX = 256, 640  # longer side of a written overlay: tiny inputs become readable


@dataclass
class TargetLayer:
    name: str
    module: nn.Module
    shape: tuple[int, ...]  # (C, H, W) of its feature map at the model's input size
    reshape: Callable | None = None  # tokens -> (B, C, H, W) for ViT-like models

    def describe(self) -> str:
        kind = "tokens of " if self.reshape is not None and self.reshape is not _nhwc_to_nchw else ""
        return f"{self.name or 'the network'} ({type(self.module).__name__}, {kind}{'x'.join(map(str, self.shape))} feature map)"


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UserError(f"unknown explanation method '{method}'; use one of {', '.join(METHODS)}")
    return method


def find_target_layer(net: nn.Module, img_size: int) -> TargetLayer:
    """The layer to explain: the last one whose output is a spatial feature map (4-D, more than
    1x1, not a pooling layer), found by running a dummy image through `net` with forward hooks. For
    ViT-like timm models (patch tokens, no late feature map) the last block's first norm, with its
    tokens reshaped to the patch grid, as grad-cam's documentation recommends."""
    if hasattr(net, "patch_embed") and hasattr(net, "blocks") and len(net.blocks):
        grid = tuple(getattr(net.patch_embed, "grid_size", ()) or ())
        if len(grid) == 2:
            prefix = int(getattr(net, "num_prefix_tokens", 1))
            dim = int(getattr(net, "embed_dim", 0)) or net.blocks[-1].norm1.normalized_shape[0]

            def tokens_to_map(x: torch.Tensor) -> torch.Tensor:
                return x[:, prefix:, :].reshape(x.shape[0], grid[0], grid[1], x.shape[-1]).permute(0, 3, 1, 2)

            block = len(net.blocks) - 1
            return TargetLayer(f"blocks.{block}.norm1", net.blocks[-1].norm1, (dim, *grid), tokens_to_map)
    seen: list[tuple[str, nn.Module, tuple]] = []
    names = {m: n for n, m in net.named_modules()}
    # Swin-like timm models keep their feature maps channels-last (B, H, W, C).
    channels_last = getattr(net, "output_fmt", "NCHW") == "NHWC"

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and not isinstance(module, _NOT_TARGETS):
            shape = tuple(output.shape[1:])
            seen.append((names[module], module, (shape[2], shape[0], shape[1]) if channels_last else shape))

    param = next(net.parameters())
    hooks = [m.register_forward_hook(record) for m in names]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, img_size, img_size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
    # Hooks fire in execution order, a container after its last child: the last spatial entry is
    # the outermost module ending at the deepest feature map (layer4 for a ResNet).
    spatial = [s for s in seen if s[2][1] > 1 and s[2][2] > 1]
    if not spatial:
        raise UserError(
            f"found no spatial feature map in this network at {img_size} px to explain; "
            "a larger input size (--img-size) keeps the last feature maps bigger than 1x1"
        )
    return TargetLayer(*spatial[-1], _nhwc_to_nchw if channels_last else None)


def _nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class Explainer:
    """A CAM method bound to one loaded model (an imgclf Model on the torch backend).

    `copy=True` works on a private copy of the network: CAM hooks and gradients must not touch a
    network that other threads use for predictions at the same time (the web service).
    """

    def __init__(self, model, method: str = "gradcam", copy: bool = False):
        check_method(method)
        self.model, self.method = model, method
        self.members: list[Explainer] | None = None
        if reason := getattr(model, "not_explainable", None):  # a detector served as a classifier: it has boxes
            raise UserError(reason)
        if hasattr(model, "members"):
            # An ensemble answers with the mean of its members' probabilities, so its map is the
            # mean of theirs, each at the member's own input size and target layer.
            self.members = [Explainer(m, method, copy) for m in model.members]
            self.net, self.layer = self.members[0].net, self.members[0].layer
            return
        if isinstance(model.net, nn.Module) and next(model.net.parameters(), None) is not None:
            import copy as copying

            # CAMs need float32 gradients: a private copy also keeps the caller's network untouched.
            self.net = copying.deepcopy(model.net).float() if copy else model.net
        elif model.path is not None and (model.path / "model.safetensors").is_file():
            # ONNX Runtime (OnnxNet: no parameters) gives no gradients; the run's model.safetensors holds the weights the ONNX
            # file was exported (and parity-checked) from, so the map explains the same network.
            from imgclf.inference.model import load_torch_net

            self.net = load_torch_net(model.path, model.meta).float()
        else:
            raise UserError(
                "explanations need gradients of the PyTorch network, and this model has none "
                "(an ONNX file without its run's model.safetensors): explain the run it was exported from"
            )
        refuse_unexplainable(self.net)  # a face-embedding or texture run: no feature maps to explain (one line)
        self.layer = find_target_layer(self.net, model.img_size)
        norm = model.meta.normalization
        self.mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1)

    def describe(self) -> str:
        """Which layer is explained, in words (each member's, for an ensemble)."""
        if self.members is None:
            return self.layer.describe()
        return f"the mean of {len(self.members)} members' maps: " + "; ".join(
            f"{e.model.path.name if e.model.path else i}: {e.describe()}" for i, e in enumerate(self.members)
        )

    def heatmaps(self, images: np.ndarray, targets: list[int], method: str | None = None) -> np.ndarray:
        """(N, size, size) maps in 0..1 for preprocessed uint8 images (N, size, size, 3), one
        target class index each, by `method` (default: the explainer's). The plain forward pass:
        test-time augmentation is not explained."""
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        method = check_method(method or self.method)
        if self.members is not None:
            return self._mean_of_members(images, targets, method)
        cam_class = getattr(pytorch_grad_cam, METHODS[method])
        device = next(self.net.parameters()).device
        out = []
        # ScoreCAM draws a progress bar per image on stderr: noise in a CLI, a report or a server log.
        quiet = contextlib.redirect_stderr(io.StringIO()) if method == "scorecam" else contextlib.nullcontext()
        with cam_class(self.net, [self.layer.module], reshape_transform=self.layer.reshape) as cam, quiet:
            for i in range(0, len(images), BATCH):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + BATCH])).permute(0, 3, 1, 2)
                x = ((x.float() / 255.0 - self.mean) / self.std).to(device)
                with torch.enable_grad():
                    maps = cam(x, targets=[ClassifierOutputTarget(t) for t in targets[i : i + BATCH]])
                out.append(np.nan_to_num(maps.astype(np.float32)))
        self.net.zero_grad(set_to_none=True)
        return np.concatenate(out) if out else np.zeros((0, self.model.img_size, self.model.img_size), np.float32)

    def _mean_of_members(self, images: np.ndarray, targets: list[int], method: str) -> np.ndarray:
        import cv2

        from imgclf.inference.ensemble import at_size

        size = self.model.img_size
        total = np.zeros((len(images), size, size), np.float32)
        for e in self.members:
            for k, heat in enumerate(e.heatmaps(at_size(images, e.model.img_size), targets, method)):
                total[k] += (
                    heat if heat.shape[0] == size else cv2.resize(heat, (size, size), interpolation=cv2.INTER_LINEAR)
                )
        peak = total.reshape(len(total), -1).max(axis=1).reshape(-1, 1, 1)
        return total / np.maximum(peak, 1e-8)  # 0..1 like a single model's map

    def target_index(self, probs: np.ndarray, answer: str, target: str | None) -> int:
        """The class to explain: `target` if given, else the answer (the top class when the answer is 'unknown')."""
        classes = self.model.classes
        if target is not None:
            if target not in classes:
                raise UserError(f"unknown class '{target}' for --class; this run's classes: {', '.join(classes)}")
            return classes.index(target)
        return classes.index(answer) if answer in classes else int(np.argmax(probs))


def explain(
    model, images, method: str = "gradcam", target: str | None = None, out: str | Path | None = None
) -> list[dict]:
    """Per image: path (when given), label, confidence (the run's answer, as predict gives it),
    target, method, layer, heatmap (size x size, 0..1) and overlay (the PNG written under `out`,
    else None); or path and error for an unreadable file."""
    from imgclf.data.images import UnusableImage, in_memory, read_scaled, to_rgb

    explainer = Explainer(model, method)
    items, results, arrays, originals = list(expand_inputs(images)), [], [], []
    for i, item in enumerate(items):
        entry = {"path": str(item)} if isinstance(item, (str, Path)) else {}
        try:
            # The overlay is at most DISPLAY_MAX a side: a large JPEG decodes at reduced scale.
            original = read_scaled(item, DISPLAY_MAX)[0] if isinstance(item, (str, Path)) else to_rgb(in_memory(item))
            arrays.append(model.preprocess(item))
            originals.append((len(results), original))
        except UnusableImage as e:
            entry["error"] = e.reason
        results.append(entry)
    if not arrays:
        return results
    batch = np.stack(arrays)
    probs = model.predict_proba(batch)
    answers = model.answers(probs)
    targets = [explainer.target_index(p, a["label"], target) for p, a in zip(probs, answers)]
    maps = explainer.heatmaps(batch, targets)
    out_dir = output_folder(out, "--out") if out is not None else None  # made by the first write
    written: set[str] = set()
    for (row, original), a, t, heat in zip(originals, answers, targets, maps):
        entry = results[row]
        cls = model.classes[t]
        entry.update(
            label=a["label"],
            confidence=a["confidence"],
            target=cls,
            method=method,
            layer=explainer.describe(),
            heatmap=heat,
            overlay=None,
        )
        if out_dir is not None:
            caption = f"{a['label']}  p={a['confidence']:.2f}   {method} for {cls}"
            img = overlay(original, heat, model.resize_mode, caption=caption)
            stem = Path(entry["path"]).stem if "path" in entry else f"image{row + 1}"
            name = _unique(f"{_safe(stem)}-{method}-{_safe(cls)}", written)
            path = out_dir / f"{name}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(png_bytes(img))
            entry["overlay"] = str(path)
    if out_dir is not None:  # also marks the folder as imgclf's: never read as a class (data.spec)
        _index(out_dir / "explain.json", results)
    return results


def _index(path: Path, results: list[dict]) -> None:
    """OUT/explain.json: each overlay's image, answer and target (an earlier explain's rows stay)."""
    keys = ("path", "overlay", "label", "confidence", "target", "method", "error")
    rows = [{k: e[k] for k in keys if k in e} for e in results]
    drawn = {r.get("overlay") or r.get("path") for r in rows}  # an unreadable image: its path, once too
    old = read_json(path).get("images", []) if path.is_file() else []
    write_json(path, {"images": [r for r in old if (r.get("overlay") or r.get("path")) not in drawn] + rows})


def overlay(
    original,
    heat: np.ndarray,
    resize_mode: str,
    caption: str | None = None,
    side: tuple[int, int] = (DISPLAY_MIN, DISPLAY_MAX),
    alpha: float = 0.5,
):
    """The original image (longer side scaled into `side`) with the heatmap in the jet colour map
    blended over the part the model saw (per its resize mode; the rest dimmed), and an optional caption."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    w, h = original.size
    scale = min(max(1.0, side[0] / max(w, h)), side[1] / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = np.asarray(original.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    heat_full, seen = _place(heat, size, resize_mode)
    colours = cv2.applyColorMap(np.uint8(np.clip(heat_full, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    blended = (1 - alpha) * img + alpha * colours.astype(np.float32)
    out = np.where(seen[..., None], blended, img * 0.45 + 140 * 0.55)  # unseen parts: washed out
    result = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if not caption:
        return result
    draw_size = 14
    while draw_size > 8 and ImageFont.load_default(size=draw_size).getlength(caption) > result.width - 8:
        draw_size -= 1  # a long class name on a narrow image: smaller text rather than cut off
    font = ImageFont.load_default(size=draw_size)
    framed = Image.new("RGB", (result.width, result.height + 22), "white")
    framed.paste(result, (0, 0))
    ImageDraw.Draw(framed).text((4, result.height + 3), caption, fill=(20, 20, 20), font=font)
    return framed


def _place(heat: np.ndarray, size: tuple[int, int], mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The model-input heatmap mapped onto an image of `size` (w, h) by undoing the run's resize:
    (map, mask of the pixels the model saw)."""
    import cv2

    w, h = size
    s = heat.shape[0]
    seen = np.ones((h, w), dtype=bool)
    if mode == "crop":  # the model saw the centred square
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        full = np.zeros((h, w), np.float32)
        full[top : top + side, left : left + side] = cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)
        seen[:] = False
        seen[top : top + side, left : left + side] = True
        return full, seen
    if mode == "pad":  # the model saw the whole image letterboxed: cut the grey bars off the map
        k = s / max(w, h)
        fw, fh = max(1, round(w * k)), max(1, round(h * k))
        x0, y0 = (s - fw) // 2, (s - fh) // 2
        heat = heat[y0 : y0 + fh, x0 : x0 + fw]
    return cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR), seen


def small_heatmap(heat: np.ndarray, side: int = 14) -> list[list[float]]:
    """The map averaged down to side x side, 3 decimals: small enough for a JSON answer."""
    import cv2

    small = cv2.resize(heat, (side, side), interpolation=cv2.INTER_AREA)
    return np.round(np.clip(small, 0, 1), 3).tolist()


def first_layer_filters(net: nn.Module, tile_px: int = 32, limit: int = 64):
    """The first Conv2d's filters as one grid image (PIL), each scaled to its own range: RGB for
    3 input channels, grey otherwise (mean over channels). None when the network has no Conv2d."""
    from PIL import Image

    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return None
    w = conv.weight.detach().float().cpu()[:limit]
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = ((w - lo) / (hi - lo).clamp_min(1e-8)).permute(0, 2, 3, 1).numpy()  # (n, k, k, c) in 0..1
    n, k = len(w), w.shape[1]
    cell = max(2, tile_px // k)  # 3x3 and 7x7 kernels both drawn about tile_px wide
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    tile = k * cell + 2
    grid = np.full((rows * tile, cols * tile, w.shape[3]), 1.0, dtype=np.float32)
    for i, f in enumerate(w):
        r, c = divmod(i, cols)
        big = np.repeat(np.repeat(f, cell, 0), cell, 1)
        grid[r * tile + 1 : r * tile + 1 + k * cell, c * tile + 1 : c * tile + 1 + k * cell] = big
    grid = (grid * 255).astype(np.uint8)
    return Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)  # optimize=True costs 5x the time for a few % of bytes
    return buf.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", name).strip("_") or "image"


def _unique(name: str, taken: set[str]) -> str:
    # Two inputs named alike (a/cat.jpg, b/cat.jpg) must not overwrite each other's overlay.
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate

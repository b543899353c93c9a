"""The light-normalised texture in PyTorch tensor operations (the descriptor, its batch helpers, and the
classifier a run keeps): see the package's docstring for what it is and why it is written so."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from imgclf.core.errors import UserError
from imgclf.models.headonly import TEXTURE, HeadOnly
from imgclf.models.texture import DIM, GRID, LEGACY, SIZE, dim

# Tan & Triggs' published parameters: gamma (lifts the shadows) and the difference of Gaussians' two
# sigmas in px (drops the light's slow gradients and the finest noise).
GAMMA, SIGMA0, SIGMA1 = 0.2, 1.0, 2.0
# The filtered image is rounded to this step before the comparisons: far above float64's rounding
# noise (~1e-16 on values of ~0.01-1), far below any real difference between two pixels.
GRID_STEP = 1e-9
CHUNK = 64  # images a pass
# Devices that hold no float64 (Apple's GPU, `--device mps`): the descriptor stays on the CPU there, and
# the classifier hands it its pixels (~0.4 ms an image on 2 cores); moved, its matrices raised a TypeError.
NO_FLOAT64 = frozenset({"mps"})


def _uniform_bins() -> np.ndarray:
    """The 256 8-bit codes mapped to 59 bins: one per uniform pattern (at most two 0/1 transitions
    around the circle: edges, corners, spots; 58 of them), one shared by all the others."""
    bins, out = 0, np.full(256, 58, np.int64)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            out[code] = bins
            bins += 1
    return out


_BINS = _uniform_bins()


# The eight neighbours in order around the circle (radius 1, the square's pixels, no interpolation).
_AROUND = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _resize(src: int, dst: int) -> np.ndarray:
    """(dst, src) float64: antialiased bilinear resampling of a line of `src` pixels to `dst` (what
    Pillow's BILINEAR does), as a matrix, so the resize is two matrix products."""
    with torch.no_grad():
        eye = torch.eye(src, dtype=torch.float64).view(src, 1, 1, src)
        out = F.interpolate(eye, size=(1, dst), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(out.view(src, dst).numpy().T)


@functools.lru_cache(maxsize=4)
def _blur(n: int, sigma: float) -> np.ndarray:
    """(n, n) float64: a Gaussian blur of a line of n pixels as OpenCV's GaussianBlur makes it for
    float images (8 sigma + 1 taps, the border mirrored without repeating the edge pixel)."""
    r = int(round(sigma * 4 * 2 + 1)) // 2
    taps = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    out = np.zeros((n, n))
    for i in range(n):
        for k, w in zip(range(-r, r + 1), taps):
            j = abs(i + k)
            j = 2 * (n - 1) - j if j > n - 1 else j
            out[i, j] += w
    return out


def _cells(h: int, w: int, grid) -> np.ndarray:
    """(H * W,) int64: each pixel's cell of the grid times 59, row by row (cell i of n spans
    i * side // n up to (i + 1) * side // n), so cell + bin is the pixel's place in the histograms."""
    rows = np.searchsorted(np.arange(grid[1]) * h // grid[1], np.arange(h), side="right") - 1
    cols = np.searchsorted(np.arange(grid[0]) * w // grid[0], np.arange(w), side="right") - 1
    return (rows[:, None] * grid[0] + cols[None, :]).ravel() * 59


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(N, H, W) float64 greyscale of (N, 3, H, W) pixel values 0-255, as Pillow's convert("L") makes it
    (ITU-R 601-2 in 16-bit fixed point, rounded down): a grey photo keeps its exact values."""
    r, g, b = rgb.to(torch.float64).unbind(1)
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536)


def lbp(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """(N, H-2, W-2) int64: each inner pixel's uniform-pattern bin (0-58, `bins` maps the 256 codes),
    from which of its 8 neighbours are at least as bright."""
    h, w = x.shape[-2:]
    centre = x[:, 1:-1, 1:-1]
    code = sum(
        (x[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] >= centre).to(torch.int64) * (1 << bit)
        for bit, (dy, dx) in enumerate(_AROUND)
    )
    return bins[code]


class Texture(torch.nn.Module):
    """Greyscale images (N, H, W) of one size, pixel values 0-255 -> (N, dim(grid)) float32 textures,
    each of unit length: the square roots of each cell's bin shares (Hellinger: two of them compare by
    cosine similarity, as embeddings do). Its constant matrices are made here, for the input size, so
    that tracing it for ONNX sees tensors only (non-persistent buffers: a state dict holds none of them)."""

    def __init__(self, height: int, width: int, region=SIZE, grid=GRID):
        super().__init__()
        (w, h), inner = region, (region[1] - 2, region[0] - 2)
        self.grid = tuple(grid)
        mats = {
            "rows": _resize(height, h),
            "cols": _resize(width, w).T,
            "fine_rows": _blur(h, SIGMA0),
            "fine_cols": _blur(w, SIGMA0).T,
            "coarse_rows": _blur(h, SIGMA1),
            "coarse_cols": _blur(w, SIGMA1).T,
        }
        self._constants = {
            **{k: np.array(m, order="C") for k, m in mats.items()},  # copies: _blur's are cached
            "bins": _BINS,
            "cells": _cells(*inner, self.grid),
        }
        for name, m in self._constants.items():
            self.register_buffer(name, torch.from_numpy(m), persistent=False)

    def _apply(self, fn, recurse=True):
        """Device moves only: `.float()` (export, Grad-CAM) must not round the float64 matrices, or
        PyTorch before and after it would compare different numbers; and none to a device without
        float64 (NO_FLOAT64)."""
        if fn(torch.zeros(())).device.type in NO_FLOAT64:
            return self
        super()._apply(fn, recurse)
        for name, m in self._constants.items():
            if self._buffers[name].dtype != torch.from_numpy(m).dtype:
                self._buffers[name] = torch.from_numpy(m).to(self._buffers[name].device)
        return self

    def filtered(self, grey: torch.Tensor) -> torch.Tensor:
        """(N, 96, 80) float64: resized to SIZE, gamma, difference of Gaussians, rounded to GRID_STEP
        (Tan & Triggs' normalisation, as far as an LBP code can tell)."""
        x = torch.pow(self.rows @ grey.to(torch.float64) @ self.cols + 1.0, GAMMA)
        dog = self.fine_rows @ x @ self.fine_cols - self.coarse_rows @ x @ self.coarse_cols
        return torch.round(dog / GRID_STEP)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        codes = lbp(self.filtered(grey), self.bins)
        place = codes.flatten(1) + self.cells
        ones = torch.ones_like(place, dtype=torch.float32)
        hist = torch.zeros(codes.shape[0], dim(self.grid), device=codes.device).scatter_add(1, place, ones)
        hist = hist.view(-1, self.grid[0] * self.grid[1], 59)
        hist = hist / hist.sum(-1, keepdim=True).clamp_min(1)
        return F.normalize(torch.sqrt(hist).flatten(1), dim=1, eps=1e-12)


@functools.lru_cache(maxsize=16)
def _texture(height: int, width: int) -> Texture:
    return Texture(height, width)


def describe(grey: torch.Tensor) -> torch.Tensor:
    """(N, DIM) float32 textures of greyscale images (N, H, W) (Texture; on the CPU)."""
    return _texture(*grey.shape[-2:])(grey)


@torch.no_grad()
def texture(grey: np.ndarray) -> np.ndarray:
    """(DIM,) float32: the texture of one greyscale image (H, W), uint8 or float 0-255."""
    return describe(torch.as_tensor(np.asarray(grey, np.float64))[None])[0].numpy()


@torch.no_grad()
def of_images(images: np.ndarray, mirror: bool = False) -> np.ndarray:
    """(N, DIM) float32 textures of uint8 RGB images (N, H, W, 3), read whole in greyscale (Pillow's
    luma); `mirror`: each image's mirror image too, after the N originals (2N rows)."""
    out = []
    for flip in (False, True) if mirror else (False,):
        for i in range(0, len(images), CHUNK):
            grey = luma(torch.from_numpy(np.ascontiguousarray(images[i : i + CHUNK])).permute(0, 3, 1, 2))
            out.append(describe(grey.flip(-1) if flip else grey).numpy())
    return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)


NOT_EXPLAINABLE = (
    "this run's model is the light-normalised texture (LBP histograms) with a linear head (its leaderboard "
    "kept it): it has no feature maps for a Grad-CAM map; train with --texture off for a network that explains"
)


class TextureClassifier(HeadOnly):
    """Normalised images (N, 3, S, S) -> class logits, through each image's texture (Texture) and a
    linear head (a logistic regression, fitted by training.textureprobe). Pure tensor operations: it
    exports to ONNX; it has no gradients to explain."""

    exportable = True
    not_explainable = NOT_EXPLAINABLE

    def __init__(self, num_classes: int, mean, std, size: int, region=SIZE, grid=GRID, descriptor: str | None = None):
        """`size`: the run's input side (S); `region`, `grid`: the descriptor's (model.json's kwargs)."""
        if descriptor not in (None, TEXTURE):  # model.json names a descriptor this imgclf does not have
            raise UserError(f"this run was made with the texture descriptor {descriptor}; imgclf has {TEXTURE}")
        super().__init__(dim(grid), num_classes, mean, std)
        self.texture = Texture(size, size, region, grid)

    @classmethod
    def from_run(cls, num_classes: int, mean, std, size: int, kwargs: dict) -> TextureClassifier:
        # Its matrices are built for the run's input size; runs from before model.json named the
        # descriptor's parameters read faces with the LEGACY ones.
        return cls(num_classes, mean, std, size, **{**LEGACY, **kwargs})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The uint8 pixels the head was fitted on: the normalisation undone, rounded.
        pixels = torch.clamp(torch.round((x.float() * self.std + self.mean) * 255), 0, 255)
        home, there = x.device, self.texture.rows.device
        if home == there:  # no device move traced into the ONNX graph
            return self.head(self.texture(luma(pixels)))
        return self.head(self.texture(luma(pixels.to(there))).to(home))  # a device without float64

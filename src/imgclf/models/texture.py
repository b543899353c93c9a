"""A light-normalised texture descriptor, and a classifier on it: Tan & Triggs' illumination
normalisation, then local binary pattern (LBP) histograms in a grid, the classic recipe for Extended
Yale B's faces lit by one point light (Tan & Triggs, "Enhanced local texture feature sets for face
recognition under difficult lighting conditions", IEEE TIP 2010; Ahonen et al. 2006 for the histograms).

Why it exists beside the networks: lit from one side, half a face is black; ImageNet features and
dlib's face embedding, trained on everyday light, have little to go on, while the normalised texture
keeps the edges the light left. Two users of it: a face gallery weighs it in under hard light
(faces.texture), and `imgclf train` races a logistic regression on it as a leaderboard candidate on
greyscale photos (training.textureprobe), kept only where the validation split says it wins.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from imgclf.core.errors import UserError
from imgclf.models.headonly import TEXTURE, HeadOnly

SIZE = (80, 96)  # px (w, h) the region is resized to: ~ORL's crops, Yale B's 168 x 192 halved
GRID = (8, 8)  # cells a side; each gets its own histogram, so where a pattern is counts too
# Tan & Triggs' published parameters: gamma, the difference of Gaussians' two sigmas (px), and the
# contrast equalisation's alpha and tau.
GAMMA, SIGMA0, SIGMA1, ALPHA, TAU = 0.2, 1.0, 2.0, 0.1, 10.0


def _uniform_bins() -> np.ndarray:
    """The 256 8-bit codes mapped to 59 bins: one per uniform pattern (at most two 0/1 transitions
    around the circle: edges, corners, spots; 58 of them), one shared by all the others."""
    bins, out = 0, np.full(256, 58, np.uint8)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            out[code] = bins
            bins += 1
    return out


_BINS = _uniform_bins()
DIM = 59 * GRID[0] * GRID[1]
# The eight neighbours in order around the circle (radius 1, the square's pixels, no interpolation).
_AROUND = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def normalised(grey: np.ndarray) -> np.ndarray:
    """Tan & Triggs' chain on a greyscale float image: gamma (lifts the shadows), a difference of
    Gaussians (drops the light's slow gradients and the finest noise), two-stage contrast equalisation
    and a tanh that squashes what is left of the extremes."""
    import cv2

    x = np.power(grey.astype(np.float32) + 1.0, GAMMA)
    x = cv2.GaussianBlur(x, (0, 0), SIGMA0) - cv2.GaussianBlur(x, (0, 0), SIGMA1)
    x = x / max(float(np.mean(np.abs(x) ** ALPHA)) ** (1 / ALPHA), 1e-6)
    x = x / max(float(np.mean(np.minimum(TAU, np.abs(x)) ** ALPHA)) ** (1 / ALPHA), 1e-6)
    return TAU * np.tanh(x / TAU)


def lbp(x: np.ndarray) -> np.ndarray:
    """Each inner pixel's uniform-pattern bin (0-58): which of its 8 neighbours are at least as bright."""
    h, w = x.shape
    centre = x[1:-1, 1:-1]
    code = np.zeros(centre.shape, np.uint8)
    for bit, (dy, dx) in enumerate(_AROUND):
        code |= (x[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] >= centre).astype(np.uint8) << bit
    return _BINS[code]


def texture(grey: np.ndarray) -> np.ndarray:
    """(DIM,) float32, unit length: the square roots of each cell's bin shares (Hellinger: two of
    them compare by cosine similarity, as the embeddings do)."""
    from PIL import Image

    g = np.asarray(Image.fromarray(grey).resize(SIZE, Image.BILINEAR), np.float32)
    codes = lbp(normalised(g))
    cells = _cells(codes.shape)
    hist = np.bincount((cells * 59 + codes).ravel(), minlength=DIM).reshape(-1, 59).astype(np.float32)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    v = np.sqrt(hist).ravel()
    return v / max(float(np.linalg.norm(v)), 1e-12)


@functools.lru_cache(maxsize=4)
def _cells(shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's cell of the GRID, row by row (cell i of n spans i * side // n up to (i + 1) * side // n)."""
    h, w = shape
    rows = np.searchsorted(np.arange(GRID[1]) * h // GRID[1], np.arange(h), side="right") - 1
    cols = np.searchsorted(np.arange(GRID[0]) * w // GRID[0], np.arange(w), side="right") - 1
    return (rows[:, None] * GRID[0] + cols[None, :]).astype(np.int64)


def of_images(images: np.ndarray, mirror: bool = False) -> np.ndarray:
    """(N, DIM) float32 textures of uint8 RGB images (N, H, W, 3), read whole in greyscale (Pillow's
    luma); `mirror`: each image's mirror image too, after the N originals (2N rows)."""
    from PIL import Image

    grey = [np.asarray(Image.fromarray(np.ascontiguousarray(img)).convert("L")) for img in images]
    if mirror:
        grey += [np.ascontiguousarray(g[:, ::-1]) for g in grey]
    return np.stack([texture(g) for g in grey]) if grey else np.zeros((0, DIM), np.float32)


NOT_EXPORTABLE = (
    "this run's model is the light-normalised texture (LBP histograms) with a linear head (its leaderboard "
    "kept it): the descriptor runs in NumPy, so it runs in PyTorch only and has no ONNX graph or Grad-CAM "
    "map; train with --texture off for a network that exports"
)


class TextureClassifier(HeadOnly):
    """Normalised images (N, 3, S, S) -> class logits, through each image's texture (of_images) and a
    linear head (a logistic regression, fitted by training.textureprobe)."""

    not_exportable = NOT_EXPORTABLE

    def __init__(self, num_classes: int, mean, std, descriptor: str | None = None):
        if descriptor not in (None, TEXTURE):  # model.json names a descriptor this imgclf does not have
            raise UserError(f"this run was made with the texture descriptor {descriptor}; imgclf has {TEXTURE}")
        super().__init__(DIM, num_classes, mean, std)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.from_numpy(of_images(self.pixels(x))).to(x.device))

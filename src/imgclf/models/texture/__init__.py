"""A light-normalised texture descriptor, and a classifier on it: Tan & Triggs' illumination
normalisation, then local binary pattern (LBP) histograms in a grid, the classic recipe for Extended
Yale B's faces lit by one point light (Tan & Triggs, "Enhanced local texture feature sets for face
recognition under difficult lighting conditions", IEEE TIP 2010; Ahonen et al. 2006 for the histograms).

Why it exists beside the networks: lit from one side, half a face is black; ImageNet features and
dlib's face embedding, trained on everyday light, have little to go on, while the normalised texture
keeps the edges the light left. Two users of it: a face gallery weighs it in under hard light
(faces.texture), and `imgclf train` races a logistic regression on it as a leaderboard candidate on
greyscale photos (training.textureprobe), kept only where the validation split says it wins.

It is written in PyTorch tensor operations (matrix products, comparisons, a table lookup), so a run
that kept it exports to ONNX like a network. Two choices keep the exported graph's answers equal to
PyTorch's: the filtering runs in float64, and its result is rounded to a fine grid before the LBP
comparisons, so a flat patch (a black background) compares as the exact ties it is in either engine.
Tan & Triggs' contrast equalisation and tanh are left out: they rescale each image by a positive
number and squash monotonically, which changes no comparison, and the LBP codes are all that is kept.

Its parameters are here, torch-free (a face gallery checks its textures against them without loading
torch); the descriptor, written in torch, is `ops`, loaded on first use of one of its names here.
"""

from __future__ import annotations

# The face region is resized to SIZE px (w, h) and cut into GRID cells (across, down), each with its
# own histogram, so where a pattern is counts too. Chosen 2026-11-28 over the first (80 x 96, 8 x 8) on
# faces lit by point lights (bench/faces.py's orl-yaleb-48x, five photos a person: 0.92 -> 0.97 named;
# docs/benchmarks/faces.md): a smaller region widens the difference of Gaussians' band relative to
# the face, and finer cells keep where each edge of an aligned face lies. Faces in everyday light lose
# ~2 points by it, where dlib's embedding names them anyway.
SIZE = (64, 76)
GRID = (12, 12)
# What runs and galleries made before that choice used; model.json's kwargs say which a run has.
LEGACY = {"region": [80, 96], "grid": [8, 8]}


def dim(grid=GRID) -> int:
    """Numbers in a texture: 59 bins a cell."""
    return 59 * grid[0] * grid[1]


DIM = dim()


def record() -> dict:
    """The descriptor's parameters, as model.json's kwargs and a gallery's header keep them."""
    return {"region": list(SIZE), "grid": list(GRID)}


def __getattr__(name: str):
    if name.startswith("__"):  # what tools probe modules for (__wrapped__, ...): no reason to load torch
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    ops = importlib.import_module(f"{__name__}.ops")  # not `from . import ops`: that asks this function
    return ops if name == "ops" else getattr(ops, name)

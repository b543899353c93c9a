"""Perceptual hashes, the groups of images whose hashes nearly match (found without comparing all
pairs), and the content check that confirms each such pair before it joins a group.

A pHash keeps the signs of an image's lowest spatial frequencies: re-encoding, resizing or a slight
colour shift leaves it within a few bits, while different photos differ in about half of its 64.
But photos that share their low frequencies share their hash too: aligned faces under one hard
light, or one sky behind different birds. So a hash match only nominates a pair; `alike` compares
the pair's fine detail, which a copy keeps and a different photo does not, and its brightness.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

HASH_SIDE = 32  # the greyscale thumbnail the DCT sees, as in the classic pHash
LOW = 8  # its LOW x LOW lowest frequencies become the 64 bits
MAX_DISTANCE = 16  # beyond this, hashes of unrelated images start to match
# pHash bits (always even: each hash has 32 ones) within which a pair is a candidate. Re-encoded,
# resized and mirrored copies stay within 4, but a crop of 3-8 % moves it 2-22 bits: 6 finds 67 of
# 129 flowers5 crops where 4 found 41 (bench/duplicates.py). Unrelated look-alikes (a 32 px plane
# against sky, aligned faces under one light) fall within 6 too: `alike` turns them away.
NEAR_DISTANCE = 6
# A thumbnail this flat (grey-level standard deviation, of 255) has no frequencies worth hashing: the
# bits of near-black or near-uniform images follow quantisation noise and a shared vignette, so
# different photos under the same hard light got one hash (87 false groups in a face set). Such
# images join no near-duplicate group; identical ones (same thumbnail) still group.
FLAT_STD = 4.0
# The content check, on the 32 px greyscale thumbnails. bench/duplicates.py measured every number
# here, on the candidate pairs of ORL faces, ORL relit hard, ORL relit by lights shared by all
# people (as Extended Yale B) and flowers5, each with JPEG (quality 60-90), resized, cropped and
# mirrored copies:
# - detail: the thumbnail minus its Gaussian blur (sigma in pixels). It drops what faces under one
#   light share (the light, the face's outline) and keeps what tells two people apart. At 2 different
#   people's pairs reached 0.71; at 1.25 cropped copies fell to 0.57.
DETAIL_SIGMA = 1.5
# - the bar: normalised cross-correlation of the aligned details. Different people's pairs scored at
#   most 0.56 (108 pairs), copies at least 0.74 (1 of 639 below 0.75). The bar sits nearer the copies:
#   a missed crop costs less than a group of two people, and real face sets are larger than these.
MIN_SIMILARITY = 0.75
# - tone: the mean gap (grey levels of 255) between the thumbnails blurred at TONE_SIGMA, TONE_MARGIN
#   pixels of border left out. Detail is blind to light, so one photo relit (Yale B's one pose under
#   64 lights) passed it: 2,059 of the 2,688 one-person candidate pairs there. Their gap: median 36.
#   8 turned away 1,825 of those 2,059, and brightness-edited copies too; 2 (2026-11-27) turns away
#   nearly all the rest (false groups on that stand-in 49 -> 5, on ORL's near-still frames of one
#   person 38 -> 18) and still finds every exact, re-encoded, resized and mirrored copy there and in
#   flowers5; it costs crops, whose zoom leaves a gap (flowers5: 43 -> 33 of 86 found).
TONE_SIGMA = 3.0
TONE_MARGIN = 4
MAX_TONE_GAP = 2.0
# - and at most TONE_SHARE of the darker thumbnail's mean tone: 2 grey levels is tight for a photo lit
#   as photos are and loose for a face lit from behind, black but for a rim of light (mean tone 4-15),
#   where photos of different people lit from one side came within 1-1.6. A brightness edit moves the
#   gap in proportion to the tone, so the share lets an edited copy through at any brightness; it binds
#   only below a mean tone of 2 / TONE_SHARE (~29). bench/duplicates.py, 0.07 against none: false
#   groups on faces under point lights 35 -> 9 (orl-shadow-6x; several labels 7 -> 0), 96 -> 46
#   (orl-yaleb-48x; 1 -> 0), 5 -> 0 (orl-yale); one dark JPEG copy of 72 lost; CIFAR-10's real
#   duplicates, flowers5 and ORL as before. At 0.05 two such copies were lost; at 0.10 three
#   different-people groups stayed. (The share of the tone's spread instead of its mean lost 3 of
#   CIFAR-10's 126 groups: textured photos blur to a narrow spread.)
TONE_SHARE = 0.07
# - in greyscale, no ramp of light across the pair: one face under two nearby point lights agrees in
#   detail and tone as a copy does, but a moved light brightens one side more than the other, while a
#   re-encode, a resize or a mirror changes no side more. _ramp (grey levels of the blurred tone
#   difference that ramps in x and y explain beyond a tone change alone) separated them on the
#   point-light stand-in's confirmed pairs: injected JPEG, resized and mirrored copies at most 0.07,
#   relit pairs of one person at least 0.12 (median 0.8). Asked only of the pair as it is: a copy moved
#   a pixel or zoomed leaves ramps of its own where the picture's gradients move (crops up to 1.5,
#   Daimler's pedestrians cut again a pixel aside 0.26-0.57). Lower bars (0.10, 0.08) lost JPEG copies
#   and no more false groups. Only of colourless pairs: asked of colour photos it cost CIFAR-10's real
#   duplicates half their groups (126 -> 63), whose recolourings (one car in red and in white) change
#   the picture in part. The price in greyscale is the same kind: CIFAR-10 converted to grey keeps 61
#   of its 124 groups (its edited duplicates' ramps, median 0.89, overlap the relit faces', 0.84), a
#   trade for issue 34's face sets, where light is the commonest difference between two photos.
MAX_RAMP = 0.15
COLOURLESS = 3.0  # mean spread of a thumbnail's pixel across R, G and B (of 255) up to which it is greyscale
# - alignment: the best of the pair as it is, or either side zoomed in 6 %, each shifted up to 1 px:
#   a crop of 3-8 % is a zoom of up to 9 % plus a shift. Without the zoom each set's worst crop
#   scored 0.37-0.49.
ZOOM = 1.06
SHIFT = 1
# In greyscale an alignment other than the pair as it is (shifted or zoomed) counts only where its detail
# correlates better than as it is: a shifted or cropped copy's does, while one face under two nearby
# lights matches best as it is (r 0.97-0.99) and a shift or a zoom (r 0.77-0.89) brought its tone within
# the bar by chance. With the ramp, bench/duplicates.py (2026-11-29), false groups as shared: ORL 18 -> 7
# (near-still frames, the head moved), orl-shadow-6x 9 -> 2, orl-yaleb-48x 46 -> 0; every injected
# exact, JPEG, resized and mirrored copy still found, grey crops 66 -> 60 of 189; colour photos as before
# (CIFAR-10's 126 real groups, flowers5); Daimler's pedestrians 9 of their 10 real groups. (Comparing a
# zoom with the best shift instead, and asking the ramp at every shift: ORL 4, orl-shadow-6x 1, but
# Daimler's shifted copies were lost, 4 of 10 groups left.)

# ITU-R 601 luma, as PIL's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114])
_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _dct_matrix(n: int) -> np.ndarray:
    k, x = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT_LOW = _dct_matrix(HASH_SIDE)[:LOW]


@dataclass
class Prints:
    """What near-duplicate search keeps of each image (`prints`): its pHash and its mirror image's,
    whether it is textured enough for them to mean anything, and its grey thumbnail for the check."""

    hashes: np.ndarray  # (N,) uint64
    flipped: np.ndarray  # (N,) uint64, the mirror image's pHash
    textured: np.ndarray  # (N,) bool: not flat (FLAT_STD)
    grey: np.ndarray  # (N, HASH_SIDE, HASH_SIDE) uint8
    colourless: np.ndarray  # (N,) bool: a greyscale image (COLOURLESS)

    @classmethod
    def empty(cls, n: int) -> Prints:
        return cls(
            np.zeros(n, np.uint64),
            np.zeros(n, np.uint64),
            np.zeros(n, bool),
            np.zeros((n, HASH_SIDE, HASH_SIDE), np.uint8),
            np.zeros(n, bool),
        )

    def put(self, rows: np.ndarray, other: Prints) -> None:
        """Fill `rows` from `other` (prints of those rows, in that order)."""
        for name in ("hashes", "flipped", "textured", "grey", "colourless"):
            getattr(self, name)[rows] = getattr(other, name)


def prints(thumbs: np.ndarray) -> Prints:
    """Prints of (N, HASH_SIDE, HASH_SIDE, 3) uint8 RGB thumbnails. The mirror image's hash costs one
    more DCT of the same thumbnails: it finds mirrored copies."""
    grey = thumbs.astype(np.float64) @ _LUMA
    return Prints(
        phashes(grey),
        phashes(grey[:, :, ::-1]),
        grey.reshape(len(grey), -1).std(axis=1) >= FLAT_STD,
        np.clip(grey.round(), 0, 255).astype(np.uint8),
        np.ptp(thumbs, axis=3).mean(axis=(1, 2)) <= COLOURLESS,
    )


def phashes(grey: np.ndarray) -> np.ndarray:
    """uint64 pHashes of (N, HASH_SIDE, HASH_SIDE) greyscale thumbnails."""
    low = (_DCT_LOW @ grey @ _DCT_LOW.T).reshape(len(grey), -1)  # batched 2-D DCT, low corner
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between uint64 arrays (numpy < 2 has no popcount: a table lookup per byte there)."""
    x = np.ascontiguousarray(np.bitwise_xor(a, b), dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return _BYTE_BITS[x.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of hashes at most `max_distance` bits apart. Give it unique hashes:
    k copies of one hash would make k² pairs.

    Pigeonhole: cut the 64 bits into bands; two hashes that close agree on some band up to `spare`
    bits. Only hashes sharing a band value (with those bits cleared) are compared, bucket by bucket
    in numpy, so 60k images cost a second instead of 1.8 billion comparisons. Up to 4 bits,
    max_distance + 1 bands must agree exactly; beyond, half as many wider bands may differ in one
    bit each (at 6: 4 bands of 16 bits, each joined on 15 of them 16 times), 3x fewer comparisons
    than 7 exact bands of 9 bits.
    """
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be in [0, {MAX_DISTANCE}], not {max_distance}")
    spare = 0 if max_distance <= 4 else 1
    bands = max_distance // (spare + 1) + 1
    n = len(hashes)
    found_i, found_j = [], []
    edges = np.linspace(0, 64, bands + 1).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        for cleared in itertools.combinations(range(hi - lo), spare):
            mask = (1 << (hi - lo)) - 1 - sum(1 << b for b in cleared)
            # Small keys sort by radix: four times faster than uint64.
            keys = (band & np.uint64(mask)).astype(np.uint16 if hi - lo <= 16 else np.uint32)
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            # Members of a bucket are contiguous after sorting: pair each with the one `offset` later,
            # keeping only starts whose bucket still reaches that far.
            alive, offset = np.arange(n - 1), 1
            while alive.size:
                alive = alive[alive + offset < n]
                alive = alive[keys[alive] == keys[alive + offset]]
                a, b = order[alive], order[alive + offset]
                close = hamming(hashes[a], hashes[b]) <= max_distance
                found_i.append(np.minimum(a, b)[close])
                found_j.append(np.maximum(a, b)[close])
                offset += 1
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def alike(a: np.ndarray, b: np.ndarray, colourless: np.ndarray | None = None) -> np.ndarray:
    """Do grey thumbnails a[k] and b[k] ((P, S, S) uint8 each, b already mirrored where the pair is)
    show one photo? Their details must correlate (MIN_SIMILARITY) and their brightness agree
    (MAX_TONE_GAP) in one alignment: as they are, or either zoomed by ZOOM, shifted up to SHIFT.
    Where `colourless[k]` (both greyscale; default: no pair), a match as they are must show no ramp of
    light (MAX_RAMP), and a moved one must correlate better than they do as they are (see SHIFT)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    grey = np.zeros(len(a), bool) if colourless is None else np.asarray(colourless, bool)
    ok, as_is = _agree(a, b, 0, ramp=grey)
    todo = np.flatnonzero(~ok)  # most copies are not moved at all: only the rest are aligned
    if todo.size:
        a, b = a[todo], b[todo]
        floor = np.where(grey[todo], as_is[todo], -np.inf)
        zoom = _zoom_matrix(a.shape[1], ZOOM)
        # Zoom in only, one side or the other: zooming out would invent the border.
        views = ((a, b), (zoom @ a @ zoom.T, b), (a, zoom @ b @ zoom.T))
        ok[todo] = np.any([_agree(x, y, SHIFT, floor=floor)[0] for x, y in views], axis=0)
    return ok


def _agree(
    a: np.ndarray, b: np.ndarray, shift: int, ramp: np.ndarray | None = None, floor: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: at some shift of b up to `shift` pixels either way, do the details correlate (above
    `floor` too, where given) and the tones agree (over the overlap), with no ramp of light where
    `ramp`? Returns (agree, the best detail correlation over the shifts)."""
    blur = _blur_matrix(a.shape[1], TONE_SIGMA)
    da, db, ta, tb = _detail(a), _detail(b), blur @ a @ blur.T, blur @ b @ blur.T
    ok, best = np.zeros(len(a), bool), np.full(len(a), -1.0, np.float32)
    m = TONE_MARGIN
    level = np.minimum(ta[:, m:-m, m:-m].mean(axis=(1, 2)), tb[:, m:-m, m:-m].mean(axis=(1, 2)))
    max_gap = np.minimum(MAX_TONE_GAP, TONE_SHARE * level)
    for dy, dx in itertools.product(range(-shift, shift + 1), repeat=2):
        u, v = _overlap(da, db, dy, dx)
        u = u - u.mean(axis=(1, 2), keepdims=True)
        v = v - v.mean(axis=(1, 2), keepdims=True)
        r = (u * v).sum(axis=(1, 2)) / np.sqrt((u * u).sum(axis=(1, 2)) * (v * v).sum(axis=(1, 2)) + 1e-6)
        best = np.maximum(best, r)
        u, v = _overlap(ta, tb, dy, dx)
        gap = np.abs(u - v)[:, m:-m, m:-m].mean(axis=(1, 2))
        good = (r >= MIN_SIMILARITY) & (gap <= max_gap)
        if floor is not None:
            good &= r > floor
        if ramp is not None and (check := good & ramp).any():
            good[check] &= _ramp(u[check], v[check]) <= MAX_RAMP
        ok |= good
    return ok, best


def _ramp(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per pair of blurred tones (P, H, W): the grey levels of their difference that a ramp of light
    across the picture explains beyond a change of tone alone (least squares on 1, t, x, y, tx, ty
    against 1 and t, t the pair's mean tone)."""
    m = TONE_MARGIN
    u, v = u[:, m:-m, m:-m].astype(np.float64), v[:, m:-m, m:-m].astype(np.float64)
    p, h, w = u.shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    t = ((u + v) / 510).reshape(p, -1)
    d = (u - v).reshape(p, -1)
    x, y = np.broadcast_to(x.ravel(), t.shape), np.broadcast_to(y.ravel(), t.shape)
    full = np.stack([np.ones_like(t), t, x, y, t * x, t * y], axis=2)
    fit_full = _fitted(full, d)
    fit_base = _fitted(full[:, :, :2], d)
    return np.sqrt(((fit_full - fit_base) ** 2).mean(axis=1))


def _fitted(design: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Batched least squares: design (P, n, k) @ beta fitted to d (P, n)."""
    gram = design.transpose(0, 2, 1) @ design + 1e-9 * np.eye(design.shape[2])
    beta = np.linalg.solve(gram, (design.transpose(0, 2, 1) @ d[:, :, None]))
    return (design @ beta)[:, :, 0]


def _overlap(x: np.ndarray, y: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of x and of y shifted by (dy, dx) that overlap."""
    s = x.shape[1]
    return (
        x[:, max(0, dy) : s + min(0, dy), max(0, dx) : s + min(0, dx)],
        y[:, max(0, -dy) : s + min(0, -dy), max(0, -dx) : s + min(0, -dx)],
    )


def _detail(grey: np.ndarray) -> np.ndarray:
    """The thumbnail less its blur: fine detail, free of the light."""
    blur = _blur_matrix(grey.shape[1], DETAIL_SIGMA)
    return grey - blur @ grey @ blur.T


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """Gaussian blur as an (n, n) matrix, renormalised at the borders."""
    x = np.arange(n)
    w = np.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _zoom_matrix(n: int, z: float) -> np.ndarray:
    """Bilinear zoom by z >= 1 about the centre, as an (n, n) matrix."""
    x = (np.arange(n) - (n - 1) / 2) / z + (n - 1) / 2
    lo = np.clip(np.floor(x).astype(int), 0, n - 2)
    m = np.zeros((n, n), np.float32)
    m[np.arange(n), lo] = 1 - (x - lo)
    m[np.arange(n), lo + 1] += x - lo
    return m


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Union-find over edges (i, j), vectorised: each node's component id, its smallest member.

    Every round hooks each edge's larger root under its smaller one, then halves paths until every
    node points at its root; a handful of rounds merge any graph.
    """
    parent = np.arange(n)
    while True:
        ri, rj = parent[i], parent[j]
        differ = ri != rj
        if not differ.any():
            return parent
        np.minimum.at(parent, np.maximum(ri, rj)[differ], np.minimum(ri, rj)[differ])
        while True:
            up = parent[parent]
            if (up == parent).all():
                break
            parent = up

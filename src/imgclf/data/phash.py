"""Perceptual hashes, and the groups of images whose hashes nearly match, without comparing all pairs.

A pHash keeps the signs of an image's lowest spatial frequencies: re-encoding, resizing or a slight
colour shift leaves it within a few bits, while different photos differ in about half of its 64.
"""

from __future__ import annotations

import numpy as np

HASH_SIDE = 32  # the greyscale thumbnail the DCT sees, as in the classic pHash
LOW = 8  # its LOW x LOW lowest frequencies become the 64 bits
MAX_DISTANCE = 16  # beyond this, hashes of unrelated images start to match
# pHash bits (always even: each hash has 32 ones). Re-encoded and resized copies stay within 4; at
# 6, tiny low-detail images (a 32 px plane or bird against sky) start to match each other.
NEAR_DISTANCE = 4
# A thumbnail this flat (grey-level standard deviation, of 255) has no frequencies worth hashing: the
# bits of near-black or near-uniform images follow quantisation noise and a shared vignette, so
# different photos under the same hard light got one hash (87 false groups in a face set). Such
# images join no near-duplicate group; identical files are still found by their bytes.
FLAT_STD = 4.0
# ITU-R 601 luma, as PIL's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114])
_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _dct_matrix(n: int) -> np.ndarray:
    k, x = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT_LOW = _dct_matrix(HASH_SIDE)[:LOW]


def phashes(thumbs: np.ndarray) -> np.ndarray:
    """uint64 pHashes of (N, HASH_SIDE, HASH_SIDE, 3) uint8 RGB thumbnails."""
    grey = thumbs.astype(np.float64) @ _LUMA
    low = (_DCT_LOW @ grey @ _DCT_LOW.T).reshape(len(thumbs), -1)  # batched 2-D DCT, low corner
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def flat(thumbs: np.ndarray) -> np.ndarray:
    """True for thumbnails too uniform for a meaningful pHash (see FLAT_STD)."""
    return (thumbs.astype(np.float64) @ _LUMA).reshape(len(thumbs), -1).std(axis=1) < FLAT_STD


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between uint64 arrays (a table lookup per byte: numpy < 2 has no popcount)."""
    x = np.ascontiguousarray(np.bitwise_xor(a, b), dtype=np.uint64)
    return _BYTE_BITS[x.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of hashes at most `max_distance` bits apart. Give it unique hashes:
    k copies of one hash would make k² pairs.

    Pigeonhole: cut the 64 bits into max_distance + 1 bands; two hashes that close agree exactly
    on at least one band. Only hashes sharing a band value are compared, bucket by bucket in numpy,
    so 60k images cost milliseconds instead of 1.8 billion comparisons.
    """
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be in [0, {MAX_DISTANCE}], not {max_distance}")
    n = len(hashes)
    found_i, found_j = [], []
    edges = np.linspace(0, 64, max_distance + 2).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        keys = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
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

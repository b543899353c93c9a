"""Groups of images that must land in one split, and the split that keeps them together.

A split that puts one copy of a photo in train and another in test (re-encoded, resized, MIRRORED,
or a second crop of the same source photo) lets the model recognise instead of generalise, and
inflates test accuracy. Groups come from (`group_by`):
  auto / near-duplicates   pHash components, mirrored copies included, hashed from pixels training
                           decodes anyway (the cache): ~3 s per 60k images at 32 px, no second decode
  a regex with one capture the capture of each file name (of the path below the data root when the
                           pattern holds a '/'): `^(crop\\d+)` groups crop001001a.png with crop001001b.png
  none                     the plain per-image split
Like the doctor this module stays free of torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.data.phash import HASH_SIDE, NEAR_DISTANCE, components, flat, hamming, near_pairs, phashes
from imgclf.data.split import SPLITS, fill_missing_splits

CHUNK_BYTES = 1 << 24  # cache pixels per thumbnail batch: bounded memory at any img_size


# ---- for train and check ---------------------------------------------------------------------


def group_for_training(
    spec, group_by: str, images: np.ndarray, val_frac: float, test_frac: float, seed: int
) -> dict | None:
    """Resolve `group_by` for `train` after decoding (`images`: the cache rows, in spec order),
    regroup the split discover made when some group holds more than one image, and describe it.
    None when nothing was grouped: group_by none, or auto with every split given by the user.

    Without any multi-image group the split stays exactly the plain one, so datasets without
    near-duplicates keep their old splits."""
    check_group_by(group_by)
    to_split = _split_to_make(spec)
    if group_by == "none" or (group_by == "auto" and not to_split):
        return None
    usable = np.isin(spec.splits, SPLITS)  # skipped (unreadable) files are their own group
    if group_by in ("auto", "near-duplicates"):
        by = "near-duplicates"
        hashes, flipped, hashable = cache_hashes(images, usable)
        ids = near_duplicate_ids(hashes, flipped, usable & hashable, NEAR_DISTANCE)
    else:
        by, ids = group_by, regex_groups(spec.paths, spec.root, group_by)
    if to_split and len(np.unique(ids[usable])) < usable.sum():  # some group holds two images or more
        regroup(spec, ids, val_frac, test_frac, seed)
    return describe(spec, ids, by)


def _split_to_make(spec) -> bool:
    """Does discover assign any split here (else the user gave train, val and test for every image)?"""
    given = spec.given if spec.given is not None else spec.splits
    return bool((given == "").any() or not (given == "test").any() or not (given == "val").any())


# ---- where groups come from -------------------------------------------------------------------


def check_group_by(group_by: str) -> str:
    """`group_by` if valid, else a UserError saying what is accepted."""
    if group_by in ("auto", "none", "near-duplicates"):
        return group_by
    try:
        pattern = re.compile(group_by)
    except re.error as e:
        raise UserError(
            f"--group-by {group_by!r} is not a valid regular expression ({e}); use auto, none, "
            r"near-duplicates or a pattern with one capture group such as '^(crop\d+)'"
        ) from None
    if pattern.groups != 1:
        raise UserError(
            f"--group-by {group_by!r} has {pattern.groups} capture groups; it needs exactly one, the "
            r"group key, e.g. '^(crop\d+)' or '^([^_]+)_' (the file name up to the first '_')"
        )
    return group_by


def regex_groups(paths: list[str], root: str, pattern: str) -> np.ndarray:
    """Group id per path: files whose names give the same capture share one; a file that does not
    match is its own group. Matched against the file name, or against the path below `root`
    (with '/') when the pattern holds a '/'."""
    rx = re.compile(pattern)
    base = root if os.path.isdir(root) else os.path.dirname(root)
    keys: dict[str, int] = {}
    ids = np.arange(len(paths))
    for i, p in enumerate(paths):
        text = Path(os.path.relpath(p, base)).as_posix() if "/" in pattern else Path(p).name
        if (m := rx.search(text)) is not None and m.group(1):
            ids[i] = keys.setdefault(m.group(1), i)
    return ids


def near_duplicate_ids(hashes: np.ndarray, flipped: np.ndarray, usable: np.ndarray, max_distance: int) -> np.ndarray:
    """Group id per image (its group's smallest index): connected components of images within
    `max_distance` pHash bits of each other or of each other's mirror image. Unusable images are
    their own group.

    Each image is two nodes, its hash and its mirror's hash, joined by an edge: two images whose
    hashes nearly match, or where one nearly matches the other's mirror, then fall into one component.
    """
    idx = np.flatnonzero(usable)
    n = len(idx)
    unique, inverse = np.unique(np.concatenate([hashes[idx], flipped[idx]]), return_inverse=True)
    inverse = inverse.ravel()
    a, b = near_pairs(unique, max_distance)
    comp = components(len(unique), np.concatenate([a, inverse[:n]]), np.concatenate([b, inverse[n:]]))
    ids = np.arange(len(hashes))
    node = comp[inverse[:n]]
    first = np.full(len(unique), len(hashes))
    np.minimum.at(first, node, idx)  # name each group by its smallest image index
    ids[idx] = first[node]
    return ids


def mirrored(hashes: np.ndarray, flipped: np.ndarray, i: int, j: int, max_distance: int) -> tuple[int, bool]:
    """(pHash distance, mirrored?) of image j to image i: mirrored when only j's mirror image is close."""
    direct = int(hamming(hashes[i : i + 1], hashes[j : j + 1])[0])
    mirror = int(hamming(flipped[i : i + 1], hashes[j : j + 1])[0])
    return (mirror, True) if mirror < direct and direct > max_distance else (direct, False)


def cache_hashes(images: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pHashes of every cached (N, S, S, 3) row and of its mirror image (zero for unusable rows), and
    whether the row is textured enough for its hash to mean anything (phash.flat).

    The cache already holds every image decoded and resized, so hashing it costs a pass over memory
    (CIFAR-10's 60k rows at 32 px: 2.8 CPU s with grouping) where hashing the files would decode them
    all again (14.7 CPU s; bench/groups.py)."""
    hashes, flipped = np.zeros(len(images), np.uint64), np.zeros(len(images), np.uint64)
    hashable = np.zeros(len(images), bool)
    idx = np.flatnonzero(usable)
    step = max(1, CHUNK_BYTES // max(1, images[0].size if len(images) else 1))
    for start in range(0, len(idx), step):
        rows = idx[start : start + step]
        thumbs = thumbnails(np.asarray(images[rows]))
        hashes[rows], flipped[rows], hashable[rows] = phashes(thumbs), phashes(thumbs[:, :, ::-1]), ~flat(thumbs)
    return hashes, flipped, hashable


def thumbnails(rows: np.ndarray, side: int = HASH_SIDE) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, side, side, 3) uint8: box-filtered (area averages) when shrinking,
    nearest pixels when S < side (the DCT only needs the low frequencies either way)."""
    size = rows.shape[1]
    if size <= side:
        pick = np.arange(side) * size // side
        return rows[:, pick][:, :, pick]
    return np.stack([np.asarray(Image.fromarray(r).resize((side, side), Image.Resampling.BOX)) for r in rows])


def ids_from_findings(n: int, findings: dict) -> np.ndarray:
    """Group id per image from the doctor's exact and near-duplicate groups (mirrored ones included)."""
    i, j = [], []
    for group in findings.get("exact_duplicates", []) + findings.get("near_duplicates", []):
        members = [f["index"] for f in group["files"]]
        i += members[:1] * (len(members) - 1)
        j += members[1:]
    return components(n, np.array(i, np.int64), np.array(j, np.int64))


# ---- the split --------------------------------------------------------------------------------


def regroup(spec, groups: np.ndarray, val_frac: float, test_frac: float, seed: int) -> None:
    """Redo discover's split of `spec` with `groups` kept whole. The user's own splits stay; samples
    already taken out of every split (skipped, deduplicated) stay out and are not counted."""
    out = ~np.isin(spec.splits, (*SPLITS, ""))
    marks = spec.splits[out]
    spec.splits = (spec.given if spec.given is not None else spec.splits).copy()
    fill_missing_splits(spec, val_frac, test_frac, seed, groups=groups, skip=out)
    spec.splits[out] = marks


# ---- what a grouping did ----------------------------------------------------------------------


def describe(spec, groups: np.ndarray, by: str) -> dict:
    """JSON-ready summary: how many groups hold more than one image, their images, the largest,
    how many hold several labels, and the groups that straddle splits (only possible in splits
    the user gave)."""
    keys, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    present = np.zeros((len(keys), len(SPLITS)), bool)
    for s, name in enumerate(SPLITS):
        present[inverse[spec.splits == name], s] = True
    straddle = np.flatnonzero(present.sum(1) > 1)
    examples = [
        {
            "files": [spec.paths[i] for i in np.flatnonzero(inverse == g)[:4]],
            "size": int(counts[g]),
            "splits": [name for s, name in enumerate(SPLITS) if present[g, s]],
        }
        for g in straddle[:5]
    ]
    multi = counts > 1
    largest = int(np.argmax(counts)) if len(counts) else 0
    pairs = np.unique(np.stack([inverse, np.asarray(spec.labels)]), axis=1)  # (group, label) present
    mixed = int((np.bincount(pairs[0], minlength=len(keys)) > 1).sum())
    return {
        "by": by,
        "groups": int(multi.sum()),
        "images": int(counts[multi].sum()),
        "mixed_labels": mixed,
        "largest": int(counts.max()) if len(counts) else 0,
        "largest_example": spec.paths[int(keys[largest])] if multi.any() else None,
        "straddling": len(straddle),
        "straddling_examples": examples,
    }


def summary_line(info: dict) -> str:
    """One line for the console and the report: what the split kept together."""
    what = (
        "near-duplicates (pHash, mirrored copies included)"
        if info["by"] == "near-duplicates"
        else f"file names matching '{info['by']}'"
    )
    if not info["groups"]:
        return f"no groups of {what}: every image split on its own"
    line = (
        f"keeps {info['groups']:,} groups of {what} together ({info['images']:,} images; largest {info['largest']:,})"
    )
    if info.get("mixed_labels"):
        line += f"; {info['mixed_labels']:,} hold several labels and went by their majority label"
    if info["straddling"]:
        line += f"; {info['straddling']:,} groups straddle the splits you gave"
    return line

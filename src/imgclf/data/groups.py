"""Groups of images that must land in one split, and the split that keeps them together.

A split that puts one copy of a photo in train and another in test (re-encoded, resized, MIRRORED,
or a second crop of the same source photo) lets the model recognise instead of generalise, and
inflates test accuracy. Groups come from (`group_by`):
  auto / near-duplicates   images with identical thumbnails, and pHash candidates (mirrored copies
                           included) whose detail and brightness match (phash.alike), from pixels
                           training decodes anyway (the cache): a few s per 60k images at 32 px
  a regex with one capture the capture of each file name (of the path below the data root when the
                           pattern holds a '/'): `^(crop\\d+)` groups crop001001a.png with crop001001b.png
  none                     the plain per-image split
Like the doctor this module stays free of torch.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.data.phash import HASH_SIDE, NEAR_DISTANCE, Prints, alike, components, hamming, near_pairs, prints
from imgclf.data.split import SPLITS, fill_missing_splits

CHUNK_BYTES = 1 << 24  # cache pixels per thumbnail batch: bounded memory at any img_size
CHECK_PAIRS = 4096  # candidate pairs checked at once (phash.alike): ~50 MB of thumbnails and details


# ---- for train and check ---------------------------------------------------------------------


def group_for_training(
    spec, group_by: str, images: np.ndarray, val_frac: float, test_frac: float, seed: int, found: Prints | None = None
) -> dict | None:
    """Resolve `group_by` for `train` after decoding (`images`: the cache rows, in spec order),
    regroup the split discover made when some group holds more than one image, and describe it.
    None when nothing was grouped: group_by none, or auto with every split given by the user.
    `found`: the images' prints when the caller made them already (usable_prints).

    Without any multi-image group the split stays exactly the plain one, so datasets without
    near-duplicates keep their old splits."""
    check_group_by(group_by)
    to_split = _split_to_make(spec)
    if group_by == "none" or (group_by == "auto" and not to_split):
        return None
    usable = np.isin(spec.splits, SPLITS)  # skipped (unreadable) files are their own group
    if group_by in ("auto", "near-duplicates"):
        by = "near-duplicates"
        ids = near_duplicate_ids(found if found is not None else cache_prints(images, usable), usable, NEAR_DISTANCE)
    else:
        by, ids = group_by, regex_groups(spec.paths, spec.root, group_by)
    if to_split and len(np.unique(ids[usable])) < usable.sum():  # some group holds two images or more
        regroup(spec, ids, val_frac, test_frac, seed)
    return describe(spec, ids, by)


def usable_prints(spec, images: np.ndarray) -> Prints:
    """cache_prints of the images training can use (its skipped files stay zero)."""
    return cache_prints(images, np.isin(spec.splits, SPLITS))


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


def near_duplicate_ids(found: Prints, usable: np.ndarray, max_distance: int, check: bool = True) -> np.ndarray:
    """Group id per image (its group's smallest index): connected components of images whose
    thumbnails are identical, or whose pHashes (one of them mirrored) are within `max_distance`
    bits and whose thumbnails then show one photo (phash.alike; `check=False` takes every hash
    match, as before 2026-11-25). Unusable images are their own group; flat ones (phash.FLAT_STD)
    group only when identical.
    """
    idx = np.flatnonzero(usable)
    # Identical thumbnails are one image, whatever their texture (exact copies always group), and
    # are searched once: k copies of a photo would otherwise make k² pairs to check.
    digests = np.array([hashlib.blake2b(t.tobytes(), digest_size=16).digest() for t in found.grey[idx]], "S16")
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)  # 20x faster than rows
    n = len(idx)
    comp = components(n, first[inverse.ravel()], np.arange(n))
    reps = first[found.textured[idx[first]]]  # positions in idx of the textured distinct thumbnails
    buckets = _Buckets(found.hashes[idx[reps]], found.flipped[idx[reps]], max_distance)

    def join(comp, pairs):
        """comp with the pairs (image numbers in reps) that show one photo joined, CHECK_PAIRS at a time."""
        i, j, flip = reps[pairs[0]], reps[pairs[1]], pairs[2]
        for start in range(0, len(i), CHECK_PAIRS):
            a, b, f = i[start : start + CHECK_PAIRS], j[start : start + CHECK_PAIRS], flip[start : start + CHECK_PAIRS]
            todo = comp[a] != comp[b]  # pairs already joined through others need no look
            a, b, f = a[todo], b[todo], f[todo]
            if check and len(a):
                ga, gb = found.grey[idx[a]], found.grey[idx[b]]
                gb[f] = gb[f][:, :, ::-1]
                same = alike(ga, gb, found.colourless[idx[a]] & found.colourless[idx[b]])
                a, b = a[same], b[same]
            comp = components(n, np.concatenate([np.arange(n), a]), np.concatenate([comp, b]))
        return comp

    # Each bucket's first image against every image of the buckets near it, then the other pairs of
    # only those buckets not yet one group: 3,000 frames of one still scene cost 3,000 checks, not 9 million.
    comp = join(comp, buckets.pairs(star=True))
    comp = join(comp, buckets.pairs(star=False, skip=buckets.whole(comp[reps])))
    ids = np.arange(len(usable))
    ids[idx] = idx[comp]  # components are named by their smallest position: the smallest image index
    return ids


def candidate_pairs(
    hashes: np.ndarray, flipped: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image pairs (i < j) whose pHashes are within `max_distance` bits, or i's and j's mirror
    image's (then mirrored[k] is True; a pair close both ways comes twice)."""
    buckets = _Buckets(hashes, flipped, max_distance)
    star, rest = buckets.pairs(star=True), buckets.pairs(star=False)
    key = np.unique(np.concatenate([_key(*star, len(hashes)), _key(*rest, len(hashes))]))
    return _unkey(key, len(hashes))


class _Buckets:
    """Images' pHashes bucketed by value. Each image is two nodes, its hash (node k) and its mirror
    image's (node n + k); near_pairs compares distinct values once, and the node pairs behind each
    pair of near values (a value with itself included) are the candidates."""

    def __init__(self, hashes: np.ndarray, flipped: np.ndarray, max_distance: int):
        self.n = len(hashes)
        values, value = np.unique(np.concatenate([hashes, flipped]), return_inverse=True)
        va, vb = near_pairs(values, max_distance)
        self.va, self.vb = np.r_[va, np.arange(len(values))], np.r_[vb, np.arange(len(values))]
        self.nodes = np.argsort(value.ravel(), kind="stable")  # grouped by value
        self.count = np.bincount(value.ravel(), minlength=len(values))
        self.start = np.cumsum(self.count) - self.count

    def pairs(self, star: bool, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct image pairs (i < j, mirrored) behind the value pairs not in `skip`: with `star`,
        those holding either value's first node; else all the others."""
        va, vb = (self.va, self.vb) if skip is None else (self.va[~skip], self.vb[~skip])
        ca, cb = self.count[va], self.count[vb]
        if star:  # (each node of va, the first of vb) and (the first of va, each other node of vb)
            k, r = _ranks(ca)
            k2, r2 = _ranks(cb - 1)
            p = np.r_[self.start[va][k] + r, self.start[va][k2]]
            q = np.r_[self.start[vb][k], self.start[vb][k2] + r2 + 1]
        else:  # every (node of va, node of vb) but the first of either
            k, r = _ranks((ca - 1) * (cb - 1))
            p = self.start[va][k] + 1 + r // (cb[k] - 1)
            q = self.start[vb][k] + 1 + r % (cb[k] - 1)
        p, q = self.nodes[p], self.nodes[q]
        i, j, mirrored = p % self.n, q % self.n, (p >= self.n) != (q >= self.n)
        keep = i != j  # an image and its own mirror image: a symmetric photo
        return _unkey(np.unique(_key(i[keep], j[keep], mirrored[keep], self.n)), self.n)

    def whole(self, group: np.ndarray) -> np.ndarray:
        """Per value pair: do all images of both values already sit in one group (`group` per image)?"""
        if not len(self.nodes):
            return np.zeros(len(self.va), bool)
        of_node = group[self.nodes % self.n]
        lo, hi = np.minimum.reduceat(of_node, self.start), np.maximum.reduceat(of_node, self.start)
        return (lo[self.va] == hi[self.va]) & (lo[self.vb] == hi[self.vb]) & (lo[self.va] == lo[self.vb])


def _ranks(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, r) for every r < counts[k]: the flat enumeration of ragged ranges, in numpy."""
    counts = np.maximum(counts, 0)
    k = np.repeat(np.arange(len(counts)), counts)
    return k, np.arange(len(k)) - np.repeat(np.cumsum(counts) - counts, counts)


def _key(i: np.ndarray, j: np.ndarray, mirrored: np.ndarray, n: int) -> np.ndarray:
    """One int64 per (unordered pair, mirrored): a 1-D unique sorts 20x faster than unique rows."""
    return (np.minimum(i, j) * n + np.maximum(i, j)) * 2 + mirrored


def _unkey(key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return key // 2 // n, key // 2 % n, (key % 2).astype(bool)


def mirrored(found: Prints, i: int, j: int, max_distance: int) -> tuple[int, bool]:
    """(pHash distance, mirrored?) of image j to image i: mirrored when only j's mirror image is close."""
    direct = int(hamming(found.hashes[i : i + 1], found.hashes[j : j + 1])[0])
    mirror = int(hamming(found.flipped[i : i + 1], found.hashes[j : j + 1])[0])
    return (mirror, True) if mirror < direct and direct > max_distance else (direct, False)


def cache_prints(images: np.ndarray, usable: np.ndarray) -> Prints:
    """phash.prints of every usable cached (N, S, S, 3) row (zeros for the others).

    The cache already holds every image decoded and resized, so this costs a pass over memory
    (CIFAR-10's 60k rows at 32 px: a few CPU s with grouping) where hashing the files would decode
    them all again (14.7 CPU s; bench/groups.py)."""
    found = Prints.empty(len(images))
    idx = np.flatnonzero(usable)
    step = max(1, CHUNK_BYTES // max(1, images[0].size if len(images) else 1))
    for start in range(0, len(idx), step):
        rows = idx[start : start + step]
        found.put(rows, prints(thumbnails(np.asarray(images[rows]))))
    return found


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
    groups = "group" if info["groups"] == 1 else "groups"
    line = (
        f"keeps {info['groups']:,} {groups} of {what} together ({info['images']:,} images; largest {info['largest']:,})"
    )
    if info.get("mixed_labels"):
        line += f"; {info['mixed_labels']:,} hold{'s' if info['mixed_labels'] == 1 else ''} several labels and went by their majority label"
    if info["straddling"]:
        line += f"; {info['straddling']:,} {'group straddles' if info['straddling'] == 1 else 'groups straddle'} the splits you gave"
    return line

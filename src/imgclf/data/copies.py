"""Near-copies of a run's own images among other images: a training photo resized, re-encoded,
re-cropped a little or mirrored, in a folder the run is then evaluated on. Scored as new photos they
inflate the accuracy as exact copies do, and a byte comparison (evaluation.elsewhere.own_images) cannot
see them.

A run keeps each of its images' pHash (RUN/prints.safetensors, 10 bytes an image, written as
training starts: 0.45 MB for 45,000). Another image whose pHash, or its mirror image's, is within
phash.NEAR_DISTANCE bits of a kept one is a candidate; as when training groups near-duplicates
(data.groups), a candidate counts only when the two grey thumbnails show one photo (phash.alike), the
run's image decoded again for that. Hashes alone would call different faces under one light copies
(issue 34). Like the doctor this module stays free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from imgclf.core.files import atomic_path
from imgclf.data.groups import thumbnails
from imgclf.data.phash import NEAR_DISTANCE, Prints, alike, hamming, near_pairs, prints

PRINTS_FILE = "prints.safetensors"
# The closest candidates of one image that are decoded and looked at: a bounded cost per image where
# many of the run's images hash alike (frames of one scene), and the closest is the likeliest copy.
CHECK_EACH = 3


@dataclass
class Kept:
    """What a run keeps of its images' prints, one row per splits.csv row."""

    hashes: np.ndarray  # (N,) uint64
    textured: np.ndarray  # (N,) bool: phash.FLAT_STD; a flat image's hash means nothing
    colourless: np.ndarray  # (N,) bool: greyscale (phash.COLOURLESS)
    # The images were hashed as training decoded them: at this size and resize mode. The model kept
    # may see another (a face embedding's 160 px, padded): other photos are hashed as these were.
    size: int
    resize: str


def write_kept(path: Path, found: Prints | None, size: int, resize: str) -> None:
    """RUN/prints.safetensors from the prints of the run's images, decoded at `size` px by `resize`
    (the grey thumbnails are left out: 1 KB an image, and the few a search needs are decoded again);
    nothing when `found` is None."""
    from safetensors.numpy import save_file

    if found is None:
        return
    tensors = {
        "hashes": np.ascontiguousarray(found.hashes, np.uint64),
        "textured": found.textured.astype(np.uint8),
        "colourless": found.colourless.astype(np.uint8),
    }
    about = {"what": "pHash of each splits.csv row (imgclf.data.copies)", "size": str(size), "resize": resize}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=about)


def read_kept(path: Path) -> Kept | None:
    """The run's kept prints; None when it has none (runs trained before 2026-11-30) or they are unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            about, t = f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
        return Kept(
            t["hashes"].astype(np.uint64),
            t["textured"].astype(bool),
            t["colourless"].astype(bool),
            int(about["size"]),
            about["resize"],
        )
    except (OSError, KeyError, ValueError, SafetensorError):
        return None


def near_copies(
    kept: Kept, rows: np.ndarray, queries: Prints, decode: Callable[[int], np.ndarray | None]
) -> dict[int, int]:
    """{query image: the kept row it copies} for each textured query that is a near-copy of one of
    the kept `rows` (directly or mirrored). `decode(row)` gives that row's image as the queries'
    prints were made from (kept.size, kept.resize), or None when it cannot be read (not counted)."""
    cands = _candidates(kept, rows, queries)
    if not cands:
        return {}
    pictures: dict[int, np.ndarray | None] = {}
    found: dict[int, int] = {}
    for rank in range(CHECK_EACH):  # the closest candidate of each query first, then the next
        todo = [(q, c[rank]) for q, c in cands.items() if q not in found and rank < len(c)]
        if not todo:
            break
        for _, (row, _mirrored) in todo:
            if row not in pictures:
                pictures[row] = decode(row)
        todo = [(q, (row, m)) for q, (row, m) in todo if pictures[row] is not None]
        if not todo:
            continue
        theirs = prints(thumbnails(np.stack([pictures[row] for _, (row, _) in todo])))
        ours = queries.grey[[q for q, _ in todo]].copy()
        mirrored = np.array([m for _, (_, m) in todo])
        ours[mirrored] = ours[mirrored][:, :, ::-1]
        both_grey = queries.colourless[[q for q, _ in todo]] & theirs.colourless
        for (q, (row, _)), same in zip(todo, alike(theirs.grey, ours, both_grey)):
            if same:
                found[q] = row
    return found


def _candidates(kept: Kept, rows: np.ndarray, queries: Prints) -> dict[int, list[tuple[int, bool]]]:
    """{query: [(kept row, mirrored?), ...] closest first, at most CHECK_EACH}: kept rows (textured)
    whose pHash is within NEAR_DISTANCE bits of the query's or of its mirror image's."""
    ref = rows[kept.textured[rows]]
    q = np.flatnonzero(queries.textured)
    if not len(ref) or not len(q):
        return {}
    # One search over the distinct values of all three: pairs within the kept rows are found too and
    # dropped (near_pairs is fast on 60k values: data.groups makes the same search when training).
    values, inverse = np.unique(
        np.concatenate([kept.hashes[ref], queries.hashes[q], queries.flipped[q]]), return_inverse=True
    )
    inverse = inverse.ravel()
    nr, nq = len(ref), len(q)
    kept_at: dict[int, list[int]] = {}
    for k, v in enumerate(inverse[:nr]):
        rows_of = kept_at.setdefault(int(v), [])
        if len(rows_of) < CHECK_EACH:  # rows of one hash are as close as each other: a few will do
            rows_of.append(int(ref[k]))
    asked_at: dict[int, list[tuple[int, bool]]] = {}
    for k, v in enumerate(inverse[nr:]):
        asked_at.setdefault(int(v), []).append((int(q[k % nq]), k >= nq))
    i, j = near_pairs(values, NEAR_DISTANCE)
    same = np.arange(len(values))
    a, b = np.concatenate([i, j, same]), np.concatenate([j, i, same])
    is_kept, is_asked = np.zeros(len(values), bool), np.zeros(len(values), bool)
    is_kept[inverse[:nr]], is_asked[inverse[nr:]] = True, True
    cross = is_kept[a] & is_asked[b]
    a, b = a[cross], b[cross]
    found: dict[int, dict[int, tuple[int, bool]]] = {}  # query -> kept row -> (distance, mirrored)
    for u, v, d in zip(a.tolist(), b.tolist(), hamming(values[a], values[b]).tolist()):
        for query, mirrored in asked_at[v]:
            best = found.setdefault(query, {})
            for row in kept_at[u]:
                if row not in best or d < best[row][0]:
                    best[row] = (d, mirrored)
    return {
        query: [(row, m) for row, (_, m) in sorted(best.items(), key=lambda x: x[1][0])[:CHECK_EACH]]
        for query, best in found.items()
    }

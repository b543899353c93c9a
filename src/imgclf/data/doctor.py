"""The data doctor: what in a dataset silently hurts training or makes its test score lie.

`diagnose` finds unreadable files, exact duplicates (same bytes) and near-duplicates (same pHash
give or take a few bits, or the pHash of the other's mirror image: flagged `mirrored`; then the
same detail and brightness, phash.alike; the training split groups by the same rule) — each
group marked as conflicting labels or within one class, and as leaking across train/val/test or
not — class imbalance, and size, aspect-ratio and colour-mode outliers. It decodes every image
once, small, in parallel. `quick_check` only hashes file bytes, cheap enough to run before every
training; `dedupe` says which images to drop to resolve what either found.
Like the cache builder this module stays free of torch: it runs in worker processes.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from imgclf.core.cpus import usable_cpus
from imgclf.core.files import read_regular
from imgclf.data.cache import progress_bar
from imgclf.data.doctor_classes import file_entry, imbalance, outliers
from imgclf.data.groups import (
    mirrored,
    near_duplicate_ids,
    thumbnails,
)
from imgclf.data.images import UnusableImage, load_upto, opened
from imgclf.data.phash import HASH_SIDE, NEAR_DISTANCE, Prints, prints
from imgclf.data.spec import DatasetSpec, has_image_header

THUMB_FROM = 3 * HASH_SIDE  # the side files are decoded at before their hash thumbnail (see _scan_chunk)

SPLIT_ORDER = ("train", "val", "test")
CHUNK = 256
POOL_MIN_IMAGES = 64


def diagnose(
    spec: DatasetSpec, near_distance: int = NEAR_DISTANCE, workers: int | None = None, progress: bool = True
) -> dict:
    """Every finding about `spec`, as a JSON-ready dict (paths as in spec.paths).

    Duplicate groups list their files with index, path, label and split (the split `discover`
    assigned), and two verdicts: `conflicting_labels` (the copies sit in different classes, else
    they are within one class) and `leakage` (they sit in more than one of train/val/test).
    """
    started = time.perf_counter()
    bad, digests, found, sizes, modes = _scan(spec.paths, workers, progress)
    ok = np.ones(len(spec.paths), bool)
    ok[list(bad)] = False
    findings = {
        "root": spec.root,
        "layout": spec.layout,
        **({"read_as": spec.note} if spec.note else {}),
        "classes": spec.classes,
        "images": len(spec.paths),
        "readable": int(ok.sum()),
        "counts": _counts(spec, ok),
        "unreadable": [{**file_entry(spec, i), "reason": r} for i, r in sorted(bad.items())],
        "exact_duplicates": _exact_groups(spec, digests),
        "near_duplicates": _near_groups(spec, digests, found, ok, near_distance),
        "near_distance": near_distance,
        "imbalance": imbalance(spec, ok),
        "outliers": outliers(spec, sizes, modes, ok),
        "ignored": list(spec.ignored),
        "unnamable": list(spec.unnamable),
    }
    findings["summary"] = summarize(findings)
    findings["seconds"] = round(time.perf_counter() - started, 2)
    return findings


def summarize(findings: dict) -> dict:
    """How many of each finding: the numbers a reader (or a report page) wants first."""

    def by_kind(groups):
        return {
            "groups": len(groups),
            "files": sum(len(g["files"]) for g in groups),
            **{k: len(v) for k, v in duplicate_kinds(groups).items()},
        }

    return {
        "images": findings["images"],
        "unreadable": len(findings["unreadable"]),
        "ignored": len(findings["ignored"]),
        "unnamable": len(findings.get("unnamable", [])),
        "exact_duplicates": by_kind(findings["exact_duplicates"]),
        "near_duplicates": {
            **by_kind(findings["near_duplicates"]),
            "mirrored": sum(1 for g in findings["near_duplicates"] if g.get("mirrored")),
        },
        "imbalance_ratio": findings["imbalance"]["ratio"],
        "small_classes": findings["imbalance"]["small_classes"],
        "outliers": {k: len(findings["outliers"][k]) for k in ("small", "large", "aspect", "mode")},
        "greyscale_by_class": findings["outliers"].get("grey_by_class", {}).get("flagged", False),
    }


def quick_check(spec: DatasetSpec, workers: int | None = None) -> dict:
    """Exact duplicates only, from file bytes (no decoding): for `train` to warn before it starts.

    Returns {"root": ..., "exact_duplicates": [groups as in diagnose]}; feed it to
    `duplicate_warnings` and `dedupe`. Files that cannot be read are left to the decoder, which reports them.
    """
    with ThreadPoolExecutor(workers or min(8, usable_cpus() * 2)) as pool:
        # hashlib and file reads release the GIL: threads are enough, and start instantly.
        digests = list(pool.map(_file_digest, spec.paths))
    for i in np.flatnonzero(spec.splits == "skipped"):  # already found unreadable by the decoder
        digests[i] = ""
    groups = _exact_groups(spec, digests)
    # Failed downloads are identical too (empty files, one HTML error page saved in two class
    # folders), but the decoder skips them as unreadable: they teach no label and leak nothing.
    # Only a group's first file is opened, so the bytes-only check stays cheap.
    groups = [g for g in groups if has_image_header(g["files"][0]["path"])]
    return {"root": spec.root, "exact_duplicates": groups}


def duplicate_warnings(findings: dict) -> list[str]:
    """One line per problem `train` should warn about: conflicting labels and split leakage."""
    lines = []
    for key, what in (("exact_duplicates", "identical files"), ("near_duplicates", "near-duplicate images")):
        kinds = duplicate_kinds(findings.get(key, []))
        for kind, harm in (
            ("conflicting_labels", "carry different labels: the model is taught both"),
            ("leakage", "sit in more than one split: test accuracy is inflated"),
        ):
            if hits := kinds[kind]:
                # Show a leak that is not also a label conflict when there is one: that line named it.
                shown = min(hits, key=lambda g: g["conflicting_labels"] and kind == "leakage")
                lines.append(
                    f"{len(hits)} set(s) of {what} {harm} (e.g. {example(shown, findings.get('root'))}); "
                    "--dedupe resolves them"
                )
    return lines


def duplicate_kinds(groups: list[dict]) -> dict[str, list[dict]]:
    """Duplicate groups by what they do: teach two labels, or copies within one class; and,
    across both, those that leak between splits."""
    return {
        "conflicting_labels": [g for g in groups if g["conflicting_labels"]],
        "within_class": [g for g in groups if not g["conflicting_labels"]],
        "leakage": [g for g in groups if g["leakage"]],
    }


def dedupe(spec: DatasetSpec, findings: dict) -> np.ndarray:
    """Sorted indices into spec.paths to drop so that no duplicate group of `findings` remains.

    The rule: a group whose files carry different labels is dropped entirely (no copy's label can
    be trusted); otherwise one copy stays, the one in the earliest split (train, then val, then
    test; then the first path), so a leaked test copy leaves the test split and training keeps the
    image. Groups are matched by path, so the findings may come from an earlier discover().
    """
    where = {p: i for i, p in enumerate(spec.paths)}
    rank = {s: r for r, s in enumerate(SPLIT_ORDER)}
    drop: set[int] = set()
    for group in findings.get("exact_duplicates", []) + findings.get("near_duplicates", []):
        members = [where[f["path"]] for f in group["files"] if f["path"] in where]
        if len({int(spec.labels[i]) for i in members}) > 1:
            drop.update(members)
        elif members:
            keep = min(members, key=lambda i: (rank.get(spec.splits[i], len(rank)), i))
            drop.update(i for i in members if i != keep)
    return np.array(sorted(drop), dtype=np.int64)


# ---- measuring every image -------------------------------------------------------------------


def _scan(paths: list[str], workers: int | None, progress: bool):
    """Per image: unusable reason, or sha256 of its bytes, its phash.prints (pHashes, texture, grey
    thumbnail), stored (w, h) and colour mode."""
    n = len(paths)
    workers = 1 if n < POOL_MIN_IMAGES else (workers or usable_cpus())
    step = max(1, min(CHUNK, math.ceil(n / (workers * 4))))
    chunks = [(start, paths[start : start + step]) for start in range(0, n, step)]
    bad: dict[int, str] = {}
    digests, modes = [""] * n, [""] * n
    found, sizes = Prints.empty(n), np.zeros((n, 2), np.int64)
    with progress_bar(n, progress) as advance:
        pool = ProcessPoolExecutor(min(workers, len(chunks))) if workers > 1 else None
        try:
            for (start, part), (chunk_bad, rows, chunk_prints) in zip(
                chunks, (pool.map if pool else map)(_scan_chunk, chunks)
            ):
                bad.update(chunk_bad)
                for i, digest, size, mode in rows:
                    digests[i], sizes[i], modes[i] = digest, size, mode
                if rows:
                    found.put([r[0] for r in rows], chunk_prints)
                advance(len(part))
        finally:
            if pool:
                pool.shutdown()
    return bad, digests, found, sizes, modes


def _scan_chunk(chunk: tuple[int, list[str]]):
    """Top level so worker processes can import it; returns small tuples and the prints (1 KB an image)."""
    start, paths = chunk
    bad, ok, thumbs = {}, [], []
    for i, path in enumerate(paths, start):
        try:
            # The decoder training uses: the same files fail, for the same reasons. Photos larger
            # than twice the hash size are decoded at the CPU default's 96 px and area-averaged to
            # hash size, as the training cache's rows are, so `check` and `train` see one thumbnail
            # (decoded straight to 32 px, ORL's near-still frames kept more of their detail alike:
            # 20 false groups against 18, and 8 against 5 relit; bench/duplicates.py). Smaller ones
            # (CIFAR's 32 px) go straight to hash size: upsampling them took 2.4x the time.
            thumb = thumbnails(load_upto(path, THUMB_FROM, HASH_SIDE)[None])[0]
            data = _read_bytes(path)
            size, mode = _header(data)
        except UnusableImage as e:
            bad[i] = e.reason
            continue
        thumbs.append(thumb)
        ok.append((i, hashlib.sha256(data).hexdigest(), size, mode))
    return bad, ok, prints(np.stack(thumbs)) if thumbs else None


def _read_bytes(path: str) -> bytes:
    try:
        return read_regular(path)
    except OSError as e:
        raise UnusableImage(f"cannot read file: {e.strerror or e}") from e


def _header(data: bytes) -> tuple[tuple[int, int], str]:
    """(width, height) and colour mode as stored, from the header alone."""
    try:
        with opened(io.BytesIO(data), scalable=True) as img:
            return img.size, img.mode
    except UnusableImage as e:  # the file decoded a moment ago: only a concurrent edit gets here
        raise UnusableImage(f"changed while being read: {e.reason}") from e


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(read_regular(path)).hexdigest()
    except OSError:
        return ""


# ---- findings ---------------------------------------------------------------------------------


def _group(spec: DatasetSpec, members: list[int], **extra) -> dict:
    labels = sorted({spec.classes[spec.labels[i]] for i in members})
    present = {str(spec.splits[i]) for i in members}
    splits = [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))
    return {
        "conflicting_labels": len(labels) > 1,
        "leakage": len(present & set(SPLIT_ORDER)) > 1,
        "labels": labels,
        "splits": splits,
        **extra,
        "files": [file_entry(spec, i) for i in members],
    }


def _sorted_groups(groups: list[dict]) -> list[dict]:
    """Worst first: conflicting labels, then leakage, then harmless copies."""
    return sorted(groups, key=lambda g: (not g["conflicting_labels"], not g["leakage"], g["files"][0]["index"]))


def _exact_groups(spec: DatasetSpec, digests: list[str]) -> list[dict]:
    by_digest = defaultdict(list)
    for i, d in enumerate(digests):
        if d:
            by_digest[d].append(i)
    return _sorted_groups([_group(spec, m, sha256=d) for d, m in by_digest.items() if len(m) > 1])


def _near_groups(spec: DatasetSpec, digests: list[str], found: Prints, ok: np.ndarray, max_distance: int) -> list[dict]:
    """Connected groups of near-duplicates (groups.near_duplicate_ids: within `max_distance` pHash
    bits of each other or of each other's mirror image, and alike in detail) that hold at least two
    different files (groups of identical bytes alone are exact duplicates, reported there). A group
    with a mirrored copy is flagged `mirrored`."""
    comp = near_duplicate_ids(found, ok, max_distance)
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(comp[idx], kind="stable")]
    starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
    groups = []
    for members in np.split(order, starts[1:]):
        if len(members) > 1 and len({digests[i] for i in members}) > 1:
            members = sorted(members.tolist())
            g = _group(spec, members)
            for f, i in zip(g["files"], members):
                # pHash bits from the group's first file, or from its mirror image when closer
                f["distance"], f["mirrored"] = mirrored(found, members[0], i, max_distance)
            g["mirrored"] = any(f["mirrored"] for f in g["files"])
            groups.append(g)
    return _sorted_groups(groups)


def _counts(spec: DatasetSpec, ok: np.ndarray) -> dict:
    """Readable images per split and class."""
    k = len(spec.classes)
    return {
        s: dict(zip(spec.classes, np.bincount(spec.labels[ok & (spec.splits == s)], minlength=k).tolist()))
        for s in SPLIT_ORDER
    }


def example(group: dict, root: str | None) -> str:
    """Two of a duplicate group's files, for one line of text: `a.jpg = b.jpg …`."""
    more = " …" if len(group["files"]) > 2 else ""
    return " = ".join(short_path(f["path"], root) for f in group["files"][:2]) + more


def short_path(path: str, root: str | None) -> str:
    """`path` relative to the dataset root, for display (the JSON keeps full paths)."""
    if not root:
        return path
    base = root if os.path.isdir(root) else os.path.dirname(root)
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") else rel

"""The data doctor's class-level findings: how unevenly the classes are filled, the images far from
the typical one (size, shape, colour mode), and greyscale gathered in some classes, a shortcut a
network learns instead of the classes (one class scanned or shot on another camera). `imgclf check`
reads the modes from the files' headers; training, the colourless mark of its images' prints."""

from __future__ import annotations

from collections import Counter

import numpy as np

from imgclf.data.spec import DatasetSpec

SIZE_FACTOR = 3.0  # shorter side this many times below/above the median: upscaled blur, wasted decode
ASPECT_FACTOR = 2.0  # twice as elongated as the median image: squashing distorts it badly
IMBALANCE_RATIO = 3.0  # largest / smallest class worth a warning
SMALL_CLASS_SHARE = 0.5  # a class below this share of the median class size is starved
# Greyscale in some classes far more than in others: flagged when two classes' shares differ by
# GREY_GAP and GREY_MIN images are grey. Palette files ("P") may be colour: their mode is not counted.
GREY_GAP, GREY_MIN = 0.5, 5
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def file_entry(spec: DatasetSpec, i: int) -> dict:
    """One image as the findings list it: index, path, label, split."""
    return {"index": int(i), "path": spec.paths[i], "label": spec.classes[spec.labels[i]], "split": str(spec.splits[i])}


def imbalance(spec: DatasetSpec, ok: np.ndarray) -> dict:
    """Readable images per class, the largest-to-smallest ratio and the starved classes."""
    counts = np.bincount(spec.labels[ok], minlength=len(spec.classes))
    median = float(np.median(counts))
    ratio = float(counts.max() / counts.min()) if counts.min() else None
    small = [c for c, n in zip(spec.classes, counts) if n < SMALL_CLASS_SHARE * median]
    return {
        "counts": dict(zip(spec.classes, counts.tolist())),
        "median": median,
        "ratio": round(ratio, 2) if ratio else None,
        "small_classes": small,
        "flagged": bool(small) or ratio is None or ratio >= IMBALANCE_RATIO,
    }


def outliers(spec: DatasetSpec, sizes: np.ndarray, modes: list[str], ok: np.ndarray) -> dict:
    """Images far from the typical one. Sides and elongation ignore orientation (EXIF-rotated
    photos are stored sideways), so only shape and scale count."""
    idx = np.flatnonzero(ok)
    if not len(idx):
        return {"small": [], "large": [], "aspect": [], "mode": []}
    short, long = sizes[idx].min(1), sizes[idx].max(1)
    aspect = long / np.maximum(short, 1)
    med_short, med_aspect = float(np.median(short)), float(np.median(aspect))
    main_mode = Counter(modes[i] for i in idx).most_common(1)[0][0]

    def listed(mask):
        return [{**file_entry(spec, i), "width": int(sizes[i, 0]), "height": int(sizes[i, 1])} for i in idx[mask]]

    return {
        "median_short_side": med_short,
        "median_aspect": round(med_aspect, 3),
        "main_mode": main_mode,
        "small": listed(short * SIZE_FACTOR <= med_short),
        "large": listed(short >= med_short * SIZE_FACTOR),
        "aspect": [
            {**f, "aspect": round(max(f["width"], f["height"]) / max(1, min(f["width"], f["height"])), 2)}
            for f in listed(aspect >= ASPECT_FACTOR * med_aspect)
        ],
        "mode": [{**file_entry(spec, i), "mode": modes[i]} for i in idx if modes[i] != main_mode],
        "grey_by_class": _grey_by_class(spec, modes, idx),
    }


def _grey_by_class(spec: DatasetSpec, modes: list[str], idx: np.ndarray) -> dict:
    """Each class's share of greyscale files (by their stored mode), flagged as grey_by_class's."""
    return grey_by_class(spec.classes, spec.labels[idx], np.array([modes[i] in GREY_MODES for i in idx], bool))


def grey_by_class(classes: list[str], labels: np.ndarray, grey: np.ndarray) -> dict:
    """{"shares": each class's share of greyscale images (`grey`, one bool an image labelled `labels`),
    "flagged": whether two classes' shares are GREY_GAP apart (and GREY_MIN images are grey), "greyer":
    the classes that far above the least grey one}: a shortcut the network can learn."""
    shares = {c: round(float(grey[labels == k].mean()), 3) for k, c in enumerate(classes) if (labels == k).any()}
    low = min(shares.values(), default=0.0)
    flagged = bool(max(shares.values(), default=0.0) - low >= GREY_GAP and grey.sum() >= GREY_MIN)
    greyer = sorted((c for c, v in shares.items() if v >= low + GREY_GAP), key=lambda c: -shares[c]) if flagged else []
    return {"shares": shares, "flagged": flagged, "greyer": greyer}


def greyest(grey: dict, n: int | None = 6) -> list[tuple[str, float]]:
    """grey_by_class's shares, the greyest class first (the first `n`; None: all): what a warning lists."""
    return sorted(grey["shares"].items(), key=lambda kv: -kv[1])[:n]

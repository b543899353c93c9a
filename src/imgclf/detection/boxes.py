"""The answer every detector gives for a photo (`answer`, `box_record`) and the exported graphs'
post-processing settings (NMS at IoU 0.6, 100 boxes; detector.Detector runs it). The anchors and box
coder are the network's: models.person.anchors.
"""

from __future__ import annotations

NMS_IOU = 0.6  # the exported graphs' NMS
MAX_BOXES = 100


def box_record(x1: float, y1: float, x2: float, y2: float, score: float, label: str) -> dict:
    """One box as every detector answers it: pixels to 0.1, the score to 6 places."""
    return {
        "x1": round(float(x1), 1),
        "y1": round(float(y1), 1),
        "x2": round(float(x2), 1),
        "y2": round(float(y2), 1),
        "score": round(float(score), 6),
        "label": label,
    }


def answer(detector, size, found: list[dict], top: float, seconds: float, blank: bool = False) -> dict:
    """A detector's answer for one photo of `size` (width, height): the same keys from every detector
    (scan.json, the service's /scan, video events read them). `top`: the best positive box's score."""
    width, height = size
    return {
        "width": width,
        "height": height,
        "present": top >= detector.threshold,
        "count": sum(f["label"] == detector.positive for f in found),
        "score": round(top, 6),
        "threshold": detector.threshold,
        "positive": detector.positive,
        "boxes": found,
        "blank": bool(blank),
        "seconds": round(seconds, 4),
    }


def at_threshold(found: dict, threshold: float) -> dict:
    """An answer given at a lower threshold, as the detector answers at `threshold`: its boxes scoring
    at least that (NMS ran on the same candidates, those over 0.01, at either), presence and count again."""
    boxes = [b for b in found["boxes"] if b["score"] >= threshold]
    return {
        **found,
        "present": found["score"] >= threshold,
        "count": sum(b["label"] == found["positive"] for b in boxes),
        "threshold": threshold,
        "boxes": boxes,
    }

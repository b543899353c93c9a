"""Finding people (and other objects) in whole photos with a pretrained detector: no training.

    results = imgclf.scan(["street.jpg", "photos/"], out="scan-out")      # no run folder: the detector
    results[0]["present"], results[0]["count"], results[0]["boxes"]     # [{x1, y1, x2, y2, score, label}]

Modules: ssdlite (the network, TensorFlow-exact) · weights (the pretrained graph from the package
index, converted once) · boxes (anchors, box coder, post-processing) · detector (a loaded detector:
ONNX Runtime or PyTorch, NMS, the presence rule; what a detector name resolves to) · export (the
ONNX file `imgclf export person` writes). imgclf.scanning is the other way to find things:
a crop classifier you trained, slid over the photo.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from imgclf.core.work import MAX_SECONDS
from imgclf.detection.detector import THRESHOLD, Detector, load_detector

__all__ = ["detect", "load_detector", "Detector", "THRESHOLD"]

BATCH = 8  # photos a forward pass: ORT on 2 cores gains little from more, and memory stays small
ANNOTATED_SIDE = 600  # px a side at least, for a scan that draws annotated copies (`out`)


def detect(
    detector: Detector,
    images,
    *,
    threshold: float | None = None,
    iou: float | None = None,
    tiles: str | tuple | None = None,
    flip: bool | None = None,
    out=None,
    max_seconds: float | None = None,
    verbose: bool = True,
) -> list[dict]:
    """Run `detector` on each photo (paths, folders, PIL images or arrays); one answer per image:
    {path, present, count, score, threshold, positive, boxes, width, height, seconds} (or {path, error}
    for an unreadable file, which is skipped and reported). `threshold` (the score a box needs, and
    presence), `iou` (NMS) and `tiles` ('2x2': overlapping tiles looked at besides the whole photo,
    detector.TILE_*) and `flip` (also the mirror image) override the detector's; `out` writes boxes.csv, scan.json and
    annotated copies of the photos. A photo over the shape limits (core.work.check_shape) or whose
    estimated time is over `max_seconds` (default: core.work.MAX_SECONDS, 10) is answered
    {path, error} unread; when every photo is refused so, TooMuchWork (one line)."""
    from imgclf.core.work import TooMuchWork, all_refused
    from imgclf.data.images import UnusableImage
    from imgclf.inference.predictor import expand_inputs
    from imgclf.settings.scan import check_scan

    check_scan(max_seconds=max_seconds)
    limit = MAX_SECONDS if max_seconds is None else max_seconds

    detector = detector.with_options(threshold=threshold, iou=iou, tiles=tiles, flip=flip)
    if verbose:
        print(f"scan: {detector.describe()}")
    writer, items, results, pending, refused = None, expand_inputs(images), [], [], []
    if out is not None:  # resumable: the same command after a Ctrl-C answers only the photos not answered yet
        from imgclf.inference.box_files import ScanOutputs

        writer = ScanOutputs(out, resumable=settings(detector))
        items, results = writer.resume(items, verbose)

    with writer or nullcontext():  # a scan that fails or is stopped lets go of its --out folder

        def flush():
            answers = detector.detect_batch([img for _, img, _ in pending], [size for _, _, size in pending])
            for (entry, img, _), answer in zip(pending, answers):
                entry.update(answer)
                if writer:
                    writer.add(entry, img)
            pending.clear()

        side = getattr(detector, "decode_side", None)
        if side and writer:  # the annotated copies are drawn on the decoded photo: big enough to read
            side = max(side, ANNOTATED_SIDE)
        for item, decoded in _decoded(detector, items, limit, side):
            entry = {"path": str(item)} if isinstance(item, (str, Path)) else {}
            results.append(entry)
            if isinstance(decoded, (UnusableImage, TooMuchWork)):
                entry["error"] = decoded.reason if isinstance(decoded, UnusableImage) else str(decoded)
                if isinstance(decoded, TooMuchWork):
                    refused.append(f"{entry.get('path', 'image')}: {decoded}")
                if writer:  # in scan.json too, with its reason; journalled, so a resumed scan skips it
                    writer.add(entry, None)
                continue
            pending.append((entry, *decoded))
            if len(pending) == BATCH:
                flush()
        flush()
        if refused and len(refused) == len(results):
            raise all_refused(refused)
        if writer:
            writer.close()  # with the settings it was made with
    if verbose:
        found = [r for r in results if r.get("present")]
        bad = sum("error" in r for r in results)
        print(
            f"{len(found)} of {len(results) - bad} images hold '{detector.positive}' "
            f"({sum(r['count'] for r in found)} found)"
            + (f"; {bad} unreadable, skipped" if bad else "")
            + (f"; wrote {out}/boxes.csv, scan.json, annotated/" if out else "")
        )
    return results


def _decoded(detector: Detector, items, limit: float, side: int | None):
    """(item, (image, full size) or the UnusableImage / TooMuchWork that refused it), in order. The
    next photos are checked and decoded in a thread while the detector looks at the ones before (the
    JPEG decoder and ONNX Runtime both let go of the GIL): on a phone's 12 MP photos decoding is about
    half of a photo's time on 2 cores, and now overlaps the network's."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.core.work import TooMuchWork
    from imgclf.data.images import UnusableImage

    def load(item):
        try:
            _check(detector, item, limit)
            return photo(item, side)
        except (UnusableImage, TooMuchWork) as e:
            return e

    with ThreadPoolExecutor(1, thread_name_prefix="imgclf-decode") as pool:
        ahead: deque = deque()
        for item in items:
            ahead.append((item, pool.submit(load, item)))
            if len(ahead) > BATCH:  # at most a batch decoded ahead: memory stays small
                done, future = ahead.popleft()
                yield done, future.result()
        while ahead:
            done, future = ahead.popleft()
            yield done, future.result()


def _check(detector: Detector, item, limit: float) -> None:
    """Refuse (TooMuchWork) a photo over the shape or time limits, from its size alone: a file's header."""
    from imgclf.core.work import check_shape
    from imgclf.data.images import size_of
    from imgclf.detection.cost import check

    width, height = size_of(item)
    check_shape(width, height)
    check(detector, width, height, limit)


def photo(item, side: int | None = None):
    """(an RGB PIL image, the photo's full (width, height)) of a path, PIL image or array
    (UnusableImage when it cannot be read). A file is decoded no smaller than `side` a side where its
    format allows less (data.images.read_scaled; the detector's `decode_side`): JPEG decoding, not
    the network, is most of a large photo's time. `side` None: decoded whole."""
    from imgclf.data.images import in_memory, read_rgb, read_scaled, to_rgb

    if not isinstance(item, (str, Path)):  # PIL, an array, a file's bytes; anything else: in_memory's TypeError
        img = to_rgb(in_memory(item))
        return img, img.size
    if side is None:
        img = read_rgb(item)
        return img, img.size
    return read_scaled(item, side)


def settings(detector: Detector) -> dict:
    """What a detector scan ran with, recorded in scan.json."""
    return {
        "detector": detector.name,
        "classes": detector.classes,
        "positive": detector.positive,
        "threshold": detector.threshold,
        # a photo enlarged to the input (detector.enlarged); a torchvision detector has no such rule
        "enlarged_threshold": detector.enlarged_threshold if getattr(detector, "enlarged_odds", None) else None,
        "iou": detector.iou,
        "tiles": f"{detector.tiles[0]}x{detector.tiles[1]}",
        "flip": getattr(detector, "flip", False),  # the mirror image averaged in (a torchvision detector: never)
        "weights": detector.source,
    }

"""Finding objects in whole photos with a crop classifier: pyramid scan, NMS, hard-negative mining.

    results = imgclf.scan("runs/person-1", ["street.jpg", "photos/"], out="scan-out")
    results[0]["present"], results[0]["boxes"]      # [{x1, y1, x2, y2, score}, ...] in image pixels

Modules: window (crop shape, pyramid) · fcn (fully convolutional scoring) · scanner (one photo) ·
cost (a scan's seconds, estimated before it runs) · mining (hard and random negative crops).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.core.work import MAX_SECONDS
from imgclf.scanning.mining import negatives, save_crop
from imgclf.scanning.verify import TOP, Verifier
from imgclf.scanning.window import positive_class, remember
from imgclf.settings.scan import ScanSettings

if TYPE_CHECKING:
    from imgclf.scanning.scanner import Scanner

__all__ = ["scan", "negatives", "remember", "Scanner", "Verifier", "positive_class", "MAX_SECONDS"]


def __getattr__(name: str):
    # Scanner (torch) is loaded on first use: the service asks positive_class of its run at start, and a
    # service answering in ONNX Runtime should not import torch for that.
    if name == "Scanner":
        from imgclf.scanning.scanner import Scanner

        return Scanner
    raise AttributeError(f"module 'imgclf.scanning' has no attribute {name!r}")


def scan(
    model, images, *, out: str | Path | None = None, mine: str | Path | None = None, stop=None, verbose=True, **settings
) -> list[dict]:
    """Scan each photo (paths, folders, PIL images or arrays) with a loaded model; one answer per image:
    {path, present, score, threshold, positive, boxes, width, height, windows, min_size, seconds,
    estimated_seconds} (or {path, error} for an unreadable file). `out` writes boxes.csv, scan.json and
    annotated images; `mine` saves every window that fires as a crop (hard negatives: give person-free
    photos). `settings`: any of the scan settings (imgclf.settings.scan.ScanSettings), checked by their
    declarations; in brief:
    `threshold` overrides the run's stored decision threshold; `margin` (a fraction, (x, y) or
    (left, top, right, bottom) fractions of the window; default: the run's recorded one, else 0)
    places the object box inside each window; `iou` (default 0.3) is NMS's overlap;
    `method` is auto | fcn | windows; `vote` (default: the run's recorded one, else on) moves each
    firing window's box to the score-weighted mean of the firing windows around it before NMS.
    `verify` (a loaded model trained on the same crops, e.g. the default ImageNet-backbone run)
    re-scores the best `verify_top` windows of each photo and decides presence (verify.py); the scan's
    windows over `box_threshold` (default: the recorded one, else the scan's threshold) become the
    boxes of the photos it passes. By default the run's recorded verifier (`remember(...,
    verify=RUN)`), `verify=False` for none.
    `max_seconds` (default MAX_SECONDS) bounds each photo's estimated scan time (cost.py): a photo over
    it, or over the shape limits (core.work.check_shape), is answered {path, error} unscanned, unless
    its smallest window was not chosen (`min_size`, `scales`) and a larger one fits; when every photo
    is refused so, TooMuchWork (one line). `stop` (core.work.Stop) ends the scan between batches."""
    from imgclf.core.work import all_refused
    from imgclf.inference.predictor import expand_inputs

    s = ScanSettings.of(settings)
    limit = MAX_SECONDS if s.max_seconds is None else s.max_seconds
    iou = 0.3 if s.iou is None else s.iou
    scanner = _scanner(model, s, iou)
    crop_size = (scanner.window.width, scanner.window.height)
    writer, items, results = None, expand_inputs(images), []
    if out is not None:  # resumable: the same command after a Ctrl-C scans only the photos not answered yet
        from imgclf.inference.box_files import ScanOutputs

        writer = ScanOutputs(out, resumable=_settings(model, scanner, crop_size, s.scales, iou))
        items, results = writer.resume(items, verbose)
    with writer or nullcontext():  # a scan that fails or is stopped lets go of its --out folder
        mine_dir = Path(mine) if mine is not None else None
        if mine_dir:
            mine_dir.mkdir(parents=True, exist_ok=True)
        mined, refused, described = 0, [], False
        for item in items:
            entry, img, fired = _scan_photo(scanner, item, limit, stop, verbose, described)
            results.append(entry)
            if entry.pop("_refused", False):
                refused.append(f"{entry.get('path', 'image')}: {entry['error']}")
            described = described or img is not None
            if mine_dir:
                for box in fired:
                    save_crop(img, box, crop_size, mine_dir)
                mined += len(fired)
            if writer:  # an unreadable photo too, with its reason: journalled, a resumed scan skips it
                writer.add(entry, img)
        if refused and len(refused) == len(results):
            raise all_refused(refused)
        if writer:
            writer.close()  # with the settings it was made with
    if verbose:
        found = sum(1 for r in results if r.get("present"))
        print(
            f"{found} of {len(results)} images hold '{scanner.positive}'"
            + (f"; wrote {out}/boxes.csv, scan.json, annotated/" if out else "")
            + (f"; mined {mined} crops -> {mine_dir}" if mine_dir else "")
        )
    return results


def _scan_photo(scanner, item, limit: float, stop, verbose: bool, described: bool) -> tuple[dict, object, list]:
    """(one photo's answer, its image, the windows that fired), or ({path, error}, None, []) for a
    photo that cannot be read or would take over `limit` seconds (marked `_refused`)."""
    from imgclf.core.work import TooMuchWork
    from imgclf.data.images import UnusableImage

    entry = {"path": str(item)} if isinstance(item, (str, Path)) else {}
    try:
        fitted, estimate = _fitted(scanner, item, limit)
        img = _photo(item)
    except UnusableImage as e:
        return {**entry, "error": e.reason}, None, []
    except TooMuchWork as e:
        return {**entry, "error": str(e), "_refused": True}, None, []
    if verbose and not described:  # said before the first photo scanned: none when all are refused
        print(f"scan: {scanner.describe()}")
    if verbose and fitted.min_size != scanner.min_size:
        print(f"{entry.get('path', 'image')}: smallest window raised to {fitted.min_size} px to fit {limit:g} s")
    entry.update(fitted.scan(img, stop), estimated_seconds=round(estimate["seconds"], 3))
    return entry, img, entry.pop("_windows")


def _scanner(model, s: ScanSettings, iou: float) -> Scanner:
    """The scanner for `model`'s positive class, with the verifier asked for (see scan)."""
    from imgclf.scanning.scanner import Scanner

    pos = positive_class(model, s.positive)
    # verify: a loaded model; None: the run's recorded verifier, if any; False: none.
    verify, top = s.verify, s.verify_top
    verifier = Verifier(verify, pos, top=TOP if top is None else top) if verify not in (None, False) else verify
    options = {k: getattr(s, k) for k in ("scales", "stride", "min_size", "margin", "method", "threshold", "vote")}
    scanner = Scanner(model, pos, verify=verifier, iou=iou, box_threshold=s.box_threshold, **options)
    if verify is None and top is not None and scanner.verify:  # the recorded verifier, another count
        scanner.verify = Verifier(scanner.verify.model, pos, top=top, threshold=scanner.verify.threshold)
    return scanner


def _fitted(scanner: Scanner, item, limit: float) -> tuple[Scanner, dict]:
    """The scanner for this photo within `limit` seconds and its estimate (cost.fit), from its size
    alone: a file's header, before a pixel is decoded. TooMuchWork when it cannot fit."""
    from imgclf.core.work import check_shape
    from imgclf.data.images import size_of
    from imgclf.scanning.cost import fit

    width, height = size_of(item)
    check_shape(width, height)
    return fit(scanner, width, height, limit)


def _photo(item):
    """A path, PIL image or array as an RGB PIL image (UnusableImage when it cannot be read)."""
    from imgclf.data.images import in_memory, read_rgb, to_rgb

    if isinstance(item, (str, Path)):
        return read_rgb(item)
    return to_rgb(in_memory(item))


def _settings(model, scanner, crop_size, scales, iou) -> dict:
    """What the scan ran with, recorded in scan.json."""
    return {
        "model": str(getattr(model, "path", "")),
        "positive": scanner.positive,
        "threshold": scanner.threshold,
        "window": list(crop_size),
        "fit": scanner.window.fit,
        "stride": scanner.stride,
        "min_size": scanner.min_size,
        "scales": scales,
        "iou": iou,
        "margin": list(scanner.margin),
        "vote": scanner.vote,
        "method": scanner.method,
        "verify": str(getattr(scanner.verify.model, "path", "")) if scanner.verify else None,
        "verify_top": scanner.verify.top if scanner.verify else None,
        "box_threshold": scanner.box_threshold if scanner.verify else None,
    }

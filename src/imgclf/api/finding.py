"""The API for finding things in whole photos: scan (a pretrained detector, or a crop model you
trained slid over the photo), and negatives (crops to train such a crop model with)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.core.errors import UserError
from imgclf.core.files import output_folder
from imgclf.settings.scan import FLAGS, ScanJobSettings, ScanSettings, check_scan
from imgclf.store.runs import names_pretrained_detector
from imgclf.workflows import loaded

if TYPE_CHECKING:
    from imgclf.detection import Detector

# Settings of the crop-model scan only: a detector finds boxes of any size in one pass.
CROP_ONLY = (
    "positive",
    "scales",
    "stride",
    "min_size",
    "margin",
    "method",
    "vote",
    "verify",
    "verify_top",
    "box_threshold",
)


def scan(
    run=None,
    images: str | Path | list | None = None,
    *,
    detector: "str | Detector | None" = None,
    out: str | Path | None = None,
    mine: str | Path | None = None,
    backend: str = "auto",
    device: str = "auto",
    verbose: bool = True,
    **settings,
) -> list[dict]:
    """Find people (or a trained class) in whole photos. Per image: path, present, score, count, boxes
    [{x1, y1, x2, y2, score, label}] in image pixels, width, height, seconds; an unreadable file is
    {path, error}. `out` writes boxes.csv, scan.json and annotated copies of the photos. `settings`:
    any of the scan settings (imgclf.settings.scan.ScanSettings, docs/settings.md), each checked by
    its declaration; the ones below in brief.

    With no run (`scan(images)`, or `detector="person"`) the pretrained person detector answers
    (imgclf.detection): `threshold` is the score a box needs (default: the detector's recorded one),
    `iou` its NMS overlap, `tiles` ('2x2') also looks at overlapping tiles of each photo, for people
    small in wide photos (about 5x the time), `flip` (default True) also at each photo's mirror image. `detector` may also be a detector run folder (imgclf.train
    on boxes) or a torchvision COCO detector's name (weights downloaded once), with `classes` to find
    (e.g. ["car"]). With a run folder trained on crops (`scan(run, images)`) its classifier
    slides over an image pyramid (imgclf.scanning): windows whose calibrated probability passes the
    run's threshold are merged by NMS (`iou`, default 0.3); `mine` saves the windows that fire as
    crops (hard negatives, from person-free photos); `vote` (default: the run's recorded choice, else
    on) moves each firing window's box to the score-weighted mean of the firing windows around it;
    `verify` (a run trained on the same crops) re-scores each photo's best `verify_top` windows and
    decides presence, the windows over `box_threshold` becoming the boxes (default: the run's
    recorded verifier; False: none).

    `backend` runs the detector: auto (ONNX Runtime on a CPU, PyTorch on a GPU), onnx, onnx-int8 (made by
    imgclf.export("person", int8=True, calibration=...)), openvino or torch.

    Each photo's scan is estimated from its size before it is read (the model's cost is measured once,
    when first needed): one over `max_seconds` (default 10), or over 20,000 px a side or 10:1, is
    answered {path, error}; a crop-model scan whose smallest window you did not choose (`min_size`,
    `scales`) has it raised to fit instead. When every photo is refused, one UserError says why.

        r = imgclf.scan(["street.jpg"], out="scan-out")[0]
        r["present"], r["count"], r["boxes"]   # True, 1, [{'x1': 212.0, 'y1': 80.5, 'x2': 268.3, 'y2': 221.7, 'score': 0.97, 'label': 'person'}]
    """
    chosen = ScanSettings.of(settings)
    ScanJobSettings(detector=detector, out=out, mine=mine, backend=backend, device=device)  # checked as declared
    run, images, detector = _targets(run, images, detector)
    _refuse_unscannable(images)
    for folder, flag in ((out, "--out"), (mine, "--mine")):  # before any photo is scanned
        if folder is not None:
            output_folder(folder, flag)
    if run is not None and _kept_the_detector(run):
        if verbose:
            print(f"scan: {getattr(run, 'path', run)} kept the pretrained person detector, which finds the boxes")
        run = None
    if run is None:
        return _detect(detector, images, chosen, out, mine, backend, device, verbose)
    if chosen.tiles is not None:
        raise UserError(
            "--tiles is an option of the detector (imgclf scan PHOTOS, no run); a crop-model scan covers the photo with --min-size and --scales"
        )
    if chosen.flip is not None:
        raise UserError(
            "--flip/--no-flip is an option of the detector (imgclf scan PHOTOS, no run), not of a crop-model scan"
        )
    if backend != "auto":
        raise UserError("--backend is for the detector (imgclf scan PHOTOS, no run); a crop-model scan runs in PyTorch")
    from imgclf.scanning import scan as run_scan

    given = {k: v for k, v in chosen.given().items() if k != "classes"}
    if isinstance(chosen.verify, (str, Path)):  # else a loaded model, None (the recorded one) or False
        from imgclf.scanning.verify import load_verifier

        given["verify"] = load_verifier(chosen.verify, device)
    return run_scan(loaded(run, device, None, "torch"), images, out=out, mine=mine, verbose=verbose, **given)


def _detect(detector, images, chosen: ScanSettings, out, mine, backend: str, device: str, verbose: bool) -> list:
    """scan's answer by a detector (a name, a run folder or a loaded one), once no crop-model setting is given."""
    from imgclf.detection import detect, load_detector

    given = [FLAGS[k] for k in chosen.given() if k in CROP_ONLY] + (["--mine"] if mine is not None else [])
    if given:
        raise UserError(
            f"{given[0]} is an option of a crop-model scan (imgclf scan RUN PHOTOS); "
            "the pretrained detector takes --threshold, --iou, --tiles and --flip/--no-flip"
        )
    found = (
        detector
        if hasattr(detector, "detect_batch")
        else load_detector(detector or "person", device, backend, find=chosen.classes)
    )
    return detect(
        found,
        images,
        threshold=chosen.threshold,
        iou=chosen.iou,
        tiles=chosen.tiles,
        flip=chosen.flip,
        out=out,
        max_seconds=chosen.max_seconds,
        verbose=verbose,
    )


def _kept_the_detector(run) -> bool:
    """Whether `run` is a run folder whose leaderboard kept the pretrained person detector: its boxes
    are the detector's own (scan answers with it; sliding the run over windows would cost a detector
    pass a window)."""
    from imgclf.models.headonly import PERSON_DETECTOR
    from imgclf.store.run_meta import load_run_meta
    from imgclf.store.runs import find_run

    if not isinstance(run, (str, Path)):
        return getattr(getattr(run, "meta", None), "architecture_name", None) == PERSON_DETECTOR
    try:
        return load_run_meta(find_run(Path(run).expanduser())).architecture_name == PERSON_DETECTOR
    except UserError:
        return False  # not a run folder: loading it says why


def _targets(run, images, detector) -> tuple:
    """(the crop model's run or None; the photos; the detector) from scan's first arguments:
    `scan(photos)`, `scan(run, photos)`, `scan(detector_run or "person", photos)`, or, as the CLI passes
    `imgclf scan A B C`, a first argument that is a photo or a folder of photos rather than a run."""
    if images is None:
        return None, run, detector
    if detector is not None or run is None:
        return None, ([run] if run is not None else []) + _as_list(images), detector
    if hasattr(run, "predict_proba") or not isinstance(run, (str, Path)):
        return run, images, None
    p = Path(run).expanduser()
    if (p / "detector.json").is_file() or names_pretrained_detector(run):
        return None, _as_list(images), str(run)  # a fine-tuned detector (imgclf train BOXES/), or `scan person X`
    if (
        (p / "model.json").is_file()
        or (p.parent / "versions").is_dir()
        or p.name in ("model.json", "model.safetensors")
    ):
        return run, images, None  # a run, a registry alias or a run's file: a broken one fails in loading, by name
    return None, [run] + _as_list(images), None


def _refuse_unscannable(images) -> None:
    """One line before any model loads (seconds of imports) when every photo given is a file whose
    header is over the scan's shape limits: `imgclf scan RUN wide.png` answers at once. Folders and
    anything else are left to the scan, which skips such photos one by one."""
    from imgclf.core.work import TooMuchWork, all_refused, check_shape
    from imgclf.data.images import UnusableImage, image_size

    refused = []
    for item in _as_list(images):
        if not isinstance(item, (str, Path)) or not Path(item).is_file():
            return
        try:
            check_shape(*image_size(item))
        except TooMuchWork as e:
            refused.append(f"{item}: {e}")
            continue
        except (UnusableImage, OSError):
            pass
        return
    if refused:
        raise all_refused(refused)


def _as_list(images) -> list:
    return list(images) if isinstance(images, (list, tuple)) else [images]


def video_scanner(run, scan: bool, detector, device: str, tta, backend: str, verbose: bool) -> tuple:
    """(model, scanner) for api.predict_video: the run's model, with its crop scanner when `scan`; or
    no model and a detector (a name, or a loaded one) when there is no run, a detector is given, or
    the run is one ("person", a detector run: its boxes drawn on the frames)."""
    from imgclf.workflows import evaluated_as

    if detector is None and evaluated_as(run) == "detector":
        run, detector = None, run
    if run is None or detector is not None:
        from imgclf.detection import load_detector

        scanner = detector if hasattr(detector, "detect_batch") else load_detector(detector or "person", device)
        if verbose:
            print(f"scan: {scanner.describe()}")
        return None, scanner
    # A scan's fully convolutional pass needs the PyTorch module (scanning.scanner).
    model = loaded(run, device, tta, "torch" if scan and backend == "auto" else backend)
    if not scan:
        return model, None
    from imgclf.scanning import Scanner, positive_class

    try:
        positive_class(model, None)
    except UserError:  # its own advice names scan's --positive, an option predict does not have
        raise UserError(
            f"predict --scan finds the run's positive class, and {model.path} records none and has no class named "
            f"like person/human/pedestrian/positive (its classes: {', '.join(model.classes)}); train with "
            "--positive-class CLASS, or scan photos for a class with: imgclf scan RUN PHOTOS --positive CLASS"
        ) from None
    scanner = Scanner(model)
    if verbose:
        print(f"scan: {scanner.describe()}")
    return model, scanner


def frames_within(scanner, max_seconds: float | None):
    """For predict_video: fit(width, height) -> the scanner or detector for frames of that size, each
    within `max_seconds` (default core.work.MAX_SECONDS) as a photo's scan is (a crop scanner's smallest
    window raised to fit: scanning.cost.fit), or TooMuchWork (one line) before a frame is scored."""
    from imgclf.core.work import MAX_SECONDS, check_shape

    check_scan(max_seconds=max_seconds)
    limit = MAX_SECONDS if max_seconds is None else max_seconds

    def fit(width: int, height: int):
        check_shape(width, height)
        if hasattr(scanner, "detect_batch"):
            from imgclf.detection.cost import check

            check(scanner, width, height, limit)
            return scanner
        from imgclf.scanning.cost import fit as fit_scan

        return fit_scan(scanner, width, height, limit, {"min_size": "--min-size", "limit": "--max-seconds"})[0]

    return fit


def negatives(
    photos: str | Path | list,
    out: str | Path,
    *,
    per_image: int = 20,
    size: str | tuple[int, int] = "64x64",
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Random windows (multi-scale, aspect of `size`) cut from photos known to hold no object, saved as
    PNG crops named by their sha256: the negative class to train a crop detector with.

        imgclf.negatives(["street/no-person"], "data/no-person", per_image=40, size="96x160")
    """
    from imgclf.scanning import negatives as cut

    return cut(photos, out, per_image=per_image, size=size, seed=seed, verbose=verbose)  # checked there

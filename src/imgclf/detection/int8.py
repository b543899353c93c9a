"""The person detector (or a detector run) at int8: ONNX Runtime's static QDQ quantization, calibrated
on real photos, kept only when it answers as fp32 does.

    imgclf export person --int8 --calibration my-camera/   # the pretrained detector: your own photos
    imgclf export runs/boxes-1 --int8                      # a detector run: its training photos
    imgclf scan photos/ --backend onnx-int8

The pretrained detector comes with no photos of its own, so its int8 graph is calibrated on photos
the user gives (--calibration): scenes like those it will scan, with people in some. The activation
ranges come from them: on the benchmark's street scenes, calibrating on people-free flower photos
lost 3.4 AP@0.5 points where photos with people lost none (docs/benchmarks/int8.md). It is written
into imgclf's cache beside the fp32 graph; a detector run's goes into the run folder.

No labels come with such photos, so what is checked is agreement: on held-out photos (a run's test
split; for the pretrained detector, the calibration photos, the only ones there are) int8 must give
the same present/absent answer as fp32 on all but `max_loss` percent of them, or the int8 graph is
refused with one line and none is left behind. Box accuracy (AP@0.5 against people labelled by hand)
is bench/int8.py's job.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.core.files import read_json, write_json
from imgclf.models.packaged import int8_file

RECORD = "export_int8.json"  # in a run; the pretrained detector's sits beside its int8 graph
# Percent of the photos whose present/absent answer int8 may change. Not 1: a photo whose best box
# scores near the threshold tips either way (1 of the 61 street photos with people did), and on
# labelled photos the same int8 graph kept AP@0.5 within a point of fp32 (docs/benchmarks/int8.md).
MAX_LOSS = 5.0
CALIBRATION = 200  # photos: min-max ranges settle well before that
# Fewer, and a scene type missing from calibration may see its activations clipped.
MIN_CALIBRATION = 20


def export_detector_int8(
    name: str | Path = "person",
    calibration: str | Path | None = None,
    out: str | Path | None = None,
    max_loss: float = MAX_LOSS,
) -> dict:
    """Quantize the detector `name` ("person" or a detector run folder) to int8, calibrated on the photos
    in `calibration` (a run's training photos by default; the pretrained detector needs them given).
    Returns {path, presence_agreement, changed_photos, n_checked, n_calibration, max_score_diff, ...};
    UserError, leaving no int8 graph, when there are too few photos or int8 changes too many answers."""
    from dataclasses import replace

    import onnxruntime

    from imgclf.core.version import __version__
    from imgclf.detection.detector import load_detector
    from imgclf.inference.onnx_runtime import open_session
    from imgclf.inference.quantize import quantize
    from imgclf.models.packaged import sha256

    start = time.perf_counter()
    if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float)) or not 0 <= max_loss <= 100:
        raise UserError(f"--max-loss must be a percent of photos from 0 to 100 (1 = one in a hundred), not {max_loss}")
    det = load_detector(name, "cpu", backend="onnx")
    fp32, run = det.graph, det.source.get("run")
    calib_paths, held_out = _photos(name, run, calibration)
    calib = _load(calib_paths, CALIBRATION)
    if len(calib) < MIN_CALIBRATION:
        raise UserError(
            f"int8 calibration needs at least {MIN_CALIBRATION} readable photos and "
            f"{calibration or 'the run'} has {len(calib)}; no int8 model written, the fp32 detector stays in use"
        )
    checked = calib if held_out is None else _load(held_out, CALIBRATION)
    own = int8_file(fp32)
    out = Path(out).expanduser() if out else own
    from imgclf.core.files import atomic_path

    try:
        with atomic_path(out) as tmp:
            batches = [np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32) for a in calib]
            quantize(fp32, tmp, batches, sha256(fp32))
            int8 = replace(det, session=open_session(tmp), backend="onnx-int8")
            scores = agreement(det, int8, checked)
            if scores["changed_percent"] > max_loss:
                raise UserError(
                    f"int8 changes the present/absent answer on {scores['changed_photos']} of {scores['n_checked']} "
                    f"photos ({scores['changed_percent']:.1f} %), more than --max-loss {max_loss:g}; no int8 model "
                    "written, the fp32 detector stays in use (other calibration photos, or a higher --max-loss)"
                )
    except UserError:
        if out == own:
            out.unlink(missing_ok=True)
            _record_path(own, run).unlink(missing_ok=True)
        raise
    result = {
        "path": str(out),
        **scores,
        "max_loss_percent": max_loss,
        "n_calibration": len(calib),
        "calibration_from": str(calibration) if calibration else "train split",
        "checked_on": "test split" if held_out is not None else "the calibration photos",
        "format": "onnx-qdq",
        "weights": "int8, per channel",
        "activations": "uint8, min-max calibrated",
        "seconds": round(time.perf_counter() - start, 2),
        "imgclf_version": __version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if out == own:
        write_json(_record_path(own, run), result)
    return result


def agreement(fp32, int8, images: list[np.ndarray]) -> dict:
    """How often int8 answers as fp32 does on `images` (300x300 uint8 RGB): present/absent, the count."""
    from PIL import Image

    photos = [Image.fromarray(a) for a in images]
    a32 = [r for i in range(0, len(photos), 8) for r in fp32.detect_batch(photos[i : i + 8])]
    a8 = [r for i in range(0, len(photos), 8) for r in int8.detect_batch(photos[i : i + 8])]
    changed = sum(x["present"] != y["present"] for x, y in zip(a32, a8))
    return {
        "presence_agreement": round(1 - changed / len(a32), 4),
        "changed_photos": changed,
        "changed_percent": round(100 * changed / len(a32), 2),
        "count_agreement": round(float(np.mean([x["count"] == y["count"] for x, y in zip(a32, a8)])), 4),
        "max_score_diff": round(max(abs(x["score"] - y["score"]) for x, y in zip(a32, a8)), 4),
        "n_checked": len(a32),
    }


def int8_record(fp32: Path, run: str | None) -> dict | None:
    """What the export recorded about the int8 graph of `fp32` (None when there is none)."""
    path = _record_path(int8_file(fp32), run)
    return read_json(path) if path.is_file() and int8_file(fp32).is_file() else None


def _record_path(int8: Path, run: str | None) -> Path:
    return Path(run) / RECORD if run else int8.with_name(int8.name.replace(".onnx", ".json"))


def _photos(name, run: str | None, calibration) -> tuple[list[str], list[str] | None]:
    """(calibration photos, held-out photos to check on or None): `calibration`'s photos, else a run's
    training split (its test split held out either way)."""
    from imgclf.inference.predictor import expand_inputs

    held_out = None
    if run:
        import csv

        with open(Path(run) / "splits.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        held_out = [r["path"] for r in rows if r["split"] == "test"] or None
        if calibration is None:
            return [r["path"] for r in rows if r["split"] == "train"], held_out
    if calibration is None:
        raise UserError(
            f"the pretrained detector has no photos of its own to calibrate int8 on: give --calibration DIR with "
            f"{MIN_CALIBRATION} or more of your photos, scenes like those it will scan (people in some)"
        )
    folder = Path(calibration).expanduser()
    if not folder.is_dir():
        raise UserError(f"--calibration must be a folder of photos, not {calibration}")
    return list(expand_inputs(str(folder))), held_out


def _load(paths: list[str], most: int) -> list[np.ndarray]:
    """Up to `most` of the photos (evenly spaced), squashed to the detector's input; unreadable ones skipped."""
    from imgclf.data.images import UnusableImage, read_rgb, resize
    from imgclf.models.person.ssdlite import SIZE

    if not paths:
        return []
    out = []
    for i in sorted(set(np.linspace(0, len(paths) - 1, min(len(paths), most)).round().astype(int))):
        try:
            out.append(resize(read_rgb(paths[i]), SIZE))
        except (UnusableImage, OSError):
            continue
    return out

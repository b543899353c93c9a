"""The API's export: a trained run (fp32 or int8), a detector or the face embedder as an ONNX file,
checked against PyTorch; its settings are settings.export.ExportSettings'."""

from __future__ import annotations

import contextlib
from pathlib import Path

from imgclf.core.console import console_for as _console
from imgclf.core.errors import UserError
from imgclf.core.files import output_file
from imgclf.settings.export import ExportSettings
from imgclf.store.runs import PRETRAINED_DETECTORS, find_run


def export(
    run: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    data: str | Path | None = None,
    opset: int | None = None,
    check: bool = True,
    verbose: bool = True,
    *,
    int8: bool = False,
    max_loss: float | None = None,
    calibration: str | Path | None = None,
) -> dict:
    """Export the run's network (RUN/model.onnx by default: float32 NCHW normalised `input` ->
    `logits`, dynamic batch; classes and preprocessing in its metadata) and check that ONNX Runtime
    matches PyTorch within 1e-4 in probability on up to 64 real images (the run's test split, or `data`).

        imgclf.export("runs/photos-1")     # {'path': 'runs/photos-1/model.onnx', 'max_prob_diff': 2e-07, ...}

    `int8=True` writes RUN/model.int8.onnx instead (load it with backend="onnx-int8"): static
    quantization calibrated on up to 300 of the run's training images, kept only when its test
    accuracy is at most `max_loss` points below fp32's (else a UserError, and no int8 file); `data`
    is then where the run's data folder is now, when it moved. See imgclf.inference.quantize.

        imgclf.export("runs/photos-1", int8=True)   # {'accuracy_int8': 0.842, 'accuracy_fp32': 0.844, ...}

    A detector exports the same way: "person" (the pretrained one; ./person-detector.onnx) or a
    detector run folder (RUN/detector.onnx), checked on `data`'s photos (else seeded noise). With
    `int8=True` it is quantized (backend="onnx-int8"), calibrated on the photos in `calibration` (a
    run's default: its training photos) and kept only when it changes the present/absent answer on at
    most `max_loss` percent of held-out photos (default 5; imgclf.detection.int8). "faces" with
    `int8=True` quantizes the face embedder on the faces in `calibration` (imgclf.faces.int8).

        imgclf.export("person", int8=True, calibration="my-camera/")   # {'presence_agreement': 0.98, ...}
    """
    asked = dict(format=format, out=out, data=data, opset=opset, check=check, int8=int8, max_loss=max_loss)
    ExportSettings(**asked, calibration=calibration)  # each checked as declared: one line naming the flag
    if out is not None:  # checked before the export (seconds to minutes), not when it is renamed into place
        out = output_file(out, "--out", "model.onnx")
    if str(run) == "faces":
        if not int8:
            raise UserError("faces exports at int8 only: imgclf export faces --int8 --calibration PHOTOS/")
        return _export_faces_int8(calibration, out, verbose)
    if str(run) in PRETRAINED_DETECTORS or (Path(run).expanduser() / "detector.json").is_file():
        if int8:
            return _export_detector_int8(run, out, calibration, max_loss, verbose)
        return _export_detector(run, out, data, verbose)
    if calibration is not None:
        raise UserError("--calibration is for a detector's int8 export; a run calibrates on its training images")
    find_run(run)  # a mistyped run: one line now, not after torch's imports
    if int8:
        if opset is not None or not check:  # they shape the fp32 export, which --int8 only reuses
            raise UserError(
                "--opset and --no-check are for the fp32 export; run imgclf export RUN with them first, then --int8"
            )
        return _export_int8(run, out, data, 1.0 if max_loss is None else max_loss, verbose)
    from imgclf.inference.onnx_export import export_onnx

    result = export_onnx(run, out=out, opset=opset, data=data, check=check)
    checked = (
        f"ONNX Runtime vs PyTorch: max probability difference {result['max_prob_diff']:.2e} on "
        f"{result['n_images']} images ({result['images_from']})"
        if check
        else "not checked (--no-check)"
    )
    _say(
        verbose,
        f"exported {result['path']} (opset {result['opset']}, {result['exporter']} exporter, "
        f"{result['seconds']:.1f}s); {checked}",
    )
    return result


def _export_int8(run, out, data, max_loss: float, verbose: bool) -> dict:
    from imgclf.inference.quantize import export_int8

    r = export_int8(run, out=out, max_loss=max_loss, data_root=data)
    _say(
        verbose,
        f"exported {r['path']} (int8, calibrated on {r['n_calibration']} training images, {r['seconds']:.1f}s); "
        f"test accuracy {r['accuracy_int8']:.3f} against fp32's {r['accuracy_fp32']:.3f} "
        f"({-r['loss_points']:+.1f} points, n={r['n_test']}, limit {r['max_loss_points']:g}); "
        f"same label on {r['agreement']:.1%} of the images",
    )
    return r


def _export_detector_int8(name, out, calibration, max_loss, verbose: bool) -> dict:
    from imgclf.detection.int8 import MAX_LOSS, export_detector_int8

    r = export_detector_int8(name, calibration, out, MAX_LOSS if max_loss is None else max_loss)
    _say(
        verbose,
        f"exported {r['path']} (int8, calibrated on {r['n_calibration']} photos, {r['seconds']:.1f}s); "
        f"the same present/absent answer as fp32 on {r['presence_agreement']:.1%} of {r['n_checked']} photos "
        f"({r['checked_on']}; limit {r['max_loss_percent']:g} % changed), largest score change {r['max_score_diff']:.3f}",
    )
    return r


def _export_faces_int8(calibration, out, verbose: bool) -> dict:
    from imgclf.faces.int8 import export_embedder_int8

    r = export_embedder_int8(calibration, out)
    _say(
        verbose,
        f"exported {r['path']} (the face embedder at int8, calibrated on {r['n_faces']} faces, {r['seconds']:.1f}s); "
        f"cosine similarity to fp32's embeddings: {r['min_cosine']:.4f} at the least, {r['mean_cosine']:.4f} on average",
    )
    return r


def _export_detector(run, out, data, verbose: bool) -> dict:
    from imgclf.detection.export import export_detector

    images = None
    if data is not None:
        from imgclf.data.images import UnusableImage
        from imgclf.detection import photo
        from imgclf.inference.predictor import expand_inputs

        images = []
        for p in list(expand_inputs(data))[:16]:
            with contextlib.suppress(UnusableImage):  # a broken file among the photos does not stop the check
                images.append(photo(p)[0])
    result = export_detector(run, out, images)
    _say(
        verbose,
        f"exported {result['path']}; ONNX Runtime vs PyTorch: max score difference {result['max_score_diff']:.2e}, "
        f"box {result['max_box_diff']:.2e} on {result['n_images']} {'photos' if images else 'noise images'}",
    )
    return result


def _say(verbose: bool, line: str) -> None:
    """One plain line: its paths are the user's text, which rich reads as markup ("[v2]/m.onnx" lost "[v2]")."""
    from rich.markup import escape

    _console(verbose).print(escape(line))

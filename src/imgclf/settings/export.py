"""Every setting of `imgclf export` (ONNX, fp32 or int8; a classifier run, a detector, the face
embedder), declared once (settings.declare) as TuneSettings' are: `imgclf export`'s options
(cli.app.with_settings), the checks imgclf.export holds its keywords to, and the docs' reference
(docs/settings.md) are all made from here. What depends on the machine is checked where it is known:
the opsets the installed torch and onnx export (inference.onnx_export).

    >>> ExportSettings(max_loss=float("nan"))
    UserError: --max-loss must be a number from 0 to 100 (accuracy points; a detector: percent of photos), not nan
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.settings.checks import Choice, Flag, Number, PathSetting
from imgclf.settings.declare import Declared, setting

FORMATS = ("onnx",)


@dataclass
class ExportSettings(Declared):
    WHAT = "export setting"

    format: str = setting("onnx", "onnx (the only format for now)  [default: onnx]", Choice(FORMATS))
    out: str | None = setting(None, "File to write  [default: RUN/model.onnx]", PathSetting(optional=True))
    opset: int | None = setting(
        None,
        "ONNX opset  [default: the exporter's]",
        Number(int, 1, 1000, optional=True, says="an ONNX opset (7 up to what the installed torch and onnx export)"),
    )
    data: str | None = setting(
        None, "Folder of images to check parity on  [default: the run's test split]", PathSetting(optional=True)
    )
    check: bool = setting(
        True, "Check ONNX Runtime against PyTorch (fails above 1e-4 probability).", Flag(), flag="--check/--no-check"
    )
    int8: bool = setting(
        False,
        "Write RUN/model.int8.onnx instead: int8, calibrated on the run's training images, kept only "
        "when its test accuracy is within --max-loss of fp32's (--data: where the run's data moved to). "
        "A detector: its int8 graph, calibrated on --calibration's photos",
        Flag(),
        flag="--int8",
    )
    max_loss: float | None = setting(
        None,
        "With --int8: accuracy points int8 may lose against fp32 [default: 1]; a detector: percent of "
        "photos whose present/absent answer it may change [default: 5]",
        Number(
            float, 0, 100, optional=True, says="a number from 0 to 100 (accuracy points; a detector: percent of photos)"
        ),
    )
    calibration: str | None = setting(
        None,
        "With --int8, a detector: a folder of 20+ of your photos, scenes like those it will scan (people in "
        "some) [default: a detector run's training photos; the pretrained one needs them]",
        PathSetting(optional=True),
    )

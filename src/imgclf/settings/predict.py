"""Every setting of `imgclf predict` (images, a video, a Ray cluster), declared once (settings.declare)
as ScanSettings' are: name, type, default, help text and the rule that checks it. `imgclf predict`'s
options (cli.app.with_settings), the checks imgclf.predict_folder, imgclf.predict_on_ray,
imgclf.predict_video and the model's `with_tta` hold a value to, and the docs' reference
(docs/settings.md) are all made from here.

A refusal names the option as the command line spells it, whichever way the value came in:

    >>> PredictSettings(every=0)
    UserError: --every must be a whole number of frames, at least 1, not 0
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.settings.checks import PREDICT_BACKENDS, TTA_MODES, Choice, Flag, Number, PathSetting, Text
from imgclf.settings.config import DEVICE_HELP
from imgclf.settings.declare import Declared, checker, ray_setting, rules, setting
from imgclf.settings.scan import RULES as SCAN_RULES

SHARD_FORMATS = ("parquet", "csv")  # cluster.shards: one shard file's format
ANSWER_FORMATS = ("table", "json", "csv")  # how the answers are printed (cli.render.predictions)
TOP_K = Number(int, 1, 1000)  # classes an answer lists: the service's rule too
TTA_HELP = "none | flip | crop | flip-crop  [default: what the run was evaluated with]"
BACKEND_HELP = (
    "auto (ONNX Runtime on a CPU where RUN/model.onnx holds the run's weights, as training on a CPU writes it; "
    "else PyTorch) | torch | onnx (ONNX Runtime; RUN/model.onnx, exported when missing) | onnx-int8 (RUN/model.int8.onnx, "
    "made by imgclf export RUN --int8) | openvino | openvino-int8 (those files in OpenVINO: pip install "
    "'imgclf[openvino]')"
)


@dataclass
class PredictSettings(Declared):
    WHAT = "predict setting"

    format: str = setting("table", "table | json | csv  [default: table]", Choice(ANSWER_FORMATS))
    device: str = setting("auto", DEVICE_HELP, Text())
    top_k: int = setting(1, "How many classes to show per image.  [default: 1]", TOP_K)
    tta: str | None = setting(None, TTA_HELP, Choice((None, *TTA_MODES)))
    backend: str | None = setting(
        None,
        f"{BACKEND_HELP}; a detector (person, a detector run) with --ray: imgclf scan's backends "
        "[default: auto; with --ray, onnx on CPU workers and torch on GPUs]",
        Choice((None, *PREDICT_BACKENDS)),
    )
    out: str | None = setting(
        None,
        "Stream predictions into this CSV (parallel decoding, batches, "
        "progress); run again with the same --out to resume. A video: per-frame CSV. "
        "With --ray: the folder for the shards [default: ./predictions-<name of PATHS>/].",
        PathSetting(optional=True),
    )
    ray: str | None = ray_setting(
        "Predict on a Ray cluster (pip install 'imgclf[ray]'): bare --ray = this machine or $RAY_ADDRESS; "
        "else ray://HOST:10001 or HOST:6379. Writes Parquet shards into --out (a folder); rerun to resume.",
    )
    shard_size: int = setting(
        1024,
        "With --ray: images per shard file (one worker's unit of work).  [default: 1024]",
        Number(int, 1, 10**9, says="a whole number of images, at least 1"),
    )
    shard_format: str = setting(
        "parquet",
        "With --ray: parquet | csv (the columns of --out x.csv, with decision and unknown).  [default: parquet]",
        Choice(SHARD_FORMATS),
    )
    every: int = setting(
        1,
        "Video: classify every Nth frame.  [default: 1]",
        Number(int, 1, 10**9, says="a whole number of frames, at least 1"),
    )
    smooth: float = setting(
        0.5,
        "Video: time constant of the probability smoothing, seconds (0: off).  [default: 0.5]",
        Number(float, 0, 1e9, says="0 (off) or a time in seconds"),
    )
    video_out: str | None = setting(
        None, "Video: write a copy with the label drawn on each frame (.mp4).", PathSetting(optional=True)
    )
    events: str | None = setting(
        None,
        "Video: presence events (two classes) and segments JSON [default: events.json beside --out]",
        PathSetting(optional=True),
    )
    scan: bool = setting(
        False,
        "Video: scan each frame for the positive class (a model trained "
        "on crops; see imgclf scan) instead of classifying it whole; boxes drawn.",
        Flag(),
        flag="--scan",
    )
    max_seconds: float | None = setting(
        None,
        "Video with --scan: the longest one frame's scan may take, estimated before a frame is read; the "
        "smallest window is raised to fit, a video that still does not is refused [default: 10]",
        SCAN_RULES["max_seconds"],  # a frame's scan is bounded as a photo's is (settings.scan)
    )


RULES = rules(PredictSettings)
# `values` (any of PredictSettings') checked and normalised by their declared rules; a refusal names
# the option as `imgclf predict` spells it (--every), for the Python API's keywords too.
check_predict = checker(PredictSettings)

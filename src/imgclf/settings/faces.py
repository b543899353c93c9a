"""Every setting of `imgclf faces` (enrol and add; identify), declared once (settings.declare) as
PredictSettings' are: name, type, default, help text and the rule that checks it. The commands'
options (cli.app.with_settings), the checks imgclf.faces.enrol, add, identify and FaceModel hold a
value to, and the docs' reference (docs/settings.md) are all made from here.

A refusal names the option as the command line spells it, whichever way the value came in:

    >>> IdentifySettings(every=0)
    UserError: --every must be a whole number of frames, at least 1, not 0
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.settings.checks import FACES_BACKENDS, Choice, Flag, Number, PathSetting
from imgclf.settings.declare import Declared, checker, ray_setting, rules, setting
from imgclf.settings.scan import RULES as SCAN_RULES

# --far's rule: a share strictly between 0 (a threshold no one passes) and 1 (one every stranger passes)
SHARE = Number(
    float,
    0,
    1,
    low_open=True,
    high_open=True,
    says="the share of strangers the threshold may let through, between 0 and 1 (e.g. 0.05)",
)
FAR = 0.05  # --far's default: the share of strangers a new gallery's threshold may let through (faces.gallery)
BACKEND_HELP = (
    "The face embedder's engine: auto (ONNX Runtime on a CPU, PyTorch on a GPU) | onnx | onnx-int8 "
    "(int8, made once by imgclf export faces --int8 --calibration PHOTOS/) | torch  [default: auto]"
)


def _backend():
    """The embedder's engine (models.face.engine): one declaration, which enrol, add and identify take."""
    return setting("auto", BACKEND_HELP, Choice(FACES_BACKENDS))


@dataclass
class EnrolSettings(Declared):
    """`imgclf faces enrol` (all of them) and `imgclf faces add` (keep_photos, backend)."""

    WHAT = "faces enrol setting"

    out: str | None = setting(
        None, "The new gallery's folder [default: galleries/<KNOWN>-<n>]", PathSetting(optional=True)
    )
    far: float = setting(
        FAR,
        "Share of strangers the 'unknown' threshold may name as someone, measured on the enrolment photos "
        "(lower: fewer strangers named, more enrolled people missed)  [default: 0.05]",
        SHARE,
    )
    keep_photos: bool = setting(
        False, "Also keep each enrolled face's crop in GALLERY/photos/NAME/.", Flag(), flag="--keep-photos"
    )
    backend: str = _backend()


@dataclass
class IdentifySettings(Declared):
    """`imgclf faces identify`: photos, a video, or a Ray cluster."""

    WHAT = "faces identify setting"

    out: str | None = setting(None, "Write faces.csv, faces.json and annotated/ here.", PathSetting(optional=True))
    threshold: float | None = setting(
        None,
        "Cosine similarity a face needs to be named [default: the gallery's recorded one]",
        Number(float, 0, 1, optional=True, says="a cosine similarity between 0 and 1"),
    )
    every: int | None = setting(
        None,
        "A video: name the faces of every N-th frame [default: about 5 frames a second]",
        Number(int, 1, 10**9, optional=True, says="a whole number of frames, at least 1"),
    )
    video_out: str | None = setting(
        None, "A video: also write its frames with the faces named here (.mp4)", PathSetting(optional=True)
    )
    max_seconds: float | None = setting(
        None,
        "A video: the longest one frame's face search may take, estimated from the frame size the video "
        "reports before a frame is read; a video over it is refused [default: 10]",
        SCAN_RULES["max_seconds"],  # a frame's face search is bounded as a photo's scan is (settings.scan)
    )
    ray: str | None = ray_setting(
        "Identify on a Ray cluster (pip install 'imgclf[ray]'): bare --ray = this machine or $RAY_ADDRESS; "
        "Parquet shards (path, count, faces as JSON) into --out; rerun to resume; the workers run --backend",
    )
    backend: str = _backend()


ENROL_RULES = rules(EnrolSettings)
IDENTIFY_RULES = rules(IdentifySettings)
# Values checked and normalised by their declared rules; a refusal names the option as `imgclf faces
# enrol` / `identify` spells it (--far, --every), for the Python API's keywords too.
check_enrol = checker(EnrolSettings)
check_identify = checker(IdentifySettings)

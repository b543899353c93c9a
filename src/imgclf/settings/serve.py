"""The service's settings (imgclf.serving): which model it serves and where it listens
(ServeJobSettings), its limits, batching and access (ServeSettings), each declared once
(settings.declare) with its default, help text and check; `imgclf serve`'s options are made from
these declarations. Here, below the service, so that the command line reads them without importing
FastAPI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List

from imgclf.core.errors import UserError
from imgclf.settings.checks import (
    DETECTOR_BACKENDS,
    FACES_BACKENDS,
    PREDICT_BACKENDS,
    TTA_MODES,
    Choice,
    Flag,
    Number,
    PathSetting,
    Text,
    check_settings,
)
from imgclf.settings.config import DEVICE_HELP
from imgclf.settings.declare import Declared, rules, setting
from imgclf.settings.predict import BACKEND_HELP, TTA_HELP

SECONDS = Number(float, 0, 3600, low_open=True)  # a time limit: above 0, at most an hour
# uvicorn would take 0 as "any free port" and fail on 99999 with a traceback, after printing an
# address it never listens on
PORT = Number(int, 1, 65535, says="a TCP port from 1 to 65535 (e.g. 8000)")


@dataclass
class ServeJobSettings(Declared):
    """Which model `imgclf serve` serves, where it listens and what runs the model: imgclf.serve's
    keywords beside ServeSettings'. Checked as they are made, before the model loads (a typo in a
    port is not worth a model's loading time).

        >>> ServeJobSettings(port=99999)
        UserError: --port must be a TCP port from 1 to 65535 (e.g. 8000), not 99999
    """

    WHAT = "serve setting"

    registry: str | None = setting(
        None,
        "Serve the registry's --alias version and swap in each version it is promoted or rolled back to, while serving",
        PathSetting(optional=True),
    )
    alias: str = setting("production", "The alias followed with --registry  [default: production]", Text())
    host: str = setting("127.0.0.1", "Interface to listen on (0.0.0.0: every interface).  [default: 127.0.0.1]", Text())
    port: int = setting(8000, "TCP port to listen on.  [default: 8000]", PORT)
    backend: str = setting("auto", f"{BACKEND_HELP}  [default: auto]", Choice(PREDICT_BACKENDS))
    device: str = setting("auto", DEVICE_HELP, Text())
    tta: str | None = setting(None, TTA_HELP, Choice((None, *TTA_MODES)))


@dataclass(frozen=True)
class ServeSettings:
    """What `imgclf serve` accepts and how it runs the model.

    ServeSettings(api_key="s3cret", max_upload_mb=5, cors=("https://example.org",))
    """

    api_key: str | None = setting(
        None,
        "Require this key (header X-API-Key or Authorization: Bearer) on /predict, /model, /metrics; "
        "or set IMGCLF_API_KEY",  # /health stays open
        Text(optional=True, blank=True),  # refused below, in words about keys
        envvar="IMGCLF_API_KEY",
    )
    cors: tuple[str, ...] = setting(
        (), "Allow browser pages from this origin (repeatable) [default: no CORS]", cli_type=List[str]
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        "Also answer requests addressed to this host name (repeatable; * for any). Others get 421, against DNS "
        "rebinding [default: localhost, IP addresses, --host]",
        flag="--allowed-host",
        cli_type=List[str],
    )
    max_upload_mb: float = setting(
        20.0, "Largest request body, MB (413 above) [default: 20]", Number(float, 0, 1e6, low_open=True)
    )
    # 50 M lets in a 48-megapixel phone photo (8064 x 6048, a main camera's full resolution); JPEGs
    # decode at a fraction of that (draft mode), and the decoder behind training caps at 100 M.
    max_pixels: int = setting(
        50_000_000,
        "Largest image in pixels, read from its header (413 above) [default: 50000000]",
        Number(int, 1, 10**12),
    )
    max_images: int = setting(16, "Most images in one request (422 above) [default: 16]", Number(int, 1, 10**6))
    max_batch: int = setting(32, "Most images in one forward pass [default: 32]", Number(int, 1, 65_536))
    max_wait_ms: float = setting(
        2.0, "Longest wait for more requests to batch with [default: 2]", Number(float, 0, 1e6)
    )
    batching: bool = setting(True, "One forward pass per request (the naive baseline)", Flag(), flag="--no-batching")
    threads: int | None = setting(
        None,
        "threads per forward pass, torch's or ONNX Runtime's [default: 1 on a CPU, where forwards run one per "
        "core at once (batched or not); a GPU's batches: the engine's own]",
        Number(int, 1, 1024, optional=True),
    )
    log_predictions: str | None = setting(
        None,
        "Log each answered image to DIR/predictions.jsonl (for imgclf monitor) [default: no log]",
        PathSetting(optional=True),
    )
    log_sample: float = setting(1.0, "Share of images logged, 0-1 [default: 1]", Number(float, 0, 1))
    log_images: str = setting(
        "keep",
        "keep (store logged images in DIR/images) | hash (sha256 only) [default: keep]",
        Choice(("keep", "hash")),
    )
    log_max_mb: float = setting(
        500.0,
        "Size bound of the log folder; oldest files deleted first [default: 500]",
        Number(float, 0, 1e9, low_open=True),
    )
    inbox: str | None = setting(
        None,
        "Where POST /feedback stores corrected images [default: REGISTRY/inbox; for PROJECT/runs/x, PROJECT/inbox; else ./inbox]",
        PathSetting(optional=True),
    )
    detector: str = setting(
        "person",
        "POST /scan's detector, for a run with no class to find or ?detector=person: person (pretrained) "
        "or a detector run folder (imgclf train BOXES/) [default: person]",
        Text(),
    )
    faces: str | None = setting(
        None,
        "A face gallery (imgclf faces enrol) to serve at POST /faces/identify; the page names faces",
        PathSetting(optional=True),
    )
    # What runs them (detection.engines, models.face.engine): auto is ONNX Runtime fp32 on a CPU, PyTorch on a GPU;
    # onnx-int8 the int8 model `imgclf export person|RUN|faces --int8` made (checked at start-up).
    detector_backend: str = setting(
        "auto",
        "What runs POST /scan's detector: auto (ONNX Runtime on a CPU, PyTorch on a GPU) | torch | onnx | "
        "onnx-int8 (made by imgclf export person --int8 --calibration PHOTOS/) | openvino [default: auto]",
    )
    faces_backend: str = setting(
        "auto",
        "What runs the face embedder of --faces: auto | onnx | onnx-int8 (made by imgclf export faces --int8 "
        "--calibration PHOTOS/) | torch [default: auto]",
    )
    max_scan_seconds: float = setting(
        5.0,
        "POST /scan and /faces/identify: the longest one photo's scan or face search may take, estimated from "
        "its size and the model's measured cost before it runs (413 above; a min_size left out is raised to fit). "
        "They run one at a time, 4 may wait, each answered or refused (503 + Retry-After) within 30 s (or 6x "
        "this); photos over 12000 px a side or 10:1 are refused [default: 5]",
        SECONDS,
    )
    # Not on the command line: the Python API and tests set them.
    max_queue: int = setting(
        512, "Images waiting; beyond it /predict answers 503 + Retry-After.", Number(int, 1, 10**9), cli=False
    )
    top_k: int = setting(
        5, "Default top-k in answers (?top_k= overrides, up to the class count).", Number(int, 1, 10**6), cli=False
    )
    max_side: int = setting(
        12_000, "/scan and /explain: longest image side in px (from the header).", Number(int, 1, 10**6), cli=False
    )
    max_aspect: float = setting(10.0, "/scan and /explain: long side / short side.", Number(float, 1, 1e6), cli=False)
    max_windows: int = setting(
        2_000_000,
        "/scan: windows one photo may cost (from its size and the options).",
        Number(int, 1, 10**12),
        cli=False,
    )
    scan_queue: int = setting(
        4,
        "/scan, /faces/identify: requests waiting for the running one; past it 503 + Retry-After.",
        Number(int, 0, 10**6),
        cli=False,
    )
    scan_deadline_s: float | None = setting(
        None,
        "/scan: the longest a request waits and runs (503 + Retry-After after it); default 30 s, or 6 x "
        "max_scan_seconds when longer, so no limit cuts short the scans it allows.",
        Number(float, 0, 3600, low_open=True, optional=True),
        cli=False,
    )
    read_timeout_s: float = setting(
        15.0, "A client's headers, and each wait for more body, must arrive within this.", SECONDS, cli=False
    )
    max_connections: int = setting(
        128, "Open connections; past it new requests get 503.", Number(int, 2, 10**6), cli=False
    )

    def __post_init__(self):
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in check_settings(values, RULES).items():
            object.__setattr__(self, name, value)
        if self.scan_deadline_s is None:
            object.__setattr__(self, "scan_deadline_s", min(max(30.0, 6 * self.max_scan_seconds), 3600))
        # A list from the CLI or YAML becomes a tuple: the settings stay hashable and immutable.
        hosts = (self.allowed_hosts,) if isinstance(self.allowed_hosts, str) else self.allowed_hosts
        object.__setattr__(self, "allowed_hosts", tuple(str(h).strip().lower().rstrip(".") for h in hosts))
        object.__setattr__(self, "cors", (self.cors,) if isinstance(self.cors, str) else tuple(self.cors))
        self._check_backends()
        if self.api_key is not None and not self.api_key.strip():
            raise UserError("--api-key is empty: give a non-empty key, or leave the option out for an open service")

    def _check_backends(self) -> None:
        for option, value, choices in (
            ("detector", self.detector_backend, DETECTOR_BACKENDS),
            ("faces", self.faces_backend, FACES_BACKENDS),
        ):
            if value not in choices:
                raise UserError(f"--{option}-backend must be one of {', '.join(choices)}, not '{value}'")
        if self.faces is None and self.faces_backend != "auto":  # it would be ignored, and the user told nothing
            raise UserError(
                "--faces-backend runs the face embedder of --faces GALLERY: give --faces too, or leave it out"
            )

    def check_folders(self) -> None:
        """Refuse in one line, before serving, an --inbox or --log-predictions that is a file or cannot
        be written (core.files.output_folder): found later, it would fail the start-up with a
        traceback, or every POST /feedback with a 500."""
        from imgclf.core.files import output_folder

        if self.inbox:
            output_folder(self.inbox, "--inbox")
        if self.log_predictions:
            output_folder(self.log_predictions, "--log-predictions")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


RULES = rules(ServeSettings)

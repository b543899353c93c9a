"""The service's settings: limits, batching and access, in one place with their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.core.errors import UserError


@dataclass(frozen=True)
class ServeSettings:
    """What `imgclf serve` accepts and how it runs the model.

    ServeSettings(api_key="s3cret", max_upload_mb=5, cors=("https://example.org",))
    """

    api_key: str | None = None  # required on /predict, /model, /metrics when set; /health stays open
    cors: tuple[str, ...] = ()  # allowed browser origins; none: no CORS headers at all
    max_upload_mb: float = 20.0  # whole request body
    max_pixels: int = 40_000_000  # per image, checked from its header before decoding
    max_images: int = 16  # per request
    batching: bool = True  # False: one forward per request (the naive baseline)
    max_batch: int = 32  # images per forward pass
    max_wait_ms: float = 2.0  # how long a lone request waits for company before it runs
    max_queue: int = 512  # images waiting; beyond it /predict answers 503 + Retry-After
    top_k: int = 5  # default top-k in answers (?top_k= overrides, up to the class count)
    threads: int | None = None  # torch threads per forward; None: all cores batched, 1 without batching
    log_predictions: str | None = None  # folder for the prediction log (imgclf.store.predlog); None: no log
    log_sample: float = 1.0  # share of images logged, 0..1 (the same image always or never)
    log_images: str = "keep"  # keep: store each logged image's bytes; hash: its sha256 only
    log_max_mb: float = 500.0  # the log folder's size bound; the oldest files go first
    inbox: str | None = None  # where POST /feedback stores corrected images; None: beside the run
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides localhost, IP literals, the bound host; "*": any
    max_side: int = 12_000  # /scan and /explain: longest image side in px (from the header)
    max_aspect: float = 10.0  # /scan and /explain: long side / short side
    max_windows: int = 2_000_000  # /scan: windows one photo may cost (from its size and the options)
    max_scan_seconds: float = 5.0  # /scan, /faces/identify: estimated seconds a photo may cost; 413 over (a
    # default min_size is raised)
    scan_queue: int = 4  # /scan, /faces/identify: requests waiting for the running one; past it 503 + Retry-After
    scan_deadline_s: float | None = None  # /scan: the longest a request waits and runs (503 + Retry-After
    # after it); None: 30 s, or 6 x max_scan_seconds when longer, so no limit cuts short the scans it allows
    detector: str = "person"  # /scan's detector: the pretrained person detector, or a detector run folder
    faces: str | None = None  # POST /faces/identify's gallery folder (imgclf faces enrol); None: no faces route
    # What runs them (detection.engines, faces.engine): auto is ONNX Runtime fp32 on a CPU, PyTorch on a GPU;
    # onnx-int8 the int8 model `imgclf export person|RUN|faces --int8` made (checked at start-up).
    detector_backend: str = "auto"  # auto | torch | onnx | onnx-int8 | openvino
    faces_backend: str = "auto"  # auto | onnx | onnx-int8 | torch
    read_timeout_s: float = 15.0  # a client's headers, and each wait for more body, must arrive within this
    max_connections: int = 128  # open connections; past it new requests get 503

    def __post_init__(self):
        if self.scan_deadline_s is None:
            object.__setattr__(self, "scan_deadline_s", min(max(30.0, 6 * self.max_scan_seconds), 3600))
        checks = {
            "max_upload_mb": self.max_upload_mb > 0,
            "max_pixels": self.max_pixels > 0,
            "max_images": self.max_images >= 1,
            "max_batch": self.max_batch >= 1,
            "max_wait_ms": self.max_wait_ms >= 0,
            "max_queue": self.max_queue >= 1,
            "top_k": self.top_k >= 1,
            "threads": self.threads is None or self.threads >= 1,
            "log_sample": 0 <= self.log_sample <= 1,
            "log_max_mb": self.log_max_mb > 0,
            "max_side": self.max_side >= 1,
            "max_aspect": self.max_aspect >= 1,
            "max_windows": self.max_windows >= 1,
            "max_scan_seconds": 0 < self.max_scan_seconds <= 3600,
            "scan_queue": self.scan_queue >= 0,
            "scan_deadline_s": 0 < self.scan_deadline_s <= 3600,
            "read_timeout_s": 0 < self.read_timeout_s <= 3600,
            "max_connections": self.max_connections >= 2,
        }
        # A list from the CLI or YAML becomes a tuple: the settings stay hashable and immutable.
        hosts = (self.allowed_hosts,) if isinstance(self.allowed_hosts, str) else self.allowed_hosts
        object.__setattr__(self, "allowed_hosts", tuple(str(h).strip().lower().rstrip(".") for h in hosts))
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise UserError(
                f"serve setting(s) {', '.join(bad)} out of range: sizes and counts must be positive, "
                "max_wait_ms at least 0, log_sample between 0 and 1, max_aspect at least 1, "
                "read_timeout_s, max_scan_seconds and scan_deadline_s at most 3600, max_connections at least 2"
            )
        if self.log_images not in ("keep", "hash"):
            raise UserError(f"--log-images {self.log_images!r}: use keep (store the images) or hash (sha256 only)")
        self._check_backends()
        if self.api_key is not None and not self.api_key.strip():
            raise UserError("--api-key is empty: give a non-empty key, or leave the option out for an open service")

    def _check_backends(self) -> None:
        from imgclf.detection.engines import BACKENDS as DETECTOR
        from imgclf.faces.engine import BACKENDS as FACES

        for option, value, choices in (
            ("detector", self.detector_backend, DETECTOR),
            ("faces", self.faces_backend, FACES),
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

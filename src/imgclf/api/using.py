"""The API for using a trained run: load, evaluate, report, predict (folders, a Ray cluster, video),
export, serve, explain (finding things in photos: api/finding.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.core.console import console_for as _console
from imgclf.workflows import loaded

if TYPE_CHECKING:
    from imgclf.inference.model import Model

# A trained run as the functions take it: its folder (or REGISTRY/ALIAS), a Run, or a loaded model.
RunLike = "str | Path | Run | Model"


def load(run: str | Path, device: str = "auto", tta: str | None = None, backend: str = "torch") -> Model:
    """Load a trained model from a run folder (JSON + safetensors; no code executed); "person" (or a
    detector run): the detector, answering person / no person. `tta` overrides the run's test-time
    augmentation (none | flip | crop | flip-crop). `backend`: "torch" (a module to explain, scan or
    inspect), "auto" (ONNX Runtime on a CPU where RUN/model.onnx holds the run's weights, as training on
    a CPU writes it: twice the images/s; else PyTorch), "onnx" (RUN/model.onnx, exported on first use),
    "onnx-int8" (RUN/model.int8.onnx: `export(int8=True)`)."""
    from imgclf import workflows

    return workflows.load(run, device, tta, backend)


def evaluate(
    run: RunLike,
    data: str | Path | None = None,
    verbose: bool = True,
    *,
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "auto",
) -> dict:
    """Metrics of a trained model on its held-out test split (into RUN/metrics.json), or on DATA (its
    `test/` split, else all its images) with report.html and predictions.csv in `out` (default
    RUN/evaluations/<DATA's name>; the result's "report"). `data_root`: where the run's data moved to;
    `device`: where it runs. A detector ("person", a detector run) is scored on boxes (DATA/person/,
    DATA/no-person/: presence, as a classifier), a gallery on DATA/<person>/."""
    from imgclf import workflows
    from imgclf.settings.examine import EvaluateSettings

    EvaluateSettings(data_root=data_root, out=out, device=device)  # each checked as declared: one line naming the flag
    return workflows.evaluate(run, data, verbose, data_root=data_root, out=out, device=device)


def report(run: RunLike, verbose: bool = True, *, data_root: str | Path | None = None) -> Path:
    """Write the run's self-contained report.html (data, model, settings, curves, test metrics,
    calibration, thresholds, galleries, model card) and return its path; `train` writes it too.
    `data_root`: where the run's data folder is now, when it moved since training."""
    from imgclf import workflows

    return workflows.report(run, verbose, data_root=data_root)


def predict_folder(
    run: RunLike,
    inputs: str | Path | list,
    out: str | Path,
    *,
    top_k: int = 1,
    batch_size: int = 256,
    workers: int | None = None,
    resume: bool = True,
    device: str = "auto",
    backend: str = "auto",
    tta: str | None = None,
    verbose: bool = True,
) -> dict:
    """Predict any number of images (files, folders searched recursively) into the CSV `out`,
    streaming: parallel decoding, batched inference, a progress bar; rerun to resume. `run` is a
    run folder or a loaded model. See imgclf.inference.batch.

        imgclf.predict_folder("runs/photos-1", "new_pictures/", "preds.csv")   # {'predicted': 9841, 'images_per_s': ...}
    """
    from imgclf.inference.batch import predict_folder as stream
    from imgclf.settings.predict import check_predict

    top_k = check_predict(top_k=top_k, tta=tta)["top_k"]
    model = loaded(run, device, tta, backend)
    return stream(
        model, inputs, out, top_k=top_k, batch_size=batch_size, workers=workers, resume=resume, progress=verbose
    )


def predict_on_ray(
    run: str | Path,
    source: str | Path | list,
    out: str | Path | None = None,
    *,
    address: str | None = "auto",
    top_k: int = 1,
    backend: str = "auto",
    shard_size: int = 1024,
    format: str = "parquet",
    device: str = "auto",
    tta: str | None = None,
    progress: bool = True,
) -> dict:
    """Predict any number of images on a Ray cluster (pip install 'imgclf[ray]') into shard files
    OUT/part-00000.parquet, ...: path, label, confidence, decision (the rule behind label), unknown,
    top_k, top_k_probs, error (`format="csv"`: predict_folder's CSV columns, with decision and
    unknown before error). Rerun to resume:
    shards already written are skipped; OUT/_manifest.json records the job, and a different job into
    the same OUT is refused.

    `source`: a folder (searched recursively), a glob pattern, a list file (.txt, one path a line;
    .csv or .parquet with a `path` column) or a list of these; paths and URIs (s3://, gs://, ...)
    every node can read. `run`: a run folder every node can read (each worker loads it once).
    `address`: "auto" (RAY_ADDRESS, a `ray start` cluster on this machine, else a local one),
    "ray://HOST:10001" or "HOST:6379". `backend="auto"`: ONNX Runtime on CPU workers, PyTorch on
    GPUs; a detector or gallery `run` takes imgclf.scan's or imgclf.faces.identify's backends (onnx-int8
    too). `out` [default: ./predictions-<source name>]. See imgclf.cluster.predict.

        imgclf.predict_on_ray("runs/photos-1", "s3://bucket/new.txt", "s3://bucket/preds", address="ray://head:10001")
        # {'shards': 98, 'skipped_shards': 0, 'predicted': 99840, 'errors': 3, 'images_per_s': ..., 'workers': 64}
    """
    from imgclf.cluster.predict import predict_on_ray as run_shards

    return run_shards(
        run,
        source,
        out,
        address=address,
        top_k=top_k,
        backend=backend,
        shard_size=shard_size,
        format=format,
        device=device,
        tta=tta,
        progress=progress,
    )


def predict_video(
    run: RunLike | None,
    source: str | int | Path,
    *,
    every: int = 1,
    smooth: float = 0.5,
    out_csv: str | Path | None = None,
    out_video: str | Path | None = None,
    events: str | Path | None = None,
    max_frames: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    tta: str | None = None,
    verbose: bool = True,
    scan: bool = False,
    detector=None,
    max_seconds: float | None = None,
    on_change: Callable[[dict], None] | None = None,
) -> dict:
    """Classify a video file, camera index or stream URL frame by frame (every `every`-th), probabilities
    smoothed over `smooth` seconds; per-frame CSV, annotated video and, for two-class runs, presence events
    of the positive class; for every run, segments (stretches of time that each show one label); both in
    events.json beside the CSV, or `events`. `scan=True` scans each frame for the positive class (imgclf.scan):
    presence from the best window, boxes drawn. With no run (or `detector` a name or a loaded Detector) the
    pretrained person detector finds people in each frame. A scanned frame is bounded as a photo's scan
    (`max_seconds`, default 10): a video over it is refused before a frame is scored. `on_change(change)`
    is called as each change happens (inference.presence.Changes: present, gone, a new label).

            imgclf.predict_video("runs/people-1", "door.mp4", out_csv="frames.csv")["events"]
            # [{'start_s': 2.0, 'end_s': 5.0, 'duration_s': 3.0, 'peak_confidence': 0.99}]
            imgclf.predict_video(None, 0, on_change=print)  # camera 0: {'kind': 'present', 'label': 'person', ...}
    """
    from imgclf.api.finding import frames_within, video_scanner
    from imgclf.inference.video import predict_video as run_video
    from imgclf.settings.predict import check_predict

    # A bad value is refused before a model is loaded or a frame read (settings.predict).
    check_predict(every=every, smooth=smooth, max_seconds=max_seconds, tta=tta, scan=scan)
    model, scanner = video_scanner(run, scan, detector, device, tta, backend, verbose)
    return run_video(
        model,
        source,
        every=every,
        smooth=smooth,
        out_csv=out_csv,
        out_video=out_video,
        events_path=events,
        show_fps=verbose,
        max_frames=max_frames,
        scanner=scanner,
        fit=frames_within(scanner, max_seconds) if scanner is not None else None,
        on_change=on_change,
    )


def serve(
    run: str | Path | None = None,
    *,
    registry: str | Path | None = None,
    alias: str = "production",
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    device: str = "auto",
    tta: str | None = None,
    verbose: bool = True,
    **settings: Any,
) -> None:
    """Serve the run over HTTP until interrupted: POST /predict, POST /feedback, the browser page at
    /, /health, /model, /metrics, /openapi.json. Other keywords are imgclf.serving.ServeSettings fields
    (api_key, cors, max_upload_mb, max_pixels, max_images, batching, max_batch, max_wait_ms,
    log_predictions, log_sample, log_images, log_max_mb, inbox, ...).

    `registry` instead of `run`: serve the version `alias` names, and swap in each version it is
    promoted (or rolled back) to while serving. Neither, or a detector run: the detector answers /predict too.

        imgclf.serve("runs/flowers-1", port=8000, api_key="s3cret")
        imgclf.serve(registry="registry", log_predictions="predlog")   # follows registry/production
    """
    from imgclf.serving.server import serve_run

    serve_run(
        run,
        registry=registry,
        alias=alias,
        host=host,
        port=port,
        backend=backend,
        device=device,
        tta=tta,
        console=_console(verbose),
        log_level="info" if verbose else "warning",
        **settings,
    )


def explain(
    run: RunLike,
    images: str | Path | list,
    *,
    method: str = "gradcam",
    target: str | None = None,
    out: str | Path | None = None,
    device: str = "auto",
) -> list[dict]:
    """Where the network looked: per image, the run's answer (label, confidence) and a class
    activation map of `target` (default: the answered class) from layer `layer`, picked
    automatically — `heatmap`, (size, size) floats in 0..1 over the model's input — and, with
    `out`, the overlay PNG written there (`overlay`: its path). Methods: gradcam, gradcam++,
    xgradcam, layercam, eigencam, scorecam, hirescam (the grad-cam package). See imgclf.inference.explain.

        r = imgclf.explain("runs/flowers-1", ["rose.jpg"], out="explanations")[0]
        r["label"], r["heatmap"].shape, r["overlay"]   # ('rose', (64, 64), 'explanations/rose-gradcam-rose.png')
    """
    from imgclf.inference.explain import explain as run_explain
    from imgclf.settings.examine import ExplainSettings

    ExplainSettings(target=target, method=method, out=out, device=device)  # checked as declared, before loading
    return run_explain(loaded(run, device, None, "torch"), images, method, target, out)

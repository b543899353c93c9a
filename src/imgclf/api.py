"""The Python API. The CLI is a thin layer over these functions.

run = imgclf.train("photos/", model="resnet_fast", epochs=20)
model = imgclf.load(run.path)            # or imgclf.load("runs/photos-1")
model.predict(["a.jpg", "folder/"], top_k=3)
imgclf.evaluate("runs/photos-1")         # metrics on the run's held-out test split
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgclf.core.console import console_for as _console
from imgclf.core.errors import UserError
from imgclf.lifecycle.feedback import feedback_import, feedback_summary  # noqa: F401
from imgclf.lifecycle.releases import (  # noqa: F401
    registry_add,
    registry_promote,
    registry_rollback,
    registry_show,
    registry_versions,
)
from imgclf.workflows import Run, loaded


def load(run: str | Path, device: str = "auto", tta: str | None = None, backend: str = "torch"):
    """Load a trained model from a run folder (JSON + safetensors; no code executed).

    `tta` overrides the test-time augmentation the run was evaluated with (none | flip | crop |
    flip-crop); its calibration was fitted with the run's own. `backend="onnx"` runs the network
    in ONNX Runtime (RUN/model.onnx, exported on first use) instead of PyTorch."""
    from imgclf import workflows

    return workflows.load(run, device, tta, backend)


def train(
    data: str | Path | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | bool = False,
    verbose: bool = True,
    on_epoch=None,
    evaluate: bool = True,
    mlflow: str | None = None,
    mlflow_weights: bool = False,
    **settings: Any,
) -> Run:
    """Train, evaluate on the held-out test split and write a run folder. Every keyword is a
    TrainConfig field; unset ones are chosen automatically, printed, and recorded in config.yaml.
    `resume=RUN_DIR` (or resume=True with out=RUN_DIR) continues an interrupted run.
    `on_epoch(epoch, history_row)` is called after every epoch (a tuner reports and prunes there).
    `evaluate=False` stops after training (no calibration, test scoring or report; metrics None):
    tuning trials are judged on validation only and must stay cheap. `mlflow`: a tracking URI to
    mirror the finished run to (`mlflow_weights`: with model.safetensors); see imgclf.lifecycle.tracking."""
    from imgclf import workflows
    from imgclf.lifecycle import tracking

    uri = tracking.checked_uri(mlflow)
    run = workflows.train(
        data, config=config, resume=resume, verbose=verbose, on_epoch=on_epoch, evaluate=evaluate, **settings
    )
    if uri:
        tracking.log_run(run.path, uri, weights=mlflow_weights)
    return run


def evaluate(run, data: str | Path | None = None, verbose: bool = True, *, data_root: str | Path | None = None) -> dict:
    """Metrics of a trained model: on its own held-out test split, or on DATA (its `test/` split
    when it has one, else all its images). Writes metrics.json into the run when on its test split.
    `data_root`: where the run's data folder is now, when it moved since training.

        imgclf.evaluate("runs/photos-1", data_root="/mnt/photos")["accuracy"]
    """
    from imgclf import workflows

    return workflows.evaluate(run, data, verbose, data_root=data_root)


def ensemble(
    runs: list[str | Path],
    out: str | Path,
    *,
    target_accuracy: float | None = None,
    target_coverage: float | None = None,
    device: str = "auto",
    verbose: bool = True,
) -> Run:
    """Bundle runs trained on the same classes into one model that averages their calibrated
    probabilities; evaluated on their shared test split when they have one. `imgclf.load(out)`
    then predicts like a single run. Targets as in `train` (rejection chosen on the shared
    validation split).

        imgclf.ensemble(["runs/a", "runs/b", "runs/c"], out="runs/abc").metrics["accuracy"]
    """
    from imgclf.inference.ensemble import make_ensemble

    path, metrics = make_ensemble(runs, out, target_accuracy, target_coverage, device, console=_console(verbose))
    return Run(path, metrics, None)


def compare(
    a,
    b,
    data: str | Path | None = None,
    tolerance: float = 0.02,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    rule: dict | None = None,
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
) -> dict:
    """Champion/challenger: run A and run B on A's frozen test split (and on `data`, new labeled images):
    accuracy with paired bootstrap CIs, McNemar's test, per-class recall, ECE, the images whose
    prediction changed, and a verdict {promote, reasons, paragraph}. Writes B/compare-<A>.json (or `out`).
    `data_root`: where A's data folder is now, when it moved since A was trained.

        imgclf.compare("registry/production", "runs/photos-7")["verdict"]["promote"]
    """
    from imgclf.lifecycle.compare import compare as run_compare

    return run_compare(a, b, data, tolerance, alpha, n_boot, seed, rule, out, data_root)


def explain(
    run,
    images,
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

    return run_explain(_model(run, device, None, "torch"), images, method, target, out)


def scan(
    run,
    images,
    *,
    positive: str | None = None,
    scales=None,
    stride: int | None = None,
    min_size: int | None = None,
    iou: float = 0.3,
    out: str | Path | None = None,
    mine: str | Path | None = None,
    threshold: float | None = None,
    margin=None,
    method: str = "auto",
    vote: bool | None = None,
    verify=None,
    verify_top: int | None = None,
    box_threshold: float | None = None,
    device: str = "auto",
    verbose: bool = True,
) -> list[dict]:
    """Find the positive class in whole photos with a model trained on crops: the window (the training
    crops' shape) slides over an image pyramid, windows whose calibrated probability passes the run's
    threshold are merged by NMS. Per image: path, present, score, boxes [{x1, y1, x2, y2, score}] in
    image pixels, width, height, windows, seconds. `out` writes boxes.csv, scan.json and annotated
    images; `mine` saves the windows that fire as crops (hard negatives, from person-free photos);
    `vote` (default: the run's recorded choice, else on) moves each firing window's box to the
    score-weighted mean of the firing windows around it before NMS. `verify` (a run folder trained on
    the same crops, e.g. the default ImageNet-backbone run) re-scores each photo's best `verify_top`
    windows and decides presence, and the scan's windows over `box_threshold` (default: the recorded
    one, else the run's threshold) are the boxes of the photos it passes; default: the run's recorded
    verifier; False: none.
    See imgclf.scanning.

        r = imgclf.scan("runs/person-1", ["street.jpg"], out="scan-out")[0]
        r["present"], r["boxes"]          # True, [{'x1': 212.0, 'y1': 80.5, 'x2': 268.3, 'y2': 221.7, 'score': 0.97}]
    """
    from imgclf.scanning import scan as run_scan

    if isinstance(verify, (str, Path)):  # else a loaded model, None (the recorded one) or False
        from imgclf.scanning.verify import load_verifier

        verify = load_verifier(verify, device)
    return run_scan(
        _model(run, device, None, "torch"),
        images,
        positive=positive,
        scales=scales,
        stride=stride,
        min_size=min_size,
        iou=iou,
        out=out,
        mine=mine,
        threshold=threshold,
        margin=margin,
        method=method,
        vote=vote,
        verify=verify,
        verify_top=verify_top,
        box_threshold=box_threshold,
        verbose=verbose,
    )


def negatives(
    photos,
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

    return cut(photos, out, per_image=per_image, size=size, seed=seed, verbose=verbose)


def monitor(
    ref,
    log,
    *,
    out: str | Path | None = None,
    registry: str | Path | None = None,
    top: int = 50,
    since: str | None = None,
    low_confidence: float | None = None,
    device: str = "auto",
    verbose: bool = True,
    data_root: str | Path | None = None,
) -> dict:
    """Compare the service's prediction log (`imgclf serve --log-predictions DIR`) with the run's frozen
    test split: predicted classes, confidence, low-confidence and 'unknown' rates, brightness, size and
    colour mode (PSI + two-sample tests), a plain-words verdict, and the least confident logged images
    to label next. Writes OUT/monitor.json, monitor.html, to_label.csv and to_label/ (OUT defaults to
    monitors/<run name>). `ref`: run folder, REGISTRY/ALIAS, or a version/alias with `registry`.
    `data_root`: where the run's data folder is now, when it moved since training.

        imgclf.monitor("registry/production", "logs/")["verdict"]   # 'No drift: 412 logged predictions ...'
    """
    from imgclf.lifecycle.monitor import monitor as run_monitor

    return run_monitor(
        ref,
        log,
        out=out,
        registry=registry,
        top=top,
        since=since,
        low_confidence=low_confidence,
        device=device,
        verbose=verbose,
        data_root=data_root,
    )


def update(
    ref,
    new_data: str | Path | None = None,
    *,
    registry: str | Path = "registry",
    from_inbox: bool | str | Path = False,
    mode: str = "finetune",
    promote: bool = False,
    epochs: int | None = None,
    tolerance: float = 0.02,
    out: str | Path | None = None,
    verbose: bool = True,
    data_root: str | Path | None = None,
    **options: Any,
) -> dict:
    """Retrain a registry version (number or alias; or a run folder) on its recorded data plus new
    labeled images (`new_data`, or the feedback inbox with from_inbox=True): its test split stays
    frozen, new classes grow the head, `finetune` warm-starts with replay of the old data, `full`
    retrains from scratch. The result is registered as version `candidate`, compared with the parent
    on the frozen test split and the new test slice, and promoted only when `promote` and the rule
    passes. `data_root`: where the version's recorded data is now, when it moved since registration.
    Other keywords: lr_factor, replay, seed, doctor, mlflow, or TrainConfig settings. See imgclf.lifecycle.update.

        r = imgclf.update("production", "new_photos/", promote=True)
        r["version"], r["verdict"]["paragraph"], r["promoted"]
    """
    from imgclf.lifecycle.update import update as run_update

    return run_update(
        ref,
        new_data,
        registry=registry,
        from_inbox=from_inbox,
        mode=mode,
        promote=promote,
        epochs=epochs,
        tolerance=tolerance,
        out=out,
        verbose=verbose,
        data_root=data_root,
        **options,
    )


def export(
    run: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    data: str | Path | None = None,
    opset: int | None = None,
    check: bool = True,
    verbose: bool = True,
) -> dict:
    """Export the run's network (RUN/model.onnx by default: float32 NCHW normalised `input` ->
    `logits`, dynamic batch; classes and preprocessing in its metadata) and check that ONNX Runtime
    matches PyTorch within 1e-4 in probability on up to 64 real images (the run's test split, or `data`).

        imgclf.export("runs/photos-1")     # {'path': 'runs/photos-1/model.onnx', 'max_prob_diff': 2e-07, ...}
    """
    if format != "onnx":
        raise UserError(f"unknown export format '{format}'; the supported one is onnx")
    from imgclf.inference.onnx_export import export_onnx

    result = export_onnx(run, out=out, opset=opset, data=data, check=check)
    checked = (
        f"ONNX Runtime vs PyTorch: max probability difference {result['max_prob_diff']:.2e} on "
        f"{result['n_images']} images ({result['images_from']})"
        if check
        else "not checked (--no-check)"
    )
    _console(verbose).print(
        f"exported {result['path']} (opset {result['opset']}, {result['exporter']} exporter, "
        f"{result['seconds']:.1f}s); {checked}"
    )
    return result


def serve(
    run: str | Path | None = None,
    *,
    registry: str | Path | None = None,
    alias: str = "production",
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "torch",
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
    promoted (or rolled back) to while serving, without dropping a request.

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


def predict_folder(
    run,
    inputs,
    out: str | Path,
    *,
    top_k: int = 1,
    batch_size: int = 256,
    workers: int | None = None,
    resume: bool = True,
    device: str = "auto",
    backend: str = "torch",
    tta: str | None = None,
    verbose: bool = True,
) -> dict:
    """Predict any number of images (files, folders searched recursively) into the CSV `out`,
    streaming: parallel decoding, batched inference, a progress bar; rerun to resume. `run` is a
    run folder or a loaded model. See imgclf.inference.batch.

        imgclf.predict_folder("runs/photos-1", "new_pictures/", "preds.csv")   # {'predicted': 9841, 'images_per_s': ...}
    """
    from imgclf.inference.batch import predict_folder as stream
    from imgclf.inference.model import check_top_k

    check_top_k(top_k)
    model = _model(run, device, tta, backend)
    return stream(
        model, inputs, out, top_k=top_k, batch_size=batch_size, workers=workers, resume=resume, progress=verbose
    )


def predict_video(
    run,
    source,
    *,
    every: int = 1,
    smooth: float = 0.5,
    out_csv: str | Path | None = None,
    out_video: str | Path | None = None,
    events: str | Path | None = None,
    max_frames: int | None = None,
    device: str = "auto",
    backend: str = "torch",
    tta: str | None = None,
    verbose: bool = True,
    scan: bool = False,
) -> dict:
    """Classify a video file, camera index or stream URL frame by frame (every `every`-th),
    probabilities smoothed over `smooth` seconds; per-frame CSV, annotated video and, for two-class
    runs, presence events of the positive class (events.json beside the CSV, or `events`).
    `scan=True` scans each frame for the positive class (imgclf.scan) instead of classifying it
    whole: presence comes from the best window, the annotated video shows the boxes. See imgclf.inference.video.

        imgclf.predict_video("runs/people-1", "door.mp4", out_csv="frames.csv")["events"]
        # [{'start_s': 2.0, 'end_s': 5.0, 'duration_s': 3.0, 'peak_confidence': 0.99}]
    """
    from imgclf.inference.video import predict_video as run_video

    model = _model(run, device, tta, backend)
    scanner = None
    if scan:
        from imgclf.scanning import Scanner

        scanner = Scanner(model)
        if verbose:
            print(f"scan: {scanner.describe()}")
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
    )


def _model(run, device: str, tta: str | None, backend: str):
    return loaded(run, device, tta, backend)


def list_models(
    pattern: str | None = None, size: int = 224, pretrained_only: bool = False, limit: int = 25
) -> list[dict]:
    """Architectures with parameters, GFLOPs at `size` px and whether their pretrained weights are
    on this machine: the built-in ones and timm's matching `pattern` (without a pattern, a few
    suggested backbones). Each row: name, params, gflops, pretrained_tags, default_tag,
    input_size, local_weights.

        imgclf.list_models("resnet1*")[0]    # {'name': 'timm/resnet10t', 'params': 5435488, 'gflops': 2.19, ...}
    """
    from imgclf.models.catalog import list_models as catalog

    return catalog(pattern, size, pretrained_only, limit)["rows"]


def lr_find(
    data: str | Path,
    *,
    out: str | Path | None = None,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    verbose: bool = True,
    **settings: Any,
) -> dict:
    """Learning-rate range test (see training.lr_find): a short training with an exponentially
    growing learning rate, on the data, model and settings `train` would use (any TrainConfig
    keyword). Writes OUT/lr_find.json and OUT/lr_find.png; returns the result with
    "suggested_lr" (steepest descent of the smoothed loss) and "min_loss_lr_div10".

        imgclf.lr_find("photos/", model="timm/resnet18", weights="resnet18.safetensors")["suggested_lr"]
    """
    from imgclf.training.lr_find import run_range_test

    return run_range_test(
        data, out=out, steps=steps, start_lr=start_lr, end_lr=end_lr, console=_console(verbose), **settings
    )


def demo(out: str | Path | None = None, verbose: bool = True) -> Run:
    from imgclf.demo import run_demo

    return run_demo(out, verbose)


def check(
    data: str | Path,
    *,
    json_path: str | Path | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    near_distance: int | None = None,
    workers: int | None = None,
    verbose: bool = True,
    labels: bool = False,
    folds: int = 5,
    run: str | Path | None = None,
    device: str = "auto",
    group_by: str = "auto",
) -> dict:
    """The data doctor: unreadable files, exact and near duplicates (within a class, across classes,
    across the train/val/test split that `train` would make with the same val_frac, test_frac and
    seed, and keeping `group_by`'s groups together as train does: near-duplicates by default, see
    data.groups), class imbalance, and size, aspect-ratio and colour-mode outliers. Prints a summary
    table, writes every finding to `json_path` when given, and returns them as a dict.

    `labels=True` also finds images whose label is probably wrong: `folds`-fold cross-validation
    with short training runs, then confident learning on the out-of-fold probabilities (see
    evaluation.label_issues); the suspects are under "label_issues". `run=RUN` writes them to
    RUN/label_issues.json and rebuilds RUN/report.html, which shows them.

        findings = imgclf.check("photos/", json_path="doctor.json")
        findings["summary"]["exact_duplicates"]["conflicting_labels"]
        imgclf.check("photos/", labels=True)["label_issues"]["suspects"][0]   # {'path', 'given', 'suggested', 'score', ...}
    """
    from imgclf.lifecycle.doctor import check_data

    return check_data(
        data,
        json_path=json_path,
        val_frac=val_frac,
        test_frac=test_frac,
        seed=seed,
        near_distance=near_distance,
        workers=workers,
        labels=labels,
        folds=folds,
        run=run,
        device=device,
        group_by=group_by,
        console=_console(verbose),
        progress=verbose,
    )


def tune(
    data: str | Path,
    *,
    trials: int = 20,
    timeout: float | None = None,
    space: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str = "median",
    out: str | Path | None = None,
    run_out: str | Path | None = None,
    seed: int = 0,
    retrain: bool = True,
    verbose: bool = True,
    **settings: Any,
):
    """Search training settings with Optuna (TPE sampling, per-epoch pruning), then retrain the
    best configuration into a normal run folder whose report has a Tuning section.

    `trials` is the study's total: calling again with the same arguments resumes an interrupted
    tune (the study lives in `out`, default tunes/<dataset>-<n>/), and several processes or
    machines given the same `storage` (a journal file path, or a database URL such as
    sqlite:///tune.db) share one study. `space` is a YAML file overriding the default search
    space (see imgclf.tuning.space); other keywords are train settings every trial uses.

        result = imgclf.tune("photos/", trials=12, timeout=600)
        result.best_value, result.default_value, result.best_params, result.run.path
    """
    from imgclf.tuning.tune import run_tune

    return run_tune(
        data,
        trials=trials,
        timeout=timeout,
        space=space,
        storage=storage,
        study_name=study_name,
        pruner=pruner,
        out=out,
        run_out=run_out,
        seed=seed,
        retrain=retrain,
        verbose=verbose,
        settings=settings,
    )


def report(run, verbose: bool = True, *, data_root: str | Path | None = None) -> Path:
    """Write the run's self-contained report.html (data, model, settings, curves, test metrics,
    calibration, thresholds, galleries, model card) and return its path. `train` writes it too.
    `data_root`: where the run's data folder is now, when it moved since training (the galleries and
    test predictions read its images).

        imgclf.report("runs/photos-1")     # -> runs/photos-1/report.html
    """
    from imgclf import workflows

    return workflows.report(run, verbose, data_root=data_root)

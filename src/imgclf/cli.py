"""`imgclf` command line: a thin layer over imgclf.api. User mistakes print one line, no traceback."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError, mask_secrets

# rich_markup_mode=None: rich markup would swallow every "[default: ...]" in the help texts below.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, evaluate and use image classifiers from folders of labeled images.")


MLFLOW = typer.Option(None, "--mlflow", help="MLflow tracking URI to mirror this to (pip install 'imgclf[mlflow]') "
                      "[default: $MLFLOW_TRACKING_URI, else none]")
DATA_HELP = "Where the run's data folder is now, when it moved since training [default: the folder recorded in the run]"
MOVED_DATA = typer.Option(None, "--data", help=DATA_HELP)


def print_json(obj) -> None:
    """JSON has no NaN or Infinity: a non-finite number prints as null, so the output always parses."""
    print(json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False))


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def train(
    data: Optional[str] = typer.Argument(None, help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    preset: Optional[str] = typer.Option(None, help="fast | balanced | best: a whole recipe sized for this hardware and "
                                         "data (flags given with it win)  [default: none, the plain defaults]"),
    model: Optional[str] = typer.Option(None, help="auto | lite0 | lite1 | lite2 | simple_cnn | resnet_fast | timm/<arch>  "
                                        "[default: auto: lite0 (ImageNet weights) for photos, resnet_fast for tiny images]"),
    epochs: Optional[int] = typer.Option(None, help="[default: auto from dataset size]"),
    img_size: Optional[int] = typer.Option(None, help="Training resolution in px [default: auto from image sizes]"),
    batch_size: Optional[int] = typer.Option(None, help="[default: auto]"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate [default: auto]"),
    optimizer: Optional[str] = typer.Option(None, help="adamw | sgd  [default: adamw]"),
    schedule: Optional[str] = typer.Option(None, help="onecycle | cosine  [default: onecycle]"),
    seed: Optional[int] = typer.Option(None, help="[default: 0]"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps  [default: auto]"),
    weights: Optional[str] = typer.Option(None, help="Starting weights: a .safetensors/.pth file, a folder holding one "
                                          "(a Hugging Face snapshot or cache folder), or an earlier imgclf run of the "
                                          "same architecture (e.g. simple_cnn pretrained on a big dataset); tensors "
                                          "that differ in shape (the head) start fresh."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained", help="Pretrained timm weights: from the local "
                                              "Hugging Face cache, else downloaded (online)."),
    freeze_epochs: Optional[int] = typer.Option(None, help="Fine-tuning: epochs training only the new head, backbone "
                                                "frozen [default: 1-3 when fine-tuning, else 0]"),
    layer_decay: Optional[float] = typer.Option(None, help="Fine-tuning, after those: each layer's lr = the next "
                                                "layer's x this (1: same lr everywhere) [default: auto ~0.7]"),
    freeze_stride: Optional[int] = typer.Option(None, help="Fine-tuning: layers at stride <= this stay frozen (0: none) "
                                                "[default: 8 on CPU, 0 on GPU]"),
    freeze_depthwise: Optional[bool] = typer.Option(None, "--freeze-depthwise/--train-depthwise", help="Fine-tuning: "
                                                    "keep depthwise convolution weights frozen  [default: on CPU]"),
    feature_cache: Optional[bool] = typer.Option(None, "--feature-cache/--no-feature-cache", help="Fine-tuning: run "
                                                 "the frozen lower layers once and train on their stored output  "
                                                 "[default: on CPU]"),
    probe: Optional[bool] = typer.Option(None, "--probe/--no-probe", help="Fine-tuning: fit the new head on frozen "
                                         "features first (a linear probe)  [default: on]"),
    no_flip: Optional[bool] = typer.Option(None, "--no-flip", help="No horizontal flips (text, digits, asymmetric signs)."),
    augment: Optional[str] = typer.Option(None, help="auto | none  [default: auto]"),
    resize: Optional[str] = typer.Option(None, help="squash | crop | pad  [default: squash]"),
    dedupe: Optional[bool] = typer.Option(None, "--dedupe", help="Remove identical files that carry different labels "
                                          "or sit in two splits (one copy of the rest is kept)."),
    group_by: Optional[str] = typer.Option(None, help="Keep groups in one split: auto (near-duplicates, mirrored "
                                           "copies too) | none | near-duplicates | a regex whose one capture group "
                                           r"names the group, e.g. '^(crop\d+)'  [default: auto]"),
    val_frac: Optional[float] = typer.Option(None, help="Validation share when DATA has no val split [default: 0.1]"),
    test_frac: Optional[float] = typer.Option(None, help="Test share when DATA has no test split [default: 0.1]"),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs [default: auto]"),
    label_smoothing: Optional[float] = typer.Option(None, help="[default: 0.1]"),
    class_weight: Optional[str] = typer.Option(None, help="Loss weight per class: auto (sqrt when classes are 3x or "
                                               "more apart in size) | none | sqrt | balanced  [default: auto]"),
    positive_class: Optional[str] = typer.Option(None, help="Two classes: the positive one [default: auto from names]"),
    target_recall: Optional[float] = typer.Option(None, help="Two classes: threshold for this validation recall"),
    target_precision: Optional[float] = typer.Option(None, help="Two classes: threshold for this validation precision"),
    target_accuracy: Optional[float] = typer.Option(None, help="3+ classes: answer 'unknown' below the confidence that "
                                                    "gives this validation accuracy on the answered images"),
    target_coverage: Optional[float] = typer.Option(None, help="3+ classes: answer 'unknown' for the least confident "
                                                    "images, keeping this fraction of validation images"),
    tta: Optional[str] = typer.Option(None, help="Test-time augmentation at evaluation: none | flip | crop | flip-crop "
                                      "[default: flip when training flips]"),
    compile: Optional[str] = typer.Option(None, help="torch.compile: auto | on | off  [default: auto, on for long CUDA runs]"),
    config: Optional[Path] = typer.Option(None, help="YAML file of settings (flags override it)."),
    out: Optional[str] = typer.Option(None, help="Run folder [default: runs/<dataset>-<n>]"),
    resume: Optional[str] = typer.Option(None, help="Continue the interrupted run in this folder."),
    mlflow: Optional[str] = MLFLOW,
    mlflow_weights: bool = typer.Option(False, "--mlflow-weights", help="Also upload model.safetensors to MLflow."),
):
    """Train a CNN on DATA, evaluate it on a held-out test split, write a run folder."""
    from . import api, tracking

    mlflow = tracking.require(mlflow)

    settings = dict(preset=preset, dedupe=dedupe, group_by=group_by, tta=tta, compile=compile, model=model, epochs=epochs, img_size=img_size, batch_size=batch_size, lr=lr,
                    optimizer=optimizer, schedule=schedule, seed=seed, device=device, weights=weights,
                    pretrained=pretrained, freeze_epochs=freeze_epochs, layer_decay=layer_decay, freeze_stride=freeze_stride, freeze_depthwise=freeze_depthwise, feature_cache=feature_cache, probe=probe, flip=False if no_flip else None, augment=augment, resize=resize,
                    val_frac=val_frac, test_frac=test_frac, patience=patience,
                    label_smoothing=label_smoothing, class_weight=class_weight, positive_class=positive_class, target_recall=target_recall,
                    target_precision=target_precision, target_accuracy=target_accuracy,
                    target_coverage=target_coverage, out=out)
    if resume is None and data is None:
        raise UserError("give DATA (a folder with one sub-folder per class) or --resume RUN_FOLDER")
    run = api.train(data, config=config, resume=resume or False, **{k: v for k, v in settings.items() if v is not None})
    tracking.log_run(run.path, mlflow, weights=mlflow_weights)
    print(run.path)


@app.command()
def predict(
    run: str = typer.Argument(..., help="Run folder (or its model.safetensors)."),
    paths: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(1, help="How many classes to show per image."),
    format: Format = typer.Option(Format.table, help="table | json | csv"),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help="none | flip | crop | flip-crop  [default: what the run was evaluated with]"),
    backend: str = typer.Option("torch", help="torch | onnx (ONNX Runtime; RUN/model.onnx, exported when missing)"),
    out: Optional[str] = typer.Option(None, help="Stream predictions into this CSV (parallel decoding, batches, "
                                      "progress); run again with the same --out to resume. A video: per-frame CSV."),
    every: int = typer.Option(1, help="Video: classify every Nth frame."),
    smooth: float = typer.Option(0.5, help="Video: time constant of the probability smoothing, seconds (0: off)."),
    video_out: Optional[str] = typer.Option(None, help="Video: write a copy with the label drawn on each frame (.mp4)."),
    events: Optional[str] = typer.Option(None, help="Video, two classes: presence events JSON "
                                         "[default: events.json beside --out]"),
    scan: bool = typer.Option(False, "--scan", help="Video: scan each frame for the positive class (a model trained "
                              "on crops; see imgclf scan) instead of classifying it whole; boxes drawn."),
):
    """Predict the class of images with a trained run; or of the frames of a video file, camera index
    (0) or stream URL (rtsp://, http(s)://), given as the only PATH."""
    from . import api
    from .video import is_video_source

    model = api.load(run, device, tta=tta, backend=backend)
    if len(paths) == 1 and is_video_source(paths[0]):
        api.predict_video(model, paths[0], every=every, smooth=smooth, out_csv=out, out_video=video_out, events=events,
                          scan=scan)
        return
    if out is not None:
        api.predict_folder(model, paths, out, top_k=top_k)
        return
    results = model.predict(paths, top_k=top_k)
    if format == Format.json:
        print_json(results)
        return
    if format == Format.csv:
        from .batch import COLUMNS, csv_row

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)  # label applies the run's threshold
        for r in results:
            w.writerow(csv_row(r))
        print(buf.getvalue(), end="")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("path", "label", "confidence", *(["top-k"] if top_k > 1 else []))
    table.columns[0].overflow = "fold"      # show whole paths, wrapped, never "…"-truncated
    for r in results:
        if "error" in r:
            table.add_row(r.get("path", ""), "[red]unreadable[/]", r["error"], *([""] if top_k > 1 else []))
        else:
            extra = [", ".join(f"{c} {p:.3f}" for c, p in r["top_k"])] if top_k > 1 else []
            table.add_row(r.get("path", ""), r["label"], f"{r['confidence']:.4f}", *extra)
    Console(soft_wrap=True).print(table)


@app.command()
def evaluate(
    run: str = typer.Argument(..., help="Run folder."),
    data: Optional[str] = typer.Argument(None, help="Labeled data [default: the run's own held-out test split]."),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help="none | flip | crop | flip-crop  [default: what the run was evaluated with]"),
    data_root: Optional[str] = typer.Option(None, "--data", help=DATA_HELP + "; for its own test split, not DATA"),
):
    """Re-evaluate a trained run: on its test split, or on another labeled folder."""
    from . import api

    m = api.evaluate(api.load(run, device, tta=tta), data, data_root=data_root)
    print_json({k: m[k] for k in ("accuracy", "top_k_accuracy", "log_loss", "macro_avg", "n")})


@app.command()
def ensemble(
    runs: List[str] = typer.Argument(..., help="Two or more run folders trained on the same classes."),
    out: str = typer.Option(..., help="Bundle folder to write."),
    target_accuracy: Optional[float] = typer.Option(None, help="3+ classes: answer 'unknown' below the confidence that "
                                                    "gives this validation accuracy (on the members' shared split)"),
    target_coverage: Optional[float] = typer.Option(None, help="3+ classes: keep this fraction of validation images"),
    device: str = typer.Option("auto"),
):
    """Bundle runs into one model that averages their calibrated probabilities; evaluate it on their shared test split."""
    from . import api

    run = api.ensemble(runs, out, target_accuracy=target_accuracy, target_coverage=target_coverage, device=device)
    print(run.path)


@app.command()
def compare(
    a: str = typer.Argument(..., help="Champion: run folder or REGISTRY/ALIAS (its test split is the frozen test set)."),
    b: str = typer.Argument(..., help="Challenger: run folder or REGISTRY/ALIAS."),
    data: Optional[str] = typer.Option(None, help="Labeled folder of new data: a second evaluation slice."),
    tolerance: float = typer.Option(0.02, help="Largest allowed drop in any class's recall."),
    alpha: float = typer.Option(0.05, help="Significance level of McNemar's test."),
    out: Optional[str] = typer.Option(None, help="JSON file to write [default: B/compare-<A name>.json]."),
    data_root: Optional[str] = typer.Option(None, help="Where A's data folder is now, when it moved since A was "
                                            "trained [default: the folder recorded in A]"),
):
    """Champion/challenger: both models on the same images; prints PROMOTE or KEEP and why (exit 0 either way)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from . import api

    r = api.compare(a, b, data=data, tolerance=tolerance, alpha=alpha, out=out, data_root=data_root)
    console = Console(highlight=False)
    ci = lambda e: f"{e['ci'][0]:.1%} to {e['ci'][1]:.1%}"  # noqa: E731
    for where, s in r["slices"].items():
        t = Table(title=f"{where} ({s['n']} images; {s['mcnemar']['b01']} fixed, {s['mcnemar']['b10']} broken, "
                        f"McNemar p={s['mcnemar']['p_value']:.3g})", box=box.SIMPLE_HEAD, title_justify="left")
        for col in ("", "A", "B", "B - A"):
            t.add_column(col, no_wrap=True)
        acc = s["accuracy"]
        t.add_row("accuracy", *(f"{acc[k]['value']:+.1%}" if k == "diff" else f"{acc[k]['value']:.1%}"
                                for k in ("a", "b", "diff")))
        t.add_row("  95% CI", ci(acc["a"]), ci(acc["b"]), ci(acc["diff"]))
        t.add_row("ECE", f"{s['ece']['a']:.3f}", f"{s['ece']['b']:.3f}", f"{s['ece']['b'] - s['ece']['a']:+.3f}")
        for c, rc in s["per_class"].items():
            t.add_row(f"recall {c}", f"{rc['a']:.1%}", f"{rc['b']:.1%}", f"{rc['diff']:+.1%}")
        console.print(t)
    v = r["verdict"]
    console.print(f"[bold {'green' if v['promote'] else 'yellow'}]{'PROMOTE' if v['promote'] else 'KEEP'}[/]  "
                  f"{v['paragraph']}\n(written to {r['path']})")


@app.command()
def monitor(
    run: str = typer.Argument(..., help="Run folder, REGISTRY/ALIAS, or a version number or alias with --registry."),
    log: str = typer.Option(..., help="The prediction log: the folder given to imgclf serve --log-predictions, or "
                            "one predictions*.jsonl in it."),
    out: Optional[str] = typer.Option(None, help="Output folder [default: monitors/<run name>]"),
    registry: Optional[str] = typer.Option(None, help="Registry folder, for RUN given as a version or alias."),
    top: int = typer.Option(50, help="How many logged images to list for labelling (least confident first)."),
    since: Optional[str] = typer.Option(None, help="Only predictions at or after this ISO time (UTC), e.g. 2026-11-23."),
    low_confidence: Optional[float] = typer.Option(None, help="Confidence below which an answer counts as low "
                                                   "[default: the run's rejection threshold, else 0.5; 0.75 for 2 classes]"),
    device: str = typer.Option("auto"),
    data_root: Optional[str] = MOVED_DATA,
):
    """Has live traffic drifted from the test set? Prints a verdict, writes monitor.html and the images to label next."""
    from . import api
    from .monitoring import print_summary

    print_summary(api.monitor(run, log, out=out, registry=registry, top=top, since=since,
                              low_confidence=low_confidence, device=device, data_root=data_root))


@app.command()
def update(
    version: str = typer.Argument(..., help="Registry version number or alias (e.g. production), REGISTRY/ALIAS, "
                                  "or a run folder (then nothing is registered)."),
    new_data: Optional[str] = typer.Argument(None, help="New labeled images: class folders (one class is fine), "
                                             "split folders or a CSV manifest."),
    from_inbox: bool = typer.Option(False, "--from-inbox", help="Learn from the feedback inbox instead of NEW_DATA."),
    inbox: Optional[str] = typer.Option(None, help="The inbox folder for --from-inbox [default: REGISTRY/inbox]"),
    mode: str = typer.Option("finetune", help="finetune (warm start + replay of old data) | full (from scratch)"),
    registry: str = typer.Option("registry", help="Registry folder."),
    epochs: Optional[int] = typer.Option(None, help="[default: the version's]"),
    lr_factor: float = typer.Option(1.0, help="finetune: learning rate = the version's x this (a warm restart)"),
    replay: Optional[int] = typer.Option(None, help="finetune: most old training images replayed [default: "
                                         "max(1000, 2 x the new ones); a class-balanced sample above]"),
    promote: bool = typer.Option(False, "--promote", help="Promote the candidate when the promotion rule passes."),
    tolerance: float = typer.Option(0.02, help="Largest allowed drop in any class's recall."),
    out: Optional[str] = typer.Option(None, help="Run folder [default: runs/<parent>-update-<n>]"),
    seed: int = typer.Option(0, help="Seed of the new images' split and of the replay sample."),
    mlflow: Optional[str] = typer.Option(None, envvar="MLFLOW_TRACKING_URI", help="Also log to this MLflow tracking URI."),
    data_root: Optional[str] = typer.Option(None, "--data", help="Where VERSION's recorded data folder is now, when "
                                            "it moved since it was registered [default: the recorded folder]"),
):
    """Retrain VERSION on its recorded data plus new images; register it as candidate; compare with VERSION
    on the frozen test split and the new test slice; promote with --promote only if it wins (exit 0 either way)."""
    from . import api

    source = (inbox or True) if from_inbox else False
    r = api.update(version, new_data, registry=registry, from_inbox=source, mode=mode, promote=promote, epochs=epochs,
                   tolerance=tolerance, out=out, lr_factor=lr_factor, replay=replay, seed=seed, mlflow=mlflow,
                   data_root=data_root)
    print(r["run"])


@app.command()
def serve(
    run: Optional[str] = typer.Argument(None, help="Run folder (or ensemble bundle); or leave out and give --registry."),
    registry: Optional[str] = typer.Option(None, help="Serve the registry's --alias version and swap in each version "
                                           "it is promoted or rolled back to, while serving"),
    alias: str = typer.Option("production", help="The alias followed with --registry"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000),
    backend: str = typer.Option("torch", help="torch | onnx (ONNX Runtime; RUN/model.onnx, exported when missing)"),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help="none | flip | crop | flip-crop  [default: what the run was evaluated with]"),
    api_key: Optional[str] = typer.Option(None, envvar="IMGCLF_API_KEY", help="Require this key (header X-API-Key or "
                                          "Authorization: Bearer) on /predict, /model, /metrics; or set IMGCLF_API_KEY"),
    cors: Optional[List[str]] = typer.Option(None, help="Allow browser pages from this origin (repeatable) [default: no CORS]"),
    allowed_host: Optional[List[str]] = typer.Option(None, help="Also answer requests addressed to this host name "
                                                     "(repeatable; * for any). Others get 421, against DNS rebinding "
                                                     "[default: localhost, IP addresses, --host]"),
    max_upload_mb: Optional[float] = typer.Option(None, help="Largest request body, MB (413 above) [default: 20]"),
    max_pixels: Optional[int] = typer.Option(None, help="Largest image in pixels, read from its header (413 above) "
                                             "[default: 40000000]"),
    max_images: Optional[int] = typer.Option(None, help="Most images in one request (413 above) [default: 16]"),
    max_batch: Optional[int] = typer.Option(None, help="Most images in one forward pass [default: 32]"),
    max_wait_ms: Optional[float] = typer.Option(None, help="Longest wait for more requests to batch with [default: 2]"),
    no_batching: bool = typer.Option(False, "--no-batching", help="One forward pass per request (the naive baseline)"),
    threads: Optional[int] = typer.Option(None, help="torch threads per forward pass [default: all cores; 1 with "
                                          "--no-batching, whose forwards run one per core at once]"),
    log_predictions: Optional[str] = typer.Option(None, help="Log each answered image to DIR/predictions.jsonl "
                                                  "(for imgclf monitor) [default: no log]"),
    log_sample: Optional[float] = typer.Option(None, help="Share of images logged, 0-1 [default: 1]"),
    log_images: Optional[str] = typer.Option(None, help="keep (store logged images in DIR/images) | hash (sha256 "
                                             "only) [default: keep]"),
    log_max_mb: Optional[float] = typer.Option(None, help="Size bound of the log folder; oldest files deleted "
                                               "first [default: 500]"),
    inbox: Optional[str] = typer.Option(None, help="Where POST /feedback stores corrected images [default: "
                                        "REGISTRY/inbox, else inbox/ beside the run's folder]"),
):
    """Serve RUN over HTTP: POST /predict, POST /feedback, a browser page at /, /health, /model, /metrics,
    /openapi.json. With --registry, promoted versions are swapped in while serving."""
    from . import api
    from .serving.server import check_port

    check_port(port)            # before the model loads: a bad port is a typo, not worth the wait
    limits = dict(max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_images=max_images, max_batch=max_batch,
                  max_wait_ms=max_wait_ms, threads=threads, log_predictions=log_predictions, log_sample=log_sample,
                  log_images=log_images, log_max_mb=log_max_mb, inbox=inbox,
                  allowed_hosts=tuple(allowed_host) if allowed_host else None)   # unset: ServeSettings' defaults
    api.serve(run, registry=registry, alias=alias, host=host, port=port, backend=backend, device=device, tta=tta, api_key=api_key, cors=cors or (),
              batching=not no_batching, **{k: v for k, v in limits.items() if v is not None})


@app.command()
def export(
    run: str = typer.Argument(..., help="Run folder."),
    format: str = typer.Option("onnx", help="onnx (the only format for now)"),
    out: Optional[str] = typer.Option(None, help="File to write [default: RUN/model.onnx]"),
    opset: Optional[int] = typer.Option(None, help="ONNX opset [default: the exporter's]"),
    data: Optional[str] = typer.Option(None, help="Folder of images to check parity on [default: the run's test split]"),
    check: bool = typer.Option(True, help="Check ONNX Runtime against PyTorch (fails above 1e-4 probability)."),
):
    """Export RUN's network to ONNX (classes and preprocessing in its metadata), checked against PyTorch."""
    from . import api

    api.export(run, format=format, out=out, data=data, opset=opset, check=check)


@app.command()
def demo(out: Optional[str] = typer.Option(None, help="Run folder [default: runs/digits-<n>]")):
    """Train on scikit-learn's bundled handwritten digits, evaluate, predict: the whole job, offline."""
    from . import api

    run = api.demo(out)
    print(run.path)


@app.command("models")
def list_models(
    pattern: Optional[str] = typer.Argument(None, help="Name pattern, e.g. resnet1 or 'convnext_*' [default: the "
                                            "built-in models and a few suggested timm backbones]"),
    size: int = typer.Option(224, help="Input size in px for the FLOPs column."),
    pretrained_only: bool = typer.Option(False, "--pretrained-only", help="Only architectures with published weights."),
    limit: int = typer.Option(25, help="Show at most this many (each is built to count its FLOPs)."),
):
    """List architectures: parameters, GFLOPs at --size, pretrained weights and whether they are on this machine."""
    from rich.console import Console

    from .models.catalog import list_models as catalog, print_models

    print_models(catalog(pattern, size, pretrained_only, limit), Console(soft_wrap=False))


@app.command("lr-find")
def lr_find(
    data: str = typer.Argument(..., help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    model: Optional[str] = typer.Option(None, help="simple_cnn | resnet_fast | timm/<arch>  [default: resnet_fast]"),
    weights: Optional[str] = typer.Option(None, help="Starting weights (file, folder, or an earlier run of the model)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained", help="Pretrained timm weights (cache, else download)."),
    img_size: Optional[int] = typer.Option(None, help="[default: as train chooses]"),
    batch_size: Optional[int] = typer.Option(None, help="[default: as train chooses]"),
    optimizer: Optional[str] = typer.Option(None, help="adamw | sgd  [default: adamw]"),
    steps: int = typer.Option(100, help="Training steps over the range."),
    start_lr: float = typer.Option(1e-7),
    end_lr: float = typer.Option(10.0),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps  [default: auto]"),
    out: Optional[str] = typer.Option(None, help="Folder for lr_find.json and lr_find.png [default: runs/<dataset>-lr-find-<n>]"),
):
    """Learning-rate range test: print a suggested --lr for train and plot loss against learning rate."""
    from . import api

    settings = dict(model=model, weights=weights, pretrained=pretrained, img_size=img_size, batch_size=batch_size,
                    optimizer=optimizer, device=device)
    api.lr_find(data, out=out, steps=steps, start_lr=start_lr, end_lr=end_lr,
                **{k: v for k, v in settings.items() if v is not None})


@app.command()
def check(
    data: str = typer.Argument(..., help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write every finding to this JSON file."),
    val_frac: float = typer.Option(0.1, help="Validation share, as for train, to find leakage across splits."),
    test_frac: float = typer.Option(0.1, help="Test share, as for train."),
    seed: int = typer.Option(0, help="Split seed, as for train."),
    near_distance: Optional[int] = typer.Option(None, help="pHash bits that still count as near-duplicate [default: 4]"),
    labels: bool = typer.Option(False, "--labels", help="Also find images whose label is probably wrong "
                                "(k-fold cross-validation + confident learning; minutes, it trains k small models)."),
    folds: int = typer.Option(5, help="--labels: cross-validation folds."),
    run: Optional[str] = typer.Option(None, help="--labels: write label_issues.json into this run folder and "
                                      "rebuild its report.html, which shows the suspects."),
    device: str = typer.Option("auto", help="--labels: auto | cpu | cuda | cuda:N | mps"),
    group_by: str = typer.Option("auto", help="As for train: the groups its split keeps together (auto: "
                                 r"near-duplicates, mirrored too | none | a regex with one capture, e.g. '^(crop\d+)')"),
):
    """Check DATA: unreadable files, duplicates and leakage, class imbalance, odd sizes and colour modes; with
    --labels, images whose label is probably wrong."""
    from . import api

    api.check(data, json_path=json_path, val_frac=val_frac, test_frac=test_frac, seed=seed,
              near_distance=near_distance, labels=labels, folds=folds, run=run, device=device, group_by=group_by)


@app.command()
def tune(
    data: str = typer.Argument(..., help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    trials: int = typer.Option(20, help="Trials in the study in total (finished ones count; a re-run resumes)."),
    timeout: Optional[float] = typer.Option(None, help="Seconds for this tune; sizes the epochs per trial too."),
    space: Optional[Path] = typer.Option(None, help="YAML file overriding the default search space."),
    storage: Optional[str] = typer.Option(None, help="Study storage: a journal file path or a database URL "
                                          "(sqlite:///t.db, postgresql://...); workers given the same one share "
                                          "the study (default: TUNE/study.journal)"),
    study_name: Optional[str] = typer.Option(None, help="Default: the dataset folder's name."),
    pruner: str = typer.Option("median", help="median | hyperband | none"),
    out: Optional[str] = typer.Option(None, help="Tune folder (default: tunes/<dataset>-<n>, reused by the same command)."),
    run_out: Optional[str] = typer.Option(None, help="Run folder for the retrained best (default: runs/<dataset>-<n>)."),
    seed: int = typer.Option(0, help="Sampler seed and the training seed (the split) of every trial."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps (this worker's own)"),
    no_retrain: bool = typer.Option(False, "--no-retrain", help="Do not retrain the best configuration."),
):
    """Search training settings with Optuna (TPE, pruning), then retrain the best into a run folder."""
    from . import api

    try:
        result = api.tune(data, trials=trials, timeout=timeout, space=space, storage=storage, study_name=study_name,
                          pruner=pruner, out=out, run_out=run_out, seed=seed, retrain=not no_retrain,
                          **({"device": device} if device else {}))
    except KeyboardInterrupt:
        print("interrupted. Resume the tune with the same command.", file=sys.stderr)
        raise typer.Exit(130)
    print(result.run.path if result.run is not None else result.path)


@app.command()
def explain(
    run: str = typer.Argument(..., help="Run folder (or REGISTRY/ALIAS)."),
    images: List[str] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    class_: Optional[str] = typer.Option(None, "--class", help="Explain this class [default: the answered class]"),
    method: str = typer.Option("gradcam", help="gradcam | gradcam++ | xgradcam | layercam | eigencam | scorecam | hirescam"),
    out: str = typer.Option("explanations", help="Folder for the overlay PNGs."),
    device: str = typer.Option("auto"),
):
    """Show where the network looked: writes OUT/<image>-<method>-<class>.png, the image with a heatmap over it."""
    from . import api

    results = api.explain(run, images, method=method, target=class_, out=out, device=device)
    layer = next((r["layer"] for r in results if "layer" in r), None)
    if layer is not None:
        print(f"target layer: {layer}, chosen automatically (the last spatial feature map)", file=sys.stderr)
    for r in results:
        if "error" in r:
            print(f"skipped {r['path']}: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['overlay']}  {r['label']} {r['confidence']:.2f}  ({method} for '{r['target']}')")


@app.command()
def scan(
    run: str = typer.Argument(..., help="Run folder (or REGISTRY/ALIAS) of a model trained on crops."),
    images: List[str] = typer.Argument(..., help="Photos or folders (searched recursively)."),
    positive: Optional[str] = typer.Option(None, help="The class to find [default: the run's positive class, else "
                                           "a class named like person/human/pedestrian/positive]"),
    scales: Optional[str] = typer.Option(None, help="Comma-separated pyramid scales, e.g. 1,0.8,0.64 (at scale s the "
                                         "window covers crop size / s image px) [default: from --min-size down "
                                         "in steps of 0.8 while the window fits]"),
    stride: Optional[int] = typer.Option(None, help="Window step in px of the model input [default: input/8, or the "
                                         "network's own stride for a fully convolutional scan]"),
    min_size: Optional[int] = typer.Option(None, help="Smallest window height in image px [default: the run's "
                                           "recorded one, else 64]"),
    iou: float = typer.Option(0.3, help="NMS: a box overlapping a better one by more than this IoU is dropped."),
    threshold: Optional[float] = typer.Option(None, help="Positive probability to keep a window; with a verifier, "
                                              "its photo-level threshold [default: the recorded one, else the "
                                              "run's decision threshold, else 0.5]"),
    margin: Optional[str] = typer.Option(None, help="Context around the object in the training crops, as a fraction "
                                         "of the window on each side: one number, X,Y (INRIA 96x160 crops: "
                                         "0.167,0.1) or LEFT,TOP,RIGHT,BOTTOM (negative: past the window); boxes "
                                         "are placed by it [default: the run's recorded one "
                                         "(RUN/scan_window.json), else 0]"),
    method: str = typer.Option("auto", help="auto | fcn (fully convolutional) | windows"),
    vote: Optional[bool] = typer.Option(None, "--vote/--no-vote", help="Move each firing window's box to the "
                                        "score-weighted mean of the firing windows around it (IoU >= 0.5) before "
                                        "NMS (--no-vote: each window's own box) "
                                        "[default: the run's recorded choice, else --vote]"),
    out: Optional[str] = typer.Option(None, help="Write boxes.csv, scan.json and annotated/ here."),
    mine: Optional[str] = typer.Option(None, help="Save every window that fires as a crop PNG here (give person-free "
                                       "photos: hard negatives to add to the negative class)."),
    verifier: Optional[str] = typer.Option(None, help="A run trained on the same crops (e.g. the default ImageNet "
                                           "backbone) that re-scores each photo's best windows and decides presence; "
                                           "the scan's boxes are kept only in photos it passes [default: the run's "
                                           "recorded verifier, if any]"),
    verifier_top: Optional[int] = typer.Option(None, help="Windows a photo the verifier re-scores [default: the "
                                               "recorded number, else 4]"),
    no_verifier: bool = typer.Option(False, "--no-verifier", help="Scan without the run's recorded verifier."),
    box_threshold: Optional[float] = typer.Option(None, help="With a verifier: the scan score a window needs to "
                                                  "become a box [default: the recorded one, else the run's "
                                                  "threshold]"),
    device: str = typer.Option("auto"),
):
    """Find the object of a crop model in whole photos: multi-scale sliding window, threshold, NMS."""
    from . import api

    results = api.scan(run, images, positive=positive, scales=_floats(scales, "--scales"), stride=stride,
                       min_size=min_size, iou=iou, out=out, mine=mine, threshold=threshold,
                       margin=tuple(_floats(margin, "--margin")) if margin else None, method=method, vote=vote,
                       verify=False if no_verifier else verifier, verify_top=verifier_top,
                       box_threshold=box_threshold, device=device)
    for r in results:
        if "error" in r:
            print(f"skipped {r['path']}: {r['error']}", file=sys.stderr)
            continue
        boxes = " ".join(f"[{b['x1']:.0f},{b['y1']:.0f},{b['x2']:.0f},{b['y2']:.0f} {b['score']:.2f}]"
                         for b in r["boxes"][:10])
        print(f"{r.get('path', '')}  {'present' if r['present'] else 'absent'}  score {r['score']:.3f}  "
              f"{len(r['boxes'])} boxes {boxes}  ({r['windows']} windows, {r['seconds']:.2f}s)")


def _floats(text: Optional[str], flag: str) -> Optional[list]:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{flag} must be comma-separated numbers, e.g. 1,0.8,0.64; got {text!r}") from None


@app.command()
def negatives(
    photos: List[str] = typer.Argument(..., help="Photos or folders known to hold no instance of the object."),
    out: str = typer.Option(..., help="Folder for the crops (e.g. data/no-person)."),
    per_image: int = typer.Option(20, help="Random windows per photo."),
    size: str = typer.Option("64x64", help="Crop size WxH: the positive crops' size (INRIA: 96x160)."),
    seed: int = typer.Option(0),
):
    """Cut random windows (multi-scale) from object-free photos: the negative class for a crop detector."""
    from . import api

    api.negatives(photos, out, per_image=per_image, size=size, seed=seed)


@app.command()
def report(
    run: str = typer.Argument(..., help="Run folder."),
    device: str = typer.Option("auto"),
    data_root: Optional[str] = MOVED_DATA,
):
    """Write RUN/report.html: one self-contained page with the data, model, settings, curves and test evaluation."""
    from . import api

    print(api.report(api.load(run, device), data_root=data_root))


registry_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Numbered versions of run folders with aliases (production, candidate); "
                                "promote and rollback swap a pointer, nothing is copied.")
app.add_typer(registry_app, name="registry")
REGISTRY = typer.Option("registry", "--registry", help="Registry folder.")


@registry_app.command("add")
def registry_add(
    run: str = typer.Argument(..., help="Run folder."),
    registry: str = REGISTRY,
    parent: Optional[str] = typer.Option(None, help="Version or alias this run was derived from."),
    as_: Optional[str] = typer.Option(None, "--as", help="Also point this alias at it: candidate | production"),
    mlflow: Optional[str] = MLFLOW,
    data_root: Optional[str] = MOVED_DATA,
):
    """Register RUN as the next version, with the hashes and labels of its training data."""
    from . import registry as reg
    from . import tracking

    mlflow = tracking.require(mlflow)
    v = reg.add(run, registry, parent=parent, alias=as_, data_root=data_root)
    m = v["manifest"]
    print(f"version {v['version']}: {v['run']} ({m['files']} files hashed, {m['missing']} missing)"
          + (f", now {as_}" if as_ else ""))
    tracking.log_registry_event(registry, v, mlflow)


@registry_app.command("list")
def registry_list(registry: str = REGISTRY):
    """All versions with their aliases and test metrics."""
    from . import registry as reg

    versions = reg.list_versions(registry)
    if not versions:
        raise UserError(f"the registry {registry} has no versions yet; add one with: imgclf registry add RUN")
    reg.print_versions(versions)


@registry_app.command("show")
def registry_show(ref: str = typer.Argument(..., help="Version number or alias."), registry: str = REGISTRY):
    """Everything recorded about one version, as JSON."""
    from . import registry as reg

    print_json(reg.show(registry, ref))


@registry_app.command("promote")
def registry_promote(ref: str = typer.Argument(..., help="Version number or alias (e.g. candidate)."),
                     alias: str = typer.Option("production", help="The alias to point at it."),
                     registry: str = REGISTRY, mlflow: Optional[str] = MLFLOW):
    """Point ALIAS at a version: an atomic swap of aliases.json."""
    from . import registry as reg
    from . import tracking

    mlflow = tracking.require(mlflow)
    e = reg.promote(registry, ref, alias)
    print(f"{alias}: {e['from'] if e['from'] is not None else '-'} -> {e['to']}")
    tracking.log_registry_event(registry, e, mlflow)


@registry_app.command("rollback")
def registry_rollback(alias: str = typer.Option("production", help="The alias to move back."),
                      registry: str = REGISTRY, mlflow: Optional[str] = MLFLOW):
    """Point ALIAS back at the version it had before its last change."""
    from . import registry as reg
    from . import tracking

    mlflow = tracking.require(mlflow)
    e = reg.rollback(registry, alias)
    print(f"{alias}: {e['from']} -> {e['to']}")
    tracking.log_registry_event(registry, e, mlflow)


feedback_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="The feedback inbox: corrected labels, kept as INBOX/<label>/<sha256>.<ext> plus "
                                "feedback.jsonl; imgclf update --from-inbox trains on it.")
app.add_typer(feedback_app, name="feedback")
INBOX = typer.Option(None, "--inbox", help="Inbox folder [default: REGISTRY/inbox, else ./inbox]")
FEEDBACK_REGISTRY = typer.Option(None, "--registry", help="Registry whose production model the feedback is about "
                                 "[default: ./registry when there is one]")


@feedback_app.command("import")
def feedback_import(folder: str = typer.Argument(..., help="Folder with one sub-folder per label: FOLDER/<label>/*.jpg"),
                    inbox: Optional[str] = INBOX, registry: Optional[str] = FEEDBACK_REGISTRY,
                    who: Optional[str] = typer.Option(None, help="Recorded as who gave the labels [default: your "
                                                      "login name]")):
    """Copy labeled images into the inbox (named by content, so importing twice adds nothing)."""
    from . import api
    from .inbox import shown

    r = api.feedback_import(folder, inbox, registry=registry, who=who)
    for label, c in r["labels"].items():
        new = "  (not a class of the model: proposed new class)" if c["known_class"] is False else ""
        print(f"  {label}: {c['added']} added, {c['already there']} already there, {c['relabelled']} relabelled{new}")
    for s in r["skipped"][:20]:
        print(f"  skipped {shown(s['path'])}: {s['reason']}")
    if len(r["skipped"]) > 20:
        print(f"  ... and {len(r['skipped']) - 20} more skipped")
    print(f"{r['added']} added, {r['already there']} already there, {r['relabelled']} relabelled, "
          f"{len(r['skipped'])} skipped -> inbox {r['inbox']}")


@feedback_app.command("list")
def feedback_list(inbox: Optional[str] = INBOX, registry: Optional[str] = FEEDBACK_REGISTRY,
                  format: Format = typer.Option(Format.table, help="table | json")):
    """Images per label in the inbox, and the labels the production model does not know yet."""
    from . import inbox as box

    where, reg = box.locate(inbox, registry)
    s = box.summary(where, box.registry_classes(reg))
    if format == Format.json:
        print_json(s)
        return
    if not s["images"]:
        print(f"inbox {where} is empty; add feedback with: imgclf feedback import FOLDER, or POST /feedback")
        return
    for label, n in s["labels"].items():
        print(f"  {label}: {n}" + ("  (proposed new class)" if label in s["proposed"] else ""))
    print(f"inbox {where}: {s['images']} images, {len(s['labels'])} labels, {s['feedback']} feedback records, "
          f"latest {s['last'] or '-'}")


def main() -> None:
    try:
        app()
    except UserError as e:
        print(f"error: {mask_secrets(str(e))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted. Continue an interrupted training with: imgclf train --resume RUN_FOLDER", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

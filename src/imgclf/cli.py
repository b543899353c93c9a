"""`imgclf` command line: a thin layer over imgclf.api. User mistakes print one line, no traceback."""
from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError

# rich_markup_mode=None: rich markup would swallow every "[default: ...]" in the help texts below.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train, evaluate and use image classifiers from folders of labeled images.")


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def train(
    data: Optional[str] = typer.Argument(None, help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    preset: Optional[str] = typer.Option(None, help="fast | balanced | best: a whole recipe sized for this hardware and "
                                         "data (flags given with it win)  [default: none, the plain defaults]"),
    model: Optional[str] = typer.Option(None, help="simple_cnn | resnet_fast | timm/<arch>  [default: resnet_fast]"),
    epochs: Optional[int] = typer.Option(None, help="[default: auto from dataset size]"),
    img_size: Optional[int] = typer.Option(None, help="Training resolution in px [default: auto from image sizes]"),
    batch_size: Optional[int] = typer.Option(None, help="[default: auto]"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate [default: auto]"),
    optimizer: Optional[str] = typer.Option(None, help="adamw | sgd  [default: adamw]"),
    schedule: Optional[str] = typer.Option(None, help="onecycle | cosine  [default: onecycle]"),
    seed: Optional[int] = typer.Option(None, help="[default: 0]"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps  [default: auto]"),
    weights: Optional[str] = typer.Option(None, help="Local weights for a timm model: a .safetensors/.pth file, or a "
                                          "folder holding one (a Hugging Face snapshot or cache folder)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained", help="Pretrained timm weights: from the local "
                                              "Hugging Face cache, else downloaded (online)."),
    freeze_epochs: Optional[int] = typer.Option(None, help="Fine-tuning: epochs training only the new head, backbone "
                                                "frozen [default: 1-3 when fine-tuning, else 0]"),
    layer_decay: Optional[float] = typer.Option(None, help="Fine-tuning, after those: each layer's lr = the next "
                                                "layer's x this (1: same lr everywhere) [default: auto ~0.7]"),
    no_flip: Optional[bool] = typer.Option(None, "--no-flip", help="No horizontal flips (text, digits, asymmetric signs)."),
    augment: Optional[str] = typer.Option(None, help="auto | none  [default: auto]"),
    resize: Optional[str] = typer.Option(None, help="squash | crop | pad  [default: squash]"),
    dedupe: Optional[bool] = typer.Option(None, "--dedupe", help="Remove identical files that carry different labels "
                                          "or sit in two splits (one copy of the rest is kept)."),
    val_frac: Optional[float] = typer.Option(None, help="Validation share when DATA has no val split [default: 0.1]"),
    test_frac: Optional[float] = typer.Option(None, help="Test share when DATA has no test split [default: 0.1]"),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs [default: auto]"),
    label_smoothing: Optional[float] = typer.Option(None, help="[default: 0.1]"),
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
):
    """Train a CNN on DATA, evaluate it on a held-out test split, write a run folder."""
    from . import api

    settings = dict(preset=preset, dedupe=dedupe, tta=tta, compile=compile, model=model, epochs=epochs, img_size=img_size, batch_size=batch_size, lr=lr,
                    optimizer=optimizer, schedule=schedule, seed=seed, device=device, weights=weights,
                    pretrained=pretrained, freeze_epochs=freeze_epochs, layer_decay=layer_decay, flip=False if no_flip else None, augment=augment, resize=resize,
                    val_frac=val_frac, test_frac=test_frac, patience=patience,
                    label_smoothing=label_smoothing, positive_class=positive_class, target_recall=target_recall,
                    target_precision=target_precision, target_accuracy=target_accuracy,
                    target_coverage=target_coverage, out=out)
    if resume is None and data is None:
        raise UserError("give DATA (a folder with one sub-folder per class) or --resume RUN_FOLDER")
    run = api.train(data, config=config, resume=resume or False, **{k: v for k, v in settings.items() if v is not None})
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
):
    """Predict the class of images with a trained run; or of the frames of a video file, camera index
    (0) or stream URL (rtsp://, http(s)://), given as the only PATH."""
    from . import api
    from .video import is_video_source

    model = api.load(run, device, tta=tta, backend=backend)
    if len(paths) == 1 and is_video_source(paths[0]):
        api.predict_video(model, paths[0], every=every, smooth=smooth, out_csv=out, out_video=video_out, events=events)
        return
    if out is not None:
        api.predict_folder(model, paths, out, top_k=top_k)
        return
    results = model.predict(paths, top_k=top_k)
    if format == Format.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
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
):
    """Re-evaluate a trained run: on its test split, or on another labeled folder."""
    from . import api

    m = api.evaluate(api.load(run, device, tta=tta), data)
    print(json.dumps({k: m[k] for k in ("accuracy", "top_k_accuracy", "log_loss", "macro_avg", "n")}, indent=2))


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
):
    """Champion/challenger: both models on the same images; prints PROMOTE or KEEP and why (exit 0 either way)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from . import api

    r = api.compare(a, b, data=data, tolerance=tolerance, alpha=alpha, out=out)
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
def serve(
    run: str = typer.Argument(..., help="Run folder (or ensemble bundle)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000),
    backend: str = typer.Option("torch", help="torch | onnx (ONNX Runtime; RUN/model.onnx, exported when missing)"),
    device: str = typer.Option("auto"),
    tta: Optional[str] = typer.Option(None, help="none | flip | crop | flip-crop  [default: what the run was evaluated with]"),
    api_key: Optional[str] = typer.Option(None, envvar="IMGCLF_API_KEY", help="Require this key (header X-API-Key or "
                                          "Authorization: Bearer) on /predict, /model, /metrics; or set IMGCLF_API_KEY"),
    cors: Optional[List[str]] = typer.Option(None, help="Allow browser pages from this origin (repeatable) [default: no CORS]"),
    max_upload_mb: Optional[float] = typer.Option(None, help="Largest request body, MB (413 above) [default: 20]"),
    max_pixels: Optional[int] = typer.Option(None, help="Largest image in pixels, read from its header (413 above) "
                                             "[default: 40000000]"),
    max_images: Optional[int] = typer.Option(None, help="Most images in one request (413 above) [default: 16]"),
    max_batch: Optional[int] = typer.Option(None, help="Most images in one forward pass [default: 32]"),
    max_wait_ms: Optional[float] = typer.Option(None, help="Longest wait for more requests to batch with [default: 2]"),
    no_batching: bool = typer.Option(False, "--no-batching", help="One forward pass per request (the naive baseline)"),
    threads: Optional[int] = typer.Option(None, help="torch threads per forward pass [default: all cores; 1 with "
                                          "--no-batching, whose forwards run one per core at once]"),
):
    """Serve RUN over HTTP: POST /predict, a browser page at /, /health, /model, /metrics, /openapi.json."""
    from . import api

    limits = dict(max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_images=max_images, max_batch=max_batch,
                  max_wait_ms=max_wait_ms, threads=threads)      # unset ones keep ServeSettings' defaults
    api.serve(run, host=host, port=port, backend=backend, device=device, tta=tta, api_key=api_key, cors=cors or (),
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
    weights: Optional[str] = typer.Option(None, help="Local weights for a timm model (file or folder)."),
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
):
    """Check DATA: unreadable files, duplicates and leakage, class imbalance, odd sizes and colour modes; with
    --labels, images whose label is probably wrong."""
    from . import api

    api.check(data, json_path=json_path, val_frac=val_frac, test_frac=test_frac, seed=seed,
              near_distance=near_distance, labels=labels, folds=folds, run=run, device=device)


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
def report(
    run: str = typer.Argument(..., help="Run folder."),
    device: str = typer.Option("auto"),
):
    """Write RUN/report.html: one self-contained page with the data, model, settings, curves and test evaluation."""
    from . import api

    print(api.report(api.load(run, device)))


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
):
    """Register RUN as the next version, with the hashes and labels of its training data."""
    from . import registry as reg

    v = reg.add(run, registry, parent=parent, alias=as_)
    m = v["manifest"]
    print(f"version {v['version']}: {v['run']} ({m['files']} files hashed, {m['missing']} missing)"
          + (f", now {as_}" if as_ else ""))


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

    print(json.dumps(reg.show(registry, ref), indent=2, ensure_ascii=False))


@registry_app.command("promote")
def registry_promote(ref: str = typer.Argument(..., help="Version number or alias (e.g. candidate)."),
                     alias: str = typer.Option("production", help="The alias to point at it."),
                     registry: str = REGISTRY):
    """Point ALIAS at a version: an atomic swap of aliases.json."""
    from . import registry as reg

    e = reg.promote(registry, ref, alias)
    print(f"{alias}: {e['from'] if e['from'] is not None else '-'} -> {e['to']}")


@registry_app.command("rollback")
def registry_rollback(alias: str = typer.Option("production", help="The alias to move back."),
                      registry: str = REGISTRY):
    """Point ALIAS back at the version it had before its last change."""
    from . import registry as reg

    e = reg.rollback(registry, alias)
    print(f"{alias}: {e['from']} -> {e['to']}")


def main() -> None:
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted. Continue an interrupted training with: imgclf train --resume RUN_FOLDER", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

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

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
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
    weights: Optional[str] = typer.Option(None, help="Local weight file (.safetensors/.pth) for a timm model."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained", help="Download pretrained timm weights (online)."),
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
                    pretrained=pretrained, flip=False if no_flip else None, augment=augment, resize=resize,
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
):
    """Predict the class of images with a trained run."""
    from . import api

    results = api.load(run, device, tta=tta).predict(paths, top_k=top_k)
    if format == Format.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    if format == Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "label", "confidence", "top_k", "error"])  # label applies the run's threshold
        for r in results:
            w.writerow([r.get("path", ""), r.get("label", ""), f"{r['confidence']:.4f}" if "label" in r else "",
                        ";".join(f"{c}:{p:.4f}" for c, p in r.get("top_k", [])), r.get("error", "")])
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
def demo(out: Optional[str] = typer.Option(None, help="Run folder [default: runs/digits-<n>]")):
    """Train on scikit-learn's bundled handwritten digits, evaluate, predict: the whole job, offline."""
    from . import api

    run = api.demo(out)
    print(run.path)


@app.command("models")
def list_models():
    """List the built-in architectures (any timm architecture works as timm/<name>)."""
    from .models import list_models as names

    for n in names():
        print(n)
    print("timm/<arch>   e.g. timm/resnet18, timm/mobilenetv3_small_100 (see timm.list_models())")


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
def report(
    run: str = typer.Argument(..., help="Run folder."),
    device: str = typer.Option("auto"),
):
    """Write RUN/report.html: one self-contained page with the data, model, settings, curves and test evaluation."""
    from . import api

    print(api.report(api.load(run, device)))


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

"""`imgclf train`, `lr-find`, `tune`, `check`, `models`, `demo`: making a model and checking its data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import MLFLOW, app
from imgclf.core.errors import UserError

# long: one option per training setting, each with its help text


# long: one option per training setting, each with its help text
@app.command()
def train(
    data: Optional[str] = typer.Argument(
        None, help="Folder with one sub-folder per class, split folders, or a CSV manifest."
    ),
    preset: Optional[str] = typer.Option(
        None,
        help="fast | balanced | best: a whole recipe sized for this hardware and "
        "data (flags given with it win)  [default: none, the plain defaults]",
    ),
    model: Optional[str] = typer.Option(
        None,
        help="auto | lite0 | lite1 | lite2 | simple_cnn | resnet_fast | timm/<arch>  "
        "[default: auto: lite0 (ImageNet weights) for photos, resnet_fast for tiny images]",
    ),
    epochs: Optional[int] = typer.Option(
        None, help="Epoch cap [default: auto: until validation stops improving or the time budget ends]"
    ),
    time_budget: Optional[str] = typer.Option(
        None,
        help="Wall time for the whole run: 90s, 5m, 1h30m, or off (train --epochs, no clock)  "
        "[default: auto: grows with the training images and the machine; off with --epochs or --preset]",
    ),
    img_size: Optional[int] = typer.Option(None, help="Training resolution in px [default: auto from image sizes]"),
    batch_size: Optional[int] = typer.Option(None, help="[default: auto]"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate [default: auto]"),
    optimizer: Optional[str] = typer.Option(None, help="adamw | sgd  [default: adamw]"),
    schedule: Optional[str] = typer.Option(None, help="onecycle | cosine  [default: onecycle]"),
    seed: Optional[int] = typer.Option(None, help="[default: 0]"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps  [default: auto]"),
    weights: Optional[str] = typer.Option(
        None,
        help="Starting weights: a .safetensors/.pth file, a folder holding one "
        "(a Hugging Face snapshot or cache folder), or an earlier imgclf run of the "
        "same architecture (e.g. simple_cnn pretrained on a big dataset); tensors "
        "that differ in shape (the head) start fresh.",
    ),
    pretrained: Optional[bool] = typer.Option(
        None,
        "--pretrained",
        help="Pretrained timm weights: from the local Hugging Face cache, else downloaded (online).",
    ),
    freeze_epochs: Optional[int] = typer.Option(
        None,
        help="Fine-tuning: epochs training only the new head, backbone frozen [default: 1-3 when fine-tuning, else 0]",
    ),
    layer_decay: Optional[float] = typer.Option(
        None,
        help="Fine-tuning, after those: each layer's lr = the next "
        "layer's x this (1: same lr everywhere) [default: auto ~0.7]",
    ),
    freeze_stride: Optional[int] = typer.Option(
        None, help="Fine-tuning: layers at stride <= this stay frozen (0: none) [default: 8 on CPU, 0 on GPU]"
    ),
    freeze_depthwise: Optional[bool] = typer.Option(
        None,
        "--freeze-depthwise/--train-depthwise",
        help="Fine-tuning: keep depthwise convolution weights frozen  [default: on CPU]",
    ),
    feature_cache: Optional[bool] = typer.Option(
        None,
        "--feature-cache/--no-feature-cache",
        help="Fine-tuning: run the frozen lower layers once and train on their stored output  [default: on CPU]",
    ),
    probe: Optional[bool] = typer.Option(
        None,
        "--probe/--no-probe",
        help="Fine-tuning: fit the new head on frozen features first (a linear probe)  [default: on]",
    ),
    no_flip: Optional[bool] = typer.Option(
        None, "--no-flip", help="No horizontal flips (text, digits, asymmetric signs)."
    ),
    augment: Optional[str] = typer.Option(None, help="auto | none  [default: auto]"),
    resize: Optional[str] = typer.Option(None, help="squash | crop | pad  [default: squash]"),
    dedupe: Optional[bool] = typer.Option(
        None,
        "--dedupe",
        help="Remove identical files that carry different labels or sit in two splits (one copy of the rest is kept).",
    ),
    group_by: Optional[str] = typer.Option(
        None,
        help="Keep groups in one split: auto (near-duplicates, mirrored "
        "copies too) | none | near-duplicates | a regex whose one capture group "
        r"names the group, e.g. '^(crop\d+)'  [default: auto]",
    ),
    val_frac: Optional[float] = typer.Option(None, help="Validation share when DATA has no val split [default: 0.1]"),
    test_frac: Optional[float] = typer.Option(None, help="Test share when DATA has no test split [default: 0.1]"),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs [default: auto]"),
    label_smoothing: Optional[float] = typer.Option(None, help="[default: 0.1]"),
    class_weight: Optional[str] = typer.Option(
        None,
        help="Loss weight per class: auto (sqrt when classes are 3x or "
        "more apart in size) | none | sqrt | balanced  [default: auto]",
    ),
    positive_class: Optional[str] = typer.Option(None, help="Two classes: the positive one [default: auto from names]"),
    target_recall: Optional[float] = typer.Option(None, help="Two classes: threshold for this validation recall"),
    target_precision: Optional[float] = typer.Option(None, help="Two classes: threshold for this validation precision"),
    target_accuracy: Optional[float] = typer.Option(
        None,
        help="3+ classes: answer 'unknown' below the confidence that "
        "gives this validation accuracy on the answered images",
    ),
    target_coverage: Optional[float] = typer.Option(
        None,
        help="3+ classes: answer 'unknown' for the least confident images, keeping this fraction of validation images",
    ),
    tta: Optional[str] = typer.Option(
        None,
        help="Test-time augmentation at evaluation: none | flip | crop | flip-crop [default: flip when training flips]",
    ),
    compile: Optional[str] = typer.Option(
        None, help="torch.compile: auto | on | off  [default: auto: on CUDA when the time ahead pays it back]"
    ),
    config: Optional[Path] = typer.Option(None, help="YAML file of settings (flags override it)."),
    out: Optional[str] = typer.Option(None, help="Run folder [default: runs/<dataset>-<n>]"),
    resume: Optional[str] = typer.Option(None, help="Continue the interrupted run in this folder."),
    mlflow: Optional[str] = MLFLOW,
    mlflow_weights: bool = typer.Option(False, "--mlflow-weights", help="Also upload model.safetensors to MLflow."),
    workers: int = typer.Option(
        1,
        help="Train with PyTorch DDP over N Ray Train workers (pip install 'imgclf[ray]'): one per GPU, "
        "else a share of the CPUs each; --batch-size stays the global batch  [default: 1, this process]",
    ),
    ray: Optional[str] = typer.Option(
        None,
        help="Ray cluster for --workers: ray://HOST:10001 or HOST:6379; bare --ray: $RAY_ADDRESS, "
        "else this machine  [default: this machine]",
    ),
):
    """Train a CNN on DATA, evaluate it on a held-out test split, write a run folder.
    Also `torchrun --nproc_per_node N -m imgclf train DATA` (DDP without Ray)."""
    from imgclf.core.clock import stamp_command

    stamp_command()  # --time-budget is the wall time the user waits for (core.clock)
    from imgclf import api
    from imgclf.training.distributed import is_main

    settings = dict(
        preset=preset,
        dedupe=dedupe,
        group_by=group_by,
        tta=tta,
        compile=compile,
        model=model,
        epochs=epochs,
        time_budget=time_budget,
        img_size=img_size,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        schedule=schedule,
        seed=seed,
        device=device,
        weights=weights,
        pretrained=pretrained,
        freeze_epochs=freeze_epochs,
        layer_decay=layer_decay,
        freeze_stride=freeze_stride,
        freeze_depthwise=freeze_depthwise,
        feature_cache=feature_cache,
        probe=probe,
        flip=False if no_flip else None,
        augment=augment,
        resize=resize,
        val_frac=val_frac,
        test_frac=test_frac,
        patience=patience,
        label_smoothing=label_smoothing,
        class_weight=class_weight,
        positive_class=positive_class,
        target_recall=target_recall,
        target_precision=target_precision,
        target_accuracy=target_accuracy,
        target_coverage=target_coverage,
        out=out,
    )
    if resume is None and data is None:
        raise UserError("give DATA (a folder with one sub-folder per class) or --resume RUN_FOLDER")
    run = api.train(
        data,
        config=config,
        resume=resume or False,
        mlflow=mlflow,
        mlflow_weights=mlflow_weights,
        workers=workers,
        ray=ray,
        **{k: v for k, v in settings.items() if v is not None},
    )
    if is_main():  # under torchrun every rank runs this command; rank 0 speaks for them
        print(run.path)


@app.command("lr-find")
def lr_find(
    data: str = typer.Argument(..., help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    model: Optional[str] = typer.Option(None, help="simple_cnn | resnet_fast | timm/<arch>  [default: resnet_fast]"),
    weights: Optional[str] = typer.Option(
        None, help="Starting weights (file, folder, or an earlier run of the model)."
    ),
    pretrained: Optional[bool] = typer.Option(
        None, "--pretrained", help="Pretrained timm weights (cache, else download)."
    ),
    img_size: Optional[int] = typer.Option(None, help="[default: as train chooses]"),
    batch_size: Optional[int] = typer.Option(None, help="[default: as train chooses]"),
    optimizer: Optional[str] = typer.Option(None, help="adamw | sgd  [default: adamw]"),
    steps: int = typer.Option(100, help="Training steps over the range."),
    start_lr: float = typer.Option(1e-7),
    end_lr: float = typer.Option(10.0),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps  [default: auto]"),
    out: Optional[str] = typer.Option(
        None, help="Folder for lr_find.json and lr_find.png [default: runs/<dataset>-lr-find-<n>]"
    ),
):
    """Learning-rate range test: print a suggested --lr for train and plot loss against learning rate."""
    from imgclf import api

    settings = dict(
        model=model,
        weights=weights,
        pretrained=pretrained,
        img_size=img_size,
        batch_size=batch_size,
        optimizer=optimizer,
        device=device,
    )
    api.lr_find(
        data,
        out=out,
        steps=steps,
        start_lr=start_lr,
        end_lr=end_lr,
        **{k: v for k, v in settings.items() if v is not None},
    )


@app.command()
def tune(
    data: str = typer.Argument(..., help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    trials: int = typer.Option(20, help="Trials in the study in total (finished ones count; a re-run resumes)."),
    timeout: Optional[float] = typer.Option(None, help="Seconds for this tune; sizes the epochs per trial too."),
    space: Optional[Path] = typer.Option(None, help="YAML file overriding the default search space."),
    storage: Optional[str] = typer.Option(
        None,
        help="Study storage: a journal file path or a database URL "
        "(sqlite:///t.db, postgresql://...); workers given the same one share "
        "the study (default: TUNE/study.journal)",
    ),
    study_name: Optional[str] = typer.Option(None, help="Default: the dataset folder's name."),
    pruner: str = typer.Option("median", help="median | hyperband | none"),
    out: Optional[str] = typer.Option(
        None, help="Tune folder (default: tunes/<dataset>-<n>, reused by the same command)."
    ),
    run_out: Optional[str] = typer.Option(
        None, help="Run folder for the retrained best (default: runs/<dataset>-<n>)."
    ),
    seed: int = typer.Option(0, help="Sampler seed and the training seed (the split) of every trial."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps (this worker's own)"),
    no_retrain: bool = typer.Option(False, "--no-retrain", help="Do not retrain the best configuration."),
    ray: Optional[str] = typer.Option(
        None,
        help="Run trials as Ray tasks, one per GPU (else CPU) of the cluster, sharing --storage "
        "(pip install 'imgclf[ray]'): ray://HOST:10001, HOST:6379; bare --ray: $RAY_ADDRESS, else this machine",
    ),
):
    """Search training settings with Optuna (TPE, pruning), then retrain the best into a run folder."""
    from imgclf import api

    try:
        result = api.tune(
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
            retrain=not no_retrain,
            ray=ray,
            **({"device": device} if device else {}),
        )
    except KeyboardInterrupt:
        print("interrupted. Resume the tune with the same command.", file=sys.stderr)
        raise typer.Exit(130)
    print(result.run.path if result.run is not None else result.path)


@app.command()
def check(
    data: str = typer.Argument(..., help="Folder with one sub-folder per class, split folders, or a CSV manifest."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write every finding to this JSON file."),
    val_frac: float = typer.Option(0.1, help="Validation share, as for train, to find leakage across splits."),
    test_frac: float = typer.Option(0.1, help="Test share, as for train."),
    seed: int = typer.Option(0, help="Split seed, as for train."),
    near_distance: Optional[int] = typer.Option(
        None,
        help="pHash bits within which a pair is a near-duplicate candidate (then checked on thumbnails) [default: 6]",
    ),
    labels: bool = typer.Option(
        False,
        "--labels",
        help="Also find images whose label is probably wrong "
        "(k-fold cross-validation + confident learning; minutes, it trains k small models).",
    ),
    folds: int = typer.Option(5, help="--labels: cross-validation folds."),
    run: Optional[str] = typer.Option(
        None,
        help="--labels: write label_issues.json into this run folder and "
        "rebuild its report.html, which shows the suspects.",
    ),
    device: str = typer.Option("auto", help="--labels: auto | cpu | cuda | cuda:N | mps"),
    group_by: str = typer.Option(
        "auto",
        help="As for train: the groups its split keeps together (auto: "
        r"near-duplicates, mirrored too | none | a regex with one capture, e.g. '^(crop\d+)')",
    ),
):
    """Check DATA: unreadable files, duplicates and leakage, class imbalance, odd sizes and colour modes; with
    --labels, images whose label is probably wrong."""
    from imgclf import api

    api.check(
        data,
        json_path=json_path,
        val_frac=val_frac,
        test_frac=test_frac,
        seed=seed,
        near_distance=near_distance,
        labels=labels,
        folds=folds,
        run=run,
        device=device,
        group_by=group_by,
    )


@app.command("models")
def list_models(
    pattern: Optional[str] = typer.Argument(
        None,
        help="Name pattern, e.g. resnet1 or 'convnext_*' [default: the "
        "built-in models and a few suggested timm backbones]",
    ),
    size: int = typer.Option(224, help="Input size in px for the FLOPs column."),
    pretrained_only: bool = typer.Option(False, "--pretrained-only", help="Only architectures with published weights."),
    limit: int = typer.Option(25, help="Show at most this many (each is built to count its FLOPs)."),
):
    """List architectures: parameters, GFLOPs at --size, pretrained weights and whether they are on this machine."""
    from rich.console import Console

    from imgclf.models.catalog import list_models as catalog

    render.models(catalog(pattern, size, pretrained_only, limit), Console(soft_wrap=False))


@app.command()
def demo(out: Optional[str] = typer.Option(None, help="Run folder [default: runs/digits-<n>]")):
    """Train on scikit-learn's bundled handwritten digits, evaluate, predict: the whole job, offline."""
    from imgclf import api

    run = api.demo(out)
    print(run.path)

"""`imgclf train`, `lr-find`, `tune`, `check`, `models`, `demo`: making a model and checking its data."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from imgclf.cli import render
from imgclf.cli.app import app, with_settings
from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig
from imgclf.settings.declare import help_of
from imgclf.settings.examine import CheckSettings
from imgclf.settings.job import DemoSettings, ModelsSettings, TrainJobSettings
from imgclf.settings.tune import LrFindSettings, TuneSettings

DATASET_HELP = help_of(TrainConfig, "data")


@app.command()
@with_settings()
@with_settings(TrainJobSettings, into="job")
def train(data: Optional[str] = typer.Argument(None, help=DATASET_HELP), settings: dict = None, job: dict = None):
    """Train a CNN on DATA, evaluate it on a held-out test split, write a run folder.
    Also `torchrun --nproc_per_node N -m imgclf train DATA` (DDP without Ray)."""
    # Every option comes from its declaration (settings.config's training settings, settings.job's
    # TrainJobSettings) via with_settings; api.train checks them.
    from imgclf.core.clock import stamp_command

    stamp_command()  # --time-budget is the wall time the user waits for (core.clock)
    from imgclf import api

    if job.get("resume") is None and data is None:
        raise UserError("give DATA (a folder with one sub-folder per class) or --resume RUN_FOLDER")
    run = api.train(data, **job, **settings)
    from imgclf.training.distributed import is_main

    if is_main():  # under torchrun every rank runs this command; rank 0 speaks for them
        print(run.path)


@app.command("lr-find")
@with_settings(only=("model", "weights", "pretrained", "img_size", "batch_size", "optimizer", "device"))
@with_settings(LrFindSettings, into="own")
def lr_find(data: str = typer.Argument(..., help=DATASET_HELP), settings: dict = None, own: dict = None):
    """Learning-rate range test: print a suggested --lr for train and plot loss against learning rate."""
    from imgclf import api

    # Every option comes from its declaration (settings.tune.LrFindSettings, and train's); api.lr_find checks them.
    api.lr_find(data, **own, **settings)


@app.command()
@with_settings(TuneSettings)
def tune(data: str = typer.Argument(..., help=DATASET_HELP), settings: dict = None):
    """Search training settings with Optuna (TPE, pruning), then retrain the best into a run folder."""
    # Every tune setting's option comes from its declaration (settings.tune) via with_settings.
    from imgclf import api

    try:  # api.tune checks the options by their declarations; --device goes on to every trial
        result = api.tune(data, **settings)
    except KeyboardInterrupt:
        print("interrupted. Resume the tune with the same command.", file=sys.stderr)
        raise typer.Exit(130)
    print(result.run.path if result.run is not None else result.path)


@app.command()
@with_settings(only=("val_frac", "test_frac", "seed", "group_by"), into="split")  # as train splits: leakage across them
@with_settings(CheckSettings)
def check(data: str = typer.Argument(..., help=DATASET_HELP), settings: dict = None, split: dict = None):
    """Check DATA: unreadable files, duplicates and leakage, class imbalance, odd sizes and colour modes; with
    --labels, images whose label is probably wrong."""
    from imgclf import api

    # Every option comes from its declaration (settings.examine.CheckSettings, settings.config's split
    # settings); api.check checks them.
    api.check(data, **settings, **split)


@app.command("models")
@with_settings(ModelsSettings)
def list_models(
    pattern: Optional[str] = typer.Argument(
        None,
        help="Name pattern, e.g. resnet1 or 'convnext_*' [default: the "
        "built-in models and a few suggested timm backbones]",
    ),
    settings: dict = None,
):
    """List architectures: parameters, GFLOPs at --size, pretrained weights and whether they are on this machine."""
    from rich.console import Console

    from imgclf.models.catalog import list_models as catalog

    render.models(catalog(pattern, **settings), Console(soft_wrap=False))  # checked there, as declared


@app.command()
@with_settings(DemoSettings)
def demo(settings: dict = None):
    """Train on scikit-learn's bundled handwritten digits, evaluate, predict: the whole job, offline."""
    from imgclf import api

    run = api.demo(**settings)
    print(run.path)

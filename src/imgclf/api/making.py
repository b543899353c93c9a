"""The API for making a model: train (with its learning-rate finder and tuner), check the data,
list the architectures, bundle runs into an ensemble, the demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from imgclf.core.console import console_for as _console
from imgclf.core.errors import UserError
from imgclf.workflows import Run

if TYPE_CHECKING:
    from imgclf.tuning.tune import TuneResult


def train(
    data: str | Path | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | bool | None = None,
    verbose: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
    evaluate: bool = True,
    mlflow: str | None = None,
    mlflow_weights: bool = False,
    workers: int = 1,
    ray: str | None = None,
    **settings: Any,
) -> Run:
    """Train, evaluate on the held-out test split and write a run folder. Every keyword is a
    TrainConfig field; unset ones are chosen automatically, printed, and recorded in config.yaml.
    `resume=RUN_DIR` (or resume=True with out=RUN_DIR) continues an interrupted run; resume=True
    alone, the newest interrupted training of `data` in runs/ (the CLI's bare --resume).
    `on_epoch(epoch, history_row)` is called after every epoch (a tuner reports and prunes there).
    `evaluate=False` stops after training (no calibration, test scoring or report; metrics None):
    tuning trials are judged on validation only and must stay cheap. `mlflow`: a tracking URI to
    mirror the finished run to (`mlflow_weights`: with model.safetensors); see imgclf.lifecycle.tracking.

    `workers=N` trains with PyTorch DDP over N Ray Train workers (pip install 'imgclf[ray]') on the
    cluster at `ray` ("auto": RAY_ADDRESS or this machine; "ray://HOST:10001"); see imgclf.cluster.train.

        imgclf.train("photos/", workers=2)        # 2 DDP workers on this machine's CPUs
    """
    from imgclf import workflows
    from imgclf.lifecycle import tracking
    from imgclf.settings.job import TrainJobSettings

    # Each checked as declared (one line naming the flag); resume=True means "the run at out=".
    TrainJobSettings(
        config=config,
        resume=None if isinstance(resume, bool) else resume,
        mlflow=mlflow,
        mlflow_weights=mlflow_weights,
        workers=workers,
        ray=ray,
    )
    if on_epoch is not None and not callable(on_epoch):  # else found only after decoding and the probe
        raise UserError(f"on_epoch must be a function (epoch, history_row), not {type(on_epoch).__name__}")
    if (resume is True and not settings.get("out")) or (resume == "auto" and not Path("auto").is_dir()):
        resume = newest_interrupted(data)  # a bare --resume: the newest interrupted training of DATA
    uri = tracking.checked_uri(mlflow)
    boxes = _detector_data(data, resume, settings.get("task") or "auto")
    if boxes is not None:  # photos with box annotations: fine-tune the pretrained detector
        from imgclf.detection.training import train_detector

        if verbose and (settings.pop("task", None) or "auto") == "auto" and not resume:
            print(f"{data} holds box annotations: training a detector (--task classify trains a classifier instead)")
        from imgclf.training.distributed import world_size

        # (under torchrun each rank would train its own detector into the one run folder)
        if workers != 1 or ray is not None or config is not None or on_epoch is not None or world_size() > 1:
            raise UserError(
                "training a detector (box annotations found) runs in one process: drop --workers, --ray and "
                "--config, or give --task classify to train a classifier on the photos' folders"
            )
        path = train_detector(boxes, resume=resume or None, verbose=verbose, **settings)
        return workflows.Run(path, None, None)
    if workers != 1 or ray is not None:
        from imgclf.cluster.train import train_on_ray

        if on_epoch is not None or not evaluate:
            raise UserError("on_epoch and evaluate=False are for single-process training; drop workers/ray")
        run = train_on_ray(
            data, workers=workers, address=ray or "auto", config=config, resume=resume, verbose=verbose, **settings
        )
    else:
        run = workflows.train(
            data, config=config, resume=resume, verbose=verbose, on_epoch=on_epoch, evaluate=evaluate, **settings
        )
    if uri:
        tracking.log_run(run.path, uri, weights=mlflow_weights)
    return run


def newest_interrupted(data, base: str | Path = "runs") -> Path:
    """The run a bare `--resume` (resume=True without out=) continues: the newest interrupted training
    of `data` in `base`; UserError naming what to give where there is none."""
    from imgclf.store.runs import interrupted_runs

    if data is None:
        raise UserError(
            "--resume alone continues the newest interrupted training of DATA: give DATA, or the run folder (--resume RUN)"
        )
    found = interrupted_runs(data, base)
    if not found:
        raise UserError(
            f"no interrupted training of {data} in {base}/ to resume: give its run folder (--resume RUN), "
            f"or start one with imgclf train {data}"
        )
    return found[0]


def _detector_data(data, resume, task: str = "auto") -> str | Path | None:
    """The data folder when a detector is to be trained on it: it holds box annotations (YOLO, Pascal VOC,
    COCO, a CSV of boxes) and `task` is not "classify", or, resuming a detector run, the folder it recorded."""
    from imgclf.core.files import read_json
    from imgclf.data.discover import existing, refuse_run_folder
    from imgclf.detection.annotations import detect_format
    from imgclf.settings.config import TASKS

    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    if resume and isinstance(resume, (str, Path)) and (Path(resume) / "detector-training.json").is_file():
        return data or read_json(Path(resume) / "detector-training.json")["data"]
    if data is not None:
        refuse_run_folder(existing(data))  # "" first: read as a path, it is the current folder
        _refuse_box_csv(data, task)
    boxes = data is not None and task != "classify" and Path(data).is_dir() and detect_format(data) is not None
    if task == "detect" and not boxes and not resume:
        raise UserError(
            f"--task detect: no box annotations in {data}: give YOLO (images/ + labels/*.txt), Pascal VOC "
            "(Annotations/*.xml), COCO (a .json) or a CSV (image,x1,y1,x2,y2[,label])"
        )
    return data if boxes else None


def _refuse_box_csv(data, task: str) -> None:
    """A CSV of boxes given as DATA: read as labels it fails on its columns; its boxes train a detector
    from the folder that holds them and the photos (the person-free photos beside them included)."""
    from imgclf.detection.box_csv import is_box_csv

    path = Path(data).expanduser()
    if task != "classify" and path.suffix.lower() == ".csv" and path.is_file() and is_box_csv(path):
        raise UserError(
            f"{data} is a CSV of boxes, not of labels: give the folder that holds it and its photos "
            f"({path.parent}), where its boxes fine-tune the detector"
        )


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
    from imgclf.data.discover import existing
    from imgclf.settings.tune import LrFindSettings

    LrFindSettings(steps=steps, start_lr=start_lr, end_lr=end_lr, out=out)  # each checked as declared
    existing(data)  # a mistyped folder: one line now, not after torch's imports
    from imgclf.training.lr_find import run_range_test

    return run_range_test(
        data, out=out, steps=steps, start_lr=start_lr, end_lr=end_lr, console=_console(verbose), **settings
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
    ray: str | None = None,
    **settings: Any,
) -> TuneResult:
    """Search training settings with Optuna (TPE sampling, per-epoch pruning), then retrain the
    best configuration into a normal run folder whose report has a Tuning section.

    `trials` is the study's total: calling again with the same arguments resumes an interrupted
    tune (the study lives in `out`, default tunes/<dataset>-<n>/), and several processes or
    machines given the same `storage` (a journal file path, or a database URL such as
    sqlite:///tune.db) share one study. `space` is a YAML file overriding the default search
    space (see imgclf.tuning.space); other keywords are train settings every trial uses.
    `ray`: run the trials as Ray tasks on that cluster ("auto": RAY_ADDRESS or this machine),
    many at once, against the same storage (pip install 'imgclf[ray]'; see imgclf.tuning.on_ray).

        result = imgclf.tune("photos/", trials=12, timeout=600)
        result.best_value, result.default_value, result.best_params, result.run.path
    """
    from imgclf.data.discover import existing
    from imgclf.settings.tune import TuneSettings

    asked = dict(trials=trials, timeout=timeout, space=space, storage=storage, study_name=study_name, pruner=pruner)
    asked.update(out=out, run_out=run_out, seed=seed, retrain=retrain, ray=ray)
    checked = TuneSettings(**asked).values()  # its declared rules: one line naming the flag, for keywords too
    del checked["device"]  # the command line's; here a train setting among **settings
    existing(data)  # a mistyped folder: one line now, not after torch's imports
    from imgclf.tuning.tune import run_tune

    return run_tune(data, **checked, verbose=verbose, settings=settings)


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
    A folder of box annotations (YOLO, VOC, COCO, CSV) is described as `imgclf train` will read it
    instead: photos and boxes per class, the split, the boxes too small to learn from (detection.check).
    """
    from imgclf.lifecycle.doctor import check_data
    from imgclf.settings.examine import CheckSettings

    # Each checked as declared (one line naming the flag); the split settings as train checks them.
    CheckSettings(json_path=json_path, near_distance=near_distance, labels=labels, folds=folds, run=run, device=device)
    if _detector_data(data, None) is not None:
        from imgclf.detection.check import check_boxes

        if labels or run is not None:
            raise UserError(f"--labels and --run look for wrong class labels; {data} holds box annotations")
        return check_boxes(data, json_path=json_path, seed=seed, console=_console(verbose))
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


def demo(out: str | Path | None = None, verbose: bool = True) -> Run:
    from imgclf.demo import run_demo

    return run_demo(out, verbose)


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
    from imgclf.settings.config import TrainConfig
    from imgclf.settings.declare import checker
    from imgclf.settings.examine import EnsembleSettings

    if isinstance(runs, (str, Path)):  # a string would be read a character at a time: "/ is not a run folder"
        raise UserError(f"runs must be a list of run folders, e.g. [{str(runs)!r}, 'runs/other'], not one path")
    EnsembleSettings(out=out)  # checked as declared, before a member is read; the rest as train declares them
    checker(TrainConfig)(target_accuracy=target_accuracy, target_coverage=target_coverage, device=device)

    path, metrics = make_ensemble(runs, out, target_accuracy, target_coverage, device, console=_console(verbose))
    return Run(path, metrics, None)

"""Whole jobs that cross the stages, shared by the API façade, tuning and the lifecycle commands:
train (training.pipeline -> evaluation -> reporting), evaluate, report, load.

    run = train("photos/")                 # a Run: path, metrics, config
    report(load(run.path))                 # rebuilds RUN/report.html
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.markup import escape  # class names and paths are the user's text, not markup

from imgclf.core.console import console_for
from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig


@dataclass
class Run:
    path: Path
    metrics: dict | None  # None for an ensemble whose members do not share a test split
    config: TrainConfig | None  # None for an ensemble bundle
    # The test split's paths and calibrated probabilities as the evaluation after training scored them
    # (a label check's fold reads its held-out answers here instead of predicting them again).
    scored_test: tuple[list[str], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def load(self, device: str = "auto"):
        return load(self.path, device)


def run_at(path: str | Path) -> Run:
    """A finished run folder as a Run: its test metrics (None before the evaluation) and settings."""
    from imgclf.core.files import read_json
    from imgclf.settings.config import load_config

    path = Path(path)
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else None
    config = load_config(path / "config.yaml") if (path / "config.yaml").is_file() else None
    return Run(path, metrics, config)


def load(run: str | Path, device: str = "auto", tta: str | None = None, backend: str = "torch"):
    """See imgclf.load."""
    from imgclf.inference.load import load_model

    if evaluated_as(run) == "detector":  # "person" or a detector run: present or not, one answer a photo
        return _presence(run, device, tta, backend)
    return load_model(run, device, tta, backend=backend)


def _presence(run, device: str, tta: str | None, backend: str):
    """A detector as a two-class classifier (detection.classifier): `predict person photos/` answers
    person or no person per photo, by the rule scan and the service's /predict answer with."""
    from imgclf.detection.classifier import presence_model

    if tta not in (None, "none"):  # the detector averages in the mirror image already; crops would cut people
        raise UserError(f"--tta is for a classifier run; {run} is a detector (it looks at the mirror image itself)")
    return presence_model(run, device, backend)


def loaded(run, device: str = "auto", tta: str | None = None, backend: str = "torch"):
    """`run` as a loaded model: a Model (or ensemble) as it is, else a Run or a run folder loaded."""
    if hasattr(run, "predict_proba"):
        return run
    return load(run.path if isinstance(run, Run) else run, device, tta=tta, backend=backend)


def train(
    data: str | Path | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | bool = False,
    verbose: bool = True,
    on_epoch: Callable | None = None,
    evaluate: bool = True,
    write_report: bool = True,
    figures: bool = True,
    **settings: Any,
) -> Run:
    """See imgclf.train. `write_report=False`: no report.html (a label check's fold, whose report was
    half of its time on a small set; an update's candidate, reported with the comparison). `figures=False`:
    nor the run folder's PNG figures (a run nobody reads: 4 figures, ~1 s of a small fold's ~7 s)."""
    from imgclf.data.discover import existing
    from imgclf.store.runs import training_locks

    if data is not None and not resume:  # a mistyped folder: one line now, before torch's seconds of imports
        existing(data)
    from imgclf.training.distributed import is_main
    from imgclf.training.pipeline import fit_run

    console = console_for(verbose)
    with training_locks():  # the run folder stays locked until its evaluation and report are written
        fitted = fit_run(data, config=config, resume=resume, console=console, on_epoch=on_epoch, **settings)
        if not evaluate or not is_main():  # DDP: rank 0 alone evaluates and reports
            return Run(fitted.run_dir, None, fitted.prep.cfg)
        model, metrics = _evaluate_after_training(fitted, console, figures)
        from imgclf.training.commits import STATE_FILE

        # A finished run resumes nothing (metrics.json says it finished): the optimizer's state, half
        # of a Lite0 run folder (39 of 79 MB), would only travel with it wherever it is copied.
        (fitted.run_dir / STATE_FILE).unlink(missing_ok=True)
        if write_report:
            _report_after_training(model, console)
    if fitted.started is not None:
        console.print(_took(time.monotonic() - fitted.started, fitted.prep.cfg.time_budget, bool(resume)))
    return Run(fitted.run_dir, metrics, fitted.prep.cfg, model.scored_test)


def _took(seconds: float, budget: float, resumed: bool) -> str:
    """'done in 1m51s, within its 2m00s time budget': whether a stated (or the default) budget held."""
    from imgclf.training.budget import describe_seconds

    line = f"done in {describe_seconds(seconds)}" + (" (this process; resumed)" if resumed else "")
    if not budget or resumed:
        return line
    over = seconds - budget
    return line + (
        f", within its {describe_seconds(budget)} time budget"
        if over <= 0
        else f", {describe_seconds(over)} over its {describe_seconds(budget)} time budget"
    )


def _evaluate_after_training(fitted, console, figures: bool = True):
    """Learning curves, calibration, the operating point (both on the validation split), model.json,
    then the held-out test split. Returns the loaded model (holding the scored test predictions)
    and the test metrics."""
    from imgclf.data.paths import relative_to, resolve
    from imgclf.evaluation.metrics import weak_classes
    from imgclf.evaluation.plots import plot_history
    from imgclf.evaluation.scoring import calibrate, choose_decision, choose_rejection, score
    from imgclf.inference.model import Model
    from imgclf.store.checkpoint import load_weights
    from imgclf.store.run_meta import save_run_meta

    prep, meta, run_dir = fitted.prep, fitted.meta, fitted.run_dir
    cfg, spec, images = prep.cfg, prep.spec, prep.images
    if figures:
        plot_history(fitted.result.history, run_dir / "learning_curves.png")
    fitted.net.load_state_dict(load_weights(run_dir / "model.safetensors"))
    model = Model(fitted.net, meta, prep.device, run_dir)
    scorer, graph = _scorer(model, console)
    val = np.sort(spec.indices("val"))
    logits = scorer.predict_logits(images[val]) if len(val) else None  # one pass for all three
    meta.calibration = calibrate(scorer, images, spec, console, logits)
    if len(spec.classes) == 2:
        meta.decision = choose_decision(scorer, images, spec, cfg, console, logits)
    elif cfg.target_accuracy is not None or cfg.target_coverage is not None:
        meta.rejection = choose_rejection(scorer, images, spec, cfg, console, logits)
    save_run_meta(run_dir, meta)  # with the weights' SHA-256, checked on every load
    test = np.sort(spec.indices("test"))
    metrics = score(scorer, images[test], spec.labels[test], run_dir, console, "held-out test split", figures)
    trained = np.bincount(spec.labels[spec.splits == "train"], minlength=len(spec.classes))
    # Per-class recall is the argmax's; a two-class run answering at another threshold has its own line
    at_argmax = meta.decision is None or meta.decision.threshold in (None, 0.5)
    if at_argmax and (weak := weak_classes(metrics, dict(zip(spec.classes, trained.tolist())))):
        console.print(f"  [yellow]weakest classes[/]: {escape(weak)}")
    # The report shows the same test predictions: hand them over instead of predicting (with TTA) twice,
    # under the paths read_splits gives back.
    root = fitted.root
    model.scored_test = ([resolve(relative_to(spec.paths[i], root), root) for i in test], scorer.last_probs)
    if graph is not None:
        _install_onnx(model, graph, images, spec, console)
    return model, metrics


def _scorer(model, console):
    """(the finished network for the evaluation after training (calibration, operating point, test
    split), its ONNX graph or None): on a CPU in ONNX Runtime, exported in memory (~1 s), which runs
    it ~3x faster than eager PyTorch (Lite0 at 128 px, 2 cores; TTA doubles the passes, and a
    10,000-image test split took minutes); elsewhere, or if the export fails, `model` itself.
    Probabilities agree to ~1e-5."""
    from imgclf.inference.model import Model

    if model.device.type != "cpu" or not getattr(model.net, "exportable", True):  # a face-embedding run
        return model, None
    try:
        from imgclf.inference.model import OnnxNet
        from imgclf.training.ortembed import cpu_session, onnx_graph

        # The input contract's names (inference.onnx_export), so that the graph can be installed as RUN/model.onnx.
        graph = onnx_graph(model.net, model.img_size, ["logits"], input_name="input")
        net = OnnxNet(cpu_session(model.net, model.img_size, ["logits"], graph))
        return Model(net, model.meta, model.device, model.path), graph
    except Exception as e:  # noqa: BLE001 - any export/runtime failure: evaluate in PyTorch
        console.print(f"  evaluation: in PyTorch (ONNX Runtime could not take this network: {type(e).__name__})")
        return model, None


def _install_onnx(model, graph: bytes, images: np.ndarray, spec, console) -> None:
    """The graph the test split was scored with, as RUN/model.onnx (checked against PyTorch on up to
    64 validation images, else test or training ones): predict and serve then run in ONNX Runtime on
    a CPU without an export of their own (8 s), at twice PyTorch's images/s (backend auto). A failure
    costs only that speed."""

    from imgclf.inference.onnx_export import CHECK_IMAGES, install_onnx

    split = next(s for s in ("val", "test", "train") if len(spec.indices(s)) or s == "train")
    rows = np.sort(spec.indices(split))
    rows = np.unique(rows[np.linspace(0, len(rows) - 1, min(len(rows), CHECK_IMAGES)).round().astype(int)])
    name = {"val": "validation", "test": "test", "train": "training"}[split]
    try:
        install_onnx(model.path, graph, model.net, model.meta, images[rows], f"{name} split")
    except Exception as e:  # noqa: BLE001 - the run is complete without it; predict exports on demand
        console.print(
            escape(f"  model.onnx: not written ({type(e).__name__}: {e}); imgclf export {model.path} makes it")
        )


def _report_after_training(model, console) -> None:
    """The report is a view of the finished run: a failure to draw it must not cost the run."""

    try:
        report(model, verbose=False)
        console.print(escape(f"report: {model.path / 'report.html'}"))
    except Exception as e:  # noqa: BLE001 - any plotting or decoding problem; the run is complete
        console.print(
            "[yellow]warning[/]: "
            + escape(f"could not write report.html ({type(e).__name__}: {e}); retry with: imgclf report {model.path}")
        )


def evaluate(
    run,
    data: str | Path | None = None,
    verbose: bool = True,
    *,
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "auto",
) -> dict:
    """See imgclf.evaluate."""
    from imgclf.core.files import output_folder, read_json
    from imgclf.evaluation.elsewhere import accuracy_drop, scored_evaluation
    from imgclf.evaluation.metrics import per_class_lines

    if kind := evaluated_as(run):
        if not _presence_folders(kind, data, data_root):
            return _evaluate_other(kind, run, data, verbose, data_root, out, device)
        # A detector on folders named as its answers (person/, no-person/): no boxes, so scored as the
        # classifier load() makes of it (presence by the rule /predict answers with), into detection's folder.
        from imgclf.detection.evaluate import default_out

        out = out if out is not None else default_out(run, data)
    if out is not None and data is None:
        raise UserError("--out is for an evaluation on other data (imgclf evaluate RUN DATA --out DIR)")
    model = loaded(run, device, backend="auto" if kind else "torch")  # a detector: ONNX Runtime on a CPU, as scan
    folder = output_folder(out, "--out") if out is not None else None  # a mistake said before any work
    console = console_for(verbose)
    try:
        metrics, paths, labels, probs, others = scored_evaluation(model, data, verbose, data_root=data_root)
    except UserError as e:  # folders that name no answer of a detector: it takes boxes too
        raise UserError(f"{e}; a detector also takes photos with boxes (YOLO, VOC, COCO or CSV)") if kind else e
    for line in per_class_lines(metrics):
        console.print(escape(line))
    if data is None:
        console.print(f"metrics: {escape(str(Path(model.path) / 'metrics.json'))}")
        return metrics
    own = Path(model.path) / "metrics.json" if model.path is not None and not kind else None
    if kind:  # a detector has no accuracy of its own to drop from; what it cannot see is the news
        from imgclf.detection.classifier import folder_threshold, missed_note

        metrics["presence"], better = folder_threshold(model, labels, probs, data)
        drop = "; ".join(n for n in (missed_note(model, metrics, data), better) if n)
    else:
        drop = accuracy_drop(metrics, read_json(own) if own and own.is_file() else None, model.path, data)
    if drop:
        console.print(f"[yellow]note[/]: {escape(drop)}")
    report = _write_evaluation(model, metrics, (paths, labels, probs, others), data, folder, console, drop)
    return {**metrics, **({"report": str(report)} if report else {})}


def evaluated_as(run) -> str | None:
    """What `run` names when it is not a classifier run: "detector" ("person", the pretrained one, or a
    detector run) or "gallery" (a face gallery); None for a classifier run (or a loaded model)."""
    from imgclf.detection.classifier import is_detector_run  # no torch: evaluate in ONNX Runtime stays so
    from imgclf.faces.gallery import FILE
    from imgclf.store.runs import PRETRAINED_DETECTORS

    if not isinstance(run, (str, Path)):
        return None
    if str(run) in PRETRAINED_DETECTORS or is_detector_run(run):
        return "detector"
    return "gallery" if (Path(run) / FILE).is_file() else None


def _presence_folders(kind: str, data, data_root) -> bool:
    """Whether a detector is given labelled photos without boxes (a folder per answer, a CSV of
    labels): evaluated for presence as a classifier is, where boxes would give AP and counts too."""
    from imgclf.detection.annotations import detect_format

    if kind != "detector" or data is None or data_root is not None or not Path(data).expanduser().exists():
        return False  # a missing folder is said by the box reader: "box data not found"
    return detect_format(data) is None


def _evaluate_other(kind: str, name, data, verbose: bool, data_root, out, device: str) -> dict:
    """A detector on photos with boxes (detection.evaluate), a gallery on folders of people (faces.evaluate)."""
    wants = "photos with boxes (YOLO, VOC, COCO or CSV)" if kind == "detector" else "a folder per person"
    if data is None or data_root is not None:
        raise UserError(
            f"a {kind} is evaluated on {wants}: imgclf evaluate {name} {'BOXES' if kind == 'detector' else 'PEOPLE'}/"
            + (" (--data is a classifier run's moved data folder)" if data_root is not None else "")
        )
    if kind == "detector":
        from imgclf.detection.evaluate import evaluate_detector

        return evaluate_detector(name, data, out, device, verbose=verbose)
    from imgclf.faces.evaluate import evaluate_gallery

    return evaluate_gallery(name, data, out, device, verbose=verbose)


def _write_evaluation(model, metrics, scored, data, folder, console, drop: str = "") -> Path | None:
    """The evaluation folder (reporting.report.write_evaluation): --out, else RUN/evaluations/<data's
    name>, replaced by the next evaluation on the same data. A run folder that cannot take it (a
    read-only registry) costs the folder, said, not the evaluation."""
    from imgclf.core.files import output_folder
    from imgclf.data.paths import source_name
    from imgclf.evaluation.elsewhere import seen_warning
    from imgclf.reporting.report import write_evaluation

    if folder is None:
        try:
            folder = output_folder(Path(model.path) / "evaluations" / source_name(data), "the run folder")
        except UserError as e:
            console.print(f"[yellow]warning[/]: no evaluation report written: {escape(str(e))}; give --out DIR")
            return None
    held = "scores on them are not held out"
    note = seen_warning(metrics.get("own_images", {}), len(scored[0]), held, near=metrics.get("near_copies"))
    note = " ".join(n for n in (note, drop) if n)
    report = write_evaluation(model, metrics, *scored, data, folder, note)
    console.print(f"report: {escape(str(report))}  (every image's answer: {escape(str(folder / 'predictions.csv'))})")
    return report


def report(run, verbose: bool = True, *, data_root: str | Path | None = None) -> Path:
    """See imgclf.report."""
    from imgclf.reporting.report import write_report

    if evaluated_as(run) == "detector":  # said before the detector's seconds of loading
        _no_detector_report(run)
    model = loaded(run)
    if hasattr(model, "detector"):  # load() takes "person" as a classifier, with no run folder to report on
        _no_detector_report(model.path or model.name)
    return write_report(model, progress=verbose, data_root=data_root)


def _no_detector_report(name) -> None:
    raise UserError(
        f"{name} is a detector: its report comes from an evaluation on your photos: imgclf evaluate {name} "
        "PHOTOS/ (with boxes, or person/ and no-person/ folders); a detector run's own report.html is written "
        "by its training"
    )

"""The Python API. The CLI is a thin layer over these functions.

    run = imgclf.train("photos/", model="resnet_fast", epochs=20)
    model = imgclf.load(run.path)            # or imgclf.load("runs/photos-1")
    model.predict(["a.jpg", "folder/"], top_k=3)
    imgclf.evaluate("runs/photos-1")         # metrics on the run's held-out test split
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import TrainConfig, config_keys, dump_yaml, load_config
from .errors import UserError
from .fsutil import read_json, write_json, write_text
from .run_schema import write_model_json
from .runs import MODEL_FORMAT, find_run, new_run_dir, test_split, write_splits


@dataclass
class Run:
    path: Path
    metrics: dict | None                # None for an ensemble whose members do not share a test split
    config: TrainConfig | None          # None for an ensemble bundle

    def load(self, device: str = "auto"):
        return load(self.path, device)


def _console(verbose: bool):
    from rich.console import Console

    return Console(quiet=not verbose, highlight=False, soft_wrap=True)


def load(run: str | Path, device: str = "auto", tta: str | None = None, backend: str = "torch"):
    """Load a trained model from a run folder (JSON + safetensors; no code executed).

    `tta` overrides the test-time augmentation the run was evaluated with (none | flip | crop |
    flip-crop); its calibration was fitted with the run's own. `backend="onnx"` runs the network
    in ONNX Runtime (RUN/model.onnx, exported on first use) instead of PyTorch."""
    from .predictor import Model

    return Model.load(run, device, tta, backend=backend)


def train(data: str | Path | None = None, *, config: str | Path | None = None, resume: str | Path | bool = False,
          verbose: bool = True, on_epoch=None, evaluate: bool = True, **settings: Any) -> Run:
    """Train, evaluate on the held-out test split and write a run folder. Every keyword is a
    TrainConfig field; unset ones are chosen automatically, printed, and recorded in config.yaml.
    `resume=RUN_DIR` (or resume=True with out=RUN_DIR) continues an interrupted run.
    `on_epoch(epoch, history_row)` is called after every epoch (a tuner reports and prunes there).
    `evaluate=False` stops after training (no calibration, test scoring or report; metrics None):
    tuning trials are judged on validation only and must stay cheap."""
    import torch

    from .data.discover import discover
    from .device import pick_device
    from .models import create_model, model_defaults
    from .training.defaults import resolve
    from .training.finish import calibrate, choose_decision, choose_rejection, score
    from .training.loop import SplitData, fit
    from .training.prepare import (apply_preset, augment_policy, data_report, decode, duplicates, group_split,
                                   normalization, require_training_images)

    console = _console(verbose)
    run_dir = None
    if resume:
        run_dir = Path(resume if not isinstance(resume, bool) else settings.get("out") or "")
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"cannot resume: {run_dir} has no config.yaml (give the run folder of an earlier train)")
        cfg = load_config(run_dir / "config.yaml")     # the resolved settings of the interrupted run
    else:
        cfg = load_config(config) if config else TrainConfig()
        cfg = cfg.updated(data=str(data) if data is not None else None, **settings)
    if not cfg.data:
        raise UserError("no data given: imgclf train DATA (a folder with one sub-folder per class)")

    from .data.groups import check_group_by

    check_group_by(cfg.group_by)        # before the decoding it would otherwise wait for
    spec = discover(cfg.data, cfg.val_frac, cfg.test_frac, cfg.seed)
    from .evaluation.rejection import check_targets

    check_targets(spec.classes, cfg.target_accuracy, cfg.target_coverage)
    device = pick_device(cfg.device)
    train_paths = [spec.paths[i] for i in spec.indices("train")]
    notes = []
    if cfg.preset and not resume:
        # A preset fills what the user left unset; flags and config-file keys win over it.
        explicit = {k for k, v in settings.items() if v is not None} | (config_keys(config) if config else set())
        cfg, notes = apply_preset(cfg, explicit, train_paths, device)
    cfg, more = resolve(cfg, train_paths, device)
    notes += more
    run_dir = Path(run_dir or cfg.out or new_run_dir(cfg.data))
    cfg = cfg.updated(out=str(run_dir))
    if not resume and (run_dir / "model.json").exists():
        raise UserError(f"{run_dir} already holds a run; choose another --out or add --resume to continue it")

    console.print(f"imgclf {__version__}  data {cfg.data} ({spec.layout}, {len(spec.classes)} classes, "
                  f"{len(spec.paths)} images)  device {device}")
    for line in notes:
        console.print(f"  default: {line}")

    images, spec, skipped = decode(spec, cfg, console)
    cfg, grouping = group_split(spec, cfg, images, console)
    removed = duplicates(spec, cfg, console)
    require_training_images(spec)
    from .training.balance import class_weights, resolve_class_weight

    train_labels = spec.labels[spec.indices("train")]
    mode, note = resolve_class_weight(cfg.class_weight, train_labels, len(spec.classes))
    cfg = cfg.updated(class_weight=mode)
    if note:
        console.print(f"  default: {note}")
    mean, std, pretrained = normalization(cfg, images, spec)
    if cfg.init_from:       # a warm start (imgclf update): the parent's weights were learnt on its statistics
        from .training.warmstart import parent_normalization

        mean, std = parent_normalization(cfg.init_from)
    policy = augment_policy(cfg, len(spec.indices("train")))
    console.print(f"  augmentation: {policy.to_dict()}")
    if cfg.tta == "auto":
        # Average the prediction over the mirror image when the model was trained to be mirror-invariant.
        cfg = cfg.updated(tta="flip" if policy.flip else "none")
        console.print(f"  default: tta={cfg.tta}: test-time augmentation at evaluation"
                      f"{'' if policy.flip else ' (no flips in training)'}")
    kwargs = {**model_defaults(cfg.model), **cfg.model_kwargs}
    cfg = cfg.updated(model_kwargs=kwargs, augment=policy.to_dict())

    torch.manual_seed(cfg.seed)
    net = create_model(cfg.model, num_classes=len(spec.classes), in_chans=3, img_size=cfg.img_size,
                       weights=cfg.weights, pretrained=cfg.pretrained, **cfg.model_kwargs)
    n_params = sum(p.numel() for p in net.parameters())
    console.print(f"  model: {cfg.model} {kwargs}  ({n_params / 1e6:.2f}M parameters)")
    if cfg.init_from and not resume:
        from .training.warmstart import warm_start

        console.print(f"  {warm_start(net, cfg.init_from, spec.classes)}")

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_yaml(cfg.to_dict()))
    from .data.paths import data_root, relative_to, resolve

    root = data_root(spec.root, spec.layout, spec.paths)     # splits.csv is relative to it: both can move
    write_splits(run_dir / "splits.csv", spec.paths, spec.labels, spec.splits, spec.classes, root)
    write_json(run_dir / "data_report.json", {**data_report(spec, skipped), "deduplicated": removed,
                                                  "groups": grouping})
    meta = {
        "format": MODEL_FORMAT, "imgclf_version": __version__, "classes": spec.classes,
        "architecture": {"name": cfg.model, "kwargs": kwargs, "in_chans": 3, "parameters": n_params},
        "input": {"size": cfg.img_size, "resize": cfg.resize, "channels": "RGB", "dtype": "uint8"},
        "normalization": {"mean": mean, "std": std},
        "preprocessing": f"decode to RGB (EXIF-rotated, alpha on white), resize '{cfg.resize}' to "
                         f"{cfg.img_size}x{cfg.img_size}, scale to [0,1], subtract mean, divide by std",
        "tta": cfg.tta,
        "data": {"root": root},
    }
    if pretrained:
        from .models.pretrained import preprocessing_record

        meta["pretrained"] = preprocessing_record(cfg.model[len("timm/"):], getattr(net, "weights_origin", None),
                                                  cfg.img_size, cfg.resize)
    elif getattr(net, "weights_origin", None):
        meta["starting_weights"] = net.weights_origin["path"]       # an in-house model from a file or an earlier run
    data = SplitData(images, np.sort(spec.indices("train")), np.sort(spec.indices("val")), spec.labels, mean, std)
    probe_file = run_dir / "probe.json"
    maps = None
    if cfg.probe and probe_file.is_file():      # resumed after the probe: its head is in model.safetensors
        from .training.checkpoint import load_weights
        from .training.loop import STATE_FILE

        meta["probe"] = read_json(probe_file)
        if not (run_dir / STATE_FILE).exists():
            net.load_state_dict(load_weights(run_dir / "model.safetensors"))
    elif cfg.probe:
        from .device import amp_dtype
        from .training.checkpoint import save_weights
        from .training.featcache import cache_split
        from .training.probe import fit_probe

        meta["probe"], maps = fit_probe(net, images, data.train, data.val, spec.labels, mean, std, device,
                                        amp_dtype(device, cfg.amp), bool(cfg.channels_last), console,
                                        class_weights(cfg.class_weight, train_labels, len(spec.classes)),
                                        keep_lower=cache_split(net, cfg, len(data.train)))
        save_weights(run_dir / "model.safetensors", net.state_dict())    # shipped unless fine-tuning beats it
        write_json(probe_file, meta["probe"])
    # The probe's score by the criterion fine-tuning judges by (balanced accuracy when classes are weighted).
    probe_val = meta.get("probe", {}).get("val_acc" if cfg.class_weight == "none" else "val_balanced_acc", float("nan"))
    baseline = None if np.isnan(probe_val) else (probe_val, meta["probe"]["val_loss"])
    result = fit(net, cfg, data, policy, run_dir, device, console, resume=bool(resume), on_epoch=on_epoch,
                 baseline=baseline, feature_maps=maps)
    del maps
    console.print(f"trained {len(result.history)} epochs in {result.train_seconds:.1f}s; best val {result.criterion} "
                  f"{result.best_val_acc:.4f} at epoch {result.best_epoch}{' (the linear probe)' if not result.best_epoch else ''}")
    if not evaluate:
        return Run(run_dir, None, cfg)

    from .evaluation.plots import plot_history
    from .predictor import Model
    from .training.checkpoint import load_weights

    plot_history(result.history, run_dir / "learning_curves.png")
    net.load_state_dict(load_weights(run_dir / "model.safetensors"))
    meta["training"] = {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
                        "best_val_acc": result.best_val_acc, "criterion": result.criterion,
                        "stopped_early": result.stopped_early,
                        "train_seconds": round(result.train_seconds + meta.get("probe", {}).get("seconds", 0), 2),
                        "first_step_seconds": round(result.first_step_seconds, 2),
                        "device": str(device), "preset": cfg.preset, "stages": result.stages}
    model = Model(net, meta, device, run_dir)
    scorer = _scorer(model, console)
    meta["calibration"] = calibrate(scorer, images, spec, console)
    if len(spec.classes) == 2:
        meta["decision"] = choose_decision(scorer, images, spec, cfg, console)
    elif cfg.target_accuracy is not None or cfg.target_coverage is not None:
        meta["rejection"] = choose_rejection(scorer, images, spec, cfg, console)
    write_model_json(run_dir, meta)     # with the weights' SHA-256, checked on every load
    test = np.sort(spec.indices("test"))
    metrics = score(scorer, images[test], spec.labels[test], run_dir, console, "held-out test split")
    # The report shows the same test predictions: hand them over instead of predicting (with TTA) twice,
    # under the paths read_splits gives back.
    model.scored_test = ([resolve(relative_to(spec.paths[i], root), root) for i in test], scorer.last_probs)
    _report_after_training(model, console)
    return Run(run_dir, metrics, cfg)


def evaluate(run, data: str | Path | None = None, verbose: bool = True, *, data_root: str | Path | None = None) -> dict:
    """Metrics of a trained model: on its own held-out test split, or on DATA (its `test/` split
    when it has one, else all its images). Writes metrics.json into the run when on its test split.
    `data_root`: where the run's data folder is now, when it moved since training.

        imgclf.evaluate("runs/photos-1", data_root="/mnt/photos")["accuracy"]
    """
    from .data.discover import discover
    from .predictor import Model
    from .training.finish import score

    console = _console(verbose)
    model = run if isinstance(run, Model) else load(run)
    if data is not None and data_root is not None:
        raise UserError("give DATA (other labeled images to evaluate on) or --data (where the run's own data "
                        "moved to, for its test split), not both")
    if data is None:
        paths, labels = test_split(model, data_root=data_root)
        where, out_dir = "held-out test split", model.path
    else:
        spec = discover(data, 0.0, 0.0)
        sel = spec.indices("test") if (spec.splits == "test").any() else np.arange(len(spec.paths))
        unknown = sorted(set(spec.classes) - set(model.classes))
        if unknown:
            raise UserError(f"{data} has classes the model does not know: {', '.join(unknown)}")
        paths = [spec.paths[i] for i in sel]
        labels = np.array([model.classes.index(spec.classes[spec.labels[i]]) for i in sel])
        where, out_dir = str(data), None
    from .data.cache import build_cache

    cache = build_cache(paths, model.img_size, model.resize_mode, progress=verbose)
    keep = np.array([i for i in range(len(paths)) if i not in cache.bad], dtype=np.int64)
    for i, reason in cache.bad.items():
        console.print(f"[yellow]warning[/]: skipped {paths[i]}: {reason}")
    return score(model, cache.images[keep], labels[keep], out_dir, console, where)


def ensemble(runs: list[str | Path], out: str | Path, *, target_accuracy: float | None = None,
             target_coverage: float | None = None, device: str = "auto", verbose: bool = True) -> Run:
    """Bundle runs trained on the same classes into one model that averages their calibrated
    probabilities; evaluated on their shared test split when they have one. `imgclf.load(out)`
    then predicts like a single run. Targets as in `train` (rejection chosen on the shared
    validation split).

        imgclf.ensemble(["runs/a", "runs/b", "runs/c"], out="runs/abc").metrics["accuracy"]
    """
    from .ensembling import make_ensemble

    path, metrics = make_ensemble(runs, out, target_accuracy, target_coverage, device, console=_console(verbose))
    return Run(path, metrics, None)


def compare(a, b, data: str | Path | None = None, tolerance: float = 0.02, alpha: float = 0.05, n_boot: int = 1000,
            seed: int = 0, rule: dict | None = None, out: str | Path | None = None, *,
            data_root: str | Path | None = None) -> dict:
    """Champion/challenger: run A and run B on A's frozen test split (and on `data`, new labeled images):
    accuracy with paired bootstrap CIs, McNemar's test, per-class recall, ECE, the images whose
    prediction changed, and a verdict {promote, reasons, paragraph}. Writes B/compare-<A>.json (or `out`).
    `data_root`: where A's data folder is now, when it moved since A was trained.

        imgclf.compare("registry/production", "runs/photos-7")["verdict"]["promote"]
    """
    from .evaluation.compare import compare as run_compare

    return run_compare(a, b, data, tolerance, alpha, n_boot, seed, rule, out, data_root)


def explain(run, images, *, method: str = "gradcam", target: str | None = None, out: str | Path | None = None,
            device: str = "auto") -> list[dict]:
    """Where the network looked: per image, the run's answer (label, confidence) and a class
    activation map of `target` (default: the answered class) from layer `layer`, picked
    automatically — `heatmap`, (size, size) floats in 0..1 over the model's input — and, with
    `out`, the overlay PNG written there (`overlay`: its path). Methods: gradcam, gradcam++,
    xgradcam, layercam, eigencam, scorecam, hirescam (the grad-cam package). See imgclf.explaining.

        r = imgclf.explain("runs/flowers-1", ["rose.jpg"], out="explanations")[0]
        r["label"], r["heatmap"].shape, r["overlay"]   # ('rose', (64, 64), 'explanations/rose-gradcam-rose.png')
    """
    from .explaining import explain as run_explain

    return run_explain(_model(run, device, None, "torch"), images, method, target, out)


def scan(run, images, *, positive: str | None = None, scales=None, stride: int | None = None,
         min_size: int | None = None, iou: float = 0.3, out: str | Path | None = None, mine: str | Path | None = None,
         threshold: float | None = None, margin=None, method: str = "auto", vote: bool | None = None,
         verify=None, verify_top: int | None = None, box_threshold: float | None = None, device: str = "auto",
         verbose: bool = True) -> list[dict]:
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
    from .scanning import scan as run_scan

    if isinstance(verify, (str, Path)):         # else a loaded model, None (the recorded one) or False
        from .scanning.verify import load_verifier

        verify = load_verifier(verify, device)
    return run_scan(_model(run, device, None, "torch"), images, positive=positive, scales=scales, stride=stride,
                    min_size=min_size, iou=iou, out=out, mine=mine, threshold=threshold, margin=margin,
                    method=method, vote=vote, verify=verify, verify_top=verify_top, box_threshold=box_threshold,
                    verbose=verbose)


def negatives(photos, out: str | Path, *, per_image: int = 20, size: str | tuple[int, int] = "64x64",
              seed: int = 0, verbose: bool = True) -> dict:
    """Random windows (multi-scale, aspect of `size`) cut from photos known to hold no object, saved as
    PNG crops named by their sha256: the negative class to train a crop detector with.

        imgclf.negatives(["street/no-person"], "data/no-person", per_image=40, size="96x160")
    """
    from .scanning import negatives as cut

    return cut(photos, out, per_image=per_image, size=size, seed=seed, verbose=verbose)


def monitor(ref, log, *, out: str | Path | None = None, registry: str | Path | None = None, top: int = 50,
            since: str | None = None, low_confidence: float | None = None, device: str = "auto",
            verbose: bool = True, data_root: str | Path | None = None) -> dict:
    """Compare the service's prediction log (`imgclf serve --log-predictions DIR`) with the run's frozen
    test split: predicted classes, confidence, low-confidence and 'unknown' rates, brightness, size and
    colour mode (PSI + two-sample tests), a plain-words verdict, and the least confident logged images
    to label next. Writes OUT/monitor.json, monitor.html, to_label.csv and to_label/ (OUT defaults to
    monitors/<run name>). `ref`: run folder, REGISTRY/ALIAS, or a version/alias with `registry`.
    `data_root`: where the run's data folder is now, when it moved since training.

        imgclf.monitor("registry/production", "logs/")["verdict"]   # 'No drift: 412 logged predictions ...'
    """
    from .monitoring import monitor as run_monitor

    return run_monitor(ref, log, out=out, registry=registry, top=top, since=since, low_confidence=low_confidence,
                       device=device, verbose=verbose, data_root=data_root)


def update(ref, new_data: str | Path | None = None, *, registry: str | Path = "registry",
           from_inbox: bool | str | Path = False, mode: str = "finetune", promote: bool = False,
           epochs: int | None = None, tolerance: float = 0.02, out: str | Path | None = None,
           verbose: bool = True, data_root: str | Path | None = None, **options: Any) -> dict:
    """Retrain a registry version (number or alias; or a run folder) on its recorded data plus new
    labeled images (`new_data`, or the feedback inbox with from_inbox=True): its test split stays
    frozen, new classes grow the head, `finetune` warm-starts with replay of the old data, `full`
    retrains from scratch. The result is registered as version `candidate`, compared with the parent
    on the frozen test split and the new test slice, and promoted only when `promote` and the rule
    passes. `data_root`: where the version's recorded data is now, when it moved since registration.
    Other keywords: lr_factor, replay, seed, doctor, mlflow, or TrainConfig settings. See imgclf.updating.

        r = imgclf.update("production", "new_photos/", promote=True)
        r["version"], r["verdict"]["paragraph"], r["promoted"]
    """
    from .updating import update as run_update

    return run_update(ref, new_data, registry=registry, from_inbox=from_inbox, mode=mode, promote=promote,
                      epochs=epochs, tolerance=tolerance, out=out, verbose=verbose, data_root=data_root, **options)


def feedback_import(folder: str | Path, inbox: str | Path | None = None, *, registry: str | Path | None = None,
                    classes: list[str] | None = None, who: str | None = None) -> dict:
    """Add FOLDER/<label>/<images> to the feedback inbox that `imgclf update --from-inbox` trains on.
    `inbox` defaults to REGISTRY/inbox (./registry/inbox when ./registry is a registry), else ./inbox;
    labels the registry's production model does not know are kept as proposed new classes. Never stops
    on a bad file: the result lists what was added, already there, relabelled and skipped (with why).

        imgclf.feedback_import("corrections/", registry="registry")["added"]     # 12
    """
    from . import inbox as box

    where, reg = box.locate(inbox, registry)
    return box.import_folder(folder, where, classes=classes or box.registry_classes(reg), who=who)


def export(run: str | Path, format: str = "onnx", out: str | Path | None = None, data: str | Path | None = None,
           opset: int | None = None, check: bool = True, verbose: bool = True) -> dict:
    """Export the run's network (RUN/model.onnx by default: float32 NCHW normalised `input` ->
    `logits`, dynamic batch; classes and preprocessing in its metadata) and check that ONNX Runtime
    matches PyTorch within 1e-4 in probability on up to 64 real images (the run's test split, or `data`).

        imgclf.export("runs/photos-1")     # {'path': 'runs/photos-1/model.onnx', 'max_prob_diff': 2e-07, ...}
    """
    if format != "onnx":
        raise UserError(f"unknown export format '{format}'; the supported one is onnx")
    from .exporting import export_onnx

    result = export_onnx(run, out=out, opset=opset, data=data, check=check)
    checked = (f"ONNX Runtime vs PyTorch: max probability difference {result['max_prob_diff']:.2e} on "
               f"{result['n_images']} images ({result['images_from']})" if check else "not checked (--no-check)")
    _console(verbose).print(f"exported {result['path']} (opset {result['opset']}, {result['exporter']} exporter, "
                            f"{result['seconds']:.1f}s); {checked}")
    return result


def serve(run: str | Path | None = None, *, registry: str | Path | None = None, alias: str = "production",
          host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          device: str = "auto", tta: str | None = None, verbose: bool = True, **settings: Any) -> None:
    """Serve the run over HTTP until interrupted: POST /predict, POST /feedback, the browser page at
    /, /health, /model, /metrics, /openapi.json. Other keywords are imgclf.serving.ServeSettings fields
    (api_key, cors, max_upload_mb, max_pixels, max_images, batching, max_batch, max_wait_ms,
    log_predictions, log_sample, log_images, log_max_mb, inbox, ...).

    `registry` instead of `run`: serve the version `alias` names, and swap in each version it is
    promoted (or rolled back) to while serving, without dropping a request.

        imgclf.serve("runs/flowers-1", port=8000, api_key="s3cret")
        imgclf.serve(registry="registry", log_predictions="predlog")   # follows registry/production
    """
    from .errors import from_settings
    from .inbox import default_inbox
    from .serving import ServeSettings, run_server
    from .serving.hotswap import holder_for_registry

    if (run is None) == (registry is None):
        raise UserError("give either RUN (a run folder) or --registry DIR (serve and follow its --alias), not "
                        + ("both" if run is not None else "neither"))
    cors = settings.pop("cors", None) or ()
    ref = Path(run).expanduser() if run is not None else None
    # REGISTRY/ALIAS (or REGISTRY/3) serves that version as it is now, not followed: the version is recorded.
    pinned = ref is not None and not ref.exists() and (ref.parent / "versions").is_dir()
    settings["inbox"] = str(settings.get("inbox") or default_inbox(registry or (ref.parent if pinned else None),
                                                                   None if registry or pinned else find_run(run)))
    config = from_settings(ServeSettings, {**settings, "cors": (cors,) if isinstance(cors, str) else tuple(cors)},
                           "serve setting")
    if registry is not None:
        served = holder_for_registry(registry, alias, lambda path: load(path, device, tta=tta, backend=backend))
        model, following = served.model, f", version {served.version} ({alias} of {registry}, swapped on promote)"
    else:
        served = model = load(run, device, tta=tta, backend=backend)
        following = ""
        if pinned:
            from .registry import version_number
            from .serving import ModelHolder

            served = ModelHolder(model, version=version_number(ref.parent, ref.name))
            following = f", version {served.version} of {ref.parent}"
    mode = (f"micro-batches of up to {config.max_batch} (max wait {config.max_wait_ms:g} ms)" if config.batching
            else "one forward pass per request (no batching)")
    console = _console(verbose)
    console.print(f"serving {model.path.name}{following} ({len(model.classes)} classes, {backend} on {model.device}, "
                  f"{mode}) at http://{host}:{port}/  API key {'required' if config.api_key else 'not set'}")
    console.print(f"feedback (POST /feedback) goes to the inbox {config.inbox}"
                  + (f"; predictions are logged to {config.log_predictions}" if config.log_predictions else ""))
    run_server(served, config, host, port, log_level="info" if verbose else "warning")

def predict_folder(run, inputs, out: str | Path, *, top_k: int = 1, batch_size: int = 256,
                   workers: int | None = None, resume: bool = True, device: str = "auto", backend: str = "torch",
                   tta: str | None = None, verbose: bool = True) -> dict:
    """Predict any number of images (files, folders searched recursively) into the CSV `out`,
    streaming: parallel decoding, batched inference, a progress bar; rerun to resume. `run` is a
    run folder or a loaded model. See imgclf.batch.

        imgclf.predict_folder("runs/photos-1", "new_pictures/", "preds.csv")   # {'predicted': 9841, 'images_per_s': ...}
    """
    from .batch import predict_folder as stream
    from .predictor import check_top_k

    check_top_k(top_k)
    model = _model(run, device, tta, backend)
    return stream(model, inputs, out, top_k=top_k, batch_size=batch_size, workers=workers, resume=resume,
                  progress=verbose)


def predict_video(run, source, *, every: int = 1, smooth: float = 0.5, out_csv: str | Path | None = None,
                  out_video: str | Path | None = None, events: str | Path | None = None,
                  max_frames: int | None = None, device: str = "auto", backend: str = "torch",
                  tta: str | None = None, verbose: bool = True, scan: bool = False) -> dict:
    """Classify a video file, camera index or stream URL frame by frame (every `every`-th),
    probabilities smoothed over `smooth` seconds; per-frame CSV, annotated video and, for two-class
    runs, presence events of the positive class (events.json beside the CSV, or `events`).
    `scan=True` scans each frame for the positive class (imgclf.scan) instead of classifying it
    whole: presence comes from the best window, the annotated video shows the boxes. See imgclf.video.

        imgclf.predict_video("runs/people-1", "door.mp4", out_csv="frames.csv")["events"]
        # [{'start_s': 2.0, 'end_s': 5.0, 'duration_s': 3.0, 'peak_confidence': 0.99}]
    """
    from .video import predict_video as run_video

    model = _model(run, device, tta, backend)
    scanner = None
    if scan:
        from .scanning import Scanner

        scanner = Scanner(model)
        if verbose:
            print(f"scan: {scanner.describe()}")
    return run_video(model, source, every=every, smooth=smooth, out_csv=out_csv, out_video=out_video,
                     events_path=events, show_fps=verbose, max_frames=max_frames, scanner=scanner)


def _model(run, device: str, tta: str | None, backend: str):
    from .predictor import Model

    if isinstance(run, Model):
        return run
    return load(run.path if isinstance(run, Run) else run, device, tta=tta, backend=backend)


def list_models(pattern: str | None = None, size: int = 224, pretrained_only: bool = False, limit: int = 25) -> list[dict]:
    """Architectures with parameters, GFLOPs at `size` px and whether their pretrained weights are
    on this machine: the built-in ones and timm's matching `pattern` (without a pattern, a few
    suggested backbones). Each row: name, params, gflops, pretrained_tags, default_tag,
    input_size, local_weights.

        imgclf.list_models("resnet1*")[0]    # {'name': 'timm/resnet10t', 'params': 5435488, 'gflops': 2.19, ...}
    """
    from .models.catalog import list_models as catalog

    return catalog(pattern, size, pretrained_only, limit)["rows"]


def lr_find(data: str | Path, *, out: str | Path | None = None, steps: int = 100, start_lr: float = 1e-7,
            end_lr: float = 10.0, verbose: bool = True, **settings: Any) -> dict:
    """Learning-rate range test (see training.lr_find): a short training with an exponentially
    growing learning rate, on the data, model and settings `train` would use (any TrainConfig
    keyword). Writes OUT/lr_find.json and OUT/lr_find.png; returns the result with
    "suggested_lr" (steepest descent of the smoothed loss) and "min_loss_lr_div10".

        imgclf.lr_find("photos/", model="timm/resnet18", weights="resnet18.safetensors")["suggested_lr"]
    """
    import torch

    from .data.discover import discover
    from .device import pick_device
    from .models import create_model, model_defaults
    from .training import lr_find as range_test
    from .training.defaults import resolve
    from .training.loop import SplitData
    from .training.prepare import augment_policy, decode, normalization

    if steps < 10:
        raise UserError(f"--steps must be at least 10, not {steps}")
    if not 0 < start_lr < end_lr:
        raise UserError(f"need 0 < start_lr < end_lr, not {start_lr} and {end_lr}")
    console = _console(verbose)
    cfg = TrainConfig().updated(data=str(data), **settings)
    spec = discover(cfg.data, cfg.val_frac, cfg.test_frac, cfg.seed)
    device = pick_device(cfg.device)
    cfg, notes = resolve(cfg, [spec.paths[i] for i in spec.indices("train")], device)
    out = Path(out or new_run_dir(f"{Path(cfg.data).name}-lr-find"))
    for line in notes:
        console.print(f"  default: {line}")
    images, spec, _ = decode(spec, cfg, console)
    mean, std, _ = normalization(cfg, images, spec)
    torch.manual_seed(cfg.seed)
    net = create_model(cfg.model, num_classes=len(spec.classes), in_chans=3, img_size=cfg.img_size, weights=cfg.weights,
                       pretrained=cfg.pretrained, **{**model_defaults(cfg.model), **cfg.model_kwargs})
    data_ = SplitData(images, np.sort(spec.indices("train")), np.sort(spec.indices("val")), spec.labels, mean, std)
    console.print(f"lr-find: {cfg.model}, {steps} steps of batch {cfg.batch_size}, lr {start_lr:g} -> {end_lr:g}")
    result = range_test.range_test(net, cfg, data_, augment_policy(cfg, len(data_.train)), device, steps, start_lr, end_lr)
    result["settings"] = {k: getattr(cfg, k) for k in ("model", "img_size", "batch_size", "optimizer", "weight_decay",
                                                         "freeze_epochs", "layer_decay", "lr")}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lr_find.json", result)
    range_test.plot(result, out / "lr_find.png")
    if result["suggested_lr"] is None:
        raise UserError(f"lr-find stopped too early ({result['stopped']}): lower --start-lr or raise --steps")
    console.print(f"  {len(result['lr'])} steps; stopped: {result['stopped']}")
    console.print(f"suggested lr: {result['suggested_lr']:.2g} (steepest descent of the smoothed loss); "
                  f"minimum-loss lr / 10: {result['min_loss_lr_div10']:.2g}; this run's default: {cfg.lr:.2g}")
    console.print(f"plot: {out / 'lr_find.png'}  (use it with: imgclf train {data} --lr {result['suggested_lr']:.2g})")
    return result


def demo(out: str | Path | None = None, verbose: bool = True) -> Run:
    from .demo import run_demo

    return run_demo(out, verbose)


def check(data: str | Path, *, json_path: str | Path | None = None, val_frac: float = 0.1, test_frac: float = 0.1,
          seed: int = 0, near_distance: int | None = None, workers: int | None = None, verbose: bool = True,
          labels: bool = False, folds: int = 5, run: str | Path | None = None, device: str = "auto",
          group_by: str = "auto") -> dict:
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
    from .data.discover import discover
    from .data.doctor import NEAR_DISTANCE, diagnose
    from .data.doctor_report import print_findings
    from .data.groups import group_for_check
    from .data.phash import MAX_DISTANCE
    from .validation import check_settings

    # The split settings mean what they mean in train, so they pass the same checks.
    check_settings(dict(val_frac=val_frac, test_frac=test_frac, seed=seed, group_by=group_by, workers=workers))

    near = NEAR_DISTANCE if near_distance is None else near_distance
    if not 0 <= near <= MAX_DISTANCE:
        raise UserError(f"near_distance must be between 0 and {MAX_DISTANCE} pHash bits, not {near}")
    if run is not None and not labels:
        raise UserError("--run stores the label check in a run: add --labels")
    if labels and folds < 2:
        raise UserError(f"--folds must be at least 2, not {folds}")
    run_dir = find_run(run) if run is not None else None       # before the long part, not after it
    spec = discover(data, val_frac, test_frac, seed)
    findings = diagnose(spec, near, workers=workers, progress=verbose)
    findings["split_settings"] = {"val_frac": val_frac, "test_frac": test_frac, "seed": seed, "group_by": group_by}
    findings["groups"], group_ids = group_for_check(spec, findings, group_by, val_frac, test_frac, seed)
    console = _console(verbose)
    print_findings(findings, console)
    if labels:
        from .evaluation.label_issues import find_label_issues, print_label_issues

        findings["label_issues"] = find_label_issues(spec, folds, seed, device, workers, console, progress=verbose,
                                                     groups=group_ids)
        print_label_issues(findings["label_issues"], console, spec.root)
    if run_dir is not None:
        write_json(run_dir / "label_issues.json", findings["label_issues"])
        console.print(f"label issues: {run_dir / 'label_issues.json'}; report: {report(run_dir, verbose=False)}")
    if json_path:
        write_json(json_path, findings)
        console.print(f"report: {json_path}")
    return findings


def tune(data: str | Path, *, trials: int = 20, timeout: float | None = None, space: str | Path | None = None,
         storage: str | None = None, study_name: str | None = None, pruner: str = "median",
         out: str | Path | None = None, run_out: str | Path | None = None, seed: int = 0, retrain: bool = True,
         verbose: bool = True, **settings: Any):
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
    from .tuning.tune import run_tune

    return run_tune(data, trials=trials, timeout=timeout, space=space, storage=storage, study_name=study_name,
                    pruner=pruner, out=out, run_out=run_out, seed=seed, retrain=retrain, verbose=verbose,
                    settings=settings)


def report(run, verbose: bool = True, *, data_root: str | Path | None = None) -> Path:
    """Write the run's self-contained report.html (data, model, settings, curves, test metrics,
    calibration, thresholds, galleries, model card) and return its path. `train` writes it too.
    `data_root`: where the run's data folder is now, when it moved since training (the galleries and
    test predictions read its images).

        imgclf.report("runs/photos-1")     # -> runs/photos-1/report.html
    """
    from .evaluation.report import write_report
    from .predictor import Model

    model = run if isinstance(run, Model) else load(run.path if isinstance(run, Run) else run)
    return write_report(model, progress=verbose, data_root=data_root)


def _scorer(model, console):
    """The finished network for the evaluation after training (calibration, operating point, test
    split): on a CPU in ONNX Runtime, exported in memory (~1 s), which runs it ~3x faster than
    eager PyTorch (Lite0 at 128 px, 2 cores; TTA doubles the passes, and a 10,000-image test split
    took minutes); elsewhere, or if the export fails, `model` itself. Probabilities agree to ~1e-5."""
    from .predictor import Model

    if model.device.type != "cpu":
        return model
    try:
        from .onnx_backend import OnnxNet
        from .training.ortembed import cpu_session

        return Model(OnnxNet(cpu_session(model.net, model.img_size, ["logits"])), model.meta, model.device, model.path)
    except Exception as e:  # noqa: BLE001 - any export/runtime failure: evaluate in PyTorch
        console.print(f"  evaluation: in PyTorch (ONNX Runtime could not take this network: {type(e).__name__})")
        return model


def _report_after_training(model, console) -> None:
    """The report is a view of the finished run: a failure to draw it must not cost the run."""
    try:
        report(model, verbose=False)
        console.print(f"report: {model.path / 'report.html'}")
    except Exception as e:     # noqa: BLE001 - any plotting or decoding problem; the run is complete
        console.print(f"[yellow]warning[/]: could not write report.html ({type(e).__name__}: {e}); "
                      f"retry with: imgclf report {model.path}")

"""`imgclf train` up to a trained network: settings, data, the network, the linear probe, the
epochs. What comes after (calibration, the test split, the report) is evaluation's and
reporting's; `imgclf.workflows.train` runs the three in order. `lr_find` shares the preparation.

    fitted = fit_run("photos/", console=console_for(True), epochs=5)
    fitted.net, fitted.meta.probe, fitted.result.best_val_acc
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.markup import escape  # run paths and class names are the user's text

from imgclf.core.errors import UserError, resumable
from imgclf.core.files import read_json, write_json, write_text
from imgclf.core.version import __version__
from imgclf.settings.config import TrainConfig, dump_yaml
from imgclf.store.run_meta import (
    MODEL_FORMAT,
    Architecture,
    DataRecord,
    InputSpec,
    Normalization,
    RunMeta,
    TrainingRecord,
)
from imgclf.store.runs import check_new_run_dir, lock_for_training
from imgclf.training import prepare as steps  # the steps from a folder to decoded, split, checked data


@dataclass
class Fitted:
    """A trained network and everything the evaluation after training needs."""

    run_dir: Path
    prep: steps.Prepared
    net: Any  # torch.nn.Module with the kept epoch's weights
    meta: RunMeta  # model.json so far: classes, architecture, input, normalization, training
    result: Any  # training.loop.FitResult
    root: str | None  # the data root splits.csv is relative to
    started: float | None = None  # time.monotonic() at the command's start (core.clock.run_started)


def prepare(
    cfg: TrainConfig, console, explicit: set[str] | None = None, for_training: bool = True, run_dir: Path | None = None
) -> tuple[steps.Prepared, Path | None]:
    """Discover, resolve the defaults (training.resolve), decode; for training also group and
    deduplicate the split. Prints every default it chose. Returns the preparation and the run folder
    (None when `for_training` is False and none was named)."""
    from imgclf.data.discover import discover
    from imgclf.data.groups import check_group_by
    from imgclf.settings.checks import check_targets
    from imgclf.training.resolve import before_decoding

    check_group_by(cfg.group_by)  # before the decoding it would otherwise wait for
    spec = discover(cfg.data, cfg.val_frac, cfg.test_frac, cfg.seed)
    if for_training and explicit is None and run_dir:  # a resume
        steps.recorded_split(spec, run_dir / "splits.csv")
    check_targets(spec.classes, cfg.target_accuracy, cfg.target_coverage)
    reserved = for_training and not (run_dir or cfg.out)  # before_decoding makes runs/<name>-<n> now
    chosen = before_decoding(cfg, spec, explicit, for_training, run_dir)
    try:
        return _prepare(chosen, spec, explicit, for_training, console)
    except BaseException:
        if reserved:  # a mistake found while decoding, or Ctrl-C: no empty runs/<name>-<n> left behind
            with contextlib.suppress(OSError):
                chosen.run_dir.rmdir()  # only ever empty: the run's first files come after this
        raise


def _prepare(
    chosen, spec, explicit: set[str] | None, for_training: bool, console
) -> tuple[steps.Prepared, Path | None]:
    from imgclf.training.resolve import after_decoding

    cfg, device, run_dir = chosen.cfg, chosen.device, chosen.run_dir
    if for_training:
        if explicit is not None:
            check_new_run_dir(run_dir)
        steps.headline(cfg, spec, device, console)
        if chosen.said:
            console.print(escape(chosen.said))
    for line in chosen.notes:
        console.print(f"  default: {line}")
    images, spec, skipped = steps.decode(spec, cfg, console)
    grouping, removed, found, grey = None, [], None, None
    if for_training:
        grouping, found = steps.group_split(spec, cfg, images, console)
        removed = steps.duplicates(spec, cfg, console)
        grey = steps.class_warnings(spec, found, console)
    cfg, policy, lines = after_decoding(cfg, spec, grouping, for_training, explicit)
    for line in lines:
        console.print(line)
    said = [line.strip().removeprefix("default: ") for line in lines if line.strip().startswith("default: ")]
    choices = None if explicit is None else {"given": sorted(explicit - {"out"}), "defaults": chosen.notes + said}
    mean, std, pretrained = steps.normalization(cfg, images, spec)
    if cfg.init_from and for_training:  # a warm start (imgclf update): the parent learnt on its statistics
        from imgclf.training.warmstart import parent_normalization

        mean, std = parent_normalization(cfg.init_from)
    prep = steps.Prepared(cfg, spec, images, device, mean, std, pretrained, policy, skipped, removed, grouping)
    prep.prints, prep.choices, prep.grey = found, choices, grey
    return prep, run_dir


def build_network(cfg: TrainConfig, n_classes: int):
    """The network `cfg` names, seeded, with its starting weights; (net, the kwargs it was built with)."""
    import torch

    from imgclf.models import create_model, model_defaults

    kwargs = {**model_defaults(cfg.model), **cfg.model_kwargs}
    torch.manual_seed(cfg.seed)
    net = create_model(
        cfg.model,
        num_classes=n_classes,
        in_chans=3,
        img_size=cfg.img_size,
        weights=cfg.weights,
        pretrained=cfg.pretrained,
        **kwargs,
    )
    return net, kwargs


def fit_run(
    data=None, *, config=None, resume=False, console, on_epoch: Callable | None = None, **settings: Any
) -> Fitted:
    """Prepare, build the network, write the run's inputs, probe, and train (see imgclf.train).

    Under DDP (torchrun, Ray Train) rank 0 does all of that and writes every file; the other ranks
    take its preparation and train their share of each batch (training.distributed)."""
    import torch

    from imgclf.core.clock import run_started
    from imgclf.training import distributed as dist
    from imgclf.training.candidates import skip_fine_tuning

    started = run_started()  # a time budget (training.budget) counts the whole run, decoding included
    dist.setup(settings.get("device"))  # --device cpu trains on gloo on a GPU machine too
    if not dist.is_main():
        return _follow(console, on_epoch)
    threads = dist.use_node_threads()
    try:
        prep, run_dir, net, meta, maps, root = _lead(data, config, resume, settings, console, started)
    except Exception as e:  # the other ranks wait for rank 0's preparation: they stop with its message
        dist.broadcast(("user" if isinstance(e, UserError) else "bug", str(e)))
        raise
    skip = skip_fine_tuning(prep, meta)  # a candidate far ahead, or no time left after the probe
    if dist.world_size() > 1:  # the other ranks wait in _follow for this; the images come from the cache
        dist.broadcast((replace(prep, images=None, candidates=None), run_dir, meta, bool(resume), bool(skip)))
        dist.broadcast_bulk(None if maps is None else maps.train)  # the probe's stored maps (training.featcache)
    torch.set_num_threads(threads)  # from here each rank trains on its own share
    with resumable(f"imgclf train --resume {run_dir}"):  # Ctrl-C, a full disk: the finished epochs are kept
        result, net = _fit(run_dir, prep, net, meta, maps, bool(resume), on_epoch, console, started, skip)
    dist.use_node_threads()  # the evaluation after training is rank 0's alone
    return Fitted(run_dir, prep, net, meta, result, root, started)


def _lead(data, config, resume, settings: dict, console, started=None):
    """Rank 0's (or the only process's) part before the epochs: settings, data, the network, the
    run's inputs and the probe. Returns (prep, run_dir, net, meta, the probe's maps, data root)."""
    from imgclf.training import distributed as dist
    from imgclf.training.budget import stage_clock
    from imgclf.training.candidates import fit_candidates
    from imgclf.training.resolve import user_settings

    cfg, run_dir, explicit = user_settings(data, config, resume, settings)
    prep, run_dir = prepare(cfg, console, explicit, run_dir=run_dir)
    lock_for_training(run_dir)  # held until workflows.train returns: one process trains a run at a time
    prep.device = dist.local_device(prep.device)
    cfg = prep.cfg
    net, kwargs = build_network(cfg, len(prep.spec.classes))
    n_params = sum(p.numel() for p in net.parameters())
    shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())  # the model's own keyword arguments, if any
    console.print(f"  model: {cfg.model}{f' ({shown})' if shown else ''}  ({n_params / 1e6:.2f}M parameters)")
    if cfg.init_from and not resume:
        from imgclf.training.warmstart import warm_start

        console.print(f"  {escape(warm_start(net, cfg.init_from, prep.spec.classes))}")  # a path, class names
    meta, root = _write_inputs(run_dir, prep, net, kwargs, n_params)
    with resumable(f"imgclf train --resume {run_dir}"):  # a finished probe or candidate is not fitted again
        maps = _probe(run_dir, prep, net, meta, console, started)
        clock = stage_clock(cfg, started, prep.split_data())
        image_seconds = (meta.probe or {}).get("image_seconds") or 0.0
        prep.candidates = fit_candidates(run_dir, prep, console, clock, image_seconds)
    return prep, run_dir, net, meta, maps, root


def _follow(console, on_epoch) -> Fitted:
    """A DDP rank other than 0: rank 0's preparation (its settings, split and run folder), the images
    from the decode cache rank 0 filled, the same network; its weights arrive as training starts."""
    from imgclf.core.console import console_for
    from imgclf.data.cache import build_cache
    from imgclf.training import distributed as dist
    from imgclf.training.featcache import LowerMaps

    got = dist.broadcast()
    if isinstance(got[0], str):  # rank 0's preparation failed; it says why
        raise (UserError if got[0] == "user" else RuntimeError)(got[1])
    prep, run_dir, meta, resume, skip = got
    train_maps = dist.broadcast_bulk()
    if skip:  # rank 0 ships its probe or a candidate: there are no epochs to train a share of
        return Fitted(run_dir, prep, None, meta, None, None)
    maps = None if train_maps is None else LowerMaps(train_maps, None)  # rank 0 alone validates
    cfg = prep.cfg
    prep.images = build_cache(prep.spec.paths, cfg.img_size, cfg.resize, workers=cfg.workers).images
    prep.device = dist.local_device(prep.device)
    net, _ = build_network(cfg, len(prep.spec.classes))
    quiet = console_for(False)
    result, net = _fit(run_dir, prep, net, meta, maps, resume, on_epoch, quiet)
    return Fitted(run_dir, prep, net, meta, result, None)


def _write_inputs(run_dir: Path, prep: steps.Prepared, net, kwargs: dict, n_params: int) -> tuple[RunMeta, str | None]:
    """config.yaml and the data records (splits.csv, prints.safetensors, data_report.json) before training
    starts, and model.json's first fields."""
    from imgclf.training.prepare import write_data_records

    cfg, spec = prep.cfg, prep.spec
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_yaml(cfg.to_dict()))
    if prep.choices is not None:  # a resumed run keeps its first run's record
        write_json(run_dir / "choices.json", prep.choices)
    root = write_data_records(run_dir, prep)
    meta = RunMeta(
        format=MODEL_FORMAT,
        imgclf_version=__version__,
        classes=spec.classes,
        architecture=Architecture(name=cfg.model, kwargs=kwargs, in_chans=3, parameters=n_params),
        input=InputSpec(size=cfg.img_size, resize=cfg.resize, channels="RGB", dtype="uint8"),
        normalization=Normalization(mean=prep.mean, std=prep.std),
        preprocessing=f"decode to RGB (EXIF-rotated, alpha on white), resize '{cfg.resize}' to "
        f"{cfg.img_size}x{cfg.img_size}, scale to [0,1], subtract mean, divide by std",
        tta=cfg.tta,
        data=DataRecord(root=root),
    )
    origin = getattr(net, "weights_origin", None)
    if prep.pretrained:
        from imgclf.models.pretrained import preprocessing_record

        meta.pretrained = preprocessing_record(cfg.model[len("timm/") :], origin, cfg.img_size, cfg.resize)
    elif origin:
        meta.starting_weights = origin["path"]  # an in-house model from a file or an earlier run
    return meta, root


def _probe(run_dir: Path, prep: steps.Prepared, net, meta: RunMeta, console, started=None):
    """The linear probe on frozen features (the head's start, and the score fine-tuning must beat);
    on resume, its recorded result. Returns the frozen layers' stored outputs, or None. In a run
    with a time budget it takes no more than its share of what the budget leaves (training.budget.
    StageClock): an equal share beside each costly candidate (the face embedding, the person
    detector) that runs after it."""
    cfg, spec = prep.cfg, prep.spec
    probe_file = run_dir / "probe.json"
    if cfg.probe and probe_file.is_file():  # resumed after the probe: its head is in model.safetensors
        from imgclf.store.checkpoint import load_weights
        from imgclf.training.loop import STATE_FILE

        meta.probe = read_json(probe_file)
        if not (run_dir / STATE_FILE).exists():
            net.load_state_dict(load_weights(run_dir / "model.safetensors"))
        return None
    if not cfg.probe:
        return None
    from imgclf.core.device import amp_dtype
    from imgclf.store.checkpoint import save_weights
    from imgclf.training.balance import class_weights
    from imgclf.training.budget import stage_clock
    from imgclf.training.candidates import costly_candidates
    from imgclf.training.featcache import cache_split
    from imgclf.training.probe import fit_probe

    data = prep.split_data()
    weights = class_weights(cfg.class_weight, spec.labels[spec.indices("train")], len(spec.classes))
    meta.probe, maps = fit_probe(
        net,
        prep.images,
        data.train,
        data.val,
        spec.labels,
        prep.mean,
        prep.std,
        prep.device,
        amp_dtype(prep.device, cfg.amp),
        bool(cfg.channels_last),
        console,
        weights,
        keep_lower=cache_split(net, cfg, len(data.train)),
        clock=stage_clock(cfg, started, data),
        share=1 / (1 + costly_candidates(cfg)),
        seed=cfg.seed,
    )
    save_weights(run_dir / "model.safetensors", net.state_dict())  # shipped unless fine-tuning beats it
    write_json(probe_file, meta.probe)
    return maps


def _fit(
    run_dir: Path,
    prep: steps.Prepared,
    net,
    meta: RunMeta,
    maps,
    resume: bool,
    on_epoch,
    console,
    started=None,
    skip=None,
):
    """The epochs (training.loop.fit), judged against the probe's validation score, unless `skip`
    says why not (training.candidates.skip_fine_tuning), and the other candidates' verdict; fills in
    model.json's "training" record. Returns (the fit's result, the kept network), whose weights are
    in RUN/model.safetensors."""
    from imgclf.training import candidates as extra
    from imgclf.training.leaderboard import ProbeGuard, record_leaderboard
    from imgclf.training.loop import FitResult, fit

    cfg = prep.cfg
    key = extra.criterion(cfg)
    probe = meta.probe or {}
    probe_val = probe.get(key, float("nan"))
    baseline = None if np.isnan(probe_val) else (probe_val, probe["val_loss"])
    others = prep.candidates or []
    lead = extra.best(others, key)
    if skip:
        console.print(f"fine-tuning skipped: {skip}")
        result = FitResult(criterion="accuracy" if key == "val_acc" else "balanced accuracy", stopped_early=True)
        result.best_val_acc, result.best_val_loss = baseline
    else:
        guard = ProbeGuard(run_dir, cfg, baseline)
        result = fit(
            net,
            cfg,
            prep.split_data(),
            prep.policy,
            run_dir,
            prep.device,
            console,
            resume=resume,
            on_epoch=on_epoch,
            baseline=baseline,
            feature_maps=maps,
            started=started,
            # The evaluation after training runs the kept model: a slower candidate at least as good as
            # the probe on validation may yet win (one behind it cannot: the epochs start from the probe).
            image_seconds=max(
                [probe.get("image_seconds") or 0.0]
                + [c.row.get("image_seconds", 0.0) for c in others if not c.row[key] < probe_val]
            )
            or None,
        )
        which = "the last epoch's weights kept (keep=last): val" if cfg.keep == "last" else "best val"
        console.print(
            f"trained {len(result.history)} epochs in {result.train_seconds:.1f}s; {which} {result.criterion} "
            f"{result.best_val_acc:.4f} at epoch {result.best_epoch}{'' if result.best_epoch else ' (the linear probe)'}"
        )
        net = guard.after(result, net, len(prep.split_data().val), console)
    won = lead if lead is not None and extra.kept(lead.row, result.best_val_acc, result.best_val_loss, key) else None
    if won is not None:
        net = extra.keep(run_dir, prep, won, meta, console)
    meta.training = TrainingRecord(
        epochs_run=len(result.history),
        best_epoch=result.best_epoch,
        best_val_acc=won.row[key] if won else result.best_val_acc,
        criterion=result.criterion,
        stopped_early=result.stopped_early,
        train_seconds=round(result.train_seconds + probe.get("seconds", 0) + sum(c.row["seconds"] for c in others), 2),
        first_step_seconds=round(result.first_step_seconds, 2),
        compile=result.compile,  # training.timing.CompileChoice: on or off, from which epoch, why
        device=str(prep.device),
        preset=cfg.preset,
        stages=result.stages,
        plan=result.plan,  # a budgeted run's (training.budget): its budget, how its cooldown came
    )
    n_val = len(prep.spec.indices("val"))
    meta.leaderboard = record_leaderboard(run_dir, cfg, probe, result, console, others, won, n_val)
    return result, net

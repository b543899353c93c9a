"""`imgclf train BOXES/`: a detector run folder from photos with box annotations.

    RUN/detector.json           classes, the presence threshold, metrics, settings, where it started
    RUN/detector.safetensors    the weights: the best epoch by validation score (finetune.score); with
                                under FEW_VAL validation photos the last epoch (kept_weights)
    RUN/splits.csv  history.csv  report.html  pr_curve.png  test_photos/
    RUN/train_state.safetensors the last epoch's state while training (resume), removed at the end

The detector in RUN scans, serves and exports as the pretrained one does: `imgclf scan RUN photos/`.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from imgclf.core.errors import UserError
from imgclf.core.files import read_json, write_json, write_text
from imgclf.detection import boxes as B
from imgclf.detection import finetune as FT
from imgclf.store.run_meta import DetectorMeta

FORMAT = 1  # of detector.json
# Validation photos under which they cannot rank epochs: the run trains its whole schedule and keeps the
# last epoch (kept_weights), and says its threshold is rough. 15 and 30-33 were seen to decide the epoch
# and the threshold roughly (docs/benchmarks/presence.md); 50 is a round bar above them, not measured.
FEW_VAL = 50
BOOTSTRAP_S = 0.5  # seconds a validation photo adds to kept_weights' bootstrap (~7 s for 15 photos of 30 boxes)
FINISH_S = 5.0  # seconds a budget keeps for what follows training beyond scoring photos (weights, report)


def train_detector(
    data: str | Path,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    verbose: bool = True,
    **options,
) -> Path:
    """Fine-tune the pretrained detector on the annotated photos in `data`; returns the run folder.
    options: epochs, batch_size, lr, patience, seed, time_budget (finetune.Settings)."""
    from imgclf.core.clock import run_started
    from imgclf.core.device import pick_device
    from imgclf.detection.annotations import read_boxes
    from imgclf.detection.splits import split
    from imgclf.settings.checks import parse_duration
    from imgclf.store.runs import new_run_dir

    clock_started = run_started()  # the command's start: a --time-budget is the wall time the user waits
    unknown = sorted(set(options) - set(FT.Settings.__dataclass_fields__))
    if unknown:
        raise UserError(f"--{unknown[0].replace('_', '-')} does not apply to training a detector (boxes in {data})")
    recorded = Path(resume) / "detector-training.json" if resume else None
    base = read_json(recorded)["settings"] if recorded and recorded.is_file() else {}  # a resumed run keeps its own
    if "time_budget" in options:
        options["time_budget"] = parse_duration(options["time_budget"]) or None  # auto and off: no clock
    settings = FT.Settings(**{**base, **{k: v for k, v in options.items() if v is not None}})
    boxes = read_boxes(data)
    run = Path(resume) if resume else Path(out) if out else new_run_dir(data)
    if not resume and (run / "detector.json").exists():
        raise UserError(f"{run} already holds a detector run: choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    parts, how = split(boxes.photos, settings.seed)
    say(
        f"detector: {len(boxes.photos)} photos with {sum(len(p.boxes) for p in boxes.photos)} boxes "
        f"({boxes.format}; classes {', '.join(boxes.classes)}); split {len(parts['train'])}/{len(parts['val'])}/"
        f"{len(parts['test'])} train/val/test ({how})"
    )
    few = len(parts["val"]) < FEW_VAL
    keep = (
        f"{settings.epochs} epochs, keep the last (the start if the validation photos are clearly for it)"
        if few
        else f"{settings.epochs} epochs max, keep the best epoch by validation (AP@0.5 + mAP) / 2, stop after "
        f"{settings.patience} without a better one once the rate is under half its peak"
    )
    say(
        f"settings: start from the pretrained SSDLite person detector, {keep}, batch {settings.batch_size}, "
        f"AdamW lr {settings.lr:g}, BatchNorm frozen, IoU crop + flip + photometric augmentation"
        + (f", time budget {settings.time_budget:g}s" if settings.time_budget else "")
    )
    if few:
        say(
            f"note: {len(parts['val'])} validation photos cannot rank epochs and place the presence threshold only "
            f"roughly; {FEW_VAL} or more (more labelled photos, or a valid/ folder) decide both"
        )
    for name, skipped in getattr(boxes, "skipped", []):
        say(f"skipped {name}: {skipped}")
    write_splits(run / "splits.csv", parts)
    if not resume:  # what `imgclf train --resume RUN` needs to find the photos again
        write_json(run / "detector-training.json", {"data": str(Path(data).resolve()), "settings": settings.__dict__})
    dev = pick_device(device)
    torch.manual_seed(settings.seed)
    net = FT.start_from_pretrained(boxes.classes).to(dev)
    from imgclf.core.errors import resumable

    with resumable(f"imgclf train --resume {run}"):
        best, kept = fit(net, parts, boxes, settings, run, dev, say, Clock(clock_started, settings.time_budget))
    net.load_state_dict(best)
    say(
        f"kept epoch {kept['epoch']}{' (the pretrained start)' if kept['epoch'] == 0 else ''}: "
        f"val AP@0.5 {kept['val_ap50']:.3f}, mAP {kept['val_map']:.3f}"
    )
    return finish(run, net, parts, boxes, settings, data, say, how, kept)


@dataclass
class Clock:
    """A stated --time-budget: wall seconds from the command's start to the finished run folder."""

    started: float
    budget: float | None
    finish_s: float = FINISH_S  # what follows the last epoch: the threshold, the test photos, the report
    epoch_s: float | None = None  # an epoch with its validation, as last measured
    spent_before: float = 0.0  # seconds an interrupted earlier process spent on this run

    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    def left(self) -> float:
        return self.budget - self.spent()

    def state(self) -> dict:
        """What a resumed run's clock carries on from (the training state's info)."""
        return {"spent": round(self.spent(), 3), "epoch_s": self.epoch_s, "finish_s": self.finish_s}

    def carry_on(self, info: dict) -> None:
        """A resumed run has what its first process left of the budget, not the whole of it again."""
        self.spent_before = info.get("spent", 0.0)
        self.epoch_s = info.get("epoch_s", self.epoch_s)
        self.finish_s = info.get("finish_s", self.finish_s)

    def affords_another(self) -> bool:
        return not self.budget or self.epoch_s is None or self.left() >= self.epoch_s + self.finish_s


def plan(net, loader, parts, settings, clock: Clock, val_s: float, dev, say) -> int:
    """The epochs a time budget affords, from a timed training step and the start's validation: fixed
    before the first step, so that the one-cycle schedule ends on a low rate within the budget."""
    per_photo = val_s / max(1, len(parts["val"]))  # the test photos are scored twice, and by the start
    clock.finish_s = per_photo * (len(parts["val"]) + 3 * len(parts["test"])) + FINISH_S
    if len(parts["val"]) < FEW_VAL:  # kept_weights may weigh the start against an epoch: 2 passes, a bootstrap
        clock.finish_s += 2 * val_s + BOOTSTRAP_S * len(parts["val"])
    clock.epoch_s = len(loader) * FT.step_seconds(net, loader, dev) + val_s
    epochs = int(max(0, min(settings.epochs, (clock.left() - clock.finish_s) // clock.epoch_s)))
    kept = ": the pretrained start is kept" if epochs == 0 else ""
    say(
        f"time budget {clock.budget:g}s: {epochs} of at most {settings.epochs} epochs fit "
        f"(~{clock.epoch_s:.0f}s each with its validation){kept}"
    )
    return epochs


def fit(net, parts, boxes, settings, run: Path, dev, say, clock: Clock) -> tuple[dict, dict]:
    """Train with validation after every epoch (epoch 0: the untrained start); the best weights by
    validation score (finetune.score) and that epoch's history row."""
    from imgclf.store.checkpoint import load_training_state, save_training_state

    loader = torch.utils.data.DataLoader(
        FT.Photos(parts["train"], boxes.classes, settings.seed),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=len(parts["train"]) > settings.batch_size,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    FT.freeze_batchnorm(net)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-4)
    state_file = run / "train_state.safetensors"
    history, start = [], 1
    if state_file.exists():
        info = load_training_state(state_file, net, optimizer)
        history, start = info["history"], info["epoch"] + 1
        clock.carry_on(info)
        spent = f", {clock.spent_before:.0f}s of the {clock.budget:g}s budget spent" if clock.budget else ""
        say(f"resuming {run} after epoch {start - 1}{spent}")
    if not history:
        started = time.perf_counter()
        history.append({"epoch": 0, **validate(net, parts["val"], boxes, dev)})
        val_s = time.perf_counter() - started
        (run / "best.safetensors").unlink(missing_ok=True)
        save_best(run, net)
        say(f"epoch 0 (the pretrained start): val mAP {history[0]['val_map']:.3f}, AP@0.5 {history[0]['val_ap50']:.3f}")
        if clock.budget:  # the epochs it affords become the run's, so that a resumed run keeps the schedule
            settings.epochs = plan(net, loader, parts, settings, clock, val_s, dev, say)
            write_json(
                run / "detector-training.json",
                {**read_json(run / "detector-training.json"), "settings": settings.__dict__},
            )
        save_training_state(state_file, net, optimizer, {"epoch": 0, "history": history, **clock.state()})
    # Built after the state is loaded: the schedule continues from the steps already taken.
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", settings.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        settings.lr,
        total_steps=max(1, settings.epochs * len(loader)),
        pct_start=0.1,
        last_epoch=(start - 1) * len(loader) - 1,
    )
    ranks = len(parts["val"]) >= FEW_VAL  # can validation rank the epochs? Else the schedule runs to its end
    for e in range(start, settings.epochs + 1):
        best_epoch = best_row(history)["epoch"]
        if ranks and e - best_epoch > settings.patience and e > FT.ANNEALED * settings.epochs:
            say(f"stopped: no better validation score since epoch {best_epoch}")
            break
        if not clock.affords_another():
            say(f"stopped: the time budget leaves no room for epoch {e}")
            break
        started = time.perf_counter()
        row = FT.epoch(net, loader, optimizer, scheduler, dev)
        seconds = time.perf_counter() - started
        row = {"epoch": e, **row, **validate(net, parts["val"], boxes, dev), "seconds": round(seconds, 1)}
        clock.epoch_s = time.perf_counter() - started
        better = FT.score(row) > FT.score(best_row(history))
        history.append(row)
        if better and ranks:  # else the last epoch is kept (kept_weights): the best is never read
            save_best(run, net)
        save_training_state(state_file, net, optimizer, {"epoch": e, "history": history, **clock.state()})
        say(
            f"epoch {e}: loss {row['cls_loss']:.3f} + {row['box_loss']:.3f} box, val mAP {row['val_map']:.3f}, "
            f"AP@0.5 {row['val_ap50']:.3f}{'  (best)' if better else ''}  {seconds:.0f}s"
        )
    write_history(run / "history.csv", history)
    return kept_weights(net, history, parts["val"], boxes, run, dev, say)


def kept_weights(net, history, photos, boxes, run: Path, dev, say) -> tuple[dict, dict]:
    """The weights fine-tuning hands back, and their history row. With FEW_VAL validation photos or more,
    the best epoch by validation score. With fewer, which cannot rank epochs, the last one (the schedule
    run to its end on a low rate, as a classifier's keep=last), unless the photos are clearly for the
    untrained start (finetune.CLEARLY of their bootstrap resamples, 5-20 s). On the street scenes (15
    validation photos, split seeds 0-2) the last epoch gained test AP@0.5 on the start on every split
    (+1.2 to +2.3 points), where the best by validation had kept the start or gained 0.4."""
    from imgclf.detection.annotations import to_coco
    from imgclf.detection.metrics import share_better
    from imgclf.store.checkpoint import load_weights

    if len(photos) >= FEW_VAL or len(history) == 1:
        kept = best_row(history)
        return load_weights(run / "best.safetensors"), {k: kept[k] for k in ("epoch", "val_ap50", "val_map")}
    last, kept = {k: v.detach().clone() for k, v in net.state_dict().items()}, history[-1]
    start = FT.start_from_pretrained(boxes.classes).to(dev)
    said = [answers(n, photos, boxes.classes, dev) for n in (start, net)]
    share = share_better(to_coco(boxes, photos), *said, boxes.classes, lambda r: FT.score(_row(r)))
    if share >= FT.CLEARLY:
        say(
            f"the pretrained start scores higher than the last epoch on {share:.0%} of {len(photos)} validation "
            "photos' resamples: keeping the start"
        )
        last, kept = start.state_dict(), history[0]
    return last, {k: kept[k] for k in ("epoch", "val_ap50", "val_map")}


def _row(got: dict) -> dict:
    return {"val_map": got["map"], "val_ap50": got["ap50"]}


def best_row(history: list[dict]) -> dict:
    """The epoch with the best validation score (finetune.score); the earliest of equals."""
    return max(history, key=lambda r: (FT.score(r), -r["epoch"]))


def save_best(run: Path, net, name: str = "best.safetensors") -> None:
    from imgclf.store.checkpoint import save_weights

    save_weights(run / name, net.state_dict())


def as_detector(net, classes: list[str], threshold: float, dev):
    from imgclf.detection.detector import Detector
    from imgclf.models.person.anchors import DecodedSSD

    positive = next((c for c in classes if c.lower() in ("person", "people", "pedestrian", "human")), classes[0])
    model = DecodedSSD(net).to(dev).eval()
    return Detector(model, classes, "fine-tuned", threshold=threshold, positive=positive, device=dev)


def answers(net, photos, classes, dev, threshold: float = 0.01) -> list[dict]:
    """The detector's answers on labelled photos (every box down to `threshold`, for AP)."""
    from imgclf.data.images import read_rgb

    det = as_detector(net, classes, threshold, dev)
    was = net.training
    net.eval()
    try:
        return [det.detect(read_rgb(p.path)) for p in photos]
    finally:
        net.train(was)


def validate(net, photos, boxes, dev) -> dict:
    from imgclf.detection.annotations import to_coco
    from imgclf.detection.metrics import coco_eval

    got = coco_eval(to_coco(boxes, photos), answers(net, photos, boxes.classes, dev), boxes.classes)
    return {"val_map": got["map"], "val_ap50": got["ap50"]}


def finish(run: Path, net, parts, boxes, settings, data, say, split_how: str = "", kept: dict | None = None) -> Path:
    """Choose the presence threshold on validation, score the test photos (and the pretrained start
    on them), write detector.json, the weights, the report; drop the training state."""
    from imgclf.detection import metrics
    from imgclf.detection.annotations import to_coco
    from imgclf.detection.detector import THRESHOLD
    from imgclf.detection.metrics import coco_eval_at, top_scores
    from imgclf.detection.report import write_report
    from imgclf.models.person import weights
    from imgclf.store.checkpoint import save_weights

    dev = next(net.parameters()).device
    probe = as_detector(net, boxes.classes, THRESHOLD, dev)
    positive = probe.positive
    val = answers(net, parts["val"], boxes.classes, dev)
    chosen = metrics.presence(top_scores(val, positive), [positive in p.labels for p in parts["val"]], THRESHOLD)
    threshold = chosen["threshold"] if chosen["threshold"] is not None else THRESHOLD
    test = answers(net, parts["test"], boxes.classes, dev)
    truth = to_coco(boxes, parts["test"])
    result = {
        "test": coco_eval_at(truth, test, boxes.classes, threshold),
        "test_presence": {
            **metrics.presence(top_scores(test, positive), [positive in p.labels for p in parts["test"]]),
            "balanced_accuracy_at_threshold": metrics.balanced_accuracy(
                top_scores(test, positive), [positive in p.labels for p in parts["test"]], threshold
            ),
        },
        "val_presence": chosen,
        "kept_epoch": kept,  # the epoch whose weights these are, with its validation AP
    }
    start = FT.start_from_pretrained(boxes.classes).to(dev)
    result["pretrained_test"] = coco_eval_at(
        truth, answers(start, parts["test"], boxes.classes, dev), boxes.classes, THRESHOLD
    )
    save_weights(run / "detector.safetensors", net.state_dict())
    meta = DetectorMeta(
        format=FORMAT,
        classes=boxes.classes,
        positive=positive,
        threshold=threshold,
        threshold_from=threshold_from(chosen),
        flip=probe.flip,  # the views the threshold and the test scores were found with
        split=split_how,
        started_from={"package": f"{weights.PACKAGE} {weights.VERSION}", "sha256": weights.SHA256},
        data=str(Path(data).resolve()),
        annotations=boxes.format,
        settings=settings.__dict__,
        metrics=result,
    )
    write_json(run / "detector.json", meta.to_dict())
    write_report(run, meta, parts["test"], [B.at_threshold(a, threshold) for a in test])  # not detected again
    for f in ("train_state.safetensors", "best.safetensors"):
        (run / f).unlink(missing_ok=True)
    t, p = result["test"], result["pretrained_test"]
    say(
        f"test: AP@0.5 {t['ap50']:.3f} (pretrained start {p['ap50']:.3f}), mAP {t['map']:.3f} "
        f"(start {p['map']:.3f}); presence threshold {threshold:.3f}"
    )
    say(f"report: {run / 'report.html'}")
    return run


def threshold_from(chosen: dict) -> str:
    if chosen["threshold"] is None:
        return "the pretrained detector's (validation holds photos of one kind only)"
    if chosen.get("kept_prior"):
        return "the pretrained detector's (validation's best balanced accuracy beat it by one photo or less)"
    return "validation presence (best balanced accuracy)"


def write_splits(path: Path, parts: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "split"])
    for name, photos in parts.items():
        for p in photos:
            w.writerow([p.path, name])
    write_text(path, buf.getvalue())


def write_history(path: Path, history: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(history)
    write_text(path, buf.getvalue())

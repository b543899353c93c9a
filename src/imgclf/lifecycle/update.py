"""`imgclf update`: retrain a registered model on its recorded data plus new labeled images, without
forgetting, and judge the result against the model it would replace.

    imgclf.update("production", "new_photos/")                   # registry/ next to runs/
    imgclf.update("production", from_inbox=True, promote=True)   # the feedback inbox; promote if it wins

The steps, each printed and recorded in RUN/update.json:
1. data: the version's manifest (path, sha256, label, split), every file re-hashed (changed or missing
   ones are left out and listed); the new images, exact copies of old ones dropped (a copy with
   another label is a conflict: dropped too, and named); the data doctor over the merged set.
2. splits: old images keep their split, so the old test split stays FROZEN (never trained on); the
   new ones are split train/val/test per class, seeded, and their test slice is kept apart
   (RUN/new_test.csv) so that new classes are judged on it.
3. training: `finetune` warm-starts from the version's weights (the head grown by class name, see
   training.warmstart) at its learning rate (x lr_factor) for its epochs, replaying
   its training images (a class-balanced sample when there are many); `full` retrains from scratch
   with the version's recorded config.yaml on all of it.
4. the run becomes a registry version with parent = the old one and alias `candidate`, and is
   compared with the parent on the frozen test split and on the new test slice (evaluation.compare);
   the verdict goes into RUN/compare.json and the report. `promote=True` promotes only when it passes.
"""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import write_json, write_text
from imgclf.data.paths import resolve
from imgclf.lifecycle.update_data import by_split, gather_rows, resolve_parent, split_counts
from imgclf.store.runs import moved_root, new_run_dir, recorded_root

MODES = ("finetune", "full")
# finetune: the version's learning rate x LR_FACTOR for its full epochs (a warm restart). Measured on
# flowers5 (bench/update.py, 3 classes + 2): 0.5x for half the epochs left v2 under-trained (new classes
# 65%, five-class 64%); 1.0x for half 72% / 69%; 1.0x for all 79% / 72%, as good as retraining from
# scratch (76% / 73%). The old classes' frozen test images scored 62-63% five-way in all three.
LR_FACTOR = 1.0
REPLAY_MIN = 1000  # finetune replays every old training image up to max(this, 2 x the new ones)


def update(
    ref,
    new_data=None,
    *,
    registry: str | Path = "registry",
    from_inbox: bool | str | Path = False,
    mode: str = "finetune",
    promote: bool = False,
    epochs: int | None = None,
    lr_factor: float = LR_FACTOR,
    replay: int | None = None,
    tolerance: float = 0.02,
    out: str | Path | None = None,
    seed: int = 0,
    doctor: bool = True,
    mlflow: str | None = None,
    verbose: bool = True,
    data_root: str | Path | None = None,
    **settings,
) -> dict:
    """Retrain version `ref` (a number or alias of `registry`; or a run folder, then nothing is
    registered) on its recorded data plus `new_data` (any layout `train` reads; a single class is
    fine) or the feedback inbox (`from_inbox=True`: REGISTRY/inbox, or a folder). `data_root`: where
    the version's recorded data is now, when it moved since registration. Other keywords are
    TrainConfig settings for the new run. Returns {run, version, parent, mode, counts, compare,
    verdict, promoted}.

        r = imgclf.update("production", "more_photos/", promote=True)
        r["version"], r["verdict"]["promote"], r["promoted"]
    """
    from rich.console import Console

    from imgclf import workflows

    console = Console(quiet=not verbose, highlight=False, soft_wrap=True)
    if mode not in MODES:
        raise UserError(f"--mode must be finetune or full, not {mode!r}")
    if (new_data is None) == (not from_inbox):
        raise UserError("give the new labeled images: imgclf update VERSION NEW_DATA, or --from-inbox")
    parent_run, version, registry = resolve_parent(ref, registry)
    where = f"version {version} ({parent_run})" if version is not None else str(parent_run)
    console.print(f"update of {where}, mode {mode}")

    old, old_report, new, dup_report, source = gather_rows(
        parent_run, version, registry, new_data, from_inbox, console, data_root
    )
    groups, doctor_summary = _doctor(old, new, console) if doctor else ([], None)
    _assign_splits(new, seed, groups, {r["path"]: r["split"] for r in old})
    classes = sorted({r["label"] for r in old} | {r["label"] for r in new})
    added = sorted({r["label"] for r in new} - {r["label"] for r in old})
    console.print(
        f"  new data: {len(new)} images of {len({r['label'] for r in new})} class(es) ({by_split(new)})"
        + (f"; new classes: {', '.join(added)}" if added else "")
    )

    replayed = _replay(old, new, mode, replay, seed)
    n_old_train = sum(r["split"] == "train" for r in old)
    console.print(
        f"  replay: {len(replayed)} of the {n_old_train} old training images"
        + (" (all of them)" if len(replayed) == n_old_train else " (class-balanced sample)")
    )
    rows = [r for r in old if r["split"] != "train"] + replayed + new

    run_dir = Path(out) if out else new_run_dir(f"{parent_run.name}-update")
    if (run_dir / "model.json").exists():
        raise UserError(f"{run_dir} already holds a run; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    data_csv = run_dir / "update_data.csv"
    _write_rows(data_csv, rows, ("path", "sha256", "label", "split", "origin"))
    _write_rows(run_dir / "new_test.csv", [r for r in new if r["split"] == "test"], ("path", "label"))

    parent_cfg = _base_config(parent_run, run_dir)
    choices = _training_choices(parent_run, mode, epochs, lr_factor, settings)
    console.print("  training: " + ", ".join(f"{k}={v}" for k, v in choices.items() if k != "init_from"))
    record = {
        "parent": {
            "version": version,
            "run": str(parent_run),
            "registry": str(registry) if version else None,
            "data_root": str(moved_root(data_root)) if data_root is not None else None,
        },
        "mode": mode,
        "source": {"kind": "inbox" if from_inbox else "data", "path": str(source)},
        "classes": classes,
        "new_classes": added,
        "counts": {
            "old": split_counts(old),
            "new": split_counts(new),
            "replayed": len(replayed),
            "old_train": n_old_train,
        },
        "recorded_data": old_report,
        "duplicates": dup_report,
        "doctor": doctor_summary,
        "training": {**choices, "lr_factor": lr_factor if mode == "finetune" else None},
    }
    write_json(run_dir / "update.json", record)

    run = workflows.train(data_csv, config=parent_cfg, out=run_dir, verbose=verbose, **{**settings, **choices})
    result = {
        "run": str(run.path),
        "version": None,
        "parent": version,
        "mode": mode,
        "counts": record["counts"],
        "new_classes": added,
        "promoted": False,
    }

    event = _judge(run.path, parent_run, version, registry, new, tolerance, promote, result, console, data_root)
    record["result"] = {k: result[k] for k in ("version", "promoted", "worse_classes")} | {
        "promote": result["verdict"]["promote"]
    }
    write_json(run.path / "update.json", record)
    if mlflow:
        _track(mlflow, run.path, registry, result, event, console)
    console.print(f"report: {run.path / 'report.html'}")
    return result


def _judge(
    run: Path,
    parent: Path,
    version: int | None,
    registry: Path,
    new: list[dict],
    tolerance: float,
    promote: bool,
    result: dict,
    console,
    data_root=None,
) -> dict | None:
    """Register the run as `candidate`, compare it with its parent on the frozen test split and the
    new test slice, rebuild its report with the comparison, and promote it when asked and the rule
    passes. Fills `result`; returns the promotion event (None when nothing was promoted)."""
    from imgclf import workflows
    from imgclf.lifecycle.compare import compare
    from imgclf.store import registry as reg

    if version is not None:
        info = reg.add(run, registry, parent=version, alias="candidate")
        result["version"] = info["version"]
        console.print(f"registered as version {info['version']} (parent {version}), alias candidate")
    new_test = [(r["path"], r["label"]) for r in new if r["split"] == "test"]
    cmp = compare(
        parent, run, data=new_test or None, tolerance=tolerance, out=run / "compare.json", data_root=data_root
    )
    verdict = cmp["verdict"]
    worse = _worse_classes(cmp)
    result.update(
        compare=cmp["path"],
        verdict=verdict,
        worse_classes=worse,
        slices={
            k: {"n": s["n"], "a": s["accuracy"]["a"]["value"], "b": s["accuracy"]["b"]["value"]}
            for k, s in cmp["slices"].items()
        },
    )
    for k, s in result["slices"].items():
        console.print(f"  {k}: {s['n']} images, accuracy {s['a']:.1%} (parent) -> {s['b']:.1%} (candidate)")
    workflows.report(run, verbose=False)  # again, now with the comparison section
    console.print(("[bold green]PROMOTE[/] " if verdict["promote"] else "[bold yellow]KEEP[/] ") + verdict["paragraph"])
    if worse:
        console.print("  classes that got worse: " + ", ".join(f"{c} ({d:+.1%} on the {w})" for c, d, w in worse))
    if not promote:
        return None
    if version is None:
        console.print("not promoted: a plain run folder has no registry (update a registry version to promote)")
        return None
    if not verdict["promote"]:
        current = reg.aliases_state(Path(registry))["aliases"].get("production")
        console.print(f"not promoted: production stays {f'version {current}' if current else 'unset'}")
        return None
    event = reg.promote(registry, result["version"])
    result["promoted"] = True
    console.print(f"production -> version {result['version']} (undo: imgclf registry rollback --registry {registry})")
    return event


# ---- the parent and its data -------------------------------------------------------------------


# ---- splits, replay and the training settings ---------------------------------------------------


def _assign_splits(
    new: list[dict],
    seed: int,
    groups: list[list[str]] = (),
    old_split: dict | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
) -> None:
    """Unassigned new images: per class, shuffled with `seed`, test_frac to test and val_frac to val,
    but a class keeps at least one training image (and a test image from 3 images on, a val one
    from 5). The test share is larger than train's default: a slice of new images is the only
    evidence about new classes, and it must hold a few of each.

    `groups` (paths of near-duplicates, from the doctor) move as one: a group holding a recorded
    image puts its new images in that image's split (a near-copy of a frozen test image must not be
    trained on), and the other groups land whole in one split, so no copy leaks across them."""
    old_split = old_split or {}
    by_path = {r["path"]: r for r in new if not r["split"]}
    units, seen = [], set()
    for g in groups:
        members = [by_path[p] for p in g if p in by_path and p not in seen]
        recorded = [old_split[p] for p in g if p in old_split]
        if recorded:  # the most protected split among the recorded copies
            split = min(recorded, key=("test", "val", "train").index)
            for r in members:
                r["split"] = split
        elif members:
            units.append(members)
        seen.update(r["path"] for r in members)
    units += [[r] for p, r in by_path.items() if p not in seen]
    rng = random.Random(seed)
    by_class = defaultdict(list)
    for unit in units:
        by_class[unit[0]["label"]].append(unit)
    for label in sorted(by_class):
        class_units = sorted(by_class[label], key=lambda u: u[0]["path"])
        rng.shuffle(class_units)
        n = sum(len(u) for u in class_units)
        n_test = max(1, round(n * test_frac)) if n >= 3 else 0
        n_val = max(1, round(n * val_frac)) if n >= 5 else 0
        done = 0
        for k, unit in enumerate(class_units):
            last = k == len(class_units) - 1
            split = "test" if done < n_test else "val" if done < n_test + n_val else "train"
            if last and split != "train" and not any(r["split"] == "train" for u in class_units for r in u):
                split = "train"  # a class keeps at least one training image
            for r in unit:
                r["split"] = split
            done += len(unit)


def _replay(old: list[dict], new: list[dict], mode: str, replay: int | None, seed: int) -> list[dict]:
    """The old training images trained on again. Full retraining uses all; fine-tuning all of them
    up to a budget (max(REPLAY_MIN, 2 x the new training images), or `replay`), else a class-balanced
    sample of the budget: every old class stays represented, so none is forgotten for lack of examples."""
    train = [r for r in old if r["split"] == "train"]
    n_new = sum(r["split"] == "train" for r in new)
    budget = len(train) if mode == "full" else (replay if replay is not None else max(REPLAY_MIN, 2 * n_new))
    if budget < 0:
        raise UserError(f"--replay must be 0 or more old images, not {budget}")
    if len(train) <= budget:
        return train
    rng = random.Random(seed)
    by_class = defaultdict(list)
    for r in sorted(train, key=lambda r: r["path"]):
        by_class[r["label"]].append(r)
    for rows in by_class.values():
        rng.shuffle(rows)
    # Round-robin over classes: equal shares, a small class's unused share going to the others.
    picked, k = [], 0
    while len(picked) < budget:
        for rows in by_class.values():
            if k < len(rows) and len(picked) < budget:
                picked.append(rows[k])
        k += 1
    return picked


def _base_config(parent: Path, run_dir: Path) -> Path:
    """RUN/parent_config.yaml: the parent's resolved settings (what `full` retrains with, and what
    `finetune` starts from), minus the parent's own warm start."""
    from imgclf.settings.config import dump_yaml, load_config

    d = load_config(parent / "config.yaml").to_dict()
    d["init_from"] = None
    write_text(run_dir / "parent_config.yaml", dump_yaml(d))
    return run_dir / "parent_config.yaml"


def _training_choices(parent: Path, mode: str, epochs: int | None, lr_factor: float, settings: dict) -> dict:
    """The settings that differ from the parent's recorded config.yaml (everything else is reused)."""
    from imgclf.settings.config import load_config

    cfg = load_config(parent / "config.yaml")
    if mode == "full":
        return {"epochs": epochs} if epochs else {}
    if not 0 < lr_factor <= 1:
        raise UserError(f"--lr-factor must be in (0, 1], not {lr_factor}")
    n_epochs = epochs or cfg.epochs
    # Cosine with a short warm-up: the weights are already good, so no long ramp (onecycle's 25%)
    # that would first push them far away at the peak rate.
    # A parent made by the pretrained recipe (a linear probe, then fine-tuning with BatchNorm frozen)
    # is updated the same way: the probe refits the whole head on the parent's own features over the
    # old and new images, and BatchNorm stays frozen. Without it (the grown head kept, new rows at the
    # mean of the old ones, BatchNorm on batch statistics) an update of a Lite0 flowers run
    # (bench/update.py, 3 classes + 2) scored its old classes' frozen test images 0.697, against v1's 0.861.
    # A from-scratch parent keeps its grown head: there is no frozen-feature probe to refit it with.
    return {
        "init_from": str(parent.resolve()),
        "epochs": n_epochs,
        "lr": settings.get("lr") or round((cfg.lr or 1e-3) * lr_factor, 8),
        "schedule": "cosine",
        "warmup_epochs": min(1.0, n_epochs / 5),
        "freeze_epochs": 0,
        "probe": bool(cfg.probe),
    }


def _doctor(old: list[dict], new: list[dict], console) -> tuple[list[list[str]], dict]:
    """The data doctor over the merged set, before the new images are split: near-duplicates the
    hash check cannot see. Returns the duplicate groups (paths, for `_assign_splits`) and a summary."""
    import numpy as np

    from imgclf.data.discover import DatasetSpec
    from imgclf.data.doctor import diagnose, duplicate_kinds

    rows = old + new
    classes = sorted({r["label"] for r in rows})
    spec = DatasetSpec(
        "update",
        "manifest",
        classes,
        [r["path"] for r in rows],
        np.array([classes.index(r["label"]) for r in rows], dtype=np.int64),
        np.array([r["split"] or "new" for r in rows], dtype=object),
    )
    findings = diagnose(spec, workers=None, progress=False)
    found = findings["near_duplicates"] + findings["exact_duplicates"]
    is_new = {r["path"] for r in new}
    touching = [g for g in found if any(f["path"] in is_new for f in g["files"])]
    joined = [g for g in touching if any(f["path"] not in is_new for f in g["files"])]
    conflicts = duplicate_kinds(touching)["conflicting_labels"]
    s = findings["summary"]
    console.print(
        f"  doctor: {s['images']} images, {s['unreadable']} unreadable; {len(touching)} near-duplicate "
        f"group(s) with new images ({len(joined)} also with recorded ones: the new copies take the "
        f"recorded one's split), {len(conflicts)} with conflicting labels"
    )
    for g in conflicts[:5]:
        console.print(
            "[yellow]warning[/]: near-duplicates with different labels: "
            + ", ".join(f"{f['path']} ({f['label']})" for f in g["files"])
        )
    return (
        [[f["path"] for f in g["files"]] for g in found],
        {
            "summary": s,
            "new_groups": len(touching),
            "new_old_groups": len(joined),
            "conflicting_groups": len(conflicts),
        },
    )


def _worse_classes(cmp: dict) -> list[tuple[str, float, str]]:
    """(class, recall change, slice) for every class whose recall fell on some slice, worst first."""
    worse = [
        (c, r["diff"], where) for where, s in cmp["slices"].items() for c, r in s["per_class"].items() if r["diff"] < 0
    ]
    return sorted(worse, key=lambda t: t[1])


def _track(uri: str, run: Path, registry: Path, result: dict, event: dict | None, console) -> None:
    """Mirror the candidate (and the registry, after a promotion) to MLflow through imgclf.lifecycle.tracking."""
    try:
        from imgclf.lifecycle import tracking
    except ImportError:
        console.print("[yellow]warning[/]: --mlflow: imgclf.lifecycle.tracking is not available; nothing logged")
        return
    tracking.log_run(
        run,
        uri,
        tags={
            "parent_version": str(result["parent"]),
            "version": str(result["version"]),
            "promoted": str(result["promoted"]),
        },
    )
    if result["version"] is not None:
        tracking.log_registry_event(registry, event, uri)


# ---- small helpers ------------------------------------------------------------------------------


def _write_rows(path: Path, rows: list[dict], cols: tuple[str, ...]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    write_text(path, buf.getvalue())


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def new_test_rows(run: str | Path, data_root: str | Path | None = None) -> list[dict]:
    """The new data's test slice of an updated run (RUN/new_test.csv; its paths follow the run's data
    root to `data_root` when the data moved); [] for other runs. The rest of the run's test split
    (runs.test_split) is the parent's frozen one."""
    p = Path(run) / "new_test.csv"
    root, moved = recorded_root(Path(run)), moved_root(data_root)
    return [{**r, "path": resolve(r["path"], root, moved)} for r in _read_rows(p)] if p.is_file() else []

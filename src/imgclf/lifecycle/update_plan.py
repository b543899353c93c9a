"""How `imgclf update` trains: the new images' splits (their groups kept whole), the replay of old
training images, the settings of the warm start, and the doctor's look at old and new together."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.files import write_text

REPLAY_MIN = 1000  # finetune replays every old training image up to max(this, 2 x the new ones)


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


def replay_rows(old: list[dict], new: list[dict], mode: str, replay: int | None, seed: int) -> list[dict]:
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


def base_config(parent: Path, run_dir: Path) -> Path:
    """RUN/parent_config.yaml: the parent's resolved settings (what `full` retrains with, and what
    `finetune` starts from), minus the parent's own warm start."""
    from imgclf.settings.config import dump_yaml, load_config

    d = load_config(parent / "config.yaml").to_dict()
    d["init_from"] = None
    if default_budget(parent):  # chosen again for the update's own training images
        d["time_budget"] = d["epochs"] = None
    # Chosen for the parent's data, as train would choose them for the update's: a new class of 7 photos
    # beside classes of 120 is weighed as train weighs one (the parent's balanced classes had chosen none).
    d.update({k: v for k, v in AGAIN.items() if k not in given_settings(parent)})
    write_text(run_dir / "parent_config.yaml", dump_yaml(d))
    return run_dir / "parent_config.yaml"


AGAIN = {"class_weight": "auto", "keep": "auto", "patience": None}  # defaults that depend on the data


def given_settings(parent: Path) -> set[str]:
    """The settings the parent's user gave (choices.json, runs since 2026-11-30); for an older run all
    of them count as given, its defaults kept as they were."""
    from imgclf.core.files import read_json
    from imgclf.settings.config import TrainConfig

    if not (parent / "choices.json").is_file():
        return set(TrainConfig.__dataclass_fields__)
    return set(read_json(parent / "choices.json").get("given", []))


def default_budget(parent: Path) -> bool:
    """Whether the parent trained within a time budget that the defaults chose (neither --time-budget
    nor --epochs given; choices.json, runs since 2026-11-30): an update then has its budget chosen
    afresh for its own training images, as 60 ms an image of the parent's few would starve a large one."""
    from imgclf.settings.config import load_config

    if not (parent / "choices.json").is_file():
        return False
    given = given_settings(parent)
    return bool(load_config(parent / "config.yaml").time_budget) and not given & {"time_budget", "epochs"}


def training_choices(parent: Path, mode: str, epochs: int | None, lr_factor: float, settings: dict) -> dict:
    """The settings that differ from the parent's recorded config.yaml (everything else is reused)."""
    from imgclf.settings.config import load_config

    cfg = load_config(parent / "config.yaml")
    if mode == "full":
        return {"epochs": epochs} if epochs else {}
    if not 0 < lr_factor <= 1:
        raise UserError(f"--lr-factor must be in (0, 1], not {lr_factor}")
    # Cosine with a short warm-up: the weights are already good, so no long ramp (onecycle's 25%)
    # that would first push them far away at the peak rate.
    # A parent made by the pretrained recipe (a linear probe, then fine-tuning with BatchNorm frozen)
    # is updated the same way: the probe refits the whole head on the parent's own features over the
    # old and new images, and BatchNorm stays frozen. Without it (the grown head kept, new rows at the
    # mean of the old ones, BatchNorm on batch statistics) an update of a Lite0 flowers run
    # (bench/update.py, 3 classes + 2) scored its old classes' frozen test images 0.697, against v1's 0.861.
    # A from-scratch parent keeps its grown head: there is no frozen-feature probe to refit it with.
    choices = {
        "init_from": str(parent.resolve()),
        "lr": settings.get("lr") or round((cfg.lr or 1e-3) * lr_factor, 8),
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "freeze_epochs": 0,
        "probe": bool(cfg.probe),
    }
    if default_budget(parent) and not epochs:  # the time budget chosen for this update's data ends it
        return choices
    n_epochs = epochs or cfg.epochs
    return {**choices, "epochs": n_epochs, "warmup_epochs": min(1.0, n_epochs / 5)}


def check_new_data(old: list[dict], new: list[dict], console) -> tuple[list[list[str]], dict]:
    """The data doctor over the merged set, before the new images are split: near-duplicates the
    hash check cannot see. Returns the duplicate groups (paths, for `_assign_splits`) and a summary."""
    import numpy as np
    from rich.markup import escape  # paths and labels are the user's text

    from imgclf.data.doctor import diagnose, duplicate_kinds
    from imgclf.data.spec import DatasetSpec

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
            + escape(", ".join(f"{f['path']} ({f['label']})" for f in g["files"]))
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

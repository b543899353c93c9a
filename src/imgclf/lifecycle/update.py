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
import shlex
from pathlib import Path

from imgclf.core.errors import UserError, resumable
from imgclf.core.files import output_folder, write_json, write_text
from imgclf.data.paths import resolve
from imgclf.lifecycle.compare import promote_anyway, promote_command
from imgclf.lifecycle.update_data import by_split, feedback_inbox, gather_rows, resolve_parent, split_counts
from imgclf.lifecycle.update_plan import (
    _assign_splits,
    base_config,
    check_new_data,
    default_budget,
    replay_rows,
    training_choices,
)
from imgclf.settings.improve import TOLERANCE, UpdateSettings
from imgclf.store.inbox import summary
from imgclf.store.runs import moved_root, new_run_dir, recorded_root, refuse_finished_run


def update(ref, new_data=None, *, verbose: bool = True, **given) -> dict:
    """Retrain version `ref` (a number or alias of `registry`; or a run folder, then nothing is
    registered) on its recorded data plus `new_data` (any layout `train` reads; a single class is
    fine) or the feedback inbox (`from_inbox=True`: the `inbox` folder, else REGISTRY/inbox). `given`:
    settings.improve.UpdateSettings' settings (checked as declared: mode, epochs, lr_factor, replay,
    tolerance, out, seed, data_root, ...), and TrainConfig settings for the new run. Returns {run,
    version, parent, mode, counts, compare, verdict, promoted, not_learnt (new classes the candidate
    named none of the new test images of)}.

        r = imgclf.update("production", "more_photos/", promote=True)
        r["version"], r["verdict"]["promote"], r["promoted"]
    """
    from rich.console import Console
    from rich.markup import escape  # paths are the user's text, not markup

    from imgclf.settings.declare import declared

    own = {f.name for f, _ in declared(UpdateSettings)}
    u = UpdateSettings(**{k: v for k, v in given.items() if k in own})
    settings = {k: v for k, v in given.items() if k not in own}  # the new run's training settings
    registry, mode, promote, epochs, lr_factor, replay = u.registry, u.mode, u.promote, u.epochs, u.lr_factor, u.replay
    tolerance, out, seed, doctor, mlflow, data_root = u.tolerance, u.out, u.seed, u.doctor, u.mlflow, u.data_root
    from_inbox = (u.inbox or True) if u.from_inbox or u.inbox is not None else False  # --inbox: that inbox
    console = Console(quiet=not verbose, highlight=False, soft_wrap=True)
    if out is not None:  # before the data is gathered and hashed (minutes), as train checks its --out
        refuse_finished_run(out := output_folder(out, "--out"))
    if new_data is not None and from_inbox:
        raise UserError(f"give NEW_DATA ({new_data}) or the feedback inbox (--from-inbox, --inbox), not both")
    again = _command(ref, new_data, from_inbox, registry, promote, tolerance)  # what continues it after Ctrl-C
    parent_run, version, registry = resolve_parent(ref, registry)
    if new_data is None and not from_inbox:
        raise UserError(_nothing_new(ref, feedback_inbox(parent_run, registry)))
    if new_data is not None and not Path(new_data).expanduser().exists():  # before the recorded data is read
        raise UserError(f"new data not found: {new_data} (a folder with one sub-folder per class, or a CSV manifest)")
    where = f"version {version} ({parent_run})" if version is not None else str(parent_run)
    console.print(f"update of {escape(where)}, mode {mode}")
    if out is not None and (out / "update.json").is_file() and (out / "config.yaml").is_file():
        record, run = _resumed(out, parent_run, again, verbose, console)
        new = [{**r, "split": "test"} for r in new_test_rows(out)]
    else:
        data = _gather(
            parent_run, version, registry, new_data, from_inbox, data_root, doctor, mode, replay, seed, console
        )
        new = data["new"]
        choices = training_choices(parent_run, mode, epochs, lr_factor, settings)
        said = [f"{k}={v}" for k, v in choices.items() if k != "init_from"]
        if default_budget(parent_run) and not epochs:  # the parent's budget was chosen for its own data
            said.append("the time budget chosen for this update's training images, as the parent's was")
        console.print("  training: " + (", ".join(said) or "the parent's settings"))
        record = _record(version, parent_run, registry, data_root, mode, from_inbox, data, choices, lr_factor)
        settings = {**settings, **choices, "write_report": False}  # _judge writes it, with the comparison
        run = _train_candidate(out, parent_run, data, record, settings, again, verbose)
    result = {"run": str(run.path), "version": None, "parent": version, "mode": mode, "counts": record["counts"]}
    result.update(new_classes=record["new_classes"], promoted=False)

    event = _judge(run.path, parent_run, version, registry, new, tolerance, promote, result, console, data_root)
    record["result"] = {k: result[k] for k in ("version", "promoted", "worse_classes")} | {
        "promote": result["verdict"]["promote"]
    }
    write_json(run.path / "update.json", record)
    if mlflow:
        _track(mlflow, run.path, registry, result, event, console)
    console.print(f"report: {escape(str(run.path / 'report.html'))}")
    return result


def _nothing_new(ref, inbox: Path) -> str:
    """What to give when neither NEW_DATA nor --from-inbox was: the inbox's images when it holds some
    (feedback sent from the service or imported, which the user may think update takes by itself)."""
    what = f"give the new labeled images: imgclf update {shlex.quote(str(ref))} NEW_DATA"
    held = summary(inbox)["images"] if inbox.is_dir() else 0
    if not held:
        return f"{what}, or --from-inbox for the feedback inbox ({inbox} holds no labelled images yet)"
    return f"{what}; or the feedback inbox's {held:,} labelled images ({inbox}): add --from-inbox"


def _command(ref, new_data, from_inbox, registry, promote: bool, tolerance: float) -> str:
    """The `imgclf update` that continues this one (its --out added): what the judging needs. The
    training's own settings are in the run's config.yaml by then."""
    words = ["imgclf", "update", str(ref), str(new_data) if new_data is not None else "--from-inbox"]
    if from_inbox not in (False, True):
        words += ["--inbox", str(from_inbox)]
    if str(registry) != "registry":
        words += ["--registry", str(registry)]
    words += ["--promote"] if promote else []
    words += ["--tolerance", f"{tolerance:g}"] if tolerance != TOLERANCE else []
    return " ".join(shlex.quote(w) for w in words)


def _train_candidate(out, parent_run: Path, data: dict, record: dict, settings: dict, again: str, verbose: bool):
    """The candidate's run folder with its data and update.json, then its training."""
    from imgclf import workflows

    new = data["new"]
    rows = [r for r in data["old"] if r["split"] != "train"] + data["replayed"] + new
    run_dir, data_csv = _run_folder(out, parent_run, rows, new)
    write_json(run_dir / "update.json", record)
    # Not `imgclf train --resume`, which would finish the training but never judge or register it
    with resumable(f"{again} --out {shlex.quote(str(run_dir))}"):
        return workflows.train(
            data_csv, config=base_config(parent_run, run_dir), out=run_dir, verbose=verbose, **settings
        )


def _resumed(out: Path, parent_run: Path, again: str, verbose: bool, console):
    """An update interrupted in its training (`out` holds its update.json and config.yaml): the
    training resumes on the data and split it recorded; the judging follows as for a new one."""
    from rich.markup import escape

    from imgclf import workflows
    from imgclf.core.files import read_json

    record = read_json(out / "update.json")
    if Path(record["parent"]["run"]).resolve() != parent_run.resolve():
        raise UserError(
            f"{out} holds an unfinished update of {record['parent']['run']}, not of {parent_run}: "
            "give that version, or another --out"
        )
    console.print(f"  resuming the interrupted update in {escape(str(out))}: its recorded data, split and settings")
    with resumable(f"{again} --out {shlex.quote(str(out))}"):
        return record, workflows.train(resume=out, verbose=verbose, write_report=False)  # _judge writes it


def _run_folder(out, parent_run: Path, rows: list[dict], new: list[dict]) -> tuple[Path, Path]:
    """The candidate's run folder, with the data it trains on (update_data.csv) and the new test
    images (new_test.csv) written into it."""
    # --out was checked before the data was gathered; a new name is made as it is chosen (two updates
    # started together never share a folder)
    run_dir = Path(out) if out else new_run_dir(f"{parent_run.name}-update", reserve=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    data_csv = run_dir / "update_data.csv"
    _write_rows(data_csv, rows, ("path", "sha256", "label", "split", "origin"))
    _write_rows(run_dir / "new_test.csv", [r for r in new if r["split"] == "test"], ("path", "label"))
    return run_dir, data_csv


def _gather(parent_run, version, registry, new_data, from_inbox, data_root, doctor, mode, replay, seed, console):
    """Steps 1-2 and the replay: the version's rows and the new ones (checked by the data doctor,
    split), and the old training images replayed; printed as it goes, returned for update.json."""
    from rich.markup import escape  # class names are the user's text

    old, old_report, new, dup_report, source = gather_rows(
        parent_run, version, registry, new_data, from_inbox, console, data_root
    )
    groups, doctor_summary = check_new_data(old, new, console) if doctor else ([], None)
    _assign_splits(new, seed, groups, {r["path"]: r["split"] for r in old})
    added = sorted({r["label"] for r in new} - {r["label"] for r in old})
    console.print(
        f"  new data: {len(new)} images of {len({r['label'] for r in new})} class(es) ({by_split(new)})"
        + (f"; new classes: {escape(', '.join(added))}" if added else "")
    )
    replayed = replay_rows(old, new, mode, replay, seed)
    n_old_train = sum(r["split"] == "train" for r in old)
    console.print(
        f"  replay: {len(replayed)} of the {n_old_train} old training images"
        + (" (all of them)" if len(replayed) == n_old_train else " (class-balanced sample)")
    )
    return {
        "old": old,
        "new": new,
        "replayed": replayed,
        "n_old_train": n_old_train,
        "added": added,
        "classes": sorted({r["label"] for r in old} | {r["label"] for r in new}),
        "old_report": old_report,
        "dup_report": dup_report,
        "doctor": doctor_summary,
        "source": source,
    }


def _record(version, parent_run, registry, data_root, mode, from_inbox, data: dict, choices, lr_factor) -> dict:
    """update.json: where the candidate came from and what it trained on."""
    return {
        "parent": {
            "version": version,
            "run": str(parent_run),
            "registry": str(registry) if version else None,
            "data_root": str(moved_root(data_root)) if data_root is not None else None,
        },
        "mode": mode,
        "source": {"kind": "inbox" if from_inbox else "data", "path": str(data["source"])},
        "classes": data["classes"],
        "new_classes": data["added"],
        "counts": {
            "old": split_counts(data["old"]),
            "new": split_counts(data["new"]),
            "replayed": len(data["replayed"]),
            "old_train": data["n_old_train"],
        },
        "recorded_data": data["old_report"],
        "duplicates": data["dup_report"],
        "doctor": data["doctor"],
        "training": {**choices, "lr_factor": lr_factor if mode == "finetune" else None},
    }


def _unlearnt(cmp: dict, added: list[str]) -> tuple[list[str], str]:
    """The new classes of which the candidate named none of the new test images, and the line that says
    so ("" when none): the promotion rule can pass such a candidate (the old classes held; the parent
    was wrong there too), and its serving would answer them no better than the parent."""
    slice_ = cmp["slices"].get("new data", {}).get("per_class", {})
    missed = [(c, slice_[c]["n"]) for c in added if c in slice_ and slice_[c]["n"] and slice_[c]["b"] == 0]
    if not missed:
        return [], ""
    named = ", ".join(f"{c} (0 of {n} new test image{'s' * (n != 1)} right)" for c, n in missed)
    return [c for c, _ in missed], f"{named}: add photos of {'it' if len(missed) == 1 else 'them'} and update again"


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
    from rich.markup import escape  # the verdict and the list name classes; the registry is a path

    from imgclf import workflows
    from imgclf.lifecycle.compare import compare
    from imgclf.store import registry as reg

    if version is not None:
        info = reg.add(run, registry, parent=version, alias="candidate")
        result["version"] = info["version"]
        console.print(f"registered as version {info['version']} (parent {version}), alias candidate")
    new_test = [(r["path"], r["label"]) for r in new if r["split"] == "test"]
    cmp = compare(parent, run, new_test or None, tolerance=tolerance, out=run / "compare.json", data_root=data_root)
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
    result["not_learnt"], unlearnt = _unlearnt(cmp, result["new_classes"])
    if unlearnt:
        console.print(f"  [yellow]not learnt[/]: {escape(unlearnt)}")
    workflows.report(run, verbose=False)  # again, now with the comparison section
    console.print(
        ("[bold green]PROMOTE[/] " if verdict["promote"] else "[bold yellow]KEEP[/] ") + escape(verdict["paragraph"])
    )
    if worse:
        console.print(
            "  classes that got worse: " + escape(", ".join(f"{c} ({d:+.1%} on the {w})" for c, d, w in worse))
        )
    if not verdict["promote"] and version is not None and (anyway := promote_anyway(result, registry)):
        console.print(f"  {escape(anyway)}")
    if not promote:
        if verdict["promote"] and version is not None:  # PROMOTE above is the rule's verdict, not a deed
            console.print(
                f"not promoted (no --promote): {escape(promote_command(result['version'], registry))} does it"
            )
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
    console.print(
        f"production -> version {result['version']} (undo: imgclf registry rollback --registry {escape(str(registry))})"
    )
    return event


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

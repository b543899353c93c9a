"""imgclf.tune: set up (or resume, or join) a study, run trials, summarise, retrain the best.

The first worker of a study probes the default configuration (tuning.budget), fixes the search
space with it (epochs sized to the time budget, img_size fixed so every trial reuses one decode
cache) and stores that set-up in the study, so resumed runs and other workers use the same one.
Trial 0 is train's default configuration under the same budget and on the same validation
split, so the summary's "best vs default" is a fair comparison. Tuning never looks at the test
split; the retrained run is evaluated on it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape  # folders, the data path and the study's name are the user's text

from imgclf.core.files import file_lock, output_folder, read_json, write_json
from imgclf.store.runs import new_run_dir, refuse_finished_run
from imgclf.training.budget import SMALL_VAL
from imgclf.tuning import study as st
from imgclf.tuning.budget import epochs_range, probe
from imgclf.tuning.results import fmt_params, importances, print_summary, summary, write_outputs
from imgclf.tuning.space import (
    Space,
    default_values,
    load_space,
    trial_settings,
    with_default_model,
    with_epochs,
    without_default_model,
)
from imgclf.tuning.worker import Tune, work

LOCAL_SETTINGS = ("device", "workers")


@dataclass
class TuneResult:
    path: Path  # the tune folder: tune.json, trials.csv, study.journal, trials/
    study_name: str
    storage: str
    status: str  # done | timeout
    best_value: float | None  # validation accuracy of the best trial
    best_params: dict
    best_settings: dict  # the train() keywords that reproduce it
    default_value: float | None  # trial 0: train's default configuration, same budget
    counts: dict  # trials per state (complete, pruned, fail, ...)
    seconds: float
    run: object = None  # imgclf.api.Run of the retrained best configuration
    summary: dict = field(default_factory=dict, repr=False)


def run_tune(
    data,
    *,
    trials: int,
    timeout: float | None,
    space,
    storage: str | None,
    study_name: str | None,
    pruner: str,
    out,
    run_out,
    seed: int,
    retrain: bool,
    verbose: bool,
    settings: dict,
    ray: str | None = None,
) -> TuneResult:
    from imgclf.core.console import console_for as _console

    console = _console(verbose)
    _check_arguments(run_out, ray)
    started = time.time()
    local, settings = _local(settings)
    data = str(Path(data).resolve())
    tune_dir = tune_folder(data, out)
    name = study_name or Path(data).name
    store, where = st.open_storage(storage, tune_dir)
    facts = _facts(tune_dir, name, data, where, trials, timeout, pruner)

    study, created, setup = _open_study(
        store, name, where, data, space, {**settings, "seed": seed}, local, tune_dir, trials, timeout, started, console
    )
    study.sampler = st.make_sampler(seed, trials, created, len(study.trials))
    study.pruner = st.make_pruner(pruner, trials, setup.get("epochs"))
    t = Tune(
        data,
        tune_dir,
        study,
        Space.from_dict(setup["space"]),
        setup["img_size"],
        setup["n_train"],
        trials,
        started + timeout if timeout else math.inf,
        console,
        local,
        trial_cap=2 * timeout / trials if timeout else math.inf,
    )
    on_ray = None if ray is None else {"address": ray, "storage": storage, "name": name, "pruner": pruner, "seed": seed}
    result, status = _run_trials(t, study, setup, facts, tune_dir, trials, timeout, pruner, where, console, on_ray)
    seconds = time.time() - started
    print_summary(console, result, seconds)
    if status == "timeout":
        console.print(f"stopped at the {timeout:g} s time limit; the same command continues the study")
    run = None
    if retrain and result["best"] is not None:
        run = retrain_best(data, result, run_out, st.counts(study)["running"], verbose, console, local, setup, tune_dir)
        if run is not None:
            result["run"] = {
                "path": str(run.path),
                "trial": result["best"]["number"],
                "test_accuracy": (run.metrics or {}).get("accuracy"),
            }
    write_outputs(tune_dir, result)
    console.print(escape(f"tune: {tune_dir / 'tune.json'}, {tune_dir / 'trials.csv'}"))
    best = result["best"] or {}
    return TuneResult(
        tune_dir,
        name,
        where,
        status,
        best.get("value"),
        best.get("params", {}),
        best.get("settings", {}),
        (result["default"] or {}).get("value"),
        result["counts"],
        seconds,
        run,
        result,
    )


def _run_trials(
    t, study, setup: dict, facts: dict, tune_dir: Path, trials: int, timeout, pruner: str, where: str, console, on_ray
) -> tuple[dict, str]:
    """The trials until the study is full or the time is up, tune.json rewritten after each; on
    Ctrl-C, written as interrupted. `on_ray`: run them as Ray tasks (tuning.on_ray). Returns (the
    summary with importances, the stop status)."""

    def snapshot(status: str) -> dict:
        result = {**summary(study, setup, **facts), "status": status}
        write_outputs(tune_dir, result)
        return result

    console.print(
        f"tune folder {escape(str(tune_dir))}; {trials} trials{f', {timeout:g} s' if timeout else ''}, pruner {pruner}"
    )
    c = st.counts(study)
    full = c["complete"] + c["pruned"] >= trials
    try:
        if on_ray is not None and not full:  # (a full study starts no cluster: nothing is left to run)
            from imgclf.tuning.on_ray import work_on_ray

            status = work_on_ray(t, **on_ray, setup=setup, on_poll=lambda: snapshot("running"))
        else:
            status = work(t, on_trial=lambda _: snapshot("running"))
    except KeyboardInterrupt:
        result = snapshot("interrupted")
        c = result["counts"]
        console.print(
            f"interrupted: {c.get('complete', 0) + c.get('pruned', 0)} of {trials} trials finished; "
            f"run the same command again to resume (study in {escape(where)})"
        )
        raise
    return {**snapshot(status), "importances": importances(study)}, status


def _facts(tune_dir: Path, name: str, data: str, where: str, trials: int, timeout, pruner: str) -> dict:
    """What tune.json records about this tune; a new tune folder is marked as this data's at once."""
    facts = {"data": data, "storage": where, "trials_target": trials, "timeout": timeout, "pruner": pruner}
    if (tune_dir / "tune.json").exists():  # the run an earlier tune retrained, if any
        facts["run"] = read_json(tune_dir / "tune.json").get("run")
    else:  # marks the folder as this data's tune, for a resume
        write_json(tune_dir / "tune.json", {"study": name, **facts, "status": "starting"})
    return facts


def _local(settings: dict) -> tuple[dict, dict]:
    """(this worker's own settings, the study's): where a worker trains is its own business, not
    the study's: never stored, never compared."""
    local = {k: v for k, v in settings.items() if k in LOCAL_SETTINGS}
    return local, {k: v for k, v in settings.items() if k not in LOCAL_SETTINGS}


def _check_arguments(run_out, ray=None) -> None:
    """What the declared rules (settings.tune, checked by api.tune) cannot see: the folders and Ray."""
    if run_out:  # (a missing DATA: api.tune said so before this module's imports)
        refuse_finished_run(run_out, "--run-out")
    if ray is not None:  # before the probe, not minutes later
        from imgclf.core.raysupport import require_ray

        require_ray()


def _open_study(
    store,
    name: str,
    where: str,
    data: str,
    space,
    settings: dict,
    local: dict,
    tune_dir: Path,
    trials: int,
    timeout: float | None,
    started: float,
    console,
):
    """The study `name`: created (after the probe that sizes its trials) or continued. Returns
    (study, whether this worker created it, the study's setup)."""
    # Workers sharing this folder probe one at a time: the second waits for the first's study instead
    # of spending minutes on a probe it would throw away. Workers on other machines (a database
    # --storage) still race, and the storage decides which of them creates the study.
    with file_lock(tune_dir / ".setup.lock"):
        study, created = st.load_study(store, name), False
        if study is None:
            setup = new_setup(data, space, settings, local, tune_dir, trials, timeout, started, console)
            study, created = st.create_study(store, name)
            if created:
                study.set_user_attr("setup", setup)
                study.enqueue_trial(setup["default_values"], user_attrs={"default": True})
    if not created:
        setup = st.wait_for_setup(study)
        c = st.counts(study)
        console.print(
            f"continuing study '{escape(name)}' ({escape(where)}): {c['complete'] + c['pruned']} of {trials} trials "
            f"finished, {c['running']} running"
        )
        if changed(Space.from_dict(setup["space"]), load_space(space, settings)):
            console.print(
                "[yellow]warning[/]: the study keeps the search space it was created with (tune.json "
                "'space'); the --space and settings given now differ and are not used"
            )
    return study, created, setup


def changed(stored: Space, given: Space) -> bool:
    """Whether `given` asks for another search than the study's: the probe's own additions (epochs
    bounds from the budget, the fixed img_size, train's pretrained default among the models) do not
    count."""
    stored = without_default_model(stored)
    auto = "epochs" in given.params and given.params["epochs"].low is None
    stored_params = {k: p for k, p in stored.params.items() if not (auto and k == "epochs")}
    given_params = {k: p for k, p in given.params.items() if not (auto and k == "epochs")}
    fixed = {k: v for k, v in stored.fixed.items() if k != "img_size" or "img_size" in given.fixed}
    return stored_params != given_params or fixed != given.fixed


def tune_folder(data: str, out) -> Path:
    """`out`, else the newest tunes/<dataset>-<n> made for this data (so the same command
    resumes it), else a new one."""
    if out:
        return output_folder(out, "--out")
    fresh = new_run_dir(data, "tunes")
    stem, n = fresh.name.rsplit("-", 1)
    for k in range(int(n) - 1, 0, -1):
        earlier = fresh.parent / f"{stem}-{k}" / "tune.json"
        if earlier.is_file() and read_json(earlier).get("data") == data:
            return earlier.parent
    return output_folder(fresh, "--out")  # tunes/ in a folder that takes no file: said before any trial


def new_setup(
    data: str,
    space_path,
    settings: dict,
    local: dict,
    tune_dir: Path,
    trials: int,
    timeout: float | None,
    started: float,
    console,
) -> dict:
    """Probe the default configuration and fix the search space for a new study."""
    space = load_space(space_path, settings)
    console.print(f"tune {escape(str(data))}: timing one epoch of the default configuration")
    fixed = {k: v for k, v in space.fixed.items() if k != "augment_strength"}  # needs img_size, not yet known
    # Per process: workers starting together each probe before one of them creates the study.
    p = probe(data, {**trial_settings({}, Space({}, fixed), 0, 0), **local}, tune_dir / f"probe-{os.getpid()}")
    if p.n_val < SMALL_VAL:  # found by hand: on 3 images the "best" trial was a lucky epoch of a collapsed run
        console.print(
            f"[yellow]warning[/]: {p.n_val} validation images: one image is {100 / p.n_val:.1f} points of a trial's "
            "accuracy, so trials a few images apart are a tie and the best may not beat the default on test; "
            f"{SMALL_VAL} or more make the ranking worth the trials' time"
        )
    if "img_size" not in space.params:  # one size for every trial: one decode cache, decoded once
        space = Space(space.params, {**space.fixed, "img_size": p.config["img_size"]})
    space, default_model = with_default_model(space, p.config)
    budget = {**p.to_dict(), "img_size": p.config["img_size"]}
    epochs = None
    if "epochs" in space.params:
        if space.params["epochs"].low is None:  # AUTO: sized to the time budget
            low, high, why = epochs_range(p, trials, timeout, time.time() - started)
            space = with_epochs(space, low, high)
            budget["epochs"] = f"{low}-{high}: {why}"
            console.print(f"  epochs {low}-{high} per trial: {why}")
        epochs = [int(space.params["epochs"].low), int(space.params["epochs"].high)]
    defaults = {**p.config, "model": default_model}
    if epochs:
        defaults["epochs"] = min(max(int(defaults["epochs"]), epochs[0]), epochs[1])
    values, outside = default_values(space, defaults)
    console.print(
        f"  trial 0 is train's default configuration: {escape(fmt_params(values))}"
        + (f" ({', '.join(outside)} outside the space: drawn)" if outside else "")
    )
    return {
        "space": space.to_dict(),
        "img_size": int(p.config["img_size"]),
        "n_train": p.n_train,
        "epochs": epochs,
        "budget": budget,
        "default_values": values,
        "default_outside": outside,
        "data": data,
    }


def retrain_best(
    data: str, result: dict, run_out, running: int, verbose: bool, console, local: dict, setup: dict, tune_dir: Path
):
    """Train the best configuration into a normal run folder (test evaluation, report with a
    Tuning section from RUN/tuning.json); once per best trial, and by the last worker only. The run
    is in tune.json from its start, so the same command resumes a retrain cut short. The
    trial's settings, but this machine's (`local`), and faces=auto and texture=auto unless the study's
    space fixed them (`setup`): trials train with both off, since a trial is judged by its network's
    epochs; the retrained run lets the face embedding and the texture compete, as train does."""
    from imgclf import workflows

    best = result["best"]
    if running:
        console.print(f"{running} trial(s) still running in other workers: the last worker to finish retrains the best")
        return None
    before = result.get("run")
    if before and before.get("trial") == best["number"] and (Path(before["path"]) / "model.json").is_file():
        console.print(f"best configuration (trial {best['number']}) already retrained: {escape(before['path'])}")
        return workflows.run_at(before["path"])
    if before and before.get("trial") == best["number"] and (Path(before["path"]) / "config.yaml").is_file():
        console.print(f"\nresuming the interrupted retrain of trial {best['number']} in {escape(before['path'])}")
        return workflows.train(resume=before["path"], verbose=verbose)
    if before and before.get("trial") == best["number"] and Path(before["path"]).is_dir():
        run_dir = Path(before["path"])  # stopped before its first files: starts again in its own folder
    else:
        run_dir = Path(run_out) if run_out else new_run_dir(data, reserve=True)
    write_json(run_dir / "tuning.json", result)  # before training, so train's report has its Tuning section
    write_outputs(tune_dir, {**result, "run": {"path": str(run_dir), "trial": best["number"], "test_accuracy": None}})
    console.print(f"\nretraining the best configuration (trial {best['number']}) into {escape(str(run_dir))}")
    fixed = setup["space"]["fixed"]
    candidates = {k: fixed.get(k, "auto") for k in ("faces", "texture")}
    return workflows.train(data, out=run_dir, verbose=verbose, **{**best["settings"], **local, **candidates})

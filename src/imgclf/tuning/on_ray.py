"""`imgclf tune DATA --ray [ADDRESS]`: the study's trials as Ray tasks, as many at once as the
cluster has GPUs (else CPUs), all against the study's one Optuna storage.

This is the shared-study path (several `imgclf tune` workers with one --storage) with Ray
starting the workers: the driver sets the study up (the probe, the search space, trial 0) as
usual, then each task loads the study and runs the ordinary worker loop (tuning.worker.work)
until the study holds its trials; the driver summarises and retrains the best as usual. A
journal file works on one machine or a shared filesystem; across machines without one, give a
database --storage (postgresql://...). A task that dies leaves its trial to the stale-trial rule
(study.fail_stale) like any worker.
"""

from __future__ import annotations

import time
from pathlib import Path

from imgclf.core.raysupport import cluster_workers, ray_session

POLL_SECONDS = 5.0


def work_on_ray(t, address: str, storage: str | None, name: str, pruner: str, seed: int, setup: dict, on_poll) -> str:
    """Run the study's trials in Ray tasks; `on_poll()` every few seconds (tune.json's snapshot).
    Returns 'done', or 'timeout' when the time limit stopped any task."""
    with ray_session(address) as ray:
        slots, gpus = cluster_workers(ray, gpu=False if t.local.get("device") == "cpu" else None)
        n = max(1, min(slots, t.n_trials))
        t.console.print(f"Ray: {n} trials at a time ({'one GPU' if gpus else 'one CPU'} each)")
        task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)(_worker)
        job = {
            "data": t.data,
            "dir": str(t.dir),
            "storage": storage,
            "name": name,
            "pruner": pruner,
            "seed": seed,
            "epochs": setup.get("epochs"),
            "space": t.space.to_dict(),
            "img_size": t.img_size,
            "n_train": t.n_train,
            "n_trials": t.n_trials,
            "deadline": t.deadline,
            "local": t.local,
            "trial_cap": t.trial_cap,
            # The tasks print nothing: what a task prints reaches the terminal through Ray's log
            # relay, which loses the last trial's line when the session closes right after it.
            "verbose": False,
        }
        shown = {x.number for x in _finished(t.study.get_trials(deepcopy=False))}
        pending = [task.remote(job) for _ in range(n)]
        refs = list(pending)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
            on_poll()
            shown |= _print_finished(t, shown)
        statuses = ray.get(refs)  # a task's UserError (e.g. trials failing in a row) re-raised here
    return "timeout" if "timeout" in statuses else "done"


def _finished(trials: list) -> list:
    """The finished trials of `trials` (the study's), in the order they finished."""
    done = [x for x in trials if x.state.is_finished()]
    return sorted(done, key=lambda x: (x.datetime_complete is not None, x.datetime_complete or 0, x.number))


def _print_finished(t, shown: set[int]) -> set[int]:
    """The line of each trial the tasks finished since the last poll, as `imgclf tune` prints it on
    one machine; the numbers printed. The study is read once a poll (a journal file, or a database
    every node writes to)."""
    from rich.markup import escape

    from imgclf.tuning.results import trial_line

    trials = t.study.get_trials(deepcopy=False)
    new = [x for x in _finished(trials) if x.number not in shown]
    scores = [x.value for x in trials if x.state.name == "COMPLETE"]
    best = max(scores) if scores else None
    # A trial given back (interrupted, out of time, its worker gone) has its parameters queued again.
    again = {x.user_attrs["retry_of"]: x for x in trials if "retry_of" in x.user_attrs}
    for x in new:
        retry = again.get(x.number) if x.state.name == "FAIL" else None
        if retry is None:
            t.console.print(escape(trial_line(x, best)))
        else:
            why = x.user_attrs.get("stopped") or retry.user_attrs.get("retry_reason", "stopped")
            t.console.print(escape(f"trial {x.number:>3}  {why}: its parameters run again as trial {retry.number}"))
    return {x.number for x in new}


def _worker(job: dict) -> str:
    """One Ray task: a worker of the study, as a second `imgclf tune` with the same storage would be."""
    import torch

    from imgclf.core.console import console_for
    from imgclf.tuning import study as st
    from imgclf.tuning.space import Space
    from imgclf.tuning.worker import Tune, work

    torch.set_num_threads(1)
    store, _ = st.open_storage(job["storage"], Path(job["dir"]))
    study = None
    for _ in range(20):  # a database the driver just wrote to can lag a moment behind
        study = st.load_study(store, job["name"])
        if study is not None:
            break
        time.sleep(0.5)
    study.sampler = st.make_sampler(job["seed"], job["n_trials"], False, len(study.trials))
    epochs = tuple(job["epochs"]) if job["epochs"] else None
    study.pruner = st.make_pruner(job["pruner"], job["n_trials"], epochs)
    t = Tune(
        job["data"],
        Path(job["dir"]),
        study,
        Space.from_dict(job["space"]),
        job["img_size"],
        job["n_train"],
        job["n_trials"],
        job["deadline"],
        console_for(job["verbose"]),
        job["local"],
        trial_cap=job["trial_cap"],
    )
    return work(t)

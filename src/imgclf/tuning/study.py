"""The Optuna study: where it is stored, how trials are drawn and pruned, and the bookkeeping
that lets an interrupted tune resume and several workers share one study.

Storage: by default a journal file in the tune folder (Optuna's JournalStorage: an append-only
log written under a file lock, so processes on one machine can share it, and a killed tune loses
nothing that was logged). `storage` may instead be a path to another journal file, or any
database URL Optuna supports (sqlite:///tune.db, postgresql://user@host/db, ...): workers on
several machines share a study by running the same command against the same database.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from imgclf.core.errors import UserError, mask_secrets
from imgclf.settings.tune import PRUNERS

JOURNAL = "study.journal"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts towards --trials
HEARTBEAT_SECONDS = 30
# A running trial whose worker has not beaten for this long is taken to be dead (its machine
# crashed or lost the network); a dead worker on this machine is recognised at once by its pid.
STALE_SECONDS = 10 * HEARTBEAT_SECONDS
WORKER = {"host": socket.gethostname(), "pid": os.getpid()}

optuna.logging.set_verbosity(optuna.logging.WARNING)  # imgclf prints its own line per trial
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(storage: str | None, tune_dir: Path):
    """(Optuna storage, a description for tune.json): a journal file, or a database URL."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage is None or "://" not in storage:
        path = Path(storage) if storage else tune_dir / JOURNAL
        if path.is_dir():  # a shared folder named: its journal file, the same for every worker given it
            path = path / JOURNAL
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path))), str(path)
        except OSError as e:
            raise UserError(
                f"cannot keep the study journal at {path}: {e.strerror or e} (give --storage a file path "
                "you can write, or a database URL)"
            ) from None
    try:
        # tune.json and the report travel: never write a database password into them.
        return optuna.storages.RDBStorage(storage), mask_secrets(storage)
    except Exception as e:  # noqa: BLE001 - bad URL, missing driver, unreachable server: all the user's to fix
        # The driver's own message may quote the URL, password and all.
        raise UserError(
            f"cannot open the study storage {mask_secrets(storage)}: {type(e).__name__}: "
            f"{mask_secrets(str(e))} (give a database URL "
            "Optuna supports, e.g. sqlite:///tune.db or postgresql://user@host/db, with its driver "
            "installed, or a journal file path)"
        ) from None


def load_study(storage, name: str):
    """The study `name` in `storage`, or None when there is none yet."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def create_study(storage, name: str):
    """(study, created): exactly one of several workers starting together creates it; the storage
    decides (a journal's log order, a database's unique name), the others load it."""
    try:
        return optuna.create_study(storage=storage, study_name=name, direction="maximize"), True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage), False


def wait_for_setup(study, seconds: float = 600.0) -> dict:
    """The study's stored set-up (search space, defaults, budget), waiting while the worker that
    created it is still probing."""
    deadline = time.time() + seconds
    while "setup" not in (attrs := study.user_attrs):
        if time.time() > deadline:
            raise UserError(
                f"study '{study.study_name}' has no search space stored after {seconds:.0f} s: the "
                "worker that created it stopped early; start a new study (--study-name)"
            )
        time.sleep(0.5)
    return attrs["setup"]


def make_sampler(seed: int, n_trials: int, created: bool, n_existing: int):
    """Multivariate TPE. The worker that creates a study samples reproducibly from `seed`; one
    that joins or resumes mixes in its pid and the trials so far, so two workers (or a resumed
    run) never replay the same random start-up points."""
    entropy = [seed] if created else [seed, n_existing, os.getpid()]
    import numpy as np

    sampler_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    startup = max(3, min(10, n_trials // 3))
    return optuna.samplers.TPESampler(
        seed=sampler_seed, multivariate=True, n_startup_trials=startup, constant_liar=True
    )


def make_pruner(kind: str, n_trials: int, epochs: tuple[int, int] | None):
    """median: stop a trial whose best validation accuracy so far is below the median of earlier
    trials at the same epoch (after a few complete trials and the first epochs); hyperband:
    successive halving over epochs; none."""
    low, high = epochs or (1, 1)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, n_trials // 4)), n_warmup_steps=low // 2)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, low // 2), max_resource=max(2, high), reduction_factor=3
        )
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner '{kind}'; choose one of {', '.join(PRUNERS)}")


def counts(study) -> dict[str, int]:
    c = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        c[t.state.name.lower()] += 1
    return c


def is_surplus(study, number: int, n_trials: int) -> bool:
    """True when `n_trials` trials numbered below `number` already finished or are running: two
    workers that asked at the same moment got trial N+1 between them, and the later one yields."""
    ahead = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)) if t.number < number]
    return len(ahead) >= n_trials


def fail_stale(study, console) -> None:
    """Give back running trials whose worker is gone: killed on this machine (pid no longer
    alive), or silent for STALE_SECONDS anywhere."""
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", {})
        beat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
        dead_here = (
            worker.get("host") == WORKER["host"]
            and worker.get("pid") != WORKER["pid"]
            and not _alive(worker.get("pid"))
        )
        if dead_here or now - beat > STALE_SECONDS:
            if give_back(study, t.number, "its worker stopped"):
                console.print(
                    f"trial {t.number}: its worker ({worker.get('host', '?')} pid {worker.get('pid', '?')}) "
                    "stopped; marked failed and its parameters queued again"
                )


def give_back(study, number: int, reason: str) -> bool:
    """Fail a running trial that could not finish and queue its parameters again, so that an
    interrupted trial is neither lost nor counted: a resumed tune (or another worker) runs them.
    False when another worker got there first."""
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    try:
        study.tell(number, state=TrialState.FAIL)
    except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    params = {**frozen.system_attrs.get("fixed_params", {}), **frozen.params}
    if params:
        keep = {k: frozen.user_attrs[k] for k in ("default",) if k in frozen.user_attrs}
        study.enqueue_trial(params, user_attrs={**keep, "retry_of": number, "retry_reason": reason})
    return True


def _alive(pid) -> bool:
    # On Windows os.kill(pid, 0) does not probe: it terminates the process (TerminateProcess, exit
    # code 0), whichever now holds that pid. There a dead worker is left to the heartbeat.
    if not isinstance(pid, int) or os.name == "nt":
        return True  # unknown: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

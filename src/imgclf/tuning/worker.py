"""The loop every worker runs: ask the study for a trial, train it, tell the result.

A trial is an ordinary `imgclf.train` of the sampled settings into TUNE/trials/<number>/,
judged on the validation split (no calibration, test scoring or report) by what it keeps: the
validation accuracy of the model its leaderboard marks as kept (the best epoch; the last, cooled-down
one under keep=last; or the linear probe). Its validation accuracy is reported after every epoch,
so the pruner can stop it early; with a time limit, a trial that takes over twice its share of it is
stopped (pruned) too. The loop stops when the study holds `n_trials` finished (complete or pruned)
trials, whoever ran them, or at the time limit; a trial cut off by the time limit or by Ctrl-C is
failed and its parameters queued again (study.give_back), so resuming neither loses nor repeats it.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.markup import escape

from imgclf.core.errors import UserError
from imgclf.training.loop import Diverged
from imgclf.tuning import study as st
from imgclf.tuning.results import trial_line
from imgclf.tuning.space import Space, trial_settings

MAX_FAILURES_IN_A_ROW = 3


class OutOfTime(Exception):
    """The tune's time limit passed during a trial."""


@dataclass
class Tune:
    data: str
    dir: Path
    study: object
    space: Space
    img_size: int
    n_train: int
    n_trials: int
    deadline: float
    console: object
    local: dict = field(default_factory=dict)  # this worker's device/workers settings
    trial_cap: float = math.inf  # seconds a trial may take (2 x its share of the timeout)


class Heartbeat:
    """Marks the trial alive every HEARTBEAT_SECONDS from a background thread, so other workers
    can tell a slow trial from one whose worker died (see study.fail_stale)."""

    def __init__(self, trial):
        self.trial, self.stop = trial, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self.trial.set_user_attr("heartbeat", time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stop.wait(st.HEARTBEAT_SECONDS):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 - the trial was finished meanwhile; nothing left to mark
                return


def work(t: Tune, on_trial=None) -> str:
    """Run trials until the study is done ('done') or time is up ('timeout'). `on_trial(frozen)`
    is called after each trial this worker finishes (the caller writes tune.json there)."""
    failures = 0
    while True:
        if time.time() >= t.deadline:
            return "timeout"
        st.fail_stale(t.study, t.console)
        c = st.counts(t.study)
        if c["complete"] + c["pruned"] + c["running"] >= t.n_trials:
            return "done"
        trial = t.study.ask()
        if st.is_surplus(t.study, trial.number, t.n_trials):
            trial.set_user_attr("stopped", "surplus: the study already had its trials")
            st.give_back(t.study, trial.number, "surplus")
            return "done"
        frozen = run_trial(t, trial)
        if frozen is None:  # cut off by the time limit
            return "timeout"
        failures = failures + 1 if frozen.state == TrialState.FAIL else 0
        if on_trial is not None:
            on_trial(frozen)
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise UserError(
                f"{failures} trials in a row failed, the last with: {frozen.user_attrs.get('error')}; "
                f"see {t.dir / 'trials.csv'}"
            )


def run_trial(t: Tune, trial):
    """Train one trial and tell the study its outcome; returns the finished trial, or None when
    the time limit cut it off (it is then queued again). Ctrl-C does the same and re-raises."""
    values = {name: p.suggest(trial, name) for name, p in t.space.params.items()}
    settings = {**trial_settings(values, t.space, t.img_size, t.n_train), **t.local}
    trial.set_user_attr("worker", st.WORKER)
    out = t.dir / "trials" / str(trial.number)
    shutil.rmtree(out, ignore_errors=True)
    best = {"val_acc": -math.inf, "val_loss": math.inf, "epoch": 0, "epochs": 0}
    started = time.perf_counter()
    capped = not trial.user_attrs.get("default")  # the baseline always runs its whole budget

    def on_epoch(epoch: int, row: dict) -> None:
        best["epochs"] = epoch
        acc, loss = row["val_acc"], row["val_loss"]
        best["last_loss"] = loss
        if acc > best["val_acc"] or (acc == best["val_acc"] and loss < best["val_loss"]):
            best.update(val_acc=acc, val_loss=loss, epoch=epoch)
        status.update(f"trial {trial.number}: epoch {epoch}  val_acc {acc:.4f}  (best {best['val_acc']:.4f})")
        trial.report(acc, epoch)
        if time.time() > t.deadline:
            raise OutOfTime()
        if capped and time.perf_counter() - started > t.trial_cap:
            # A configuration far slower than the budget allows is a poor one under it; TPE learns so.
            trial.set_user_attr("stopped", f"over its time share ({t.trial_cap:.0f} s)")
            raise optuna.TrialPruned()
        if trial.should_prune():
            raise optuna.TrialPruned()

    from imgclf import workflows

    state = TrialState.COMPLETE
    try:
        with Heartbeat(trial), t.console.status(f"trial {trial.number}: starting") as status:
            workflows.train(t.data, out=out, verbose=False, evaluate=False, on_epoch=on_epoch, **settings)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except (KeyboardInterrupt, OutOfTime) as e:
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else "time limit"
        trial.set_user_attr("stopped", why)
        st.give_back(t.study, trial.number, why)
        t.console.print(
            f"trial {trial.number:>3}  stopped ({why}) after {best['epochs']} epoch(s); "
            "its parameters are queued to run again"
        )
        if isinstance(e, KeyboardInterrupt):
            raise
        return None
    except Diverged as e:
        # A learning rate too high for this model is one bad configuration, not a broken tune.
        _finish(t, trial, TrialState.FAIL, best, started, settings, out, error=str(e))
        return _frozen(t, trial.number)
    except UserError as e:
        _finish(t, trial, TrialState.FAIL, best, started, settings, out, error=str(e))
        raise
    except Exception as e:  # noqa: BLE001 - one configuration failing (e.g. out of memory) must not end the tune
        _finish(t, trial, TrialState.FAIL, best, started, settings, out, error=f"{type(e).__name__}: {e}")
        return _frozen(t, trial.number)
    _finish(t, trial, state, _as_kept(out, best) if state == TrialState.COMPLETE else best, started, settings, out)
    return _frozen(t, trial.number)


def _as_kept(out: Path, best: dict) -> dict:
    """A finished trial is worth what its run keeps (leaderboard.json's kept row), not its best
    epoch: under keep=last (a small validation split) a run that scored one lucky epoch and then
    diverged to chance would otherwise win the tune, and the retrained run ship the collapse."""
    from imgclf.core.files import read_json

    board = out / "leaderboard.json"
    kept = next((r for r in read_json(board) if r.get("kept")), None) if board.is_file() else None
    if kept is None:
        return best
    epoch = int(kept.get("best_epoch") or 0)
    losses = {best["epoch"]: best["val_loss"], best["epochs"]: best.get("last_loss", math.inf)}
    return {**best, "val_acc": kept["val_acc"], "val_loss": losses.get(epoch, math.inf), "epoch": epoch}


def _finish(t: Tune, trial, state, best: dict, started: float, settings: dict, out: Path, error: str = "") -> None:
    attrs = {
        "seconds": round(time.perf_counter() - started, 2),
        "epochs_run": best["epochs"],
        "best_epoch": best["epoch"],
        "val_loss": None if math.isinf(best["val_loss"]) else best["val_loss"],
    }
    if error:
        attrs["error"] = error
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    if state == TrialState.COMPLETE and not best["epochs"]:
        state = TrialState.FAIL
    t.study.tell(trial, best["val_acc"] if state == TrialState.COMPLETE else None, state=state)
    for name in ("train_state.safetensors", "last.safetensors"):  # resume files; a trial never resumes
        (out / name).unlink(missing_ok=True)
    frozen = _frozen(t, trial.number)
    t.console.print(escape(trial_line(frozen, _best_value(t.study))))  # an error's text, the parameters


def _frozen(t: Tune, number: int):
    return next(x for x in t.study.get_trials(deepcopy=False) if x.number == number)


def _best_value(study) -> float | None:
    done = [x.value for x in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(done) if done else None

"""What a tune shows and leaves behind: one line per trial, the closing summary, and in the tune
folder tune.json (the study's state, best and default configurations, parameter importances,
every trial) and trials.csv. The retrained run gets tune.json as RUN/tuning.json, which its
report's Tuning section draws (evaluation/report_tuning.py).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from optuna.trial import TrialState
from rich.markup import escape  # the study's name and categorical choices are the user's text

from imgclf.core.files import write_json, write_text

ROW_FIELDS = [
    "number",
    "state",
    "value",
    "val_loss",
    "epochs_run",
    "best_epoch",
    "seconds",
    "default",
    "retry_of",
    "worker",
    "note",
]


def fmt_params(params: dict) -> str:
    return "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def trial_line(trial, best: float | None) -> str:
    """trial   3  COMPLETE   val_acc 0.7250    31.2s  model=resnet_fast  lr=0.00312 ... *"""
    a = trial.user_attrs
    state = f"PRUNED@{a.get('epochs_run', '?')}" if trial.state == TrialState.PRUNED else trial.state.name
    value = f"val_acc {trial.value:.4f}" if trial.value is not None else "val_acc    –  "
    star = "  *best" if trial.state == TrialState.COMPLETE and best is not None and trial.value == best else ""
    extra = "  (default configuration)" if a.get("default") else ""
    extra += f"  error: {a['error']}" if "error" in a else ""
    extra += f"  ({a['stopped']})" if trial.state == TrialState.PRUNED and "stopped" in a else ""
    seconds = a.get("seconds", 0)
    return f"trial {trial.number:>3}  {state:<10} {value}  {seconds:6.1f}s  {fmt_params(trial.params)}{extra}{star}"


def rows(study) -> list[dict]:
    out = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        worker = a.get("worker") or {}
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "val_loss": a.get("val_loss"),
                "epochs_run": a.get("epochs_run"),
                "best_epoch": a.get("best_epoch"),
                "seconds": a.get("seconds"),
                "default": bool(a.get("default")),
                "retry_of": a.get("retry_of"),
                "worker": f"{worker['host']}:{worker['pid']}" if worker else "",
                "note": a.get("error") or a.get("stopped") or "",
                "params": dict(t.params),
            }
        )
    return out


def best_trial(study):
    """The complete trial with the highest validation accuracy; ties go to the lower validation
    loss (small validation sets tie often), then to the earlier trial."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None

    def loss(t) -> float:
        v = t.user_attrs.get("val_loss")
        return math.inf if v is None else v

    return max(done, key=lambda t: (t.value, -loss(t), -t.number))


def default_trial(study):
    """The finished trial of train's default configuration (the newest, should it have been retried)."""
    found = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if t.user_attrs.get("default")
    ]
    return max(found, key=lambda t: (t.state == TrialState.COMPLETE, t.number)) if found else None


def importances(study) -> dict | None:
    """fANOVA importance of each parameter for validation accuracy; None below 2 complete trials."""
    import optuna

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except Exception:  # noqa: BLE001 - too few distinct trials for the model: no importances, no failure
        return None
    return {k: round(float(v), 4) for k, v in found.items()}


def summary(study, setup: dict, **facts) -> dict:
    """tune.json: the study's state now, with the best and the default configurations."""
    from imgclf.tuning.space import Space, trial_settings

    best, default = best_trial(study), default_trial(study)
    space = Space.from_dict(setup["space"])
    c = {k: v for k, v in _counts(study).items() if v}
    return {
        "study": study.study_name,
        **facts,
        "metric": "validation accuracy of the model the trial kept",
        "counts": c,
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "val_loss": best.user_attrs.get("val_loss"),
            "params": dict(best.params),
            "settings": trial_settings(dict(best.params), space, setup["img_size"], setup["n_train"]),
        },
        "default": None
        if default is None
        else {
            "number": default.number,
            "value": default.value,
            "state": default.state.name,
            "outside_space": setup.get("default_outside", []),
        },
        # Training time summed over trials (all workers, all sessions): wall time between the first
        # and last trial would count the pauses of an interrupted tune.
        "trial_seconds": round(sum(t.user_attrs.get("seconds") or 0 for t in study.get_trials(deepcopy=False)), 1),
        "space": setup["space"],
        "budget": setup.get("budget"),
        "trials": rows(study),
    }


def _counts(study) -> dict:
    c = {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        c[t.state.name.lower()] = c.get(t.state.name.lower(), 0) + 1
    return c


def write_outputs(tune_dir: Path, result: dict) -> None:
    write_json(tune_dir / "tune.json", result)
    names = sorted({k for r in result["trials"] for k in r["params"]})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(ROW_FIELDS + names)
    for r in result["trials"]:
        w.writerow([_cell(r[k]) for k in ROW_FIELDS] + [_cell(r["params"].get(n)) for n in names])
    write_text(tune_dir / "trials.csv", buf.getvalue())


def _cell(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def print_summary(console, result: dict, seconds: float) -> None:
    c = result["counts"]
    finished = c.get("complete", 0) + c.get("pruned", 0)
    console.print(
        f"\ntune: study '{escape(result['study'])}' has {finished} of {result['trials_target']} trials "
        f"({c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, {c.get('fail', 0)} failed); "
        f"this run {_duration(seconds)}; all trials so far trained {_duration(result['trial_seconds'])}"
    )
    best, default = result["best"], result["default"]
    if best is None:
        console.print("no trial completed yet: nothing to compare")
        return
    versus = ""
    if default and default["value"] is not None and default["state"] == "COMPLETE":
        diff = 100 * (best["value"] - default["value"])
        versus = (
            f"  vs default configuration (trial {default['number']}) {default['value']:.4f}: "
            f"{'+' if diff >= 0 else ''}{diff:.1f} points"
        )
    console.print(f"best: trial {best['number']}  val_acc {best['value']:.4f}{versus}")
    console.print(f"  {escape(fmt_params(best['params']))}")
    if imp := result.get("importances"):
        console.print("  parameter importance: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

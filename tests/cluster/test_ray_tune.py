"""imgclf tune --ray: the trials run as Ray tasks, two at a time on the local cluster, against the
study's one journal: the study gets exactly its trials, none repeated, from both tasks."""

from __future__ import annotations

import re

import optuna
import pytest
from helpers import TINY_SPACE, make_shapes_dataset
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import imgclf


@pytest.mark.slow
def test_tune_runs_trials_as_ray_tasks(ray_cluster, tmp_path, capsys):
    data = make_shapes_dataset(tmp_path / "shapes", per_class=20, size=24)
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    result = imgclf.tune(
        data, trials=8, space=tmp_path / "space.yaml", out=tmp_path / "tune", retrain=False, ray="auto"
    )
    assert result.status == "done"
    # One line a trial, each printed by this process: none lost in Ray's log relay (off in these tests).
    lines = [
        ln.split() for ln in capsys.readouterr().out.splitlines() if re.match(r"trial +\d+ +(COMPLETE|PRUNED)", ln)
    ]
    assert sorted(int(w[1]) for w in lines) == list(range(8))
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "tune" / "study.journal")))
    done = optuna.load_study(study_name="shapes", storage=storage).get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED)
    )
    assert sorted(t.number for t in done) == list(range(8))
    assert len({tuple(sorted(t.params.items())) for t in done}) == 8  # none repeated
    assert len({t.user_attrs["worker"]["pid"] for t in done}) == 2  # both Ray tasks ran trials
    assert result.best_value is not None and (tmp_path / "tune" / "tune.json").is_file()
    # The same command again: the study is full, so no task starts, and no warning is due.
    again = imgclf.tune(data, trials=8, space=tmp_path / "space.yaml", out=tmp_path / "tune", retrain=False, ray="auto")
    out = capsys.readouterr().out
    assert again.best_value == result.best_value and "continuing study" in out
    assert "Ray:" not in out and "warning" not in out


def test_the_driver_says_which_trial_runs_a_given_back_trials_parameters_again():
    """The lines `imgclf tune --ray` prints from the study: a finished trial's usual line; a trial whose
    worker was lost, with the trial that runs its parameters again."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from imgclf.tuning.on_ray import _print_finished
    from imgclf.tuning.study import give_back

    study = optuna.create_study(direction="maximize")
    done = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    study.tell(done, 0.75)
    lost = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    assert give_back(study, lost.number, "its worker stopped")
    out = io.StringIO()
    t = SimpleNamespace(study=study, console=Console(file=out, width=200))
    assert _print_finished(t, set()) == {0, 1}
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trial   0  COMPLETE   val_acc 0.7500") and lines[0].endswith("*best")
    assert lines[1] == "trial   1  its worker stopped: its parameters run again as trial 2"
    assert _print_finished(t, {0, 1}) == set()  # each once

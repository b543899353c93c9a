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

"""imgclf tune: trials on a tiny search space, the default configuration as trial 0, pruning,
resume after Ctrl-C and after a killed worker, two worker processes sharing one study, and the
retrained run's report section."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import TINY_SPACE, make_shapes_dataset
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import imgclf
import imgclf.workflows
from imgclf.core.errors import UserError
from imgclf.tuning.space import DEFAULT_SPACE, load_space, scaled_policy

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Trials this small run ~10x faster on one thread than on two contended ones (measured on a
    # busy 2-core machine); the tune logic under test is the same.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes16(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("tune") / "shapes", per_class=30, size=24)


def space_file(tmp_path: Path, text: str = TINY_SPACE) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def load(tune_dir: Path, name: str = "shapes"):
    storage = JournalStorage(JournalFileBackend(str(tune_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def finished_params(study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.get_trials(states=FINISHED)]


@pytest.mark.slow
@pytest.mark.report
def test_tune_resumes_without_repeating_and_recovers_interrupted_trials(shapes16, tmp_path, monkeypatch):
    tune_dir, run_dir = tmp_path / "tune", tmp_path / "run"
    args = dict(space=space_file(tmp_path), out=tune_dir, verbose=False)
    result = imgclf.tune(shapes16, trials=3, run_out=run_dir, **args)

    study = load(tune_dir)
    assert len(study.get_trials(states=FINISHED)) == 3 and (tune_dir / "study.journal").is_file()
    assert study.trials[0].user_attrs["default"] and result.default_value == study.trials[0].value
    assert result.best_value >= result.default_value
    saved = json.loads((tune_dir / "tune.json").read_text())
    assert saved["best"]["value"] == result.best_value and saved["run"]["path"] == str(run_dir)
    with open(tune_dir / "trials.csv") as f:
        assert [int(r["number"]) for r in csv.DictReader(f)] == [0, 1, 2]
    for t in study.get_trials(states=(TrialState.COMPLETE,)):  # worth what it keeps, not its best epoch
        board = json.loads((tune_dir / "trials" / str(t.number) / "leaderboard.json").read_text())
        assert t.value == next(r["val_acc"] for r in board if r["kept"])
    # The retrained best: a normal run, evaluated on test, whose report has the Tuning section.
    assert result.run.metrics["accuracy"] >= 0 and (run_dir / "tuning.json").is_file()
    assert '<section id="tuning">' in (run_dir / "report.html").read_text()
    before = {t.number: t.value for t in study.trials}

    # A worker killed mid-trial on this machine left a RUNNING trial behind (its pid is gone).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = study.ask()
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid})

    # Ctrl-C during the second new trial: that trial fails and its parameters are queued again.
    real_train, calls = imgclf.workflows.train, []

    def interrupted(*a, on_epoch=None, **kw):
        calls.append(1)

        def hook(epoch, row):
            raise KeyboardInterrupt

        return real_train(*a, on_epoch=hook if len(calls) == 2 else on_epoch, **kw)

    monkeypatch.setattr(imgclf.workflows, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        imgclf.tune(shapes16, trials=5, retrain=False, **args)
    monkeypatch.setattr(imgclf.workflows, "train", real_train)
    study = load(tune_dir)
    assert study.trials[orphan.number].state == TrialState.FAIL  # the dead worker's trial, given back
    cut = study.trials[-2]
    assert cut.state == TrialState.FAIL and cut.user_attrs["stopped"] == "interrupted"
    assert study.trials[-1].state == TrialState.WAITING

    # The same command resumes: only the missing trials run, the interrupted one with its own parameters.
    imgclf.tune(shapes16, trials=5, retrain=False, **args)
    study = load(tune_dir)
    assert len(study.get_trials(states=FINISHED)) == 5
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    retry = study.trials[-1]
    assert retry.user_attrs["retry_of"] == cut.number and retry.params == cut.params
    assert all(study.trials[n].value == v for n, v in before.items() if v is not None)
    assert len(set(finished_params(study))) == 5  # nothing finished ran twice


@pytest.mark.slow
def test_bad_trials_are_pruned(shapes16, tmp_path):
    space = TINY_SPACE.replace(
        "lr: {type: float, low: 1e-3, high: 3e-2, log: true}",
        "lr: {type: categorical, choices: [1.0e-7, 2.0e-7, 3.0e-7, 5.0e-3]}",
    )
    space = space.replace("epochs: {type: int, low: 1, high: 3}", "epochs: 3")
    result = imgclf.tune(
        shapes16,
        trials=6,
        space=space_file(tmp_path, space),
        out=tmp_path / "tune",
        retrain=False,
        verbose=False,
        seed=1,
    )
    study = load(tmp_path / "tune")
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert result.counts["pruned"] == len(pruned) >= 1
    assert all(t.user_attrs["epochs_run"] < 3 for t in pruned)


@pytest.mark.slow
def test_two_worker_processes_share_one_study(shapes16, tmp_path):
    space = space_file(tmp_path)
    # 24 trials: each trains in 0.1-0.5 s, so with 6 the first worker could finish them all while the
    # second was still importing torch.
    cmd = [
        sys.executable,
        "-m",
        "imgclf.cli",
        "tune",
        str(shapes16),
        "--trials",
        "24",
        "--space",
        str(space),
        "--out",
        str(tmp_path / "tune"),
        "--no-retrain",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(imgclf.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    logs = [w.communicate(timeout=240)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), logs
    # 90 images leave a handful to validate on: the worker that sets the study up says what a ranking is worth.
    assert any(re.search(r"warning: \d validation images: one image is \d+\.\d points", log) for log in logs), logs
    study = load(tmp_path / "tune")
    done = study.get_trials(states=FINISHED)
    assert len(done) == 24 and sorted(t.number for t in done) == list(range(24)), logs
    assert len({t.user_attrs["worker"]["pid"] for t in done}) == 2, logs  # both workers ran trials
    assert len(set(finished_params(study))) == 24  # none repeated


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr: {type: float, low: 0.1, high: 0.01}", "low 0.1 above high"),
        ("lr: {type: float, low: 0, high: 0.01, log: true}", "log-scaled"),
        ("lr: {type: gaussian}", "use float, int or categorical"),
        ("lr: {type: float, low: fast, high: 1}", "needs a number for low"),
        ("learning_rate: {type: float, low: 0.001, high: 0.1}", "'learning_rate' is not a setting"),
        ("model: {type: categorical, choices: []}", "non-empty list of choices"),
        ("epochs: {type: int, low: 1.5, high: 3}", "fractional"),
        ("- lr\n- epochs", "must hold a mapping"),
        ("lr: [1, 2", "not valid YAML"),
        ("augment: none", "augment_strength"),
    ],
)
def test_bad_space_files_are_user_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        load_space(space_file(tmp_path, text))


def test_space_defaults_and_cli_errors(tmp_path, shapes16, monkeypatch, capsys):
    space = load_space(space_file(tmp_path, "width: 1.0\nlr: {type: float, low: 1e-4, high: 1e-2, log: true}"))
    assert "width" not in space.params and space.fixed["width"] == 1.0 and space.params["lr"].low == 1e-4
    assert set(space.params) == set(DEFAULT_SPACE) - {"width"}
    # Trials are judged by their network's epochs: no candidate may win in their place.
    from imgclf.tuning.space import Space, trial_settings

    drawn = trial_settings({"lr": 1e-3}, Space({}, {}), 32, 100)
    assert drawn["faces"] == "off" and drawn["texture"] == "off"
    # augment_strength 0.5 is train's default augmentation, for small and for large images
    from imgclf.data.augment import default_policy

    for size in (24, 96):
        assert scaled_policy(0.5, size, 500).to_dict() == default_policy(size, 500).to_dict()
    from imgclf.cli import main

    bad = space_file(tmp_path, "lr: {type: nope}")
    argv = ["imgclf", "tune", str(shapes16), "--space", str(bad), "--out", str(tmp_path / "t")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and capsys.readouterr().err.startswith("error: space file")
    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder would be")
    for flags, said in (
        (["--timeout", "nan"], "error: --timeout must be a positive number of seconds, at most 7 days, not nan"),
        (["--timeout", "inf"], "error: --timeout must be a positive number of seconds, at most 7 days, not inf"),
        (["--trials", "0"], "error: --trials must be an integer from 1 to 100000, not 0"),
        (["--pruner", "sometimes"], "error: unknown --pruner 'sometimes'; choose one of median, hyperband, none"),
        (["--storage", str(blocked / "study.journal")], f"error: cannot keep the study journal at {blocked}"),
    ):
        monkeypatch.setattr(sys, "argv", ["imgclf", "tune", str(shapes16), "--out", str(tmp_path / "t"), *flags])
        with pytest.raises(SystemExit) as stop:
            main()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(said) and err.count("\n") == 1, err


def test_a_folder_given_as_storage_keeps_its_journal_in_it(tmp_path):
    from imgclf.tuning.study import open_storage

    shared = tmp_path / "shared"
    shared.mkdir()
    _, where = open_storage(str(shared), tmp_path / "tune")
    assert where == str(shared / "study.journal")


def test_trial_0_is_trains_pretrained_default_on_photos(tmp_path):
    """Where train's default for the data is the pretrained backbone (photos), the default space's
    from-scratch families gain it: trial 0 is train's default, and any trial may fine-tune it. Its
    epochs range stops at what train's own time budget affords, not at the budget's 200-epoch cap."""
    from imgclf.tuning.budget import Probe, epochs_range
    from imgclf.tuning.space import Space, width_setting, with_default_model, with_epochs
    from imgclf.tuning.tune import changed

    photos = {"model": "timm/tf_efficientnet_lite0", "pretrained": True, "epochs": 200, "time_budget": 90.0}
    space, model = with_default_model(load_space(None), photos)
    assert model == "lite0" and space.params["model"].choices == ("lite0", "resnet_fast", "simple_cnn")
    assert width_setting("lite0", 1.5) == {}  # timm's networks have no width knob: the setting is left out
    scans = {"model": "resnet_fast", "pretrained": False, "epochs": 30}
    assert with_default_model(load_space(None), scans) == (load_space(None), "resnet_fast")
    own = load_space(space_file(tmp_path, "model: {type: categorical, choices: [simple_cnn, resnet_fast]}"))
    assert with_default_model(own, photos) == (own, "lite0")  # the user's own choices stand
    # Run again, the same command continues the study without a warning that its space changed...
    stored = with_epochs(Space(space.params, {**space.fixed, "img_size": 96}), 50, 200)
    assert not changed(stored, load_space(None))
    assert changed(stored, own)  # ...which another space file does get
    low, high, why = epochs_range(Probe(photos, 1_000, 100, 2.0, 10.0), trials=8, timeout=None, spent=0)
    assert (low, high) == (10, 40) and "time budget (90 s)" in why


@pytest.mark.slow
def test_a_diverging_trial_fails_alone(shapes16, tmp_path):
    """A learning rate that blows training up fails its own trial, recorded with the reason, and the
    tune goes on; only three such failures in a row stop it, with one line."""
    space = TINY_SPACE.replace(
        "lr: {type: float, low: 1e-3, high: 3e-2, log: true}", "lr: {type: categorical, choices: [10.0, 5.0e-3]}"
    )
    space = space.replace("epochs: {type: int, low: 1, high: 3}", "epochs: 3")
    with pytest.raises(UserError, match="3 trials in a row failed, the last with: training diverged"):
        imgclf.tune(
            shapes16,
            trials=6,
            space=space_file(tmp_path, space),
            out=tmp_path / "tune",
            retrain=False,
            verbose=False,
            seed=1,
        )
    trials = load(tmp_path / "tune").trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) >= 3 and all(t.params["lr"] == 10.0 for t in failed)
    assert all("lower --lr" in t.user_attrs["error"] for t in failed)
    assert trials[0].state == TrialState.COMPLETE  # the default configuration, before them


def test_a_trial_is_worth_the_model_it_kept_not_its_luckiest_epoch(tmp_path):
    """keep=last (a small validation split): one lucky epoch, then a collapse to chance. The trial
    ships the collapse, so that is its value (found by hand: a tune on 36 photos picked such a trial
    as best, and its retrained run predicted every class at 1/3)."""
    from imgclf.tuning.worker import _as_kept

    best = {"val_acc": 1.0, "val_loss": 0.03, "epoch": 59, "epochs": 187, "last_loss": 1.0986}
    board = [{"candidate": "fine-tune", "val_acc": 1 / 3, "best_epoch": 187, "kept": True}]
    board.append({"candidate": "linear probe", "val_acc": 2 / 3, "best_epoch": 0, "kept": False})
    (tmp_path / "leaderboard.json").write_text(json.dumps(board))
    assert _as_kept(tmp_path, best) == {**best, "val_acc": 1 / 3, "val_loss": 1.0986, "epoch": 187}
    board[0]["kept"], board[1]["kept"] = False, True  # the probe won: no epoch's loss is its own
    (tmp_path / "leaderboard.json").write_text(json.dumps(board))
    assert _as_kept(tmp_path, best)["val_acc"] == 2 / 3 and _as_kept(tmp_path, best)["epoch"] == 0
    (tmp_path / "leaderboard.json").unlink()  # a run without one (none should be): its best epoch
    assert _as_kept(tmp_path, best) == best


@pytest.mark.slow
def test_a_retrain_cut_short_is_resumed_by_the_same_command(shapes16, tmp_path, monkeypatch):
    """Ctrl-C in the retrain of the best trial: tune.json names the run from its start, and the same
    tune command resumes that run rather than retraining the best into another folder."""
    real_train = imgclf.workflows.train

    def cut(*a, on_epoch=None, evaluate=True, **kw):
        def stop(epoch, row):
            raise KeyboardInterrupt

        return real_train(*a, on_epoch=stop if evaluate and not kw.get("resume") else on_epoch, evaluate=evaluate, **kw)

    args = dict(space=space_file(tmp_path), out=tmp_path / "tune", run_out=tmp_path / "run", verbose=False)
    monkeypatch.setattr(imgclf.workflows, "train", cut)
    with pytest.raises(KeyboardInterrupt):
        imgclf.tune(shapes16, trials=2, **args)
    recorded = json.loads((tmp_path / "tune" / "tune.json").read_text())["run"]
    assert recorded["path"] == str(tmp_path / "run") and recorded["test_accuracy"] is None
    result = imgclf.tune(shapes16, trials=2, **args)
    assert result.run.path == tmp_path / "run" and not (tmp_path / "runs").exists()
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in history] == list(range(1, len(history) + 1))
    assert json.loads((tmp_path / "tune" / "tune.json").read_text())["run"]["test_accuracy"] is not None


@pytest.mark.slow
def test_a_retrain_stopped_before_its_first_files_starts_again_in_its_own_folder(shapes16, tmp_path, monkeypatch):
    """Ctrl-C before the retrain wrote config.yaml left runs/<name>/ holding only tuning.json; the same
    command then retrained into a second folder and left the first behind."""
    real_train = imgclf.workflows.train
    calls = []

    def stopped_once(*a, evaluate=True, **kw):
        if evaluate and not calls:  # the retrain (trials train with evaluate=False)
            calls.append(kw.get("out"))
            raise KeyboardInterrupt
        return real_train(*a, evaluate=evaluate, **kw)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(imgclf.workflows, "train", stopped_once)
    args = dict(space=space_file(tmp_path), out=tmp_path / "tune", verbose=False)
    with pytest.raises(KeyboardInterrupt):
        imgclf.tune(shapes16, trials=2, **args)
    (first,) = (tmp_path / "runs").iterdir()
    assert [p.name for p in first.iterdir()] == ["tuning.json"]
    result = imgclf.tune(shapes16, trials=2, **args)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [first.name]
    assert result.run.path.resolve() == first.resolve() and (first / "model.json").is_file()


def test_a_workers_pid_is_never_signalled_on_windows(monkeypatch):
    """os.kill(pid, 0) probes a pid on POSIX but terminates whatever process holds it on Windows."""
    from imgclf.tuning import study

    assert study._alive(os.getpid()) and not study._alive(2**22 + 12345)  # POSIX: probed (no such pid)

    def kill(*_):
        raise AssertionError("os.kill called on Windows")

    monkeypatch.setattr(study.os, "name", "nt")
    monkeypatch.setattr(study.os, "kill", kill)
    assert study._alive(2**22 + 12345)  # unknown there: the heartbeat decides

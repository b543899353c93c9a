"""A learning rate too high for the model: training stops with one line saying so, and no blown-up
weights are ever saved as if they were a model."""

from __future__ import annotations

import math

import pytest
from helpers import make_shapes_dataset
from safetensors.numpy import load_file

from imgclf.training.loop import diverged


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_keeps_only_finite_weights(tmp_path, monkeypatch, capsys):
    from imgclf import cli

    data = make_shapes_dataset(tmp_path / "shapes", per_class=12)
    run = tmp_path / "run"
    # SGD at lr 10 (the highest --lr allowed): the loss goes 1.1, 10, then hundreds by epoch 3.
    monkeypatch.setattr(
        "sys.argv",
        [
            "imgclf",
            "train",
            str(data),
            "--out",
            str(run),
            "--model",
            "simple_cnn",
            "--img-size",
            "24",
            "--epochs",
            "6",
            "--lr",
            "10",
            "--optimizer",
            "sgd",
            "--no-probe",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: training diverged in epoch ") and "lower --lr than 10" in lines[0], err
    assert not (run / "model.json").exists()  # nothing loads it as a finished run
    # The weights left are the last good epoch's, and the message says so.
    assert "keeps the last good weights (epoch " in lines[0] and (run / "model.safetensors").is_file(), err
    for name in ("model.safetensors", "last.safetensors"):
        assert all(math.isfinite(float(abs(w).max())) for w in load_file(run / name).values() if w.size), name
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) - 1 == int(lines[0].split("in epoch ")[1].split(":")[0])  # the diverged epoch shown


@pytest.mark.parametrize(
    "row, says",
    [
        ({"train_loss": float("nan"), "val_loss": 1.0}, "became nan"),
        ({"train_loss": float("inf"), "val_loss": 1.0}, "became inf"),
        ({"train_loss": 0.9, "val_loss": float("nan")}, "validation loss became nan"),
        ({"train_loss": 500.0, "val_loss": 3.0}, "rose to 500"),
    ],
)
def test_blown_up_losses_are_told_apart_from_a_bad_epoch(row, says):
    assert says in diverged(row, n_classes=3, has_val=True)


def test_healthy_or_merely_poor_epochs_go_on():
    assert diverged({"train_loss": 2.5, "val_loss": 40.0}, n_classes=3, has_val=True) is None
    assert diverged({"train_loss": 0.1, "val_loss": float("nan")}, n_classes=3, has_val=False) is None  # no val split


@pytest.mark.parametrize(
    ("keep", "last", "n_val", "fitted", "ships"),
    [
        ("last", 0.50, 12, 0.40, "probe"),  # 6 of 12 images fewer, its training images unfitted: it failed
        ("last", 0.50, 12, 1.00, "last"),  # the same, but it fits its training images: a small split's noise
        ("last", 0.90, 12, 0.40, "last"),  # 1 image: noise, keep=last's own rule stands
        ("last", 0.80, 10, 0.40, "last"),  # 20 points but 2 images: too few to call
        ("best", 0.50, 12, 0.40, "last"),  # keep=best already ranked the probe against every epoch
    ],
)
def test_a_fine_tune_far_below_its_probe_gives_way_to_the_probe(tmp_path, keep, last, n_val, fitted, ships):
    import torch

    from imgclf.settings.config import TrainConfig
    from imgclf.store.checkpoint import load_weights, save_weights
    from imgclf.training.leaderboard import PROBE_WEIGHTS, ProbeGuard
    from imgclf.training.loop import FitResult

    probe, tuned = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    save_weights(tmp_path / "model.safetensors", probe.state_dict())
    guard = ProbeGuard(tmp_path, TrainConfig(keep=keep), (1.0, 0.1))
    assert (tmp_path / PROBE_WEIGHTS).is_file() == (keep == "last")
    save_weights(tmp_path / "model.safetensors", tuned.state_dict())  # what keep=last's epochs write
    result = FitResult(criterion="accuracy")
    result.best_epoch, result.best_val_acc, result.best_val_loss = 2, last, 0.9
    result.history = [{"train_acc": 0.3}, {"train_acc": fitted}]
    net = torch.nn.Linear(3, 2)
    net.load_state_dict(tuned.state_dict())
    console = _Console()
    net = guard.after(result, net, n_val, console)
    expected = probe if ships == "probe" else tuned
    assert torch.equal(net.weight, expected.weight)
    assert torch.equal(load_weights(tmp_path / "model.safetensors")["weight"], expected.weight)
    assert (result.best_epoch == 0) == (ships == "probe") and not (tmp_path / PROBE_WEIGHTS).exists()
    assert ("the probe ships" in console.text) == (ships == "probe")


class _Console:
    text = ""

    def print(self, line: str) -> None:
        self.text += line


@pytest.mark.parametrize(
    ("keep", "last", "says"),
    [
        ("last", 11 / 12, "kept though the linear probe named 1 more of the 12 validation images"),
        ("last", 1.0, None),  # level with the probe: nothing to explain
        ("best", 11 / 12, None),  # keep=best kept the probe unless an epoch beat it (the fit ranks them)
    ],
)
def test_the_leaderboard_says_why_a_fine_tune_below_its_probe_ships(keep, last, says):
    from imgclf.settings.config import TrainConfig
    from imgclf.training.leaderboard import _print_leaderboard, leaderboard
    from imgclf.training.loop import FitResult

    result = FitResult(criterion="accuracy")
    result.best_epoch, result.best_val_acc, result.best_val_loss = 3, last, 0.5
    result.history = [
        {"epoch": e, "val_acc": last, "val_balanced_acc": last, "seconds": 1.0, "train_acc": 1.0} for e in (1, 2, 3)
    ]
    probe = {"C": 0.1, "val_acc": 1.0, "val_balanced_acc": 1.0, "seconds": 2.0}
    cfg = TrainConfig(keep=keep, model="timm/tf_efficientnet_lite0", pretrained=True, freeze_stride=8)
    rows = leaderboard(cfg, probe, result, n_val=12)
    assert rows[0]["candidate"].startswith("fine-tune") and rows[0]["kept"]
    assert rows[0].get("why", "").startswith(says) if says else "why" not in rows[0]
    console = _Console()
    _print_leaderboard(rows, console)
    assert (says in console.text) if says else "kept though" not in console.text


def test_a_candidate_that_beat_the_network_but_not_the_probe_is_not_explained_as_the_network():
    from types import SimpleNamespace as NS

    from imgclf.settings.config import TrainConfig
    from imgclf.training.leaderboard import leaderboard
    from imgclf.training.loop import FitResult

    result = FitResult(criterion="accuracy")
    result.best_epoch, result.best_val_acc, result.best_val_loss = 2, 0.75, 0.5
    result.history = [{"epoch": e, "val_acc": 0.75, "val_balanced_acc": 0.75, "seconds": 1.0} for e in (1, 2)]
    face = NS(
        name="face embedding",
        on="dlib's face embedding",
        row={"C": 1.0, "val_acc": 10 / 12, "val_balanced_acc": 10 / 12, "seconds": 3.0},
    )
    probe = {"C": 0.1, "val_acc": 11 / 12, "val_balanced_acc": 11 / 12, "seconds": 2.0}
    cfg = TrainConfig(keep="last", model="timm/tf_efficientnet_lite0", pretrained=True)
    rows = leaderboard(cfg, probe, result, [face], face, n_val=12)
    assert rows[0]["candidate"] == "face embedding" and rows[0]["kept"] and "why" not in rows[0]

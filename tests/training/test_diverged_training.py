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

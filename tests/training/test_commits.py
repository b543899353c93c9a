"""Which epochs a training commits to its run folder (training.commits): all of them while writing
is cheap against an epoch, fewer when it is not, and never the wrong best weights."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from imgclf.store.checkpoint import read_training_info
from imgclf.training import commits as C
from imgclf.training.history import HISTORY_FIELDS, read_history
from imgclf.training.loop import FitResult


def _epoch(result, net, value: float) -> None:
    with torch.no_grad():
        net.weight.fill_(value)
    row = dict.fromkeys(HISTORY_FIELDS, 0.0) | {"epoch": len(result.history) + 1, "stage": 1, "val_acc": value}
    result.history.append(row)


def test_epochs_shorter_than_a_commit_are_held_and_the_best_is_written_when_one_comes(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    result, commits = FitResult(), C.Commits(tmp_path)

    def after(value, improved, always=False):
        _epoch(result, net, value)
        info = {"epoch": len(result.history)}
        commits.after_epoch(result, net, net, opt, None, improved, info, always=always)

    after(1.0, improved=True)  # the first epoch: committed
    assert read_training_info(tmp_path / C.STATE_FILE)["epoch"] == 1
    monkeypatch.setattr(C, "RATIO", 1e9)  # every commit now costs far more than an epoch
    after(2.0, improved=True)  # the best so far, held in memory
    after(3.0, improved=False)
    assert read_training_info(tmp_path / C.STATE_FILE)["epoch"] == 1  # a resume would repeat 2 and 3
    assert len(read_history(tmp_path / "history.csv")) == 1
    after(4.0, improved=False, always=True)  # the last epoch: always committed
    assert read_training_info(tmp_path / C.STATE_FILE)["epoch"] == 4
    assert [r["epoch"] for r in read_history(tmp_path / "history.csv")] == [1, 2, 3, 4]
    assert float(load_file(tmp_path / "model.safetensors")["weight"][0, 0]) == 2.0  # epoch 2's, not 1's or 4's
    assert float(load_file(tmp_path / "last.safetensors")["weight"][0, 0]) == 4.0

    monkeypatch.setattr(C, "RATIO", 0)  # writing is free: every epoch is committed
    after(5.0, improved=True)
    assert read_training_info(tmp_path / C.STATE_FILE)["epoch"] == 5
    assert float(load_file(tmp_path / "model.safetensors")["weight"][0, 0]) == 5.0
    # A diverged run stops without another commit: the best it held is written as it stops.
    monkeypatch.setattr(C, "RATIO", 1e9)
    after(6.0, improved=True)
    assert float(load_file(tmp_path / "model.safetensors")["weight"][0, 0]) == 5.0
    commits.keep_best()
    assert float(load_file(tmp_path / "model.safetensors")["weight"][0, 0]) == 6.0

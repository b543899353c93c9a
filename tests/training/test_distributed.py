"""Which process group a torchrun rank joins. This machine has no GPU, so a GPU machine is faked by
torch.cuda's answers; the group itself is recorded, not started (the real gloo runs are in
tests/cluster/test_ray_train.py)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as tdist

from imgclf.training import distributed as dist


@pytest.fixture
def gpu_machine(monkeypatch) -> dict:
    """Rank 1 of 2 under torchrun on a machine with 2 GPUs: what setup() asks of torch."""
    asked = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: asked.update(device=i))
    monkeypatch.setattr(tdist, "init_process_group", lambda backend, timeout: asked.update(backend=backend))
    return asked


@pytest.mark.parametrize("device", [None, "auto", "cuda"])
def test_on_gpus_each_rank_takes_its_own_gpu_and_nccl(gpu_machine, device):
    dist.setup(device)
    assert gpu_machine == {"device": 1, "backend": "nccl"}


def test_device_cpu_trains_on_gloo_and_leaves_the_gpus_alone(gpu_machine):
    dist.setup("cpu")
    assert gpu_machine == {"backend": "gloo"}


def test_one_process_joins_no_group(gpu_machine, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.setup("cuda")
    assert gpu_machine == {}

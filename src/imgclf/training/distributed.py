"""PyTorch DDP for the training loop: the same code runs as one process, under `torchrun`, or in
Ray Train's workers (cluster/train.py), which set up the process group before calling it.

Rank 0 discovers, resolves the settings, splits, fits the linear probe and writes every file; it
hands its preparation and run folder to the other ranks (`broadcast`), and its weights reach
theirs before the first step (`sync_weights`). Each epoch's shuffled order is the same on every
rank; rank r takes every world-th image of it (`shard`), so step s's images over all ranks are the
single process's step s batch: `batch_size` is the global batch, each rank holds batch_size/N,
gradients are averaged (all-reduced), and the learning rate stays what it is for that batch.
With the feature cache (training.featcache), rank 0 sends the probe's stored maps along
(`broadcast_bulk`) and DDP wraps the upper layers that train on them.
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as tdist

# Rank 0 decodes and fits the probe while the others wait in `broadcast`: minutes on a big set.
TIMEOUT = datetime.timedelta(hours=2)


def active() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def setup(device: str | None = None) -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the
    environment): NCCL on GPUs, gloo on CPUs or when `device` (the --device setting) is "cpu", with
    this rank's GPU made the current one. A no-op for one process; under Ray Train, which joined
    the group already, it only picks the GPU."""
    if world_size() <= 1 or not tdist.is_available():
        return
    gpus = torch.cuda.is_available() and device != "cpu"
    if gpus:
        # Before any collective: NCCL runs on the current device, and torchrun's ranks on one
        # machine all see every GPU (Ray Train shows each worker its own GPU only, as cuda:0).
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if gpus else "gloo", timeout=TIMEOUT)


def use_node_threads() -> int:
    """On CPUs, while rank 0 works alone (preparing, the probe, the evaluation after training) the
    other ranks of its machine wait idle: it takes their threads too. Returns the previous count."""
    before = torch.get_num_threads()
    if active() and is_main():
        torch.set_num_threads(before * int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return before


def local_device(device: torch.device) -> torch.device:
    """This rank's device: its own GPU (LOCAL_RANK) when training on CUDA."""
    if device.type != "cuda" or not active():
        return device
    index = int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count())
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def broadcast(obj=None):
    """Rank 0's `obj`, on every rank (pickled: small things only, never weights or images)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_bulk(t: torch.Tensor | None = None, chunk: int = 1 << 28) -> torch.Tensor | None:
    """Rank 0's CPU tensor (bulk data, such as the stored feature maps) on every rank, sent in
    chunks of `chunk` bytes; None on the others where the backend is not gloo (NCCL moves GPU
    tensors only: there each rank computes the data itself)."""
    if not active():
        return t
    head = broadcast(None if t is None or tdist.get_backend() != "gloo" else (tuple(t.shape), t.dtype))
    if head is None:
        return t if is_main() else None
    shape, dtype = head
    buf = t.contiguous() if is_main() else torch.empty(shape, dtype=dtype)
    flat = buf.view(-1).view(torch.uint8)
    for start in range(0, flat.numel(), chunk):
        piece = flat[start : start + chunk]
        tdist.broadcast(piece, src=0)  # a view: received in place
    return buf


def sync_weights(model: torch.nn.Module) -> None:
    """Every rank's parameters and buffers become rank 0's (its probe head, its resumed state)."""
    if not active():
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            tdist.broadcast(t.data, src=0)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when ranks train together (its backward all-reduces the
    gradients, averaged), else `model` itself. Weights stay shared with `model`."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def total(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The sums over ranks of per-rank tensors (an epoch's loss, correct answers, images seen)."""
    if not active():
        return list(tensors)
    out = []
    for t in tensors:
        t = t.clone()
        tdist.all_reduce(t)
        out.append(t)
    return out


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's share of an epoch's shuffled indices (equal sizes, so ranks stay in step)."""
    w = world_size()
    n = len(indices) - len(indices) % w if len(indices) >= w else len(indices)
    return indices[rank() : n : w]


def rank_batch(batch_size: int, n_train: int) -> int:
    """Each rank's batch: the global `batch_size` (no more than the training images) over the ranks."""
    return max(1, min(batch_size, n_train) // world_size())

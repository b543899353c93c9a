"""Where the epochs' images come from: resident on the training device when they fit (airbench:
an epoch is slicing, no decoding), else gathered batch by batch from the memory-mapped cache."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from imgclf.core.device import memory_budget as _memory_budget


@dataclass
class SplitData:
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped cache
    train: np.ndarray  # row indices into images
    val: np.ndarray
    labels: np.ndarray  # (N,) int64
    mean: list[float]
    std: list[float]
    n_test: int | None = None  # the test split's size (what evaluation after training costs); None: as val


class TrainImages:
    """Training images resident on the device when they fit, else gathered from the memmap."""

    def __init__(self, images: np.ndarray, idx: np.ndarray, labels: np.ndarray, device: torch.device):
        self.device = device
        self.labels = torch.from_numpy(labels[idx]).to(device)
        nbytes = len(idx) * int(np.prod(images.shape[1:]))
        self.resident = nbytes <= _memory_budget(device)
        if self.resident:
            self.x = torch.from_numpy(np.ascontiguousarray(images[idx])).to(device)
        else:
            self.images, self.idx = images, idx

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """Up to n random training images as uint8 (n, 3, H, W) on the device (for data-driven init)."""
        pick = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return self.batch(pick)[0]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 (B,3,H,W), labels and the rows in the order returned (the memmap path sorts them).
        NHWC storage permuted = channels_last for free."""
        if self.resident:
            rows = rows.to(self.device)
            return self.x[rows].permute(0, 3, 1, 2), self.labels[rows], rows
        return self._to_device(*self._gather(rows))

    def batches(self, perm: torch.Tensor, bs: int, steps: int):
        """The epoch's batches in `perm` order. From the memmap, the next batch is gathered (into
        pinned memory on CUDA) by a background thread while the device computes the current one."""
        chunks = [perm[s * bs : (s + 1) * bs] for s in range(steps)]
        if self.resident:
            yield from (self.batch(rows) for rows in chunks)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._gather, chunks[0])
            for s in range(steps):
                ready = pending.result()
                if s + 1 < steps:
                    pending = pool.submit(self._gather, chunks[s + 1])
                yield self._to_device(*ready)

    def _gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.sort().values  # sorted reads are sequential on disk
        xb = torch.from_numpy(np.ascontiguousarray(self.images[self.idx[rows.numpy()]]))
        return (xb.pin_memory() if self.device.type == "cuda" else xb), rows

    def _to_device(self, xb: torch.Tensor, rows: torch.Tensor):
        rows = rows.to(self.device)
        return xb.to(self.device, non_blocking=True).permute(0, 3, 1, 2), self.labels[rows], rows

"""An exponential moving average of the weights (`--ema`): what validation judges and a run ships."""

from __future__ import annotations

import torch


class WeightAverage:
    """Exponential moving average of the weights and BatchNorm statistics (torch's AveragedModel).

    The average is what validation judges and what the run ships: it smooths the last steps'
    noise, worth most when the learning rate does not decay to zero. Its horizon is ~5% of the
    run, with a warm-up so early steps do not freeze random weights into it.
    """

    def __init__(self, model: torch.nn.Module, total_steps: int):
        from torch.optim.swa_utils import AveragedModel

        self.decay = 1 - 1 / max(10.0, total_steps / 20)
        self.steps = 0
        self.average = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)

    @torch.no_grad()
    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _n) -> None:
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - decay)
        else:  # integer buffers (BatchNorm's batch counter): keep the newest
            for a, c in zip(averaged, current):
                a.copy_(c)

    def update(self, model: torch.nn.Module) -> None:
        self.average.update_parameters(model)
        self.steps += 1

"""On a CPU the loaded network runs channels-last, as its batches arrive, in cache-sized batches: the
same answers as one whole NCHW batch (bench numbers in models.forward)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import imgclf
from imgclf.models.forward import cpu_batch, normalize, tta_logits

RUN = Path(__file__).parents[1] / "store" / "fixtures" / "run-2026-11-26" / "run"


def test_cpu_batches_hold_about_a_quarter_megapixel():
    assert [cpu_batch(s * s) for s in (24, 32, 96, 128, 224)] == [64, 64, 28, 16, 16]


def test_a_cpu_model_runs_channels_last_with_the_answers_of_one_nchw_batch():
    model = imgclf.load(RUN)
    assert model.channels_last and model.device.type == "cpu"
    conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = np.random.default_rng(0).integers(0, 256, (150, model.img_size, model.img_size, 3), dtype=np.uint8)
    got = model.predict_logits(images)  # 3 batches of at most 64 on a CPU
    plain = model.net.to(memory_format=torch.contiguous_format)
    norm = model.meta.normalization
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (norm.mean, norm.std))
    x = normalize(torch.from_numpy(images).permute(0, 3, 1, 2), mean, std).contiguous()
    with torch.no_grad():
        want = tta_logits(plain, x, model.tta).numpy()  # all 150 at once, NCHW
    assert got.shape == want.shape == (150, len(model.classes))
    assert np.abs(got - want).max() < 1e-4

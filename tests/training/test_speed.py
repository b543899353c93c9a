"""The speed recipe: presets, alternating flips, the whitened stem, weight averaging, test-time
augmentation, the streamed (non-resident) data path and precision choices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import imgclf
from imgclf.core.device import amp_dtype
from imgclf.core.errors import UserError
from imgclf.data.augment import AugmentPolicy, alternate_flips, augment
from imgclf.models import create_model
from imgclf.models.forward import predict_logits, tta_logits
from imgclf.training import batches
from imgclf.training.optim import make_optimizer
from imgclf.training.presets import preset_settings

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_presets_scale_with_hardware_and_data():
    cifar_cpu, notes = preset_settings("fast", CPU, 50_000, 32)
    assert cifar_cpu["img_size"] == 32 and cifar_cpu["epochs"] == 10 and cifar_cpu["batch_size"] == 512
    assert cifar_cpu["optimizer"] == "sgd" and cifar_cpu["ema"] and cifar_cpu["tta"] == "flip-crop"
    assert cifar_cpu["augment"]["alternate_flip"] and cifar_cpu["augment"]["translate"] == 2
    assert any("preset fast on CPU" in n for n in notes)
    cifar_gpu, _ = preset_settings("fast", GPU, 50_000, 32)
    assert cifar_gpu["batch_size"] == 1024 and cifar_gpu["lr"] == pytest.approx(2 * cifar_cpu["lr"])  # linear scaling
    assert np.prod(cifar_gpu["model_kwargs"]["widths"]) > np.prod(cifar_cpu["model_kwargs"]["widths"])
    best, _ = preset_settings("best", GPU, 50_000, 32)
    assert best["epochs"] > cifar_gpu["epochs"] and best["augment"]["cutout"] > 0
    # A few hundred photos: more epochs, a batch that still gives many steps, capped resolution.
    photos, _ = preset_settings("balanced", CPU, 400, 500, allow_flip=False)
    assert photos["epochs"] == 4 * 18 and photos["batch_size"] == 16 and photos["img_size"] == 96
    assert photos["tta"] == "crop" and not photos["augment"]["flip"] and photos["augment"]["resized_crop"]
    with pytest.raises(UserError, match="unknown preset 'quick'"):
        preset_settings("quick", CPU, 100, 32)


@pytest.mark.slow
def test_preset_run_records_its_choices_and_explicit_settings_win(shapes, tmp_path):
    # On the CPU wherever it runs: the preset's widths differ by device (the GPU's are checked above).
    run = imgclf.train(shapes, preset="fast", epochs=3, seed=1, device="cpu", out=tmp_path / "run", verbose=False)
    cfg = yaml.safe_load((run.path / "config.yaml").read_text())
    assert cfg["preset"] == "fast" and cfg["epochs"] == 3  # the flag beat the preset's epochs
    assert cfg["optimizer"] == "sgd" and cfg["momentum"] == 0.85 and cfg["ema"] is True
    assert cfg["augment"]["alternate_flip"] is True and cfg["tta"] == "flip-crop"
    assert cfg["model_kwargs"]["widths"] == [32, 128, 128] and cfg["model_kwargs"]["whiten"] is True
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["tta"] == "flip-crop" and meta["training"]["preset"] == "fast"
    assert run.metrics["accuracy"] > 0.5
    with pytest.raises(UserError, match="unknown preset"):
        imgclf.train(shapes, preset="turbo", out=tmp_path / "bad", verbose=False)


def test_alternating_flip_shows_every_image_both_ways_in_two_epochs():
    first = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.5
    e0, e1, e2 = (alternate_flips(first, e) for e in range(3))
    assert torch.equal(e0 ^ e1, torch.ones(1000, dtype=torch.bool)) and torch.equal(e0, e2)
    assert 400 < int(e0.sum()) < 600
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mask = torch.tensor([True, False, True, False])
    y = augment(x, AugmentPolicy(flip=True, alternate_flip=True), flip_mask=mask)
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[1], x[1])


def test_whitened_stem_decorrelates_patches_and_is_frozen():
    torch.manual_seed(0)
    net = create_model("resnet_fast", 3, img_size=32)
    # Smooth, correlated images: neighbouring pixels and channels move together.
    x = torch.nn.functional.avg_pool2d(torch.randn(64, 3, 40, 40), 5, 1)[..., :32, :32] * 3
    net.init_from_data(x)
    conv = net.stem[0][0]
    assert not conv.weight.requires_grad
    with torch.no_grad():
        out = torch.nn.functional.conv2d(x, conv.weight)  # (N, C, H, W), no padding
    half = conv.out_channels // 2
    feats = out[:, :half].permute(0, 2, 3, 1).reshape(-1, half)
    cov = feats.T @ feats / len(feats)
    off_diag = cov - torch.diag(torch.diag(cov))
    assert off_diag.abs().max() < 0.05 * torch.diag(cov).max()  # decorrelated
    assert torch.allclose(out[:, half:], -out[:, :half])  # both signs
    plain = create_model("resnet_fast", 3, img_size=32, whiten=False)
    w0 = plain.stem[0][0].weight.clone()
    plain.init_from_data(x)
    assert torch.equal(plain.stem[0][0].weight, w0) and plain.stem[0][0].weight.requires_grad


def test_tta_views_make_flip_tta_mirror_invariant():
    torch.manual_seed(0)
    net = create_model("simple_cnn", 4, img_size=16).eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(tta_logits(net, x, "flip"), tta_logits(net, x.flip(-1), "flip"), atol=1e-5)
        plain, crop = tta_logits(net, x, "none"), tta_logits(net, x, "flip-crop")
        assert crop.shape == plain.shape and not torch.allclose(crop, plain)
    imgs = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    a = predict_logits(net, imgs, [0.5] * 3, [0.25] * 3, CPU, tta="flip")
    b = predict_logits(net, imgs[:, :, ::-1].copy(), [0.5] * 3, [0.25] * 3, CPU, tta="flip")
    assert np.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="unknown TTA mode"):
        tta_logits(net, x, "mirror")


@pytest.mark.slow
def test_tta_flag_and_bad_values(shapes, tmp_path):
    run = imgclf.train(shapes, epochs=2, tta="crop", out=tmp_path / "run", verbose=False)
    assert imgclf.load(run.path).tta == "crop"
    assert imgclf.load(run.path, tta="none").tta == "none"
    with pytest.raises(UserError, match="unknown --tta"):
        imgclf.load(run.path, tta="sideways")
    with pytest.raises(UserError, match="unknown tta"):
        imgclf.train(shapes, epochs=1, tta="sideways", out=tmp_path / "bad", verbose=False)


@pytest.mark.slow
def test_weight_average_ships_smoothed_weights(shapes, tmp_path):
    # Not evaluated: a finished run keeps no training state, and the state is what is looked at here.
    run = imgclf.train(shapes, epochs=4, ema=True, out=tmp_path / "run", evaluate=False, verbose=False)
    from safetensors.torch import load_file

    shipped, last = load_file(str(run.path / "model.safetensors")), load_file(str(run.path / "last.safetensors"))
    from imgclf.store.checkpoint import load_training_state

    net = create_model("resnet_fast", 3, img_size=32, **run.config.model_kwargs)
    ema_net = torch.optim.swa_utils.AveragedModel(net)
    net.stem[0][0].weight.requires_grad_(False)  # whitened, as in training
    opt = make_optimizer(net, "adamw", 1e-3, 0.05)
    load_training_state(run.path / "train_state.safetensors", net, opt, ema_net)
    raw = net.state_dict()
    # The state file keeps both: the raw weights to go on training from, the average to ship.
    assert torch.equal(ema_net.module.state_dict()["head.weight"], last["head.weight"])
    assert not torch.allclose(raw["head.weight"], last["head.weight"])
    assert set(shipped) == set(raw)
    run = imgclf.train(resume=run.path, verbose=False)  # every epoch done: evaluated, and finished
    assert run.metrics["accuracy"] > 0.6 and not (run.path / "train_state.safetensors").exists()


@pytest.mark.slow
def test_streamed_data_path_trains_like_the_resident_one(shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(batches, "_memory_budget", lambda device: 0)  # pretend nothing fits in memory
    run = imgclf.train(shapes, epochs=8, out=tmp_path / "run", verbose=False)
    assert run.metrics["accuracy"] >= 0.8


def test_cpu_bf16_only_for_training_where_native(monkeypatch):
    from imgclf.core import device as dev

    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype(CPU) == torch.bfloat16 and amp_dtype(CPU, training=False) is None
    assert amp_dtype(CPU, "off") is None
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    assert amp_dtype(CPU) is None and amp_dtype(CPU, "bf16") == torch.bfloat16
    with pytest.raises(UserError, match="fp16 autocast is for GPUs"):
        amp_dtype(CPU, "fp16")


@pytest.mark.slow
def test_apple_gpu_is_used_only_when_asked_and_training_says_so(shapes, tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is chosen before the CPU")
    from imgclf.core import device
    from imgclf.core.device import apple_gpu_note, pick_device

    monkeypatch.setattr(device, "mps_available", lambda: True)  # an Apple-silicon Mac
    assert pick_device("auto").type != "mps" and not apple_gpu_note("cpu", CPU)
    imgclf.train(shapes, epochs=1, out=tmp_path / "run")
    out = capsys.readouterr().out
    assert "device cpu" in out and "default: device=cpu: Apple's GPU (MPS) is not used by default" in out, out
    assert "--device mps to try it" in out
    monkeypatch.setattr(device, "mps_available", lambda: False)  # anywhere else: nothing said
    imgclf.train(shapes, epochs=1, out=tmp_path / "run2")
    assert "Apple's GPU" not in capsys.readouterr().out


@pytest.mark.slow
def test_dedupe_removes_conflicting_and_leaking_copies(shapes, tmp_path, capsys):
    import shutil

    src = sorted((shapes / "square").glob("*.png"))
    shutil.copy(src[0], shapes / "disc" / "copy_of_square.png")  # the same file under two labels
    run = imgclf.train(shapes, epochs=1, out=tmp_path / "warned", verbose=True)
    assert "carry different labels" in capsys.readouterr().out
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["deduplicated"] == []
    run = imgclf.train(shapes, epochs=1, dedupe=True, out=tmp_path / "deduped", verbose=False)
    report = json.loads((run.path / "data_report.json").read_text())
    assert sorted(report["deduplicated"]) == sorted([str(src[0]), str(shapes / "disc" / "copy_of_square.png")])
    assert sum(report["totals"].values()) == 3 * 30 + 1 - 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_preset_fast_compiles_and_trains(shapes, tmp_path):
    run = imgclf.train(shapes, preset="fast", epochs=3, compile="on", out=tmp_path / "run", verbose=False)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["training"]["device"].startswith("cuda") and run.metrics["accuracy"] > 0.5
    assert meta["training"]["first_step_seconds"] > 0


def test_compile_pays_back_only_with_enough_training_ahead():
    from imgclf.training.timing import CompileChoice, compile_pays

    assert not compile_pays(40) and compile_pays(3600)  # the rest of a 90 s budget; an hour's
    choice = CompileChoice("auto", GPU, cached=False)
    assert choice.pending and not choice.on
    # 7 steps in 10 s, the first 4 s of them (warm-up): 1 s a step; 100 steps ahead, 50 s of budget left.
    assert not choice.decide(10.0, 4.0, 7, 100, 50.0) and choice.record["seconds_ahead"] == 50.0
    assert choice.record["step_ms"] == 1000.0 and not choice.pending
    assert CompileChoice("auto", GPU, cached=False).decide(10.0, 0.0, 10, 1000, None)  # 1000 s ahead
    assert not CompileChoice("auto", CPU, cached=False).pending and CompileChoice("on", CPU, cached=False).on
    assert not CompileChoice("on", GPU, cached=True).on  # the feature cache's upper layers run as they are


@pytest.mark.slow
@pytest.mark.parametrize("cost, compiles", [(0.0, True), (1e9, False)])
def test_compile_auto_times_an_epoch_before_compiling(shapes, tmp_path, monkeypatch, capsys, cost, compiles):
    """On CUDA, auto runs the first epoch uncompiled and compiles from the second only when the time
    ahead pays it back. Here on any machine: the choice is told it runs on CUDA, compiling is
    priced at `cost` seconds, and torch.compile is recorded rather than run."""
    from imgclf.training import timing

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m: compiled.append(m) or m)
    monkeypatch.setattr(timing, "COMPILE_S", cost)
    init = timing.CompileChoice.__init__
    monkeypatch.setattr(timing.CompileChoice, "__init__", lambda self, s, d, cached: init(self, s, GPU, cached))
    run = imgclf.train(shapes, model="simple_cnn", epochs=3, img_size=16, out=tmp_path / "run", verbose=True)
    record = json.loads((run.path / "model.json").read_text())["training"]["compile"]
    assert record["setting"] == "auto" and record["on"] is compiles and record["seconds_ahead"] > 0
    assert record["from_epoch"] == (2 if compiles else None) and len(compiled) == int(compiles)
    out = capsys.readouterr().out
    assert ("torch.compile: on from epoch 2" in out) is compiles and ("torch.compile: off" in out) is not compiles


@pytest.mark.slow
def test_compile_auto_stays_off_on_a_cpu(tiny_run):
    record = json.loads((tiny_run / "model.json").read_text())["training"]["compile"]
    assert record == {"setting": "auto", "on": False, "from_epoch": None}

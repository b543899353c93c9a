"""Fine-tuning pretrained timm backbones, offline: weights from a file, a folder or the hub cache,
the two-stage schedule (head alone, then layer-wise learning rates), `imgclf models`, `lr-find`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_shapes_dataset, reporting

import imgclf
from imgclf.core.errors import UserError
from imgclf.models import create_model
from imgclf.settings.config import TrainConfig

timm = pytest.importorskip("timm")
ARCH = "resnet10t"  # small, with BatchNorm and a published pretrained config (timm/resnet10t.c3_in1k)
HUB_ID = "timm/resnet10t.c3_in1k"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """'Pretrained' weights we make ourselves (no network): a seeded timm model with an ImageNet
    head, saved as model.safetensors in a snapshot-like folder and as a plain .pth state dict."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model(ARCH, num_classes=1000).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so "unchanged" means something
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    root = tmp_path_factory.mktemp("weights")
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    (root / "snapshot").mkdir()
    save_file(sd, str(root / "snapshot" / "model.safetensors"))
    torch.save(sd, root / "weights.pth")
    return net, root


def same_features(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval().forward_features(x), b.eval().forward_features(x))


@pytest.mark.slow
def test_weights_from_file_pth_and_folder_give_identical_features(source):
    net, root = source
    for weights in (root / "snapshot" / "model.safetensors", root / "weights.pth", root / "snapshot"):
        with pytest.warns(UserWarning, match="newly initialised: fc.weight, fc.bias"):
            mine = create_model(f"timm/{ARCH}", num_classes=3, weights=str(weights))
        assert same_features(net, mine), weights
        assert mine.get_classifier().out_features == 3
    (root / "two").mkdir()
    for name in ("a.pth", "b.pth"):
        torch.save(net.state_dict(), root / "two" / name)
    with pytest.raises(UserError, match="several weight files.*a.pth, b.pth"):
        create_model(f"timm/{ARCH}", 3, weights=str(root / "two"))
    (root / "empty").mkdir()
    with pytest.raises(UserError, match="no weight file in .*empty: expected model.safetensors"):
        create_model(f"timm/{ARCH}", 3, weights=str(root / "empty"))


def test_pretrained_comes_from_the_hub_cache_without_network(source, tmp_path, monkeypatch):
    """A hub cache folder as huggingface_hub writes it: found by try_to_load_from_cache, loaded by
    timm's own loader, no download attempted (HF_HUB_OFFLINE); `models` reports it as here."""
    from huggingface_hub import constants

    net, root = source
    repo = tmp_path / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "model.safetensors").symlink_to(root / "snapshot" / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    mine = create_model(f"timm/{ARCH}", num_classes=3, pretrained=True)
    assert same_features(net, mine) and mine.weights_origin["source"] == "cache"
    row = imgclf.list_models(ARCH, limit=1)[0]
    assert row["name"] == f"timm/{ARCH}" and row["local_weights"].endswith("model.safetensors")
    # Also usable as --weights DIR: the copied cache folder itself.
    assert same_features(net, create_model(f"timm/{ARCH}", num_classes=3, weights=str(repo)))


# Offline declared (HF_HUB_OFFLINE), or a hub that cannot be reached (a closed local port stands in
# for a machine without network): the same one-line error at once, never ~30 s of retries.
@pytest.mark.slow
@pytest.mark.parametrize(
    "offline",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
    ids=["hf-hub-offline", "hub-unreachable"],
)
def test_offline_pretrained_without_weights_names_the_file(shapes, tmp_path, offline):
    env = {
        **os.environ,
        **offline,
        "HF_HOME": str(tmp_path / "empty-hf"),
        "PYTHONPATH": str(Path(imgclf.__file__).parents[1]),
    }
    for k in ("HF_HUB_CACHE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    if "HF_HUB_OFFLINE" not in offline:
        env.pop("HF_HUB_OFFLINE", None)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgclf.cli",
            "train",
            str(shapes),
            "--model",
            f"timm/{ARCH}",
            "--pretrained",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    msg = p.stderr
    assert f"model.safetensors of {HUB_ID}" in msg
    assert f"/{HUB_ID}/resolve/main/model.safetensors" in msg
    assert str(tmp_path / "empty-hf" / "hub" / f"models--{HUB_ID.replace('/', '--')}") in msg
    assert "--weights FILE" in msg
    assert not (tmp_path / "run").exists()


# --- the two-stage schedule -------------------------------------------------------------------


def _fit(model, tmp_path, resume=False, on_epoch=None, **settings):
    from rich.console import Console

    from imgclf.data.augment import AugmentPolicy
    from imgclf.training.loop import SplitData, fit

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(40, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(40) % 3
    cfg = TrainConfig(
        model=f"timm/{ARCH}",
        weights="w",
        img_size=32,
        batch_size=16,
        lr=1e-3,
        weight_decay=0.05,
        patience=5,
        channels_last=False,
        amp="off",
        **settings,
    )
    data = SplitData(images, np.arange(32), np.arange(32, 40), labels, [0.5] * 3, [0.25] * 3)
    return fit(
        model,
        cfg,
        data,
        AugmentPolicy(flip=False),
        tmp_path,
        torch.device("cpu"),
        Console(quiet=True),
        resume=resume,
        on_epoch=on_epoch,
    )


def _fresh(source):
    net = timm.create_model(ARCH, num_classes=3)
    net.load_state_dict({k: v for k, v in source[0].state_dict().items() if not k.startswith("fc.")}, strict=False)
    return net


@pytest.mark.slow
def test_stage_one_trains_only_the_head_and_keeps_batchnorm_statistics(source, tmp_path):
    net = _fresh(source)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = _fit(net, tmp_path, epochs=1, freeze_epochs=1, layer_decay=0.7)
    after = net.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]  # running_mean/var and num_batches_tracked included
    assert [s["name"] for s in result.stages] == ["head"]


@pytest.mark.slow
def test_stage_two_resumes_with_layerwise_learning_rates(source, tmp_path):
    class Stop(Exception):
        pass

    def stop_after(n):
        def on_epoch(epoch, row):
            if epoch == n:
                raise Stop

        return on_epoch

    # Killed at the stage boundary (the state holds the head-only optimizer), then inside stage 2.
    for killed in (1, 2):
        run = tmp_path / f"killed-{killed}"
        with pytest.raises(Stop):
            _fit(_fresh(source), run, epochs=3, freeze_epochs=1, layer_decay=0.7, on_epoch=stop_after(killed))
        result = _fit(_fresh(source), run, resume=True, epochs=3, freeze_epochs=1, layer_decay=0.7)
        assert [r["stage"] for r in result.history] == [1, 2, 2]
    head, full = result.stages
    assert head["epochs"] == [1, 1] and full["epochs"] == [2, 3]
    lrs = [g["peak_lr"] for g in full["lr_groups"]]
    assert lrs == sorted(lrs) and lrs[0] < lrs[-1] == pytest.approx(1e-3)  # stem slowest, head at --lr
    assert full["lr_groups"][0]["modules"].startswith("conv1") and full["lr_groups"][-1]["modules"] == "fc"
    assert lrs[0] == pytest.approx(1e-3 * 0.7 ** (len(lrs) - 1))


@pytest.fixture(scope="module")
def finetuned(source, tmp_path_factory):
    data = make_shapes_dataset(tmp_path_factory.mktemp("ft") / "shapes")
    out = tmp_path_factory.mktemp("ft-run") / "run"
    # amp off: CPU bf16 spends seconds creating kernels for each new shape, which a tiny run never repays.
    # The classic two stages (the default on a CPU now starts from a linear probe instead: test_packaged_weights).
    with reporting():
        run = imgclf.train(
            data,
            model=f"timm/{ARCH}",
            weights=str(source[1] / "snapshot"),
            img_size=32,
            epochs=2,
            out=out,
            verbose=False,
            amp="off",
            probe=False,
            freeze_stride=0,
        )
    return run, data


@pytest.mark.slow
def test_finetune_run_records_both_stages_and_the_weights_preprocessing(finetuned):
    run, _ = finetuned
    meta = json.loads((run.path / "model.json").read_text())
    stages = meta["training"]["stages"]
    assert [s["name"] for s in stages] == ["head", "all layers"] and run.config.freeze_epochs == 1
    assert stages[1]["first_layer_lr"] < stages[1]["last_layer_lr"] == pytest.approx(run.config.lr)
    assert stages[0]["peak_lr"] > stages[1]["peak_lr"]  # a fresh head takes the from-scratch rate
    pre = meta["pretrained"]
    assert pre["weights_from"]["source"] == "file" and pre["expected"]["weights"] == HUB_ID
    assert meta["normalization"] == {"mean": pre["expected"]["mean"], "std": pre["expected"]["std"]}
    assert "bicubic" in pre["applied"]["interpolation"] and "176" in str(pre["applied"]["input_size"])
    history = (run.path / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,stage,") and [r.split(",")[1] for r in history[1:]] == ["1", "2"]
    html = (run.path / "report.html").read_text()
    assert "Training stages" in html and "Learning rate per layer group" in html and "timm/resnet10t.c3_in1k" in html


def test_finetune_defaults_use_the_weights_input_size(source, tmp_path):
    from imgclf.training.defaults import resolve

    weights = str(source[1] / "weights.pth")
    cfg, notes = resolve(TrainConfig(model=f"timm/{ARCH}", weights=weights, probe=False), [], torch.device("cuda"))
    assert cfg.img_size == 176 and cfg.freeze_epochs >= 1 and 0.65 <= cfg.layer_decay <= 0.9
    assert cfg.freeze_stride == 0  # a GPU fine-tunes every layer
    assert any("pretrained weights were trained at" in n for n in notes)
    # A CPU pays for every pixel and every backward pass: at most 128 px, a probe, early layers frozen.
    cpu, notes = resolve(TrainConfig(model=f"timm/{ARCH}", weights=weights), [], torch.device("cpu"))
    assert cpu.img_size == 128 and cpu.probe and cpu.freeze_epochs == 0 and cpu.freeze_stride == 8
    assert cpu.time_budget >= 90 and cpu.epochs == 200  # no --epochs: the budget and a plateau decide
    plain, notes = resolve(TrainConfig(model=f"timm/{ARCH}", img_size=32), [], torch.device("cpu"))
    assert plain.freeze_epochs == 0 and plain.layer_decay == 1.0
    # A named timm architecture without weights trains from scratch (as timm's scripts do), and says so.
    assert any(n.startswith(f"pretrained=False: timm/{ARCH} starts from random weights") for n in notes)
    assert not any(
        n.startswith("pretrained=False") for n in resolve(TrainConfig(model="lite0"), [], torch.device("cpu"))[1]
    )
    # `--model resnet10t`, as Keras and fastai name architectures: timm's, said and recorded as such.
    bare, notes = resolve(TrainConfig(model=ARCH, img_size=32), [], torch.device("cpu"))
    assert bare.model == f"timm/{ARCH}" and notes[0].startswith(f"model=timm/{ARCH}: timm's architecture of that name")
    with pytest.raises(UserError, match="apply to timm models"):
        resolve(TrainConfig(model="simple_cnn", img_size=32, freeze_epochs=2), [], torch.device("cpu"))


# --- imgclf models, imgclf lr-find -------------------------------------------------------------


def test_models_lists_params_and_flops():
    from typer.testing import CliRunner

    from imgclf.cli import app

    r = CliRunner().invoke(app, ["models", "resnet1", "--limit", "3", "--size", "160"])
    assert r.exit_code == 0, r.output
    assert "timm/resnet10t" in r.output and "5.44M" in r.output and "GFLOPs@160" in r.output
    assert "showing 3 of" in r.output
    r = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})  # a whole row on one line in a terminal
    assert "timm/tf_efficientnet_lite0  4.65M" in r.output and "yes: --model lite0\n" in r.output
    assert max(len(line.rstrip()) for line in r.output.splitlines()) <= 80, r.output
    rows = imgclf.list_models("resnet1*", size=224, limit=3)
    assert rows[0]["name"] == "timm/resnet10t" and rows[0]["gflops"] == pytest.approx(2.19, abs=0.01)
    for asked, said in (({"limit": 0}, "--limit must be at least 1, not 0"), ({"size": 100_000}, "--size must be")):
        with pytest.raises(UserError, match=said):
            imgclf.list_models("resnet1*", **asked)


@pytest.mark.slow
def test_lr_find_suggests_a_finite_rate_and_plots_it(shapes, tmp_path):
    result = imgclf.lr_find(
        shapes,
        model="simple_cnn",
        model_kwargs={"width": 8},
        img_size=32,
        steps=30,
        amp="off",
        out=tmp_path / "lrf",
        verbose=False,
    )
    assert np.isfinite(result["suggested_lr"]) and 1e-7 <= result["suggested_lr"] <= 10
    assert result["min_loss_lr_div10"] > 0 and len(result["lr"]) == len(result["smoothed"]) <= 30
    assert (tmp_path / "lrf" / "lr_find.png").stat().st_size > 1000
    assert json.loads((tmp_path / "lrf" / "lr_find.json").read_text())["suggested_lr"] == result["suggested_lr"]

"""CPU fine-tuning on stored maps of the frozen layers, with depthwise weights frozen
(training.featcache, training.finetune)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgclf.settings.config import TrainConfig
from imgclf.training.featcache import FeatureCache, lower, random_crop, split_point
from imgclf.training.finetune import depthwise_weights, frozen_prefix

timm = pytest.importorskip("timm")
ARCH = "tf_efficientnet_lite0"
MEAN, STD = [0.5] * 3, [0.5] * 3


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = timm.create_model(ARCH, num_classes=3).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so "unchanged" means something
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    return net


def _data(n: int = 24, side: int = 64):
    from imgclf.training.loop import SplitData

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n, side, side, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    return SplitData(images, np.arange(n - 6), np.arange(n - 6, n), labels, MEAN, STD)


def test_the_split_network_computes_what_the_whole_one_does():
    net = _net()
    k = split_point(net, frozen_prefix(net, 8))
    assert k == 3  # Lite0's stride-8 stage is blocks.2
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        split = FeatureCache(net, k, torch.empty(0), torch.empty(0)).upper(lower(net, k, x))
        assert torch.allclose(split, net(x), atol=1e-5)
    assert split_point(net, frozen_prefix(net, 4)) == 2
    assert split_point(net, frozen_prefix(net, 8)[:-1]) is None  # ends inside a stage
    resnet = timm.create_model("resnet10t")
    assert split_point(resnet, frozen_prefix(resnet, 8)) is None  # not an EfficientNet body: pixels


@pytest.mark.slow
def test_the_probe_keeps_the_maps_of_every_training_image_and_its_mirror():
    from rich.console import Console

    from imgclf.training.probe import fit_probe

    net, data = _net(), _data()
    record, maps = fit_probe(
        net,
        data.images,
        data.train,
        data.val,
        data.labels,
        MEAN,
        STD,
        torch.device("cpu"),
        None,
        True,
        Console(quiet=True),
        keep_lower=3,
    )
    assert maps.train.shape == (2, len(data.train), 8, 8, 40) and maps.train.dtype == torch.float16
    assert maps.val.shape == (len(data.val), 8, 8, 40)
    assert record["training_views"] == 2 * len(data.train)
    built = FeatureCache.build(
        net,
        3,
        data.images,
        data.train,
        data.labels,
        torch.tensor(MEAN).view(1, 3, 1, 1),
        torch.tensor(STD).view(1, 3, 1, 1),
        channels_last=False,
        val=data.val,
    )
    assert torch.allclose(maps.train.float(), built.maps.float(), atol=2e-2)
    assert torch.allclose(maps.val.float(), built.val.float(), atol=2e-2)
    # View 1 is the mirror image's map, not the map mirrored (the network is not mirror-symmetric).
    assert not torch.allclose(maps.train[1].float(), maps.train[0].flip(2).float(), atol=2e-2)


@pytest.mark.parametrize("seed", range(5))
def test_a_random_crop_is_a_window_of_each_map(seed):
    maps = torch.arange(3 * 16 * 16 * 2).view(3, 16, 16, 2)
    out = random_crop(maps, (0.35, 1.0), torch.Generator().manual_seed(seed))
    b, h, w, c = out.shape
    assert (b, c) == (3, 2) and h == w and 9 <= h <= 16
    for i in range(3):
        y0, x0 = divmod(int(out[i, 0, 0, 0]) // 2 - i * 256, 16)
        assert torch.equal(out[i], maps[i, y0 : y0 + h, x0 : x0 + w])


def _fit(net, tmp_path, maps=None, **settings):
    from rich.console import Console

    from imgclf.data.augment import AugmentPolicy
    from imgclf.training.loop import fit

    cfg = TrainConfig(
        model=f"timm/{ARCH}",
        weights="w",
        img_size=64,
        batch_size=8,
        lr=1e-3,
        weight_decay=0.05,
        patience=5,
        channels_last=True,
        amp="off",
        epochs=2,
        freeze_stride=8,
        layer_decay=0.8,
        **settings,
    )
    return fit(
        net,
        cfg,
        _data(),
        AugmentPolicy(flip=True, resized_crop=(0.35, 1.0)),
        tmp_path,
        torch.device("cpu"),
        Console(quiet=True),
        feature_maps=maps,
    )


@pytest.mark.slow
def test_fine_tuning_on_stored_maps_trains_only_the_upper_pointwise_layers(tmp_path):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    dw = set(depthwise_weights(net, set()))
    assert dw and all(".conv_dw." in n for n in dw)
    result = _fit(net, tmp_path / "cached", feature_cache=True, freeze_depthwise=True)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not changed & dw  # depthwise filters kept
    assert not {k for k in changed if k.startswith(("conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2"))}
    assert {
        "blocks.3.0.conv_pw.weight",
        "blocks.6.0.conv_pwl.weight",
        "conv_head.weight",
        "classifier.weight",
    } <= changed
    assert not {k for k in changed if "running_" in k}  # BatchNorm statistics frozen too
    assert result.stages[0]["frozen_depthwise"] == len(dw) - len(
        [n for n in dw if n.startswith(("blocks.0", "blocks.1", "blocks.2"))]
    )


@pytest.mark.slow
def test_maps_from_the_probe_and_maps_computed_on_resume_train_alike(tmp_path):
    from rich.console import Console

    from imgclf.training.probe import fit_probe

    data = _data()
    net = _net()
    _, maps = fit_probe(
        net,
        data.images,
        data.train,
        data.val,
        data.labels,
        MEAN,
        STD,
        torch.device("cpu"),
        None,
        True,
        Console(quiet=True),
        keep_lower=3,
    )
    probed = {k: v.clone() for k, v in net.state_dict().items()}
    given = _fit(net, tmp_path / "given", maps=maps, feature_cache=True, freeze_depthwise=True)
    net.load_state_dict(probed)
    built = _fit(net, tmp_path / "built", feature_cache=True, freeze_depthwise=True)  # as a resumed run does
    for a, b in zip(given.history, built.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-2)
    pixels = _fit(_net(), tmp_path / "pixels", feature_cache=False, freeze_depthwise=False)
    assert [r["epoch"] for r in pixels.history] == [1, 2] and "frozen_depthwise" in pixels.stages[0]


@pytest.mark.slow
def test_validation_on_the_stored_maps_scores_what_validation_on_pixels_does(tmp_path):
    from rich.console import Console

    from imgclf.training.loop import _validate
    from imgclf.training.probe import fit_probe

    data, net = _data(), _net()
    _, maps = fit_probe(
        net,
        data.images,
        data.train,
        data.val,
        data.labels,
        MEAN,
        STD,
        torch.device("cpu"),
        None,
        True,
        Console(quiet=True),
        keep_lower=3,
    )
    result = _fit(net, tmp_path, maps=maps, feature_cache=True, freeze_depthwise=True)
    # `net` now holds the last epoch's weights, which that epoch's validation row judged on the maps.
    on_pixels = _validate(net, data, torch.device("cpu"), None, TrainConfig(channels_last=True), 16)
    last = result.history[-1]
    assert last["val_acc"] == on_pixels["val_acc"]
    assert last["val_loss"] == pytest.approx(on_pixels["val_loss"], rel=1e-2)
    assert last["val_loss"] != on_pixels["val_loss"]  # float16 maps: computed the other way, not copied


def test_planning_the_cache_leaves_the_network_untouched():
    from imgclf.training.featcache import cache_split

    net = _net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert cache_split(net, TrainConfig(feature_cache=True, freeze_stride=8, img_size=64), 100) == 3
    assert cache_split(net, TrainConfig(feature_cache=False, freeze_stride=8, img_size=64), 100) is None
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items()) and net.training


def test_the_cache_is_a_cpu_default_and_refused_without_frozen_layers():
    from imgclf.core.errors import UserError
    from imgclf.training.defaults import resolve

    cpu, notes = resolve(TrainConfig(model="lite0"), [], torch.device("cpu"))
    assert cpu.feature_cache and cpu.freeze_depthwise
    assert any(n.startswith("feature_cache=True") for n in notes) and any(
        n.startswith("freeze_depthwise=True") for n in notes
    )
    gpu, _ = resolve(TrainConfig(model="lite0"), [], torch.device("cuda"))
    assert not gpu.feature_cache and not gpu.freeze_depthwise and gpu.freeze_stride == 0
    assert not resolve(TrainConfig(model="lite0", freeze_stride=0), [], torch.device("cpu"))[0].feature_cache
    with pytest.raises(UserError, match="--feature-cache stores the output of frozen lower layers"):
        resolve(TrainConfig(model="lite0", freeze_stride=0, feature_cache=True), [], torch.device("cpu"))


@pytest.mark.slow
def test_the_probe_runs_in_onnx_runtime_on_a_cpu_and_falls_back_to_pytorch(monkeypatch):
    from rich.console import Console

    from imgclf.training import ortembed
    from imgclf.training.probe import _Features, fit_probe

    net, data = _net(), _data()
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    fast = ortembed.OrtEmbedder(net, 64, 3)
    assert not net.training  # the export leaves the network's mode as it found it
    feats, low = fast(x.numpy())
    with torch.no_grad():
        assert np.allclose(feats, _Features(net)(x).numpy(), atol=1e-4)
        assert torch.allclose(low.float(), lower(net, 3, x).permute(0, 2, 3, 1), atol=1e-2)
    assert ortembed.ort_embedder(net, 64, None, torch.device("cuda"), None) is None  # GPUs: torch

    def broken(*a, **k):
        raise RuntimeError("no")

    monkeypatch.setattr(ortembed, "OrtEmbedder", broken)
    console = Console(record=True, width=200)
    record, maps = fit_probe(
        _net(),
        data.images,
        data.train,
        data.val,
        data.labels,
        MEAN,
        STD,
        torch.device("cpu"),
        None,
        False,
        console,
        keep_lower=3,
    )
    assert "in PyTorch (ONNX Runtime could not take this network" in console.export_text()
    assert maps.train.shape == (2, len(data.train), 8, 8, 40) and record["training_views"] == 2 * len(data.train)
    assert maps.val.shape == (len(data.val), 8, 8, 40)


def test_a_network_onnx_cannot_take_fails_its_export_without_printing_its_graph(capfd):
    import torch.nn as nn

    from imgclf.training import ortembed

    # An adaptive pool to 2x2 from 3x3 maps: the TorchScript exporter refuses it, and torch prints
    # the whole IR graph from C++ first, past sys.stdout. (simple_cnn's own pool now exports.)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()
    print("before")
    with pytest.raises(Exception) as e:
        ortembed.onnx_graph(net, 3, ["logits"], input_name="input")
    print("after")
    out = capfd.readouterr().out
    assert out == "before\nafter\n", out[:300]
    assert "Symbolic" in type(e.value).__name__

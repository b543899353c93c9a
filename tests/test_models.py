"""The model registry: shapes, deterministic rebuilds, learning, timm weights from local files."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from imgclf.errors import UserError
from imgclf.models import create_model, list_models, model_defaults
from imgclf.training.checkpoint import load_weights, save_weights

SMALL = {"simple_cnn": {"width": 8}, "resnet_fast": {"widths": [8, 16, 16], "stem_width": 8}}


@pytest.mark.parametrize("name", ["simple_cnn", "resnet_fast"])
@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_shapes_any_size_and_channels(name, size):
    for chans in (3, 1):
        net = create_model(name, num_classes=5, in_chans=chans, img_size=size, **SMALL[name]).eval()
        assert net(torch.randn(2, chans, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name", ["simple_cnn", "resnet_fast"])
def test_rebuild_from_recorded_settings_round_trips(name, tmp_path):
    kwargs = {**model_defaults(name), **SMALL[name]}
    net = create_model(name, 4, img_size=32, **kwargs).eval()
    save_weights(tmp_path / "m.safetensors", net.state_dict())
    again = create_model(name, 4, img_size=32, **kwargs).eval()
    again.load_state_dict(load_weights(tmp_path / "m.safetensors"))
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(net(x), again(x))


@pytest.mark.parametrize("name", ["simple_cnn", "resnet_fast"])
def test_learns_a_tiny_problem(name):
    torch.manual_seed(0)
    x = torch.randn(32, 3, 32, 32)
    y = torch.arange(32) % 2
    x[y == 1, 0, 8:24, 8:24] += 2.0          # class 1: a bright red square
    net = create_model(name, 2, img_size=32, **SMALL[name])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() == 1.0


def test_unknown_names_and_settings_explain():
    assert {"simple_cnn", "resnet_fast"} <= set(list_models())
    with pytest.raises(UserError, match="available: resnet_fast, simple_cnn.*timm/"):
        create_model("vgg_huge", 3)
    with pytest.raises(UserError, match="unknown setting.*colour"):
        create_model("simple_cnn", 3, colour=1)
    with pytest.raises(UserError, match="timm.list_models"):
        create_model("timm/not_a_real_arch", 3)


def test_timm_weights_from_local_files(tmp_path):
    pytest.importorskip("timm")
    import timm

    source = timm.create_model("resnet10t", num_classes=7)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    key = "conv1.0.weight"
    for f in ("w.safetensors", "w.pth"):
        with pytest.warns(UserWarning, match="newly initialised: fc"):
            net = create_model("timm/resnet10t", num_classes=3, weights=str(tmp_path / f))
        assert torch.equal(net.state_dict()[key], source.state_dict()[key])   # backbone came from the file
        assert net.get_classifier().out_features == 3                          # fresh head for 3 classes
    other = timm.create_model("mobilenetv3_small_050", num_classes=3)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="does not look like weights for timm/resnet10t"):
        create_model("timm/resnet10t", 3, weights=str(tmp_path / "other.safetensors"))


def test_pretrained_offline_says_what_to_do(monkeypatch):
    """Offline, the hub download fails; the user is told to use --weights. (The hub call itself is
    replaced: huggingface_hub reads HF_HUB_OFFLINE at import, and a real attempt waits on timeouts.)"""
    import timm

    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="--weights PATH"):
        create_model("timm/resnet10t", 3, pretrained=True)

"""Training-state checkpoints round-trip through safetensors (no pickle)."""

from __future__ import annotations

import torch

from imgclf.store.checkpoint import load_training_state, save_training_state


def test_optimizer_state_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(16, 4)).sum().backward()
        opt.step()
    save_training_state(tmp_path / "s.safetensors", net, opt, {"epoch": 3, "best": 0.5})
    assert (tmp_path / "s.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle

    net2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
    info = load_training_state(tmp_path / "s.safetensors", net2, opt2)
    assert info == {"epoch": 3, "best": 0.5}
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    # Both continue identically: the moments came back too.
    x = torch.randn(16, 4)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).sum().backward()
        o.step()
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.allclose(a, b)


def test_a_channels_last_models_moments_come_back_in_its_layout(tmp_path):
    """The file stores contiguous tensors; CUDA's fused Adam refuses moments laid out unlike their
    parameter (every GPU `--resume` failed so). The strides are checked here on the CPU."""

    def conv_net():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 3))
        return net.to(memory_format=torch.channels_last)

    net = conv_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    weight = net[0].weight
    assert not weight.is_contiguous() and opt.state[weight]["exp_avg"].stride() == weight.stride()
    save_training_state(tmp_path / "s.safetensors", net, opt, {"epoch": 1})

    net2 = conv_net()
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-3)
    load_training_state(tmp_path / "s.safetensors", net2, opt2)
    for old, new in zip(net.parameters(), net2.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt2.state[new][key].stride() == new.stride(), key
            assert torch.equal(opt2.state[new][key], opt.state[old][key])

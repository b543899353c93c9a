"""imgclf.data.augment: each op's exact effect, reproducibility, policies, and (reported) CPU speed."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
import yaml

from imgclf.core.errors import UserError
from imgclf.data.augment import CUTOUT_FILL, AugmentPolicy, augment, default_policy

EVERYTHING = AugmentPolicy(flip=True, translate=2, resized_crop=(0.35, 1.0), rotate=10.0, color_jitter=0.2, cutout=8)
OFF = AugmentPolicy(flip=False)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _batch(b: int = 16, size: int = 32, seed: int = 0, high: int = 256) -> torch.Tensor:
    """Random uint8 images laid out as the training loop hands them over: NHWC storage permuted to NCHW."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (b, size, size, 3), generator=g, dtype=torch.uint8).permute(0, 3, 1, 2)


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy", [default_policy(32), default_policy(32, 100), default_policy(128), EVERYTHING, OFF])
def test_shape_dtype_device_kept_and_input_untouched(policy, device):
    x = _batch().to(device)
    before = x.clone()
    y = augment(x, policy, _gen(0, device))
    assert y.shape == x.shape and y.dtype == torch.uint8 and y.device == x.device
    assert torch.equal(x, before)
    assert y.data_ptr() != x.data_ptr()  # a new tensor even when nothing changes: safe to modify


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_drives_a_cuda_batch():
    x = _batch().cuda()
    a = augment(x, EVERYTHING, _gen(1))
    assert a.device == x.device and torch.equal(a, augment(x, EVERYTHING, _gen(1)))


def test_same_seed_same_output_different_seed_different():
    x = _batch(64)
    for policy in (EVERYTHING, default_policy(32)):
        a, b, c = (augment(x, policy, _gen(s)) for s in (7, 7, 8))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_layout_does_not_change_the_result():
    x = _batch(32)
    assert torch.equal(augment(x, EVERYTHING, _gen(3)), augment(x.contiguous(), EVERYTHING, _gen(3)))


def test_everything_off_is_identity():
    x = _batch()
    assert torch.equal(augment(x, OFF, _gen(0)), x)


def test_flip_gives_original_or_mirror_about_half_each():
    ramp = torch.arange(32, dtype=torch.uint8).mul(8).expand(200, 3, 32, 32)  # left-right gradient
    y = augment(ramp, AugmentPolicy(flip=True), _gen(0))
    same = (y == ramp).flatten(1).all(1)
    mirrored = (y == ramp.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())
    assert 70 <= int(mirrored.sum()) <= 130  # Binomial(200, 0.5): 4+ sigma margin


def test_translate_is_a_reflect_padded_shift_of_at_most_t():
    t, x = 3, _batch(40)
    y = augment(x, AugmentPolicy(flip=False, translate=t), _gen(0))
    padded = F.pad(x.float(), (t, t, t, t), mode="reflect")
    offsets = set()
    for i in range(len(x)):
        # The interior pins down the shift; the reflected border must then match pad + crop exactly.
        found = [
            (dy, dx)
            for dy in range(-t, t + 1)
            for dx in range(-t, t + 1)
            if torch.equal(y[i, :, t:-t, t:-t], x[i, :, t + dy : 32 - t + dy, t + dx : 32 - t + dx])
        ]
        assert len(found) == 1, f"sample {i}: no single shift within {t}px explains the output"
        dy, dx = found[0]
        assert torch.equal(y[i].float(), padded[i, :, t + dy : t + dy + 32, t + dx : t + dx + 32])
        offsets.add(found[0])
    assert len(offsets) > 10  # the shifts really vary per sample


def test_translate_larger_than_image_is_refused():
    with pytest.raises(UserError, match="translate"):
        augment(_batch(2, 8), AugmentPolicy(translate=8))


def test_cutout_leaves_one_grey_square_and_nothing_else_changed():
    size, x = 8, _batch(64, high=100)  # no input pixel is 127
    y = augment(x, AugmentPolicy(flip=False, cutout=size), _gen(0))
    cut = (y == CUTOUT_FILL).all(1)  # (B, H, W)
    assert torch.equal(y[~cut[:, None].expand_as(y)], x[~cut[:, None].expand_as(x)])
    for m in cut:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert size // 2 <= h <= size and size // 2 <= w <= size  # may overflow the border
        assert int(m.sum()) == h * w and bool(m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all())
        assert h == size or rows[0] == 0 or rows[-1] == 31  # cut short only by an edge
        assert w == size or cols[0] == 0 or cols[-1] == 31
    assert cut.any(2).any(1).all()


def test_resized_crop_and_rotate_stay_in_range_and_change_the_image():
    x = _batch(32, 64)
    y = augment(x, AugmentPolicy(flip=False, resized_crop=(0.35, 1.0), rotate=15.0), _gen(0))
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert (y != x).flatten(1).any(1).all()


def test_resized_crop_zooms_into_a_box_without_mirroring():
    ramp = torch.arange(64).mul(4).to(torch.uint8).expand(32, 3, 64, 64)  # brightness grows to the right
    y = augment(ramp, AugmentPolicy(flip=False, resized_crop=(0.35, 0.6)), _gen(0)).int()
    row = y[:, 0, 32]
    assert bool((row.diff(dim=1) >= 0).all())  # still increasing left to right
    assert bool(((row[:, -1] - row[:, 0]) < 0.85 * 252).all())  # a sub-range: zoomed in


def test_rotation_keeps_a_centred_disc():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    disc = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 20**2) * 200).to(torch.uint8).expand(8, 3, 64, 64)
    y = augment(disc, AugmentPolicy(flip=False, rotate=45.0), _gen(0)).float()
    assert (y - disc.float()).abs().mean() < 2  # only the rim is resampled


def test_color_jitter_saturates_instead_of_wrapping():
    white = torch.full((64, 3, 16, 16), 255, dtype=torch.uint8)
    y = augment(white, AugmentPolicy(flip=False, color_jitter=0.5), _gen(0))
    assert int(y.min()) >= 127  # brightness >= 0.5, no uint8 overflow
    assert (y == 255).all(3).all(2).all(1).any()  # brighter images clip at white
    grey = torch.full((8, 3, 16, 16), 100, dtype=torch.uint8)
    y = augment(grey, AugmentPolicy(flip=False, color_jitter=0.5), _gen(0))
    assert torch.equal(y[:, :1].expand_as(y), y)  # grey stays grey


def test_policy_dict_round_trip_through_yaml():
    for p in (EVERYTHING, OFF, default_policy(32), default_policy(128, allow_flip=False)):
        d = yaml.safe_load(yaml.safe_dump(p.to_dict()))
        assert AugmentPolicy.from_dict(d) == p


@pytest.mark.parametrize(
    "bad",
    [
        {"zoom": 1},
        {"resized_crop": [0.0, 1.0]},
        {"resized_crop": [0.9, 0.5]},
        {"translate": -1},
        {"cutout": 2.5},
        {"color_jitter": 1.5},
        {"rotate": -3},
    ],
)
def test_bad_policy_is_a_user_error(bad):
    with pytest.raises(UserError):
        AugmentPolicy.from_dict(bad)


def test_default_policies():
    assert default_policy(32) == AugmentPolicy(flip=True, translate=2)
    assert default_policy(32, 50_000) == AugmentPolicy(flip=True, translate=2)
    assert default_policy(32, 1_000) == AugmentPolicy(flip=True, translate=2, cutout=8)
    assert default_policy(40, allow_flip=False) == AugmentPolicy(flip=False, translate=2)
    big = AugmentPolicy(flip=True, resized_crop=(0.35, 1.0), rotate=10.0, color_jitter=0.2)
    assert default_policy(128) == big and default_policy(128, 1_000) == big
    assert default_policy(224, allow_flip=False) == AugmentPolicy(
        flip=False, resized_crop=(0.35, 1.0), rotate=10.0, color_jitter=0.2
    )


@pytest.mark.slow
def test_report_cpu_throughput(capsys):
    """Reported, not asserted: the machine running the tests may be shared."""
    lines = []
    for b, size in ((512, 32), (256, 128)):
        x, policy, g = _batch(b, size), default_policy(size), _gen(0)
        augment(x, policy, g)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            augment(x, policy, g)
            times.append(time.perf_counter() - t0)
        lines.append(
            f"augment {b}x{size}px default policy: {min(times) * 1e3:.1f} ms/batch, "
            f"{b / min(times):,.0f} img/s on {torch.get_num_threads()} CPU threads"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_the_policy_is_described_in_words_not_as_a_dict():
    said = EVERYTHING.describe()
    assert said == (
        "mirrored half the time, random crops of 35-100 % of its area, shifted up to 2 px, rotated up to 10 "
        "degrees either way, brightness, contrast and saturation varied by up to 20 %, a square of 8 px greyed out"
    )
    assert OFF.describe() == "none"
    assert AugmentPolicy(alternate_flip=True).describe() == "mirrored on every other epoch"

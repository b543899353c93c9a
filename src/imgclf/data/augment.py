"""Batched training augmentation on uint8 image tensors, airbench style.

`augment` takes a uint8 (B, 3, H, W) batch on any device and returns a new uint8 batch of the same
shape on the same device, so the caller normalises once. Every trick below is one small function of
whole-batch tensor ops (no per-sample Python loop), and every random draw comes from the generator
passed in, so a seed reproduces an epoch exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from imgclf.core.errors import UserError, from_settings

CUTOUT_FILL = 127  # mid grey: about zero after normalisation, so a cut patch carries no signal
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey, as PIL's convert("L") and torchvision use
ASPECT = (math.log(3 / 4), math.log(4 / 3))  # random-resized-crop aspect range, sampled log-uniformly
SMALL_IMAGE = 40  # sides up to this are CIFAR-like: low resolution, object fills the frame
FEW_IMAGES = 5000  # below this the auto schedule trains 30-40 epochs (see train/defaults.py)


@dataclass
class AugmentPolicy:
    flip: bool = True  # horizontal flip, p=0.5
    alternate_flip: bool = False  # flip each image on every other epoch instead (see alternate_flips)
    translate: int = 0  # reflect-pad by this many px and random-crop back
    resized_crop: tuple[float, float] | None = None  # area fraction range of a random box resampled to full size
    rotate: float = 0.0  # max degrees, uniform in [-rotate, rotate]
    color_jitter: float = 0.0  # brightness/contrast/saturation factors in [1-s, 1+s]
    cutout: int = 0  # side of a square set to mid grey, px; 0 = off

    def __post_init__(self):
        if self.resized_crop is not None:
            self.resized_crop = tuple(float(v) for v in self.resized_crop)  # YAML hands back a list
            if len(self.resized_crop) != 2 or not 0 < self.resized_crop[0] <= self.resized_crop[1] <= 1:
                raise UserError(
                    f"augment resized_crop must be [lo, hi] with 0 < lo <= hi <= 1, not {self.resized_crop}"
                )
        for name in ("translate", "cutout"):
            v = getattr(self, name)
            if v < 0 or v != int(v):
                raise UserError(f"augment {name} must be a whole number of pixels >= 0, not {v}")
            setattr(self, name, int(v))
        if not 0 <= self.rotate <= 180:
            raise UserError(f"augment rotate must be in [0, 180] degrees, not {self.rotate}")
        if not 0 <= self.color_jitter < 1:
            raise UserError(f"augment color_jitter must be in [0, 1), not {self.color_jitter}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resized_crop"] = list(self.resized_crop) if self.resized_crop else None  # yaml.safe_dump rejects tuples
        return d

    def describe(self) -> str:
        """What training does to each image, as a person would say it (the run's log; to_dict is the record)."""
        parts = ["mirrored on every other epoch" if self.alternate_flip else "mirrored half the time"] * (
            self.flip or self.alternate_flip
        )
        if self.resized_crop:
            lo, hi = self.resized_crop
            parts.append(f"random crops of {lo * 100:.0f}-{hi * 100:.0f} % of its area")
        if self.translate:
            parts.append(f"shifted up to {self.translate} px")
        if self.rotate:
            parts.append(f"rotated up to {self.rotate:g} degrees either way")
        if self.color_jitter:
            parts.append(f"brightness, contrast and saturation varied by up to {self.color_jitter * 100:.0f} %")
        if self.cutout:
            parts.append(f"a square of {self.cutout} px greyed out")
        return ", ".join(parts) or "none"

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentPolicy":
        return from_settings(cls, d, "augment setting")


def default_policy(img_size: int, num_images: int | None = None, allow_flip: bool = True) -> AugmentPolicy:
    """The augmentation `imgclf` trains with unless told otherwise.

    Flipping assumes a mirrored image shows the same class. That is false for digits, text, and
    anything with a handedness (left/right arrows): pass `allow_flip=False` (CLI `--no-flip`) there.

    Small images (<= 40 px, CIFAR-like): flip + translate by img_size/16 (2 px at 32), airbench94's
    recipe for ~10-epoch CIFAR-10 runs; crops and rotations of a 32 px image destroy too much of
    its little detail. Cutout (img_size/4) only for small data sets (< 5000 images): those train
    30-40 epochs, the regime where airbench96 adds cutout (12 px, 31-40 epochs), while big ones
    train ~12 epochs, where airbench94 shows it is not worth it.

    Larger images: random-resized-crop over 35-100% of the area (torchvision's 8% floor is tuned
    for 90-epoch ImageNet runs; in 12-40 epochs such small crops mostly add label noise), flip,
    +-10 degree rotation and 0.2 colour jitter: photos at this size vary in framing, tilt and
    lighting, and crop + rotation cost a single resample. No translate or cutout: the crop
    already moves and hides content.
    """
    if img_size <= SMALL_IMAGE:
        few = num_images is not None and num_images < FEW_IMAGES
        return AugmentPolicy(
            flip=allow_flip, translate=max(1, round(img_size / 16)), cutout=img_size // 4 if few else 0
        )
    return AugmentPolicy(flip=allow_flip, resized_crop=(0.35, 1.0), rotate=10.0, color_jitter=0.2)


def alternate_flips(first_flips: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images to mirror in `epoch` under the derandomised "alternating flip" (airbench, Jordan 2024).

    `first_flips` is one random bool per training image, drawn once per run. Every image is then
    shown mirrored on alternate epochs, so any two consecutive epochs see both views of every
    image; random p=0.5 flips show ~25% of images the same way in both and waste those passes.
    """
    return first_flips ^ bool(epoch % 2)


def augment(
    images: torch.Tensor,
    policy: AugmentPolicy,
    generator: torch.Generator | None = None,
    flip_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Randomly augment a uint8 (B, 3, H, W) batch; returns a new uint8 tensor, never a view of `images`.

    `generator` may live on the batch's device or on the CPU (its draws are then moved); None uses
    torch's global RNG. `flip_mask` (B,) bool, when given, says which images to mirror instead of a
    random draw (see `alternate_flips`). Order: flip, translate, one affine resample (crop +
    rotation), colour, cutout.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"augment expects a uint8 (B, 3, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    if policy.translate >= min(images.shape[2:]):
        raise UserError(f"augment translate={policy.translate} must be smaller than the image side {images.shape[2]}")
    x = images
    if policy.flip:
        x = batch_flip(x, generator, flip_mask)
    if policy.translate:
        x = batch_translate(x, policy.translate, generator)
    if policy.resized_crop or policy.rotate or policy.color_jitter:
        # NCHW float whatever the caller's layout: the channel reductions below are several times
        # slower on channels_last, and the layout change rides along with the dtype conversion.
        y = x.to(torch.float32, memory_format=torch.contiguous_format)
        if policy.resized_crop or policy.rotate:
            y = batch_affine(y, policy.resized_crop, policy.rotate, generator)
        if policy.color_jitter:
            y = batch_color_jitter(y, policy.color_jitter, generator)
        # Clamp once here rather than after each colour op: cheaper, and only pixels already
        # pushed past white or black differ.
        x = y.clamp_(0, 255).round_().to(torch.uint8)
    if policy.cutout:
        x = batch_cutout(x, policy.cutout, generator)
    return images.clone() if x is images else x


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    # Draw on the generator's own device, then move: a CPU generator can then drive a CUDA batch.
    return torch.rand(shape, generator=generator, device=generator.device if generator is not None else device).to(
        device
    )


def _randint(low: int, high: int, shape: tuple[int, ...], generator, device) -> torch.Tensor:
    """Integers uniform in [low, high] inclusive."""
    return low + (_rand(shape, generator, device) * (high - low + 1)).long().clamp_(max=high - low)


def batch_flip(x: torch.Tensor, generator=None, mask: torch.Tensor | None = None) -> torch.Tensor:
    # Mirror each image with p=0.5 (or where `mask` says): the cheapest label-preserving doubling of
    # the data (for most classes).
    if mask is not None:
        flip = mask.to(x.device).view(-1, 1, 1, 1)
    else:
        flip = _rand((len(x), 1, 1, 1), generator, x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    # Index of i in an axis of length n mirrored at both ends without repeating the edge
    # (F.pad "reflect"); valid for -n < i < 2n - 1.
    i = i.abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)


def batch_translate(x: torch.Tensor, t: int, generator=None) -> torch.Tensor:
    # Shift each image by up to t px in x and y, filling the edge by reflection: teaches small-shift
    # invariance (airbench's reflect-pad + random crop). One gather through per-sample reflected
    # row/column indices, so no padded copy and no loop over the (2t+1)^2 offsets.
    B, _, H, W = x.shape
    dy, dx = _randint(-t, t, (2, B, 1), generator, x.device)
    rows = _reflect(torch.arange(H, device=x.device) + dy, H)  # (B, H)
    cols = _reflect(torch.arange(W, device=x.device) + dx, W)  # (B, W)
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    # Gather whole RGB pixels in NHWC order (3 bytes per index); the result is channels_last, as the
    # training loop's batches already are.
    return x.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def batch_affine(
    x: torch.Tensor, crop_scale: tuple[float, float] | None, degrees: float, generator=None
) -> torch.Tensor:
    # Random-resized-crop and rotation as one affine map and one bilinear resample: each extra
    # resample blurs the image a little more and costs a full pass. x is float (B, C, H, W).
    B, _, H, W = x.shape
    u = _rand((5, B), generator, x.device)
    if crop_scale:
        # A box of a random area fraction and aspect ratio (w/h in pixels), clipped to the image.
        area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * u[0]
        aspect = torch.exp(ASPECT[0] + (ASPECT[1] - ASPECT[0]) * u[1])
        w = (area * aspect * H / W).sqrt().clamp(max=1)  # box side as a fraction of the image side
        h = (area / aspect * W / H).sqrt().clamp(max=1)
    else:
        w = h = torch.ones(B, device=x.device)
    cx, cy = (1 - w) * (2 * u[2] - 1), (1 - h) * (2 * u[3] - 1)  # box centre, kept inside: [-1, 1] coords
    angle = torch.deg2rad(degrees * (2 * u[4] - 1))
    cos, sin = angle.cos(), angle.sin()
    # theta maps output coords to input coords: centre + R @ diag(w, h). R is a true rotation in
    # pixels written in [-1, 1] coords, hence the H/W factors on non-square images.
    theta = torch.stack(
        [torch.stack([cos * w, -sin * h * H / W, cx], 1), torch.stack([sin * w * W / H, cos * h, cy], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Corners a rotation swings in from outside are filled by reflection: no artificial black wedges.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def batch_color_jitter(x: torch.Tensor, s: float, generator=None) -> torch.Tensor:
    # Per-image brightness, saturation and contrast factors in [1-s, 1+s]: robustness to lighting
    # and camera colour. x is float (B, 3, H, W), NCHW, in [0, 255]; the result is not clamped.
    # In sequence: x * bright, blend with its greyscale by sat, blend with its mean grey by contrast.
    # Each step is linear and the saturation blend keeps every pixel's grey level, so the chain folds
    # into k1 * x + k2 * grey + k3 * mean_grey of the input: one pass over the pixels instead of five.
    bright, sat, contrast = 1 - s + 2 * s * _rand((3, len(x), 1, 1, 1), generator, x.device)
    grey = (x * torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    offset = bright * contrast * (1 - sat) * grey + bright * (1 - contrast) * grey.mean((2, 3), keepdim=True)
    return torch.addcmul(offset, x, bright * contrast * sat)


def batch_cutout(x: torch.Tensor, size: int, generator=None) -> torch.Tensor:
    # Grey out one size x size square per image at a random centre (it may hang off the edge), so
    # the model cannot rely on any single region (DeVries & Taylor 2017).
    B, _, H, W = x.shape
    cy = _randint(0, H - 1, (B, 1), generator, x.device)
    cx = _randint(0, W - 1, (B, 1), generator, x.device)
    ys, xs = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    in_y = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)  # (B, H)
    in_x = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)  # (B, W)
    return x.masked_fill(in_y[:, None, :, None] & in_x[:, None, None, :], CUTOUT_FILL)

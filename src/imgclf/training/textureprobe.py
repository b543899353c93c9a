"""The light-normalised texture as a leaderboard candidate: a logistic regression on each image's
Tan & Triggs + LBP histograms (models.texture), raced on greyscale photos.

Why: on faces lit by one point light (Extended Yale B's kind: one pose a person, half of each face
black) the ImageNet features see shadows, dlib's detector misses most faces, and the classic
descriptor for exactly these photos is the normalised texture. On Extended Yale B's layout (built:
40 people, one pose each, 48 point lights) the run that kept it scored 0.995 test accuracy in 27 s,
the fine-tuned default 0.890 in 86 s; where heads turn too (orl-shadow-6x, 3 splits) 0.964 against
0.935, in a third of the time (docs/benchmarks/budget.md). On photos in everyday light it loses (ORL 0.95 against the face
embedding's 1.00), so the validation split decides, as for every candidate (training.candidates).

`texture=auto` turns it on when the training photos are greyscale (a sample of SAMPLE, every one
with its three channels equal to within GREY_TOLERANCE) and there are at most MAX_IMAGES of them
(its cost grows with them: ~1.2 ms an image and its mirror on 2 cores, then the regression); off
when the user named --model or --preset without naming --texture too.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imgclf.core.files import read_json, write_json
from imgclf.settings.config import TEXTURE_MAX_IMAGES, settled

SAMPLE = 24  # training photos read (at 32 px) to decide texture=auto
GREY_TOLERANCE = 1.0  # grey levels a photo's channels may differ by on average (JPEG's chroma noise)
MAX_IMAGES = TEXTURE_MAX_IMAGES  # training images at most for texture=auto (declared with the setting)
FILES = ("texture.json", "texture.safetensors")  # in the run folder: a resumed run reuses the candidate


def resolve_texture(cfg, spec, explicit: set[str] | None) -> tuple[str, str | None]:
    """texture=auto -> on | off, and the line that says why (None when nothing was decided)."""
    if (given := settled(cfg, "texture", explicit)) is not None:
        return given, None
    if len(spec.indices("train")) > MAX_IMAGES:
        return "off", None
    sample = spec.sample("train", SAMPLE)
    if not sample or not all(_grey(p) for p in sample):
        return "off", None
    return "on", (
        f"texture=on: the {len(sample)} sampled training photos are greyscale, so a logistic regression on their "
        "light-normalised texture (Tan & Triggs, LBP histograms) competes on the leaderboard (--texture off: skip)"
    )


def _grey(path: str) -> bool:
    from imgclf.data.images import UnusableImage, load_resized

    try:
        x = load_resized(path, 32).astype(np.int16)
    except UnusableImage:
        return True  # an unreadable file says nothing either way (it is skipped and reported)
    return float(np.abs(x[..., 0] - x[..., 1]).mean() + np.abs(x[..., 1] - x[..., 2]).mean()) <= 2 * GREY_TOLERANCE


def fit_texture_candidate(run_dir: Path, prep, class_weight, console) -> tuple[dict, object]:
    """The texture candidate's leaderboard row (val accuracy, balanced accuracy, loss, C, seconds) and
    its network (models.texture.TextureClassifier) fitted on the run's training split, read from the
    run's own decoded images (so it needs no second decode; on resume, the saved one)."""
    from imgclf.models.texture import TextureClassifier, of_images, record
    from imgclf.store.checkpoint import load_weights, save_weights

    spec = prep.spec
    n_classes = len(spec.classes)
    net = TextureClassifier(n_classes, prep.mean, prep.std, size=prep.cfg.img_size)
    row_file, weight_file = (run_dir / f for f in FILES)
    # A resumed run reuses its fitted candidate, unless an imgclf with another descriptor fitted it.
    saved = read_json(row_file) if row_file.is_file() and weight_file.is_file() else {}
    if saved.get("descriptor") == record():
        net.load_state_dict(load_weights(weight_file))
        return saved, net
    from imgclf.training.probe import fit_head

    t0 = time.perf_counter()
    data = prep.split_data()
    # Mirrors too, as the network trains on them (and the run's test-time augmentation averages each
    # photo with its mirror image); not where the user said --no-flip (text, digits, signs).
    mirror = bool(prep.policy.flip)
    x_train, x_val = of_images(prep.images[data.train], mirror=mirror), of_images(prep.images[data.val])
    read_s = time.perf_counter() - t0
    y_train, y_val = np.tile(spec.labels[data.train], 2 if mirror else 1), spec.labels[data.val]
    row = fit_head(net, x_train, y_train, x_val, y_val, class_weight, n_classes)
    seconds = time.perf_counter() - t0
    console.print(
        f"  texture: {len(data.train)} training images{' and their mirrors' if mirror else ''}, {len(data.val)} validation images "
        f"read in {read_s:.1f}s, C={row['C']}, val accuracy {row['val_acc']:.4f} ({seconds:.1f}s in all)"
    )
    row |= {
        "mirrored": mirror,
        "seconds": round(seconds, 2),
        "descriptor": record(),
    }
    save_weights(weight_file, net.state_dict())
    write_json(row_file, row)
    return row, net


def texture_record() -> dict:
    """model.json's "pretrained" for a run that kept the texture: it has no pretrained weights."""
    from imgclf.models.texture import GRID, SIZE, TEXTURE

    return {
        "architecture": TEXTURE,
        "weights_from": None,
        "expected": None,
        "applied": {
            "descriptor": f"greyscale (Pillow's luma), resized to {SIZE[0]}x{SIZE[1]} (antialiased bilinear); Tan & "
            f"Triggs' normalisation (gamma 0.2, difference of Gaussians 1-2 px, in float64); uniform LBP(8,1) "
            f"histograms in a {GRID[0]}x{GRID[1]} grid, square-rooted, unit length",
        },
    }

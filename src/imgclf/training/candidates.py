"""The candidates a run races beside its own network, each a fixed descriptor with a logistic
regression on it: dlib's face embedding (training.faceprobe) on photos of faces, the light-normalised
texture (training.textureprobe) on greyscale photos, the pretrained person detector
(training.personprobe) on photos filed as person / no person. Each is fitted before the epochs, in
seconds; the validation split decides which, if any, is shipped instead of the trained network.

Successive halving, in its simplest form: when a candidate already makes at most half the validation
errors of the ImageNet probe (and is right on 90 % or more), fine-tuning is skipped: fine-tuning from
a probe that far behind has never caught up (`dominates`), and its minutes are saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DOMINANT_ACC = 0.9  # fine-tuning is skipped only behind a candidate this good on validation...
DOMINANT_ERRORS = 0.5  # ...that makes at most this share of the ImageNet probe's validation errors


@dataclass
class Candidate:
    """One fitted candidate: its leaderboard row, and what the run ships if it wins."""

    name: str  # its leaderboard row's name
    on: str  # what its logistic regression reads, as the leaderboard says it
    row: dict  # val_acc, val_balanced_acc, val_loss, C, seconds, and its own facts
    net: Any  # the module that is shipped if it wins (models.headonly)
    images: Any = None  # the images as it reads them, when it decodes its own (the face embedding)
    # Far enough ahead of the ImageNet probe (`dominates`), fine-tuning is skipped. Not behind the person
    # detector: three numbers cannot learn a camera's background, which a fine-tuned network does (frames
    # of 40 street scenes, people pasted into half: val 0.94 for the detector against the probe's 0.79,
    # then test 0.875 for it against 0.9375 for the network fine-tuned to val 1.000; 2026-11-28).
    ends_training: bool = True


def fit_candidates(run_dir: Path, prep, console, clock=None, image_s: float = 0.0) -> list[Candidate]:
    """Every candidate the run's settings turn on (faces=on, texture=on), fitted on its training split
    (under DDP by rank 0, before the other ranks learn whether there are epochs to train).
    `clock` (training.budget.StageClock): a time budget, of which each costly candidate (the face
    embedding, the person detector: a search of every photo) takes an equal share of what is left,
    the evaluation after training reserved at `image_s` seconds an image, or at the candidate's own
    where it is slower (it may win, and then the evaluation runs it)."""
    from imgclf.training.balance import class_weights

    cfg, spec = prep.cfg, prep.spec
    if "on" not in (cfg.faces, cfg.texture, cfg.person):
        return []
    weights = class_weights(cfg.class_weight, spec.labels[spec.indices("train")], len(spec.classes))
    out = []
    costly = costly_candidates(cfg)

    def allowance():
        """None, or: the candidate's seconds an image -> the seconds it may take from now."""
        nonlocal costly
        costly -= 1
        share = 1 / (costly + 1)
        return None if clock is None else lambda each: share * clock.left(max(image_s, each))

    if cfg.faces == "on":
        from imgclf.training.faceprobe import fit_face_candidate

        row, net, images = fit_face_candidate(run_dir, prep, weights, console, allowance())
        on = f"dlib's face embedding (a face found in {row.get('faces_found', 0):.0%} of the photos)"
        out.append(Candidate("face embedding", on, row, net, images))
    if cfg.texture == "on":
        from imgclf.training.textureprobe import fit_texture_candidate

        row, net = fit_texture_candidate(run_dir, prep, weights, console)
        out.append(Candidate("texture", "the light-normalised texture (Tan & Triggs, LBP histograms)", row, net))
    if cfg.person == "on":
        from imgclf.training.personprobe import fit_person_candidate

        row, net, images = fit_person_candidate(run_dir, prep, weights, console, allowance())
        on = "the pretrained person detector's best box (score, width, height)"
        out.append(Candidate("person detector", on, row, net, images, ends_training=False))
    return out


def costly_candidates(cfg) -> int:
    """How many candidates turned on search every photo (the face embedding, the person detector):
    each takes a share of a time budget (training.budget.StageClock) equal to the probe's."""
    return [cfg.faces == "on", cfg.person == "on"].count(True)


def criterion(cfg) -> str:
    """The validation score fine-tuning and the candidates are judged by (balanced accuracy when
    classes are weighted)."""
    return "val_acc" if cfg.class_weight == "none" else "val_balanced_acc"


def skip_fine_tuning(prep, meta) -> str | None:
    """Why the epochs are skipped, or None: the time budget left room for the linear probe only (on
    a sample of the training images, training.probe), or a candidate is far ahead of the probe that
    fine-tuning starts from (`dominates`). Rank 0 decides; under DDP it tells the
    other ranks, which would otherwise wait for epochs that never come."""
    key, probe = criterion(prep.cfg), meta.probe or {}
    if np.isnan(probe.get(key, float("nan"))):
        return None
    if probe.get("sampled", probe.get("training_images", 0) < probe.get("training_images_of", 0)):
        return (
            f"the time budget leaves no room for it after the linear probe (on {probe['training_images']:,} "
            f"of {probe['training_images_of']:,} training images, without mirrors)"
        )
    ahead = best([c for c in prep.candidates or [] if c.ends_training], key)
    if ahead is not None and dominates(ahead.row, probe, key):
        if probe[key] >= 1:  # "at most half the errors" of none reads as a riddle
            return (
                f"the {ahead.name} and the linear probe, which fine-tuning starts from, both name every "
                "validation image right: no room left on the validation split to choose a better network"
            )
        return (
            f"the {ahead.name} (val {ahead.row[key]:.4f}) makes at most half the errors of the linear probe "
            f"(val {probe[key]:.4f}), which fine-tuning starts from"
        )
    return None


def dominates(row: dict, probe: dict, key: str) -> bool:
    """Whether a candidate is so far ahead of the ImageNet probe that fine-tuning is skipped."""
    if not probe or probe.get(key) is None or np.isnan(row[key]) or np.isnan(probe[key]):
        return False
    return row[key] >= DOMINANT_ACC and (1 - row[key]) <= DOMINANT_ERRORS * (1 - probe[key])


def kept(row: dict, score: float, loss: float, key: str) -> bool:
    """Whether a candidate beats the network kept so far (its val `score` by the run's criterion
    `key`, and its val loss): a higher score, or the same and a lower loss."""
    if np.isnan(row[key]):
        return False
    return row[key] > score or (row[key] == score and row["val_loss"] < loss)


def best(candidates: list[Candidate], key: str) -> Candidate | None:
    """The candidate with the best validation score by `key` (ties: the lower loss)."""
    scored = [c for c in candidates if not np.isnan(c.row[key])]
    return max(scored, key=lambda c: (c.row[key], -c.row["val_loss"])) if scored else None


def keep(run_dir: Path, prep, cand: Candidate, meta, console):
    """Make `cand` the run's model: its head in model.safetensors; model.json's architecture, input,
    preprocessing and "pretrained" saying what it is; for the face embedding and the person detector,
    their own decode of the images the evaluation after training's. Returns its network."""
    from imgclf.store.checkpoint import save_weights
    from imgclf.store.run_meta import Architecture, InputSpec

    net = cand.net
    save_weights(run_dir / "model.safetensors", net.state_dict())
    n_params = sum(p.numel() for p in net.parameters())
    if cand.name == "face embedding":
        from imgclf.models.face.model import NAME
        from imgclf.models.headonly import FACE_EMBEDDING
        from imgclf.training.faceprobe import RESIZE, face_record

        kwargs = {"embedding": NAME, "crop_box": net.crop_box}
        meta.architecture = Architecture(name=FACE_EMBEDDING, kwargs=kwargs, in_chans=3, parameters=n_params)
        side = int(cand.images.shape[1])
        meta.input = InputSpec(size=side, resize=RESIZE, channels="RGB", dtype="uint8")
        meta.preprocessing = (
            f"decode to RGB (EXIF-rotated, alpha on white), resize '{RESIZE}' to {side}x{side}; the biggest face "
            "found by dlib's detector, aligned on 5 landmarks to 150x150 (where none is found, the image as a "
            "face crop: the architecture's crop_box, else the whole image)"
        )
        meta.pretrained = face_record()
        prep.images = cand.images
        what = "the face embedding (dlib's network, a linear head on it)"
    elif cand.name == "person detector":
        from imgclf.models.headonly import PERSON_DETECTOR
        from imgclf.models.person.classifier import NAME
        from imgclf.models.person.ssdlite import SIZE
        from imgclf.training.personprobe import RESIZE, person_record

        meta.architecture = Architecture(
            name=PERSON_DETECTOR, kwargs={"detector": NAME}, in_chans=3, parameters=n_params
        )
        meta.input = InputSpec(size=SIZE, resize=RESIZE, channels="RGB", dtype="uint8")
        meta.preprocessing = (
            f"decode to RGB (EXIF-rotated, alpha on white), resize '{RESIZE}' to {SIZE}x{SIZE}; the pretrained "
            "person detector's best person box: its score (log-odds), width and height"
        )
        meta.pretrained = person_record()
        prep.images = cand.images
        what = "the person detector (its best box's score and size, a linear head on them)"
    else:
        from imgclf.models.headonly import TEXTURE
        from imgclf.models.texture import record
        from imgclf.training.textureprobe import texture_record

        meta.architecture = Architecture(name=TEXTURE, kwargs=record(), in_chans=3, parameters=n_params)
        meta.preprocessing += "; greyscale, then the light-normalised texture (model.json's pretrained.applied)"
        meta.pretrained = texture_record()
        what = "the texture (LBP histograms of the light-normalised image, a linear head on them)"
    meta.starting_weights = None
    console.print(f"  kept: {what}, best on the validation split")
    return net

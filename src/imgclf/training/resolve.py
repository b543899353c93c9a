"""Every automatic choice of a training run, made here and nowhere else: what the user left unset (or
set to `auto`) becomes a value with the reason for it. `imgclf train` prints each reason, and the run's
config.yaml records each value; nothing after this module changes the settings.

It takes two calls, because some choices need the pixels that an earlier choice (img_size) decodes:

    cfg, run_dir, explicit = user_settings(data, config, resume, keywords)   # defaults < file < keywords
    chosen = before_decoding(cfg, spec, explicit, for_training, run_dir)
        # the device; a preset; the model, img_size, batch, time budget, epochs, lr, memory layout
        # (training.defaults holds those rules); the run folder
    ... the images are decoded at chosen.cfg.img_size, near-duplicates grouped, duplicates removed ...
    cfg, policy, lines = after_decoding(chosen.cfg, spec, grouping, for_training)
        # group_by, class_weight, the augmentation policy, tta, the model's full keyword arguments
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig, config_keys, load_config


@dataclass
class Chosen:
    """The settings with every choice that needs no pixels made, and what to print about them."""

    cfg: TrainConfig
    device: Any  # torch.device
    notes: list[str]  # one line per default chosen, printed as "default: ..."
    run_dir: Path | None
    said: str | None = None  # a line to print after the headline (store.runs.interrupted_note)


def user_settings(data, config, resume, settings: dict) -> tuple[TrainConfig, Path | None, set[str] | None]:
    """What the user asked for: a resumed run's own config.yaml (already resolved), else the defaults
    under a --config file under the keywords. Returns (settings, the resumed run folder, the names the
    user set, which a preset must not override; None on resume)."""
    run_dir, explicit = None, None
    if resume:
        run_dir = Path(resume if not isinstance(resume, bool) else settings.get("out") or "")
        if not (run_dir / "config.yaml").is_file():
            # `imgclf train --resume photos/`: the data where the run belongs
            data_said = f"; for the newest interrupted training of a data folder: imgclf train {run_dir} --resume"
            raise UserError(
                f"cannot resume: {run_dir} has no config.yaml (give the run folder of an earlier train"
                f"{data_said if data is None and run_dir.is_dir() else ''})"
            )
        if (run_dir / "model.json").is_file() and (run_dir / "metrics.json").is_file():
            raise UserError(
                f"{run_dir} is a finished run: nothing to resume (train a new run, or go on from this one "
                f"on new images with: imgclf update {run_dir} NEW_IMAGES)"
            )
        cfg = load_config(run_dir / "config.yaml")  # the resolved settings of the interrupted run
        if data is not None:  # where the data is now, when it moved since the run started (its split is kept)
            cfg = cfg.updated(data=str(data))
        elif not Path(cfg.data).exists():
            raise UserError(
                f"cannot resume: the run's data is no longer at {cfg.data}; say where it is now: "
                f"imgclf train DATA --resume {run_dir}"
            )
    else:
        cfg = load_config(config) if config else TrainConfig()
        cfg = cfg.updated(data=str(data) if data is not None else None, **settings)
        explicit = {k for k, v in settings.items() if v is not None} | (config_keys(config) if config else set())
    if not cfg.data:
        raise UserError("no data given: imgclf train DATA (a folder with one sub-folder per class)")
    return cfg, run_dir, explicit


def before_decoding(
    cfg: TrainConfig, spec, explicit: set[str] | None, for_training: bool, run_dir: Path | None
) -> Chosen:
    """Fill what the user left unset (a named preset first, `explicit` its exceptions), measured on the
    training files' headers and the device; a training run also gets its folder."""
    from imgclf.core.device import apple_gpu_note, pick_device
    from imgclf.models.factory import check_model
    from imgclf.store.runs import interrupted_note, new_run_dir
    from imgclf.training.defaults import resolve

    device = pick_device(cfg.device)
    train_paths = [spec.paths[i] for i in spec.indices("train")]
    notes: list[str] = [note] if (note := apple_gpu_note(cfg.device, device)) else []
    if cfg.preset and explicit is not None:
        # A preset fills what the user left unset; flags and config-file keys win over it.
        cfg, preset_notes = _preset(cfg, explicit, train_paths, device)
        notes += preset_notes
    cfg, more = resolve(cfg, train_paths, device, len(spec.indices("val")))
    check_model(cfg.model)  # before the decoding, which a mistyped name would otherwise wait for
    said = None
    if for_training:
        said = None if run_dir or cfg.out else interrupted_note(cfg.data)  # before its own folder is made
        run_dir = Path(run_dir or cfg.out or new_run_dir(cfg.data, reserve=True))
        cfg = cfg.updated(out=str(run_dir))
    return Chosen(cfg, device, notes + more, run_dir, said)


def _preset(cfg: TrainConfig, explicit: set[str], train_paths: list[str], device) -> tuple[TrainConfig, list[str]]:
    from imgclf.training.defaults import typical_side
    from imgclf.training.presets import preset_settings

    side = None if "img_size" in explicit else typical_side(train_paths, seed=cfg.seed)
    values, notes = preset_settings(cfg.preset, device, len(train_paths), side or cfg.img_size, cfg.flip)
    if "model" in explicit and cfg.model != values["model"]:
        values.pop("model_kwargs")  # the preset's widths belong to its own model
    return cfg.updated(**{k: v for k, v in values.items() if k not in explicit}), list(notes)


def after_decoding(cfg: TrainConfig, spec, grouping: dict | None, for_training: bool, explicit=None):
    """The choices that need the decoded, split data: how the split was grouped, whether classes are
    weighed, the augmentation policy, test-time augmentation, whether the face embedding competes
    (training.faceprobe: it looks for faces in a sample of the training photos; not when the user
    named the model or preset, in `explicit`), the texture (training.textureprobe: greyscale
    photos) and the person detector (training.personprobe: two classes, one of people), and the model's full keyword arguments (so the run records
    every one it used). Returns (settings, augmentation policy, lines to print)."""
    from imgclf.models import model_defaults
    from imgclf.training.balance import resolve_class_weight
    from imgclf.training.faceprobe import resolve_faces
    from imgclf.training.personprobe import resolve_person
    from imgclf.training.prepare import augment_policy
    from imgclf.training.textureprobe import resolve_texture

    policy = augment_policy(cfg, len(spec.indices("train")))
    if not for_training:  # lr-find: the settings train would start from, nothing about the split
        return cfg, policy, []
    lines: list[str] = []
    mode, note = resolve_class_weight(cfg.class_weight, spec.labels[spec.indices("train")], len(spec.classes))
    if note:
        lines.append(f"  default: {note}")
    lines.append(f"  augmentation: {policy.describe()}")
    tta = cfg.tta
    if tta == "auto":
        # Average the prediction over the mirror image when the model was trained to be mirror-invariant.
        tta = "flip" if policy.flip else "none"
        lines.append(
            f"  default: tta={tta}: test-time augmentation at evaluation{'' if policy.flip else ' (no flips in training)'}"
        )
    faces, note = resolve_faces(cfg, spec, explicit)
    texture, texture_note = resolve_texture(cfg, spec, explicit)
    person, person_note = resolve_person(cfg, spec, explicit)
    lines += [f"  default: {n}" for n in (note, texture_note, person_note) if n]
    cfg = cfg.updated(
        faces=faces,
        texture=texture,
        person=person,
        group_by=grouping["by"] if grouping else "none",
        class_weight=mode,
        tta=tta,
        augment=policy.to_dict(),
        model_kwargs={**model_defaults(cfg.model), **cfg.model_kwargs},
    )
    return cfg, policy, lines

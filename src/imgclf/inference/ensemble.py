"""Ensembles: one bundle folder that averages the calibrated probabilities of several runs.

    imgclf ensemble runs/a runs/b runs/c --out runs/abc
    imgclf.load("runs/abc").predict("face.jpg")          # like any run

Averaging the probabilities of separately trained networks cancels part of each one's errors and
is better calibrated than its members (Lakshminarayanan et al., 2017). Each member keeps its own
temperature and test-time augmentation. The bundle copies the members' model.json and
model.safetensors into members/<i>-<name>/, so it is self-contained and, like a run, holds no pickle:

    bundle/ model.json (kind "ensemble": classes, members, input)   members/0-a/  members/1-b/ ...
            splits.csv (when all members share the test split)      metrics.json  *.png
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from rich.markup import escape  # run folders are the user's paths, not markup

from imgclf.core.errors import UserError
from imgclf.core.files import atomic_path, output_folder, read_json, write_json
from imgclf.core.version import __version__
from imgclf.data.copies import PRINTS_FILE
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.inference.model import Model, load_run
from imgclf.store.run_meta import Decision, InputSpec, Member, Rejection, RunMeta, load_run_meta
from imgclf.store.runs import find_run, read_splits, refuse_finished_run

KIND = "ensemble"
# The keys of a bundle's model.json, in the order bundles have always been written in.
_BUNDLE_KEYS = (
    "format",
    "kind",
    "imgclf_version",
    "classes",
    "combine",
    "members",
    "input",
    "decision",
    "rejection",
    "data",
)
_SAFE = re.compile(r"[^\w.-]+")  # member folder names: the run's name, filesystem-safe


class EnsembleModel(Model):
    """The members' calibrated probabilities, averaged; predict, evaluate and rejection as for a Model."""

    def __init__(self, members: list[Model], meta: RunMeta, path: Path | None = None):
        self.members, self.meta, self.path = members, meta, path
        self.classes: list[str] = meta.classes
        self.device = members[0].device
        # Images are read once at the largest member size; smaller members resize that copy.
        self.img_size: int = max(m.img_size for m in members)
        self.resize_mode: str = members[0].resize_mode

    @classmethod
    def from_bundle(cls, run: Path, meta: RunMeta, device: str = "auto", tta: str | None = None) -> "EnsembleModel":
        return cls([load_run(run / m.path, device, tta) for m in meta.members], meta, run)

    @property
    def tta(self) -> str:
        return ",".join(sorted({m.tta for m in self.members}))

    @tta.setter
    def tta(self, mode: str) -> None:
        for m in self.members:
            m.tta = mode

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Mean of the members' calibrated probabilities (N, C)."""
        return np.mean([m.predict_proba(at_size(images, m.img_size)) for m in self.members], axis=0)

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        # Log-probabilities are logits whose softmax is the average itself (temperature 1): code
        # written for logits (evaluation, calibration metrics) then sees the ensemble's probabilities.
        return np.log(np.maximum(self.predict_proba(images), 1e-30))


def at_size(images: np.ndarray, size: int) -> np.ndarray:
    """Square uint8 images (N, S, S, 3) resampled to `size` (they are already cropped/padded)."""
    if images.shape[1] == size:
        return images
    from PIL import Image

    from imgclf.data.images import resize

    return np.stack([resize(Image.fromarray(np.asarray(x)), size, "squash") for x in images])


def make_ensemble(
    runs: list[str | Path],
    out: str | Path,
    target_accuracy: float | None = None,
    target_coverage: float | None = None,
    device: str = "auto",
    *,
    console,
) -> tuple[Path, dict | None]:
    """Write the bundle folder `out` and evaluate it on the members' shared test split.
    Returns (bundle path, test metrics or None when the members' test splits differ)."""
    from imgclf.evaluation.rejection import check_targets
    from imgclf.evaluation.scoring import score

    dirs = [find_run(r) for r in runs]
    metas = _check_members(dirs)
    classes = metas[0].classes
    check_targets(classes, target_accuracy, target_coverage)
    out = output_folder(out, "--out")
    refuse_finished_run(out, what="a run or bundle")
    meta = RunMeta(
        kind=KIND,
        imgclf_version=__version__,
        classes=classes,
        combine="mean of the members' calibrated probabilities (each with its own temperature and TTA)",
        members=_copy_members(dirs, metas, out),
        input=InputSpec(size=max(m.input.size for m in metas), resize=metas[0].input.resize),
    )
    model = EnsembleModel.from_bundle(out, meta, device)  # from the copies: proves the bundle is whole
    console.print(
        f"ensemble of {len(dirs)} runs: "
        + escape(", ".join(f"{m.architecture} ({Path(m.source).name})" for m in meta.members))
    )
    splits = [read_splits(d) for d in dirs]
    shared = {
        s: bool(_rows(splits[0], s)) and all(_rows(x, s) == _rows(splits[0], s) for x in splits)
        for s in ("val", "test")
    }
    if (
        (len(classes) == 2 and OperatingPoint.of(metas[0]).rule == "threshold")
        or target_accuracy is not None
        or target_coverage is not None
    ):
        if shared["val"]:
            meta.decision, meta.rejection = _thresholds(
                model, dirs[0], metas[0], _rows(splits[0], "val"), target_accuracy, target_coverage, console
            )
        else:
            console.print(
                "[yellow]warning[/]: the members were validated on different images, so no threshold is "
                "chosen (one member's validation images may be another's training images)"
            )
    if not shared["test"]:
        write_json(out / "model.json", _bundle_json(meta))
        console.print(
            f"[yellow]warning[/]: the members have different test splits (one member's test images may be "
            f"another's training images), so the bundle is not evaluated; evaluate it on independent "
            f"labeled data: imgclf evaluate {escape(str(out))} DATA"
        )
        return out, None
    for name in ("splits.csv", PRINTS_FILE):  # the prints: evaluate finds copies of its images (data.copies)
        if name == "splits.csv" or (dirs[0] / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(dirs[0] / name, tmp)
    if metas[0].data_root is not None:
        meta.data = metas[0].data  # the root the copied splits.csv's paths are relative to
    write_json(out / "model.json", _bundle_json(meta))  # last: its presence marks a finished bundle
    images, labels = _images(model, _rows(splits[0], "test"), console)
    metrics = score(model, images, labels, out, console, "held-out test split (shared by all members)")
    metrics["members"] = [{"run": m.source, **_member_scores(d)} for m, d in zip(meta.members, dirs)]
    write_json(out / "metrics.json", metrics)
    console.print(
        "  members on the same split: "
        + escape(
            ", ".join(
                f"{Path(m['run']).name} accuracy {m['accuracy']:.4f}" for m in metrics["members"] if "accuracy" in m
            )
        )
    )
    return out, metrics


def _check_members(dirs: list[Path]) -> list[RunMeta]:
    """The members' model.json, once they are known to be combinable."""
    if len(dirs) < 2:
        raise UserError("an ensemble needs at least two runs: imgclf ensemble RUN RUN... --out BUNDLE")
    seen: set[Path] = set()
    for d in dirs:  # one run twice would be one model weighed double, not an ensemble
        if d.resolve() in seen:
            raise UserError(f"{d} is given twice; an ensemble's members are different runs")
        seen.add(d.resolve())
    metas = [load_run_meta(d) for d in dirs]
    for d, m in zip(dirs, metas):
        if m.is_ensemble:
            raise UserError(f"{d} is itself an ensemble; list its member runs instead")
        if m.classes != metas[0].classes:
            raise UserError(
                f"{d} has different classes than {dirs[0]} ({_diff(m.classes, metas[0].classes)}); "
                "ensemble members must be trained on the same classes"
            )
        if m.input.resize != metas[0].input.resize:
            raise UserError(
                f"{d} resizes images with '{m.input.resize}', {dirs[0]} with "
                f"'{metas[0].input.resize}'; members must share --resize"
            )
    return metas


def _copy_members(dirs: list[Path], metas: list[RunMeta], out: Path) -> list[Member]:
    members = []
    for i, (d, m) in enumerate(zip(dirs, metas)):
        sub = Path("members") / f"{i}-{_SAFE.sub('_', d.resolve().name)}"
        for f in ("model.json", "model.safetensors"):
            with atomic_path(out / sub / f) as tmp:
                shutil.copyfile(d / f, tmp)
        members.append(
            Member(
                path=sub.as_posix(),
                source=str(d.resolve()),
                architecture=m.architecture.name,
                input_size=m.input.size,
                tta=m.tta,
                temperature=m.calibration.temperature if m.calibration else 1.0,
            )
        )
    return members


def _thresholds(
    model: EnsembleModel,
    first: Path,
    first_meta: RunMeta,
    val_rows: list[tuple[str, str]],
    target_accuracy: float | None,
    target_coverage: float | None,
    console,
) -> tuple[Decision | None, Rejection | None]:
    """The bundle's own (decision, rejection): a decision (two classes) or a rejection threshold, chosen on
    the shared validation split exactly as `train` chooses a run's: averaging changes the probabilities,
    so the members' don't carry over."""
    from imgclf.evaluation.scoring import choose_decision, choose_rejection
    from imgclf.settings.config import TrainConfig, load_config

    images, labels = _images(model, val_rows, console)
    spec = SimpleNamespace(classes=model.classes, labels=labels, indices=lambda split: np.arange(len(labels)))
    first_op = OperatingPoint.of(first_meta)
    if first_op.rule == "threshold":
        # The first member's positive class and target (recall, precision, or best F1).
        own = load_config(first / "config.yaml") if (first / "config.yaml").is_file() else TrainConfig()
        cfg = TrainConfig(
            positive_class=first_op.positive_class,
            target_recall=own.target_recall,
            target_precision=own.target_precision,
        )
        return choose_decision(model, images, spec, cfg, console), None
    cfg = TrainConfig(target_accuracy=target_accuracy, target_coverage=target_coverage)
    return None, choose_rejection(model, images, spec, cfg, console)


def _bundle_json(meta: RunMeta) -> dict:
    """The bundle's model.json as bundles have always been written: these keys, in this order. A bundle
    has no test-time augmentation of its own (each member keeps its own), so its `tta` is left out."""
    d = meta.to_dict()
    return {k: d[k] for k in _BUNDLE_KEYS if k in d}


def _diff(a: list[str], b: list[str]) -> str:
    extra, missing = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    parts = [f"extra: {', '.join(extra)}"] * bool(extra) + [f"missing: {', '.join(missing)}"] * bool(missing)
    return "; ".join(parts) or "same names in another order"


def _rows(rows: list[dict], split: str) -> list[tuple[str, str]]:
    return sorted((r["path"], r["label"]) for r in rows if r["split"] == split)


def _images(model: EnsembleModel, rows: list[tuple[str, str]], console) -> tuple[np.ndarray, np.ndarray]:
    """Decoded images (through the cache) and class indices of (path, label) rows; unreadable ones left out."""
    from imgclf.data.cache import build_cache
    from imgclf.data.images import skip_warning

    cache = build_cache([p for p, _ in rows], model.img_size, model.resize_mode, progress=False)
    for i, reason in cache.bad.items():
        console.print(skip_warning(rows[i][0], reason))
    keep = np.array([i for i in range(len(rows)) if i not in cache.bad], dtype=np.int64)
    return cache.images[keep], np.array([model.classes.index(rows[i][1]) for i in keep], dtype=np.int64)


def _member_scores(run: Path) -> dict:
    """A member's own test accuracy and log-loss from its metrics.json, for comparison."""
    if not (run / "metrics.json").is_file():
        return {}
    m = read_json(run / "metrics.json")
    return {k: m[k] for k in ("accuracy", "log_loss") if k in m}

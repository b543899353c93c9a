"""The facts a run report shows, gathered from a run folder and its loaded model.

Everything recorded during training is read back from the run's files (config.yaml, history.csv,
metrics.json, data_report.json, splits.csv); what a run does not record — test-split
probabilities for ROC/PR curves and galleries, FLOPs — is recomputed here from the model, so a
report can be rebuilt at any time with `imgclf report RUN`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from imgclf.core.files import read_json
from imgclf.store.run_meta import Architecture, InputSpec, RunMeta
from imgclf.store.runs import read_splits, recorded_root


@dataclass
class Test:
    """The model's view of the test split: calibrated probabilities, as evaluate computes them."""

    paths: list[str]
    labels: np.ndarray  # true class index
    probs: np.ndarray  # (N, C) calibrated (temperature, run's TTA)
    pred: np.ndarray  # what `predict` answers: two-class threshold applied; -1 = rejected as unknown
    skipped: int = 0  # test files that could not be decoded now


@dataclass
class Facts:
    path: Path
    meta: RunMeta
    config: dict
    metrics: dict | None
    history: list[dict]
    data: dict  # data_report.json
    rows: list[dict]  # splits.csv: path, label, split
    test: Test | None
    flops: int | None = None
    modules: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    doctor: dict | None = None
    label_issues: object = None
    extra: dict = field(default_factory=dict)
    choices: dict | None = None  # choices.json: the settings given, and why each default was chosen


def gather(model, progress: bool = False, data_root=None) -> Facts:
    """Read the run folder of `model` (an imgclf.inference.model.Model) and recompute what it lacks;
    its images from `data_root` when the data folder moved since training."""
    import yaml

    from imgclf.training.history import read_history

    run = Path(model.path)
    optional = {
        name: read_json(run / name) if (run / name).is_file() else None
        for name in ("metrics.json", "data_report.json", "label_issues.json", "choices.json")
    }
    config = (
        yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) if (run / "config.yaml").is_file() else {}
    )
    rows = read_splits(run, data_root)
    meta = model.meta
    if hasattr(model, "members"):  # an ensemble bundle: describe it as one architecture made of its members
        names = [m.meta.architecture_name for m in model.members]
        arch = Architecture(
            name=f"ensemble of {len(names)}: " + " + ".join(names),
            kwargs={"combine": meta.combine or "mean"},
            parameters=sum((m.meta.architecture.parameters or 0) for m in model.members if m.meta.architecture),
        )
        inp = meta.input or InputSpec(size=model.img_size, resize=model.resize_mode)
        meta = replace(meta, architecture=arch, input=replace(inp, size=model.img_size))
    facts = Facts(
        run,
        meta,
        config or {},
        optional["metrics.json"],
        read_history(run / "history.csv"),
        optional["data_report.json"] or {},
        rows,
        test_predictions(model, rows, progress),
        label_issues=optional["label_issues.json"],
        choices=optional["choices.json"],
    )
    facts.flops, facts.modules = count_flops(model)
    # Paths are shown relative to the root they were read from (data_report.json's is as typed at training).
    root = data_root or recorded_root(run) or facts.data.get("root")
    facts.doctor = quick_doctor(rows, model.classes, str(root) if root else None)
    return facts


def test_predictions(model, rows: list[dict], progress: bool) -> Test | None:
    """Decode the test split through the cache (as api.evaluate does) and predict it."""
    from imgclf.data.cache import build_cache

    test = [r for r in rows if r["split"] == "test" and r["label"] in model.classes]
    if not test:
        return None
    scored = getattr(model, "scored_test", None)  # set by train: the test split it just scored
    if scored and scored[0] == [r["path"] for r in test]:
        probs = scored[1]
        labels = np.array([model.classes.index(r["label"]) for r in test])
        return Test(scored[0], labels, probs, deployed_labels(probs, model.meta), 0)
    cache = build_cache([r["path"] for r in test], model.img_size, model.resize_mode, progress=progress)
    keep = [i for i in range(len(test)) if i not in cache.bad]
    if not keep:
        return None
    labels = np.array([model.classes.index(test[i]["label"]) for i in keep])
    probs = model.predict_proba(cache.images[np.array(keep)])
    return Test(
        [test[i]["path"] for i in keep], labels, probs, deployed_labels(probs, model.meta), len(test) - len(keep)
    )


def calibrated(record) -> bool:
    """Whether a temperature was fitted, from metrics' calibration dict or a run's meta (T = 1: none
    was, as evaluation.scoring.calibrate leaves it for a few validation images or all of them right)."""
    return (record.get("temperature", 1.0) if isinstance(record, dict) else record.temperature) != 1.0


def ece_card(c: dict) -> tuple[str, str]:
    """The header's card of the expected calibration error, named calibrated only where it is."""
    return f"{c['ece_after']:.3f}", "ECE (calibrated)" if calibrated(c) else "ECE (not calibrated)"


def calibrated_word(meta) -> str:
    """'calibrated ' before 'probability' or 'confidence' where a temperature was fitted, else ''."""
    return "calibrated " if calibrated(meta) else ""


def deployed_labels(probs: np.ndarray, meta: RunMeta) -> np.ndarray:
    """The class `predict` answers per row, as Model.decide: the stored two-class threshold, else
    argmax, or -1 ('unknown') below the run's rejection threshold."""
    decision, rejection = meta.decision, meta.rejection
    if decision:
        pos = meta.classes.index(decision.positive_class)
        return np.where(probs[:, pos] >= decision.threshold, pos, 1 - pos)
    top = probs.argmax(1)
    return np.where(probs.max(1) < rejection.threshold, -1, top) if rejection else top


def one_vs_rest(labels: np.ndarray, probs: np.ndarray) -> tuple[list[dict | None], dict | None]:
    """Per class: ROC and PR curves with ROC-AUC and average precision (None for a class absent
    from the test split, where neither is defined); and the micro-average over all classes."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    def curve(is_pos: np.ndarray, score: np.ndarray) -> dict | None:
        if is_pos.all() or not is_pos.any():
            return None
        fpr, tpr, _ = roc_curve(is_pos, score)
        precision, recall, _ = precision_recall_curve(is_pos, score)
        return {
            "fpr": fpr,
            "tpr": tpr,
            "precision": precision,
            "recall": recall,
            "roc_auc": float(roc_auc_score(is_pos, score)),
            "ap": float(average_precision_score(is_pos, score)),
        }

    onehot = labels[:, None] == np.arange(probs.shape[1])[None, :]
    per_class = [curve(onehot[:, c], probs[:, c]) for c in range(probs.shape[1])]
    return per_class, curve(onehot.ravel(), probs.ravel())


def coverage_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coverage, accuracy on the answered, confidence threshold) answering the most confident first."""
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    correct = (probs.argmax(1) == labels)[order]
    n = np.arange(1, len(order) + 1)
    return n / len(order), np.cumsum(correct) / n, conf[order]


def count_flops(model) -> tuple[int | None, list[tuple[str, str, int, int | None]]]:
    """FLOPs of one forward pass at the input size (a multiply-add counts 2, as torch's counter
    does), and per top-level module: (name, type, parameters, FLOPs). Test-time augmentation
    multiplies the per-image cost; the report says by how much."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if hasattr(model, "members"):  # an ensemble bundle: every member runs on every image
        counted = [count_flops(m) for m in model.members]
        if any(total is None for total, _ in counted):
            return None, []
        rows = [
            (f"member {i}", m.meta.architecture_name, sum(p.numel() for p in m.net.parameters()), total)
            for i, (m, (total, _)) in enumerate(zip(model.members, counted))
        ]
        return sum(total for total, _ in counted), rows
    net, size = model.net, model.img_size
    if not getattr(net, "exportable", True):  # a face-embedding run: dlib runs outside torch's count
        return None, []
    param = next(net.parameters(), None)
    x = torch.zeros(1, 3, size, size, device=param.device if param is not None else "cpu")
    try:
        with FlopCounterMode(display=False, depth=1) as counter, torch.no_grad():
            net(x)
    except Exception:  # an exotic layer the counter cannot trace must not cost the whole report
        return None, []
    by_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    prefix = type(net).__name__
    modules = [
        (name, type(m).__name__, sum(p.numel() for p in m.parameters()), by_module.get(f"{prefix}.{name}"))
        for name, m in net.named_children()
    ]
    return int(counter.get_total_flops()), modules


def quick_doctor(rows: list[dict], classes: list[str], root: str | None) -> dict | None:
    """The data doctor's quick part (identical files by content hash) over the run's images,
    when they are still on disk: duplicates that conflict or leak across the run's own splits."""
    from imgclf.data.doctor import quick_check
    from imgclf.data.spec import DatasetSpec

    # Only what the run used: skipped and deduplicated files are reported separately.
    rows = [
        r
        for r in rows
        if r["split"] in ("train", "val", "test") and r["label"] in classes and Path(r["path"]).is_file()
    ]
    if not rows:
        return None
    spec = DatasetSpec(
        root or "",
        "run",
        list(classes),
        [r["path"] for r in rows],
        np.array([classes.index(r["label"]) for r in rows]),
        np.array([r["split"] for r in rows]),
    )
    return quick_check(spec)


def thumbnail(path: str, size: int) -> str | None:
    """The image at `path`, shrunk (never enlarged) to fit size x size, as a PNG data URI; None
    if it cannot be read now. Small images stay small: the browser scales them up for free, and a
    32 px image stored at 110 px would cost 10x the bytes."""
    from imgclf.data.images import UnusableImage, read_scaled

    try:
        img = read_scaled(path, size * 2)[0]  # a JPEG decoded at a reduced scale, much faster
    except UnusableImage:  # a file gone or broken since training: leave its tile empty
        return None
    return thumbnail_of(img, size)


def thumbnail_of(img, size: int) -> str:
    """thumbnail() of a decoded RGB PIL image (shrunk in place)."""
    from PIL import Image

    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    rgb = np.asarray(img)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        img = img.convert("L")  # greyscale scans and faces: a third of the bytes
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return png_uri(buf.getvalue())


def png_uri(png: bytes) -> str:
    from imgclf.core.figures import data_uri

    return data_uri(png, "image/png")


def samples_per_class(rows: list[dict], classes: list[str], k: int, seed: int = 0) -> dict[str, list[str]]:
    """Up to k training images per class (any split when a class has none in train), seeded."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in classes:
        mine = [r["path"] for r in rows if r["label"] == c and r["split"] == "train"] or [
            r["path"] for r in rows if r["label"] == c and r["split"] in ("val", "test")
        ]
        pick = rng.choice(len(mine), size=min(k, len(mine)), replace=False) if mine else []
        out[c] = [mine[i] for i in sorted(pick)]
    return out


def gallery_picks(test: Test, n: int, n_wrong: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sample: up to n test images spread over the classes, round-robin, seeded;
    mistakes: up to n_wrong wrong answers, most confident first)."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(test.labels == c)).tolist() for c in range(test.probs.shape[1])]
    sample: list[int] = []
    while len(sample) < n and any(per_class):
        for queue in per_class:
            if queue and len(sample) < n:
                sample.append(queue.pop())
    wrong = np.flatnonzero((test.pred != test.labels) & (test.pred >= 0))
    conf = test.probs[wrong, test.pred[wrong]]
    return np.array(sample, dtype=np.int64), wrong[np.argsort(-conf, kind="stable")][:n_wrong]

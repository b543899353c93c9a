"""The pretrained person detector as a leaderboard candidate: a logistic regression on what the
detector sees in each photo (models.person.classifier: its best person box's score and size),
raced on photos filed as person / no person.

Why: "is a person in this frame?" is a question the field already answers with detectors trained on
hundreds of thousands of people. A network fine-tuned on a user's few hundred frames learns their
backgrounds as much as their people. On the shared street photos (101, 5-fold cross-validation,
2026-11-28) a logistic regression on the detector's three numbers was right for 0.89 of the photos
(balanced), the ImageNet probe for 0.68; on frames cut from 40 street photos with INRIA people
pasted into half (480, grouped by background) 0.89 against 0.75. Where one camera's frames repeat
their background, the fine-tuned network can do better, so the validation split decides, as for
every candidate (training.candidates).

`person=auto` turns it on for two classes of which one is named like people (PERSON_LIKE: "person",
"no-person", "humans", "pedestrian") or which the detector's best person score parts on a few
sampled photos (`_parting`: "occupied" / "empty"), when a sample of the photos' headers says they are at least
MIN_SIDE px on their long side (whole photos: the detector squashes a photo to 300x300, and a crop
model for sliding-window scans must stay one) and there are at most MAX_IMAGES of them; off when the
user named --model or --preset without --person. It decodes the images once more, squashed to
300 x 300 as `imgclf scan` reads them, and runs the detector on each (ONNX Runtime on a CPU: ~20 ms
a photo on 2 cores; mirrors are not embedded: three numbers gain nothing from them).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import torch

from imgclf.core.files import read_json, write_json
from imgclf.models.person.ssdlite import SIZE
from imgclf.settings.config import settled

PERSON_LIKE = re.compile(r"person|people|human|pedestrian", re.I)
NEGATED = re.compile(r"(no|non|not|without)\b|(no|non)[-_]", re.I)
SAMPLE = 24  # headers read to decide person=auto
# px: the photos' median long side for person=auto. Whole photos and frames, not crops: a crop model for
# `imgclf scan RUN` (INRIA's 96x160 people, Daimler's 18x36) must stay a crop model, slid over photos.
MIN_SIDE = 200
# person=auto looks at no more photos than this: each is held decoded at 300 x 300 (270 kB: 2.7 GB
# for 10,000) and costs the detector ~20 ms on 2 cores (200 s for 10,000, a third of that budget).
MAX_IMAGES = 10_000
RESIZE = "squash"  # how the detector reads a photo (models.person: the whole photo at 300x300)
FILES = ("person.json", "person.safetensors")  # in the run folder: a resumed run reuses the candidate
BATCH = 16
# Classes not named like people ("occupied" / "empty") race the detector when its best person score
# alone parts PER_CLASS sampled training photos of each this well (ROC-AUC): ~1 s in PyTorch on 2
# cores, paid by any two-class set of photos.
PER_CLASS = 12
PARTS = 0.85


def resolve_person(cfg, spec, explicit: set[str] | None) -> tuple[str, str | None]:
    """person=auto -> on | off, and the line that says why (None when nothing was decided)."""
    from imgclf.models.person.weights import graph_file

    if cfg.person == "on":
        graph_file()  # --person on without the detector installed: one line now, not after the probe
    if (given := settled(cfg, "person", explicit)) is not None:
        return given, None
    if len(spec.classes) != 2:
        return "off", None
    # "no-person" names people too: the class that says who is there is named first when there is one
    people = sorted((c for c in spec.classes if PERSON_LIKE.search(c)), key=lambda c: bool(NEGATED.match(c)))
    if len(spec.paths) > MAX_IMAGES:
        return "off", f"person=off: {len(spec.paths):,} photos, more than the {MAX_IMAGES:,} the detector is tried on"
    side = _median_side(spec.sample("train", SAMPLE))
    if side < MIN_SIDE:
        return (
            "off",
            f"person=off: the photos are {side} px on their long side, crops rather than photos for the person detector",
        )
    try:
        graph_file()
    except Exception:  # noqa: BLE001 - its package is not installed: no candidate (scan says how to install it)
        return "off", "person=off: the pretrained person detector is not installed (imgclf scan says how)"
    if people:
        why = f"'{people[0]}' named like people"
    else:  # "occupied" / "empty": whether the detector tells them apart, on a few photos of each
        parted = _parting(spec)
        if parted < PARTS:
            return "off", None
        why = f"the detector's best person score parts them in {2 * PER_CLASS} sampled photos (AUC {parted:.2f})"
    return "on", (
        f"person=on: two classes, {why}, so the pretrained person detector with a linear head on its best box "
        "competes on the leaderboard (--person off: skip)"
    )


def _parting(spec) -> float:
    """How well the detector's best person score alone tells the two classes apart on PER_CLASS
    training photos of each (ROC-AUC, either way round: 0.5 to 1); 0.5 when fewer can be read."""
    from sklearn.metrics import roc_auc_score

    from imgclf.data.images import UnusableImage, load_resized
    from imgclf.models.person.classifier import PersonDetectorClassifier

    train = spec.indices("train")
    chosen = [i for k in (0, 1) for i in train[spec.labels[train] == k][:PER_CLASS]]
    images, labels = [], []
    for i in chosen:
        try:
            images.append(load_resized(spec.paths[i], SIZE, RESIZE))
            labels.append(int(spec.labels[i]))
        except UnusableImage:
            continue
    if min(labels.count(0), labels.count(1)) < PER_CLASS:  # 5 against 5 part this well by chance 1 in 18
        return 0.5
    net = PersonDetectorClassifier(2, [0.0] * 3, [1.0] * 3).load_pretrained().eval()
    with torch.no_grad():
        x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32))
        score = net.describe(x)[:, 0].numpy()
    auc = float(roc_auc_score(labels, score))
    return max(auc, 1 - auc)


def _median_side(paths: list[str]) -> int:
    from imgclf.data.images import UnusableImage, image_size

    sides = []
    for p in paths:
        try:
            sides.append(max(image_size(p)))
        except UnusableImage:
            continue
    return int(np.median(sides)) if sides else 0


class _Described(torch.nn.Module):
    """The classifier's features of uint8-range RGB (N, 3, 300, 300): what ONNX Runtime runs here."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.describe(x)


def describer(net, device: torch.device):
    """A function: uint8 RGB images (N, 300, 300, 3) -> their (N, 3) features; ONNX Runtime on a CPU
    (the session exported once, here), else PyTorch."""
    module = _Described(net).eval().to(device)
    session = None
    if device.type == "cpu":
        from imgclf.training.ortembed import cpu_session

        session = cpu_session(module, SIZE, ["features"])

    def describe(images: np.ndarray, advance=None) -> np.ndarray:
        out = []
        for i in range(0, len(images), BATCH):
            x = np.ascontiguousarray(images[i : i + BATCH].transpose(0, 3, 1, 2), dtype=np.float32)
            if session is not None:
                # one photo a run: ORT on 2 cores is slower in batches for this network (detection.detector)
                out += [session.run(None, {"x": x[j : j + 1]})[0] for j in range(len(x))]
            else:
                with torch.no_grad():
                    out.append(module(torch.from_numpy(x).to(device)).float().cpu().numpy())
            if advance is not None:
                advance(len(x))
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)

    return describe


def fit_person_candidate(run_dir: Path, prep, class_weight, console, allowance=None) -> tuple[dict, object, np.ndarray]:
    """The person candidate's leaderboard row (val accuracy, balanced accuracy, loss, C, seconds), its
    network (models.person.classifier) fitted on the run's training split (on resume, the saved one),
    and every image of the run decoded as the detector reads them (300 x 300, squashed). `allowance`:
    a time budget's (its seconds an image -> the seconds it may take from now; a sample of the
    training photos where all would not fit: training.budget.afforded_rows)."""
    from imgclf.data.cache import build_cache, progress_bar
    from imgclf.models.person.classifier import PersonDetectorClassifier
    from imgclf.store.checkpoint import load_weights, save_weights
    from imgclf.training.afford import candidate_rows, sampled
    from imgclf.training.probe import fit_head

    spec = prep.spec
    n_classes = len(spec.classes)
    net = PersonDetectorClassifier(n_classes, prep.mean, prep.std)
    t0 = time.perf_counter()
    images = build_cache(spec.paths, SIZE, RESIZE, workers=prep.cfg.workers, progress=False).images
    row_file, weight_file = (run_dir / f for f in FILES)
    net.load_pretrained().eval()
    if row_file.is_file() and weight_file.is_file():
        net.head.load_state_dict(load_weights(weight_file))
        return read_json(row_file), net, images
    data = prep.split_data()
    describe = describer(net, prep.device)
    look = lambda rows: describe(images[rows])  # noqa: E731 - timed by candidate_rows
    train = candidate_rows(look, data.train, spec.labels, len(data.val), allowance, prep.cfg.seed)
    t1 = time.perf_counter()
    rows = np.concatenate([train, data.val])
    with progress_bar(len(rows), not console.quiet, "person detector") as step:
        x = describe(images[rows], step)
    image_s = (time.perf_counter() - t1) / max(1, len(x))  # the evaluation's, if this wins (training.budget)
    x_train, x_val = x[: len(train)], x[len(train) :]
    read_s = time.perf_counter() - t0
    row = fit_head(net, x_train, spec.labels[train], x_val, spec.labels[data.val], class_weight, n_classes)
    seconds = time.perf_counter() - t0
    console.print(
        f"  person detector: {len(x)} photos decoded at {SIZE}x{SIZE} and looked at in {read_s:.1f}s"
        f"{sampled(train, data.train)}, C={row['C']}, val accuracy {row['val_acc']:.4f}"
    )
    row |= {
        "seconds": round(seconds, 2),
        "image_seconds": image_s,
        "training_images": len(train),
        "training_images_of": len(data.train),
    }
    save_weights(weight_file, net.head.state_dict())  # the detector's own weights are the package's
    write_json(row_file, row)
    return row, net, images


def person_record() -> dict:
    """model.json's "pretrained" for a run that kept the person detector: where its weights came from."""
    from imgclf.models.person.classifier import NAME
    from imgclf.models.person.weights import FILE, PACKAGE, SHA256, VERSION

    return {
        "architecture": NAME,
        "weights_from": {"source": "package", "package": f"{PACKAGE} {VERSION}", "file": FILE, "sha256": SHA256},
        "expected": None,
        "applied": {
            "input": "the whole photo squashed to 300x300 RGB, scaled to [-1, 1] (the detector's own preprocessing)",
            "features": "the best person box's score as log-odds, and its width and height as shares of the photo",
        },
    }

"""dlib's face embedding as a leaderboard candidate: a linear probe on a face network, not on ImageNet.

On photos of people's faces a network that learnt faces (dlib's ResNet, 99.38 % on LFW) beats any
network fine-tuned on the user's few hundred photos: on ORL (40 people, 8 photos each to learn
from) its embedding with a logistic regression names 100 % of held-out photos where the fine-tuned
default names 97.4 %; on the issue's aligned celebrities 98.4 % against 87.7 %. Where light is
extreme and the detector misses most faces, the trained network wins. So the embedding competes:
each training image's biggest face (and its mirror, while photos are few) and each validation
image's are embedded once, a logistic regression is fitted on them (C chosen on the validation
split, as the probe's is), and the validation split decides (training.candidates).

`faces=auto` turns the candidate on when over two thirds of a sample of training photos hold a face that
dlib's detector finds (`resolve_faces`), and off when the user named --model or --preset without
naming --faces too (`--model X --faces auto` searches; `imgclf tune` retrains its best network so).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from imgclf.core.files import read_json, write_json
from imgclf.settings.config import settled

# Training photos searched for a face to decide faces=auto: ~0.13 s each on 2 cores for whole photos
# (at 384 px), so the search stops once the answer is settled: photos without faces are turned
# down after 8 (1.6 s in all, where all 24 took 3.1-3.6 s on 12 MP phone photos), faces taken after 17.
SAMPLE = 24
# faces=auto is on when more than this share of them hold a face. It was 0.5: faces lit hard, where
# dlib finds 45 % (orl-shadow-6x), drew 8, 10 and 16 of 24 on three splits; the 16 turned the
# candidate on (validation 0.70 against the probe's 0.84) and its 48 s left the fine-tuning two
# epochs of a 115 s budget: test 0.817 against 0.90-0.94 with it off. Sets where the embedding wins
# find far more (ORL 97-100 %, the aligned celebrities 91 %); 2/3 keeps them on.
SHARE = 2 / 3
FILES = ("face.json", "face.safetensors")  # in the run folder: a resumed run reuses the candidate
# The candidate's own decode: faces keep their proportions. Squashed to the network's square (ORL's
# 92x112 to 96x96) dlib's landmarks land wrong: 5-fold accuracy on ORL 0.990 squashed at 96 px, 1.000
# padded at 128-200 px; on ORL relit hard 0.965 against 0.990-0.993 (a face found in 91 % against 99 %).
RESIZE = "pad"
# Its size: the photos' median long side, within these bounds. Face crops are searched at 160 px
# or more; whole photos at up to 384, where a face a tenth of the photo's width still has the 40 px
# dlib's detector needs (searched at twice the size when none is found). Bounded by memory too.
SIDES = (160, 384)
MEMORY = 3e9  # bytes the candidate's decoded images may take (uint8, 3 channels)
# Training faces are also embedded mirrored only while a class has fewer photos than this: a second
# view costs a second embedding (a third of the candidate's time) and pays only when photos are few
# (ORL, 5-fold logistic regression: 2 photos a person 0.9981 -> 0.9994 with mirrors; 5 a person 1.000
# either way; ORL relit hard 0.9875 / 0.990 either way).
MIRROR_BELOW = 20


def resolve_faces(cfg, spec, explicit: set[str] | None) -> tuple[str, str | None]:
    """faces=auto -> on | off, and the line that says why (None when nothing was decided). The
    sampled photos are decoded as the candidate would read them (face_side), not at the network's
    size: a face in a street photo squashed to 128 px is too small to find."""
    if cfg.faces == "on":
        from imgclf.models.face.model import FaceModel

        FaceModel(device="cpu")  # --faces on without dlib or its weights: one line now, not after the probe
    if (given := settled(cfg, "faces", explicit)) is not None:
        return given, None
    try:
        from imgclf.models.face.model import FaceModel

        faces = FaceModel(device="cpu")
    except Exception:  # noqa: BLE001 - dlib or its weights missing or damaged: no face candidate
        return "off", None
    from imgclf.data.images import UnusableImage, load_resized

    side = face_side([spec.paths[i] for i in spec.indices("train")])
    sample = spec.sample("train", SAMPLE)
    need = int(SHARE * len(sample)) + 1  # hits that turn it on: more than SHARE of the sample
    hits = searched = 0
    for path in sample:
        if hits >= need or searched - hits > len(sample) - need:  # settled either way
            break
        searched += 1
        try:
            hits += bool(faces.located(np.ascontiguousarray(load_resized(path, side, RESIZE)), whole_photo=False)[1])
        except UnusableImage:  # counts as a photo without a face
            continue
    on = hits >= need
    why = f"{hits} of {searched} sampled training photos hold a face dlib's detector finds" + (
        f" (the search of {len(sample)} stops once the answer is settled)" if searched < len(sample) else ""
    )
    if on:
        return "on", f"faces=on: {why}, so dlib's face embedding competes on the leaderboard (--faces off: skip)"
    return "off", None if hits == 0 else f"faces=off: only {why} (--faces on: try the face embedding anyway)"


def fit_face_candidate(run_dir: Path, prep, class_weight, console, allowance=None) -> tuple[dict, object, np.ndarray]:
    """The face candidate's leaderboard row (val accuracy, balanced accuracy, loss, C, seconds), its
    network (models.face.classifier) fitted on the run's training split (on resume, the saved one),
    and every image of the run decoded as it reads them (face_side px, RESIZE). `allowance`: a
    time budget's (its seconds an image -> the seconds it may take from now; a sample of the training
    photos where all would not fit: training.budget.afforded_rows)."""
    from imgclf.data.cache import build_cache, progress_bar
    from imgclf.models.face.classifier import FaceEmbeddingClassifier
    from imgclf.store.checkpoint import load_weights, save_weights

    spec = prep.spec
    n_classes = len(spec.classes)
    net = FaceEmbeddingClassifier(n_classes, prep.mean, prep.std)
    t0 = time.perf_counter()
    side = face_side([spec.paths[i] for i in np.sort(spec.indices("train"))])  # the side the gate searched at
    images = build_cache(spec.paths, side, RESIZE, workers=prep.cfg.workers, progress=False).images
    row_file, weight_file = (run_dir / f for f in FILES)
    if row_file.is_file() and weight_file.is_file():
        net.load_state_dict(load_weights(weight_file))
        row = read_json(row_file)
        net.crop_box = row.get("crop_box")
        return row, net, images
    from imgclf.models.face.classifier import embed_images
    from imgclf.training.afford import candidate_rows, sampled
    from imgclf.training.probe import fit_head

    data = prep.split_data()
    # The search is most of a photo's time, the mirror's embedding little: timed without it.
    search = lambda rows: embed_images(net.faces, images[rows])  # noqa: E731 - timed by candidate_rows
    train = candidate_rows(search, data.train, spec.labels, len(data.val), allowance, prep.cfg.seed)
    mirror = len(train) < MIRROR_BELOW * n_classes
    t1, n = time.perf_counter(), len(train) + len(data.val)
    # 8,000 photos take a minute or more: a bar says the run is moving (data.cache.progress_bar).
    with progress_bar(n, not console.quiet, f"face embedding: {n:,} photos") as step:
        # Where the training crops hold their faces is learnt from them, and applies to every image after
        x_train, found, net.crop_box = embed_images(
            net.faces, images[train], mirror=mirror, learn_box=True, advance=step
        )
        x_val, found_val, _ = embed_images(net.faces, images[data.val], crop_box=net.crop_box, advance=step)
    embed_s = time.perf_counter() - t0
    # what the evaluation after training pays an image if this wins (training.budget reserves it)
    image_s = (time.perf_counter() - t1) / max(1, len(train) + len(data.val))
    y_train, y_val = np.tile(spec.labels[train], 2 if mirror else 1), spec.labels[data.val]
    row = fit_head(net, x_train, y_train, x_val, y_val, class_weight, n_classes)
    seconds = time.perf_counter() - t0
    share = (found.sum() + found_val.sum()) / max(1, len(found) + len(found_val))
    console.print(
        f"  face embedding: {len(found) + len(found_val)} photos searched and embedded in {embed_s:.1f}s"
        f"{sampled(train, data.train)} (a face found in {share:.0%}; elsewhere the photo taken as a face "
        f"crop), C={row['C']}, val accuracy {row['val_acc']:.4f}"
    )
    row |= {
        "faces_found": round(float(share), 4),
        "crop_box": net.crop_box,
        "seconds": round(seconds, 2),
        "image_seconds": image_s,
        "training_images": len(train),
        "training_images_of": len(data.train),
    }
    save_weights(weight_file, net.state_dict())
    write_json(row_file, row)
    return row, net, images


def face_side(paths: list[str], sample: int = 64) -> int:
    """The side the face candidate decodes the photos at (see SIDES): their median long side over a
    sample of headers, in steps of 32 px, as far as MEMORY allows."""
    from imgclf.data.images import UnusableImage, image_size

    rng = np.random.default_rng(0)
    longs = []
    for i in rng.choice(len(paths), size=min(sample, len(paths)), replace=False):
        try:
            longs.append(max(image_size(paths[i])))
        except UnusableImage:
            continue
    side = int(np.clip(32 * round(np.median(longs) / 32), *SIDES)) if longs else SIDES[0]
    while side > SIDES[0] and len(paths) * side * side * 3 > MEMORY:
        side -= 32
    return side


def face_record() -> dict:
    """model.json's "pretrained" for a run that kept the face embedding: where its weights came from."""
    from imgclf.models.face.model import FILES, NAME, PACKAGE, VERSION, weight_files

    name, digest = FILES["embedding"]
    return {
        "architecture": NAME,
        "weights_from": {"source": "package", "package": f"{PACKAGE} {VERSION}", "file": name, "sha256": digest},
        "expected": None,
        "applied": {
            "search": "dlib's HOG detector on the run's decoded image; the biggest face, else the image taken "
            "as a face crop (its face where the training crops hold theirs: the architecture's crop_box)",
            "alignment": "5 landmarks, a 150x150 chip, its luminance equalised",
            "landmarks_file": str(weight_files()["landmarks"].name),
        },
    }

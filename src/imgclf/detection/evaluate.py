"""A detector scored on the user's own photos with boxes, with no training: `imgclf evaluate person
BOXES/` (the pretrained detector) or `imgclf evaluate DETECTOR_RUN BOXES/`. Is the detector the
field ships good enough on this camera, or is it worth fine-tuning (`imgclf train BOXES/`)?

Every photo with boxes in any layout training reads (YOLO, VOC, COCO, CSV); COCO AP by pycocotools
over every box and over the boxes a scan reports (score >= the detector's threshold); presence
(ROC-AUC, balanced accuracy at that threshold) and counts. Written to a folder: report.html (the
numbers, the PR curve, the photos it got most wrong, boxes drawn), metrics.json and photos.csv.

    imgclf.detection.evaluate.evaluate_detector("person", "door-camera/", out="eval")["ap50"]
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from imgclf.core.errors import UserError
from imgclf.data.paths import source_name
from imgclf.detection.report import better_threshold

EVERY_BOX = 0.01  # the score AP is computed down to, as training scores its test photos
SHOWN = 8  # annotated photos in the report: the worst first


def evaluate_detector(name, data, out=None, device: str = "auto", verbose: bool = True) -> dict:
    """The metrics dict (also out/metrics.json), with "report": out/report.html. `name`: "person" or a
    detector run folder; `out`: default RUN/evaluations/<data's name>, or evaluations/person-on-<data's
    name> for the pretrained detector."""
    from imgclf.core.files import output_folder
    from imgclf.detection import detect, load_detector
    from imgclf.detection import metrics as M
    from imgclf.detection.annotations import read_boxes, to_coco

    box_set = read_boxes(data)
    det = load_detector(name, device)
    photos, said = _matched(box_set, det.classes)
    folder = output_folder(out if out is not None else default_out(name, data), "--out")
    say = print if verbose else (lambda *a: None)
    for line in said:
        say(line)
    got = detect(det, [p.path for p in photos], threshold=EVERY_BOX, verbose=False)
    bad = {a["path"] for a in got if "error" in a}
    kept = [(p, a) for p, a in zip(photos, got) if "error" not in a]
    if not kept:
        raise UserError(f"none of the {len(photos)} photos with boxes in {data} could be read")
    photos, answers = [p for p, _ in kept], [a for _, a in kept]
    truth = dataclasses.replace(box_set, photos=photos, classes=det.classes)
    coco = M.coco_eval_at(to_coco(truth), answers, det.classes, det.threshold)
    positive, t = det.positive, det.threshold
    scores = M.top_scores(answers, positive)
    present = [positive in p.labels for p in photos]
    labelled = np.array([p.labels.count(positive) for p in photos])
    found = np.array([sum(b["label"] == positive and b["score"] >= t for b in a["boxes"]) for a in answers])
    result = {
        "detector": det.name,
        "data": str(data),
        "photos": len(photos),
        "unreadable": sorted(bad) + [p for p, _ in box_set.skipped],
        "threshold": t,
        "positive": positive,
        **{k: coco[k] for k in ("ap50", "ap50_at_threshold", "map", "ap75", "per_class_ap50")},
        "presence": {
            # With the recorded threshold as the prior: another is named only when it tells these photos
            # apart better by more than one photo of the rarer side.
            **M.presence(scores, present, prior=t),
            "balanced_accuracy_at_threshold": M.balanced_accuracy(scores, present, t),
        },
        "count": {"right": float((found == labelled).mean()), "mean_abs_error": float(np.abs(found - labelled).mean())},
    }
    say(summary(result))
    rows = [(p, a, s, n, f) for p, a, s, n, f in zip(photos, answers, scores, labelled, found)]
    result["report"] = str(write_folder(folder, result, rows, coco["pr"], t))
    say(f"report: {result['report']}  (every photo's answer: {folder / 'photos.csv'})")
    return result


def _matched(box_set, classes: list[str]) -> tuple[list, list[str]]:
    """The photos with their boxes' labels as the detector names them (by name, any case; one class
    each side: that one, said), boxes of classes it does not find left out (said)."""
    by_lower = {c.lower(): c for c in classes}
    mapping = {c: by_lower[c.lower()] for c in box_set.classes if c.lower() in by_lower}
    said = []
    if not mapping and len(box_set.classes) == 1 and len(classes) == 1:
        mapping = {box_set.classes[0]: classes[0]}
        said.append(f"  the boxes labelled '{box_set.classes[0]}' are scored as the detector's '{classes[0]}'")
    if not mapping:
        raise UserError(
            f"the boxes are labelled {', '.join(box_set.classes)}; the detector finds {', '.join(classes)}: "
            "fine-tune one on them with: imgclf train " + str(box_set.root)
        )
    if left := [c for c in box_set.classes if c not in mapping]:
        said.append(f"  left out: boxes of {', '.join(left)} (the detector finds {', '.join(classes)})")
    photos = []
    for p in box_set.photos:
        keep = [i for i, label in enumerate(p.labels) if label in mapping]
        photos.append(
            dataclasses.replace(p, boxes=p.boxes[keep].reshape(-1, 4), labels=[mapping[p.labels[i]] for i in keep])
        )
    return photos, said


def default_out(name, data) -> Path:
    """RUN/evaluations/<data's name> for a detector run, evaluations/person-on-<data's name> else."""
    from imgclf.detection.classifier import is_detector_run  # no torch: evaluate in ONNX Runtime stays so

    if is_detector_run(name):
        return Path(name) / "evaluations" / source_name(data)
    return Path("evaluations") / f"{source_name(name)}-on-{source_name(data)}"


def summary(m: dict) -> str:
    p = m["presence"]
    bal = p["balanced_accuracy_at_threshold"]
    presence = (
        f"presence ROC-AUC {p['roc_auc']:.3f}, balanced accuracy {bal:.3f}"
        if p["roc_auc"] is not None
        else "presence: n/a (every photo holds one, or none does)"
    )
    return (
        f"{m['data']}: {m['photos']} photos, {m['detector']} at threshold {m['threshold']:.3g}: AP@0.5 "
        f"{m['ap50_at_threshold']:.3f} (every box {m['ap50']:.3f}), mAP {m['map']:.3f}; {presence}; "
        f"count right on {m['count']['right']:.1%} of photos"
        + (f"\n  {better}" if (better := better_threshold(m)) else "")
    )


def write_folder(folder: Path, m: dict, rows: list, pr, threshold: float) -> Path:
    """metrics.json, photos.csv and report.html (report.evaluation_page) in `folder`."""
    from imgclf.core.files import atomic_path, write_json
    from imgclf.detection.report import evaluation_page

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", m)
    with atomic_path(folder / "photos.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "labelled", "found", "best_score", "present", "answered_present"])
        for p, _, score, n, found in rows:
            w.writerow([p.path, int(n), int(found), f"{score:.4f}", int(n > 0), int(score >= threshold)])
    # The photos it got most wrong first: a missed or invented person, then the count furthest off.
    worst = sorted(rows, key=lambda r: (bool(r[2] >= threshold) == bool(r[3] > 0), -abs(int(r[4]) - int(r[3]))))
    return evaluation_page(folder, m, pr, [(p, a, threshold) for p, a, *_ in worst[:SHOWN]])

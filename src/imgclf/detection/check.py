"""`imgclf check BOXES/`: what a folder of box annotations holds, read as `imgclf train` will read it.

    findings = imgclf.check("boxes/")     # format, photos, boxes per class, the split, what training ignores

A malformed annotation file stops it with the same one line that training gives. What it reports:
the photos and boxes per class, the photos with nothing in them (negatives), unreadable images
(skipped), the train/val/test split training would make (the user's where given), and the boxes too
small for the detector's 300 x 300 input, which fine-tuning leaves out (finetune.FORCE_IOU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def too_small(photo, anchors_xy) -> np.ndarray:
    """Per box of `photo`: would fine-tuning leave it out (no anchor frames it, finetune.framed_by_anchor)?
    `anchors_xy`: the detector's anchors as normalised x1 y1 x2 y2."""
    import torch
    from torchvision.ops import box_iou

    from imgclf.detection.finetune import framed_by_anchor

    if not len(photo.boxes):
        return np.zeros(0, bool)
    gt = torch.from_numpy(photo.boxes / np.array([photo.width, photo.height] * 2, np.float32))
    return (~framed_by_anchor(box_iou(gt, anchors_xy))).numpy()


def check_boxes(data, json_path=None, seed: int = 0, console=None) -> dict:
    """The findings as a dict (also written to `json_path`), printed on `console`."""
    import torch
    from rich.markup import escape  # the user's paths and class names
    from rich.table import Table

    from imgclf.core.errors import UserError
    from imgclf.core.files import write_json
    from imgclf.detection.annotations import read_boxes
    from imgclf.detection.splits import split
    from imgclf.models.person import anchors as A

    box_set = read_boxes(data)
    anchors_xy = torch.from_numpy(A.anchors())[:, [1, 0, 3, 2]]
    per_class = {c: {"photos": 0, "boxes": 0, "too_small": 0} for c in box_set.classes}
    for p in box_set.photos:
        small = too_small(p, anchors_xy)
        for c in set(p.labels):
            per_class[c]["photos"] += 1
        for label, s in zip(p.labels, small):
            per_class[label]["boxes"] += 1
            per_class[label]["too_small"] += int(s)
    try:
        parts, how = split(box_set.photos, seed)
        planned = {k: len(v) for k, v in parts.items()} | {"how": how}
    except UserError as e:  # too few photos, or none left to train on: what training would say
        planned = {"error": str(e)}
    findings = {
        "format": box_set.format,
        "root": box_set.root,
        "photos": len(box_set.photos),
        "photos_without_boxes": sum(1 for p in box_set.photos if not len(p.boxes)),
        "boxes": sum(len(p.boxes) for p in box_set.photos),
        "classes": per_class,
        "split": planned,
        "unreadable": [{"path": path, "reason": why} for path, why in box_set.skipped],
    }
    if console is not None:
        table = Table(title=f"{escape(str(Path(box_set.root)))}: {box_set.format} boxes")
        for col in ("class", "photos", "boxes", "too small to learn from"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for c, n in per_class.items():
            table.add_row(escape(c), str(n["photos"]), str(n["boxes"]), str(n["too_small"]))
        console.print(table)
        console.print(
            f"{findings['photos']} photos, {findings['photos_without_boxes']} with nothing in them; "
            f"{len(box_set.skipped)} unreadable (skipped)"
        )
        for item in findings["unreadable"][:5]:
            console.print(f"  skipped {escape(item['path'])}: {escape(item['reason'])}")
        if "error" in planned:
            console.print(f"split: {escape(planned['error'])}")
        else:
            console.print(f"split {planned['train']}/{planned['val']}/{planned['test']} train/val/test ({escape(how)})")
        if any(n["too_small"] for n in per_class.values()):
            console.print(
                "too small to learn from: under about a tenth of the photo's height, the detector's 300 x 300 "
                "input cannot frame them; fine-tuning leaves them out, and `imgclf scan --tiles 2x2` finds more"
            )
    if json_path:
        write_json(json_path, findings)
        if console is not None:
            console.print(f"report: {escape(str(json_path))}")
    return findings

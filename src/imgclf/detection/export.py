"""`imgclf export person` (or a detector run): the detector as one ONNX file with its classes,
threshold and NMS IoU in the metadata, checked against PyTorch. The int8 graph is detection/int8.py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.detection.detector import SOFT_RATIO, Detector, load_detector
from imgclf.detection.engines import export_onnx
from imgclf.models.person import SIZE


def export_detector(name: str | Path = "person", out: str | Path | None = None, images=None) -> dict:
    """The detector as one ONNX file (`input` float RGB 0..255 (N, 3, 300, 300), the photo squashed to
    300x300 -> `boxes` (N, 1917, 4) normalised x1 y1 x2 y2, `scores` (N, 1917, classes); classes, the
    threshold and the NMS IoU in its metadata; NMS is the caller's), checked against PyTorch on
    `images` (PIL, else seeded noise): the largest score and box differences."""
    import onnx

    from imgclf.data.images import resize

    det = load_detector(name, "cpu", backend="torch")
    run = Path(name).expanduser()
    out = (
        Path(out)
        if out
        else (run / "detector.onnx" if (run / "detector.json").is_file() else Path("person-detector.onnx"))
    )
    export_onnx(det.net, out)
    model = onnx.load(str(out))
    props = {
        "classes": ",".join(det.classes),
        "positive": det.positive,
        "threshold": str(det.threshold),
        "nms_iou": str(det.iou),
        "input": "float32 RGB 0..255, NCHW, the whole photo resized to 300x300 (aspect ratio not kept)",
        "boxes": "normalised x1,y1,x2,y2 per anchor; multiply by the photo's width and height; then NMS per class",
        "source": str(det.source),
    }
    if det.enlarged_odds:  # imgclf's rule for a photo enlarged to the input (detector.enlarged)
        props["threshold_enlarged"] = (
            f"{det.enlarged_threshold:g} for a view with little detail (a smaller photo enlarged): mean |Laplacian| of "
            f"the grey 300x300 input under {SOFT_RATIO:g} x that of the input halved (2x2 means)"
        )
    if det.flip:  # as the threshold was chosen (an older fine-tuned run's was for the photo alone)
        props["mirror"] = (
            "the threshold is for imgclf's answers: per anchor, the mean of the photo's output and its mirror "
            "image's (input flipped left-right, outputs reordered to the mirror anchors, boxes' x flipped back)"
        )
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    from imgclf.core.files import atomic_path

    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    from imgclf.inference.onnx_runtime import open_session

    session = open_session(out)
    batch = (
        np.stack([resize(img, SIZE) for img in images])
        if images
        else np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    )
    # The graph is one pass; imgclf also averages in the mirror image's (Detector.flip), as "mirror" says.
    ref_boxes, ref_scores = det._forward(batch)
    got_boxes, got_scores = Detector(det.net, det.classes, det.name, session=session)._forward(batch)
    return {
        "path": str(out),
        "max_score_diff": float(np.abs(got_scores - ref_scores).max()),
        "max_box_diff": float(np.abs(got_boxes - ref_boxes).max()),
        "n_images": int(len(batch)),
    }

"""Scan a photo with a crop classifier: an image pyramid of windows, each scored by the model,
the calibrated positive probability thresholded, overlapping hits merged by non-maximum suppression.

    scanner = Scanner(imgclf.load("runs/person-1"))
    scanner.scan(read_rgb("street.jpg"))  # {"present", "score", "boxes": [{x1, y1, x2, y2, score}], ...}
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from imgclf.core.errors import UserError
from imgclf.core.work import check
from imgclf.evaluation.operating_point import OperatingPoint
from imgclf.models.forward import autocast, normalize, softmax
from imgclf.scanning.boxes import (
    VOTE_IOU,
    letterbox,
    pixels_of,
    reported_score,
    shrink_by_margin,
    vote_boxes,
)
from imgclf.scanning.fcn import fcn_parts, window_logits
from imgclf.scanning.window import DEFAULT_MIN_SIZE, Window, positive_class, pyramid, window_of
from imgclf.settings.scan import check_scan, parse_margin

MAX_BOXES = 100


class Scanner:
    """Holds what does not change between photos: the window, the threshold, the network split."""

    def __init__(
        self,
        model,
        positive: str | None = None,
        *,
        scales=None,
        stride: int | None = None,
        min_size: int | None = None,
        iou: float = 0.3,
        margin=None,
        method: str = "auto",
        threshold: float | None = None,
        vote: bool | None = None,
        verify=None,
        box_threshold: float | None = None,
    ):
        checked = check_scan(method=method, iou=iou, min_size=min_size, scales=scales)
        iou, min_size, scales = checked["iou"], checked["min_size"], checked["scales"]
        self.model, self.size = model, model.img_size
        self.positive = positive_class(model, positive)
        self.pos = model.classes.index(self.positive)
        self.window: Window = window_of(model, self.positive)
        recorded = dict(self.window.defaults)  # the run's own scan defaults, when recorded
        # The run's stored operating point when it is about this class; otherwise even odds. A photo
        # holds thousands of windows, so a photo-level threshold recorded with the run wins.
        stored = OperatingPoint.of(model.meta).threshold_for(self.positive)
        self.threshold = 0.5 if stored is None else stored
        user_threshold = threshold
        threshold = threshold if threshold is not None else recorded.get("threshold")
        if threshold is not None:
            check_scan(threshold=threshold)
            self.threshold = float(threshold)
        self.scales, self.iou = scales, iou
        # What the user chose, not the run's defaults: a scan over the time limit may raise a chosen
        # window size no further (scanning.cost.fit), only refuse.
        self.given = frozenset(k for k, v in (("scales", scales), ("stride", stride), ("min_size", min_size)) if v)
        self.vote = bool(vote if vote is not None else recorded.get("vote", True))
        self.min_size = min_size or recorded.get("min_size")
        self.margin = parse_margin(margin if margin is not None else recorded.get("margin", 0.0))
        self.parts = self._fcn(method)
        default = max(1, self.size // 8)
        if stride is not None and not 1 <= stride <= self.size:  # 0 once meant "the default", silently
            raise UserError(f"--stride must be 1 to {self.size} px of the model input, not {stride}")
        self.stride = int(
            stride or (self.parts.stride if self.parts and self.parts.stride <= self.size // 4 else default)
        )
        self.method = "fcn" if self.parts else "windows"
        # With a verifier, presence is its answer on the best windows, at its operating point (the
        # recorded threshold, when the verifier is the recorded one); the scan's own threshold then
        # only picks which windows become boxes (`box_threshold`, recorded beside it).
        self.verify = _recorded_verifier(model, self.positive, recorded) if verify is None else verify or None
        self.box_threshold = self.threshold
        if self.verify is not None:
            box_threshold = box_threshold if box_threshold is not None else recorded.get("box_threshold")
            if box_threshold is not None:
                check_scan(box_threshold=box_threshold)
                self.box_threshold = float(box_threshold)
            self.threshold = float(user_threshold) if user_threshold is not None else self.verify.threshold

    def _fcn(self, method: str):
        net = getattr(self.model, "net", None)
        usable = isinstance(net, torch.nn.Module) and self.model.tta in ("none", "flip") and self.window.fit != "pad"
        parts = None
        if usable and method != "windows":
            parts = fcn_parts(net, self.size, self.model.meta.normalization)
        if method == "fcn" and parts is None:
            raise UserError(
                "this model cannot scan fully convolutionally (it needs a simple_cnn or resnet_fast "
                "run on the torch backend, with tta none or flip); use method='windows'"
            )
        return parts

    def with_options(
        self, *, iou: float | None = None, min_size: int | None = None, threshold: float | None = None
    ) -> "Scanner":
        """This scanner with other per-photo options, sharing its window and network parts: the
        service builds one per request, and a copy of the network per option value would pile up."""
        check_scan(iou=iou, min_size=min_size, threshold=threshold)
        other = copy.copy(self)
        other.iou = self.iou if iou is None else iou
        other.min_size = min_size or self.min_size
        other.given = self.given | ({"min_size"} if min_size else set())
        other.threshold = self.threshold if threshold is None else float(threshold)
        return other

    def windows(self, width: int, height: int) -> int:
        """How many windows a scan of a width x height photo scores: its cost, known from the
        photo's header before a pixel is decoded (the service refuses photos over a cap)."""
        total = 0
        for s in pyramid(self.window, width, height, self.scales, self.min_size):
            cw, ch, rw, rh = self._level_size(width, height, s)[2:]
            total += ((rw - cw) // self.stride + 1) * ((rh - ch) // self.stride + 1)
        return total

    def describe(self) -> str:
        w = self.window
        return (
            f"window {w.width}x{w.height} (the median training crop of '{self.positive}', {w.fit} to "
            f"{self.size}x{self.size}), stride {self.stride} px of the input (1/{self.size / self.stride:g} window), "
            f"scale step 0.8 from min size {self.min_size or DEFAULT_MIN_SIZE} px, threshold {self.threshold:.3g}, "
            f"{f'box voting (IoU {VOTE_IOU}), ' if self.vote and not self.verify else ''}NMS IoU {self.iou}, "
            f"{self.method} scan"
            + (
                f", then {self.verify.describe()}; boxes where the scan scores {self.box_threshold:.3g} or more"
                if self.verify
                else ""
            )
        )

    def scan(self, img, stop=None) -> dict:
        """One RGB PIL image -> {width, height, present, score, threshold, positive, boxes, windows,
        min_size, seconds} plus `_windows` (the kept detections' whole windows, for hard-negative
        mining). `stop` (core.work.Stop) is checked between batches: Stopped ends the scan there."""
        from imgclf.models.arrays import nms

        start = time.perf_counter()
        width, height = img.size
        boxes, scores = [], []
        pixels = pixels_of(img)
        for s in pyramid(self.window, width, height, self.scales, self.min_size):
            check(stop)
            b, p = self._level(img, s, self._resize(img, s, pixels), stop)
            boxes.append(b)
            scores.append(p)
        boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        scores = np.concatenate(scores) if scores else np.zeros(0)
        if self.verify is not None:
            check(stop)
            best, hit, scores = self._verified(img, boxes, scores)
        else:
            best = float(scores.max()) if len(scores) else 0.0
            hit = np.flatnonzero(scores >= self.threshold)
        if len(hit):
            # A fitted margin can reach past the window, so past the photo's edge.
            objects = np.clip(shrink_by_margin(boxes[hit], self.margin), 0, [width, height, width, height])
            if self.vote and self.verify is None:
                objects = vote_boxes(objects, scores[hit])
            keep = nms(objects, scores[hit], self.iou)[:MAX_BOXES]
            hit, objects = hit[keep], objects[keep]
        else:
            objects = np.zeros((0, 4))
        # Scores to 6 significant digits of p, or of 1 - p above 0.5: photos and boxes that pass a
        # strict threshold (0.97) often score above 0.9999, and a verifier sure of its crops scores
        # person-free photos near 1e-6; fixed decimals would tie them for whoever ranks them (ROC, AP).
        found = [
            {
                "x1": round(float(b[0]), 1),
                "y1": round(float(b[1]), 1),
                "x2": round(float(b[2]), 1),
                "y2": round(float(b[3]), 1),
                "score": reported_score(scores[i]),
            }
            for b, i in zip(objects, hit)
        ]
        return {
            "width": width,
            "height": height,
            "present": best >= self.threshold,
            "score": reported_score(best),
            "threshold": self.threshold,
            "positive": self.positive,
            "boxes": found,
            "windows": int(len(scores)),
            "min_size": self.min_size or DEFAULT_MIN_SIZE,
            "seconds": round(time.perf_counter() - start, 4),
            "_windows": boxes[hit],
        }

    def frame_probs(self, frames: list, n_classes: int):
        """Video frames (RGB arrays) -> (probabilities (n, classes), boxes per frame): the positive
        class gets the best window's probability, the others share the rest, so the video path's
        smoothing, answers and presence events work on scans as they do on whole-frame predictions."""
        from PIL import Image

        probs = np.zeros((len(frames), n_classes))
        boxes = []
        for i, frame in enumerate(frames):
            r = self.scan(Image.fromarray(frame))
            probs[i] = (1 - r["score"]) / max(n_classes - 1, 1)
            probs[i, self.pos] = r["score"]
            boxes.append(r["boxes"])
        return probs, boxes

    def _verified(self, img, boxes: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(photo score, the windows that become boxes, every window's box score) with a verifier.

        The verifier re-scores the best `verify.top` windows after NMS, whatever their scan score (a
        photo where the scan fired nowhere still gets looked at): its best answer is the photo's
        score, so photos rank (ROC) by its judgement. Boxes come from the scan's own detections
        (windows over `box_threshold`, and the best verified window) in photos it passes, scored
        scan score x photo score. The verified windows themselves frame people worse: bench/scan.py,
        split seeds 0 and 1 pooled, AP@0.5 0.022 and 0.018 from them against 0.029 and 0.038 this way."""
        from imgclf.models.arrays import nms

        if not len(scores):
            return 0.0, np.zeros(0, dtype=int), scores
        top = nms(boxes, scores, self.iou)[: self.verify.top]
        checked = self.verify.score(img, boxes[top])
        photo = float(checked.max())
        if photo < self.threshold:
            return photo, np.zeros(0, dtype=int), scores
        hit = np.union1d(np.flatnonzero(scores >= self.box_threshold), top[checked.argmax()])
        return photo, hit, scores * photo

    def _resize(self, img, s: float, pixels: torch.Tensor | None = None) -> tuple:
        """The photo resampled so that the window at scale s becomes the model's input size.
        torch's antialiased bilinear resize (Pillow's BILINEAR filter, within one grey level of
        it) from `pixels` (the photo as a uint8 (1, 3, H, W) tensor, made once per scan): it runs
        on every torch thread, 3x faster than Pillow over a 640x480 photo's levels on 2 threads."""
        import torch.nn.functional as F

        fx, fy, cw, ch, rw, rh = self._level_size(img.width, img.height, s)
        pixels = pixels_of(img) if pixels is None else pixels
        out = F.interpolate(pixels, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
        return out[0].permute(1, 2, 0).numpy(), fx, fy, cw, ch

    def _level_size(self, width: int, height: int, s: float) -> tuple:
        """At scale s: the scale factors (fx, fy), the window's size in the resampled photo (cw, ch)
        and the resampled photo's size (rw, rh)."""
        w = self.window
        ww, wh = w.width / s, w.height / s  # the window in image pixels
        if w.fit == "pad":
            f = self.size / max(ww, wh)
            fx = fy = f
            cw, ch = max(1, round(ww * f)), max(1, round(wh * f))
        else:
            fx, fy = self.size / ww, self.size / wh
            cw = ch = self.size
        return fx, fy, cw, ch, max(cw, round(width * fx)), max(ch, round(height * fy))

    def _level(self, img, s: float, resized: tuple | None = None, stop=None) -> tuple[np.ndarray, np.ndarray]:
        """Window boxes (n, 4) in image pixels and positive probabilities (n,) at pyramid scale s
        (`resized`: the level's `_resize`, when already made)."""
        arr, fx, fy, cw, ch = resized or self._resize(img, s)
        if self.parts:
            xs, ys, logits = self._fcn_level(arr, stop)
            probs = softmax(logits / self.model.temperature)
        else:
            xs, ys, probs = self._window_level(arr, cw, ch, stop)
        p = probs[:, self.pos]
        boxes = np.stack([xs / fx, ys / fy, (xs + cw) / fx, (ys + ch) / fy], 1)
        # Rounding the resampled size can put a border window a fraction of a pixel outside.
        np.clip(boxes, 0, [img.width, img.height, img.width, img.height], out=boxes)
        return boxes, p

    def _window_level(self, arr: np.ndarray, cw: int, ch: int, stop=None):
        from imgclf.scanning.cost import unit_costs

        st, batch = self.stride, unit_costs(self).batch()  # a batch of about 0.25 s: a stop waits no longer
        view = torch.from_numpy(arr).unfold(0, ch, st).unfold(1, cw, st)  # ny, nx, 3, ch, cw
        ny, nx = view.shape[:2]
        rows = max(1, batch // nx)
        out = []
        for r in range(0, ny, rows):
            crops = view[r : r + rows].permute(0, 1, 3, 4, 2).reshape(-1, ch, cw, 3).numpy()
            if (cw, ch) != (self.size, self.size):
                crops = letterbox(crops, self.size)
            for i in range(0, len(crops), batch):
                check(stop)
                # predict_proba: the run's own TTA and temperature, and any model kind (ensembles, ONNX).
                out.append(self.model.predict_proba(crops[i : i + batch]))
        ys, xs = np.meshgrid(np.arange(ny) * st, np.arange(nx) * st, indexing="ij")
        return xs.ravel().astype(float), ys.ravel().astype(float), np.concatenate(out)

    def _fcn_level(self, arr: np.ndarray, stop=None):
        """Every window at `self.stride` px: one trunk pass per offset when the stride is finer than
        the network's own (its feature cells), one pass subsampled when it is a multiple of it."""
        r, size, st = self.parts.stride, self.size, self.stride
        if st % r == 0:
            offsets, step = [0], st // r
        elif r % st == 0:
            offsets, step = list(range(0, r, st)), 1
        else:
            offsets, step = [0], max(1, round(st / r))
        device = self.model.device
        if not self.parts.raw_input:  # else the trunk's first conv standardises
            norm = self.model.meta.normalization
            mean = torch.tensor(norm.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            std = torch.tensor(norm.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        xs, ys, out = [], [], []
        for oy in offsets:
            for ox in offsets:
                sub = arr[oy:, ox:]
                h = size + (sub.shape[0] - size) // r * r
                w = size + (sub.shape[1] - size) // r * r
                if min(sub.shape[:2]) < size:
                    continue
                x = torch.from_numpy(sub[:h, :w]).permute(2, 0, 1)[None].to(device)
                if not self.parts.raw_input:
                    x = normalize(x, mean, std)
                with autocast(device, self.model.amp):
                    logits = window_logits(self.parts, x, size, flip=self.model.tta == "flip", stop=stop)
                logits = logits[::step, ::step].float().cpu()
                ny, nx = logits.shape[:2]
                gy, gx = np.meshgrid(oy + np.arange(ny) * r * step, ox + np.arange(nx) * r * step, indexing="ij")
                ys.append(gy.ravel())
                xs.append(gx.ravel())
                out.append(logits.reshape(ny * nx, -1).numpy())
        return np.concatenate(xs).astype(float), np.concatenate(ys).astype(float), np.concatenate(out)


def _recorded_verifier(model, positive: str, recorded: dict):
    """The verifier recorded with the run (RUN/verifier/, see window.remember), loaded on the run's
    device, with the recorded photo threshold; None when none is recorded."""
    if not recorded.get("verify") or not getattr(model, "path", None):
        return None
    from pathlib import Path

    from imgclf.scanning.verify import TOP, Verifier, load_verifier

    folder = Path(model.path) / recorded["verify"]
    if not (folder / "model.json").is_file():
        raise UserError(
            f"{model.path}/scan_window.json names a verifier in {folder}, which is missing; "
            "record it again (imgclf.scanning.remember) or scan with verify=False"
        )
    return Verifier(
        load_verifier(folder, str(model.device)),
        positive,
        top=recorded.get("verify_top") or TOP,
        threshold=recorded.get("threshold"),
    )

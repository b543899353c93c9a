"""The detector as a two-class classifier: "is a person in this photo?" from the pretrained person
detector (or a detector run fine-tuned on your boxes), with no training.

    model = presence_model("person")          # classes ['no person', 'person']
    model.predict(["door.jpg"])               # [{'label': 'person', 'confidence': 0.97, ...}]

What `imgclf serve` with no run folder serves (and `imgclf serve DETECTOR_RUN`): POST /predict answers
present or absent from the same detector, the same presence rule (the best box's score against the
detector's recorded threshold, the mirror image averaged in, a flat frame absent) and so the same
answer as `imgclf scan` and POST /scan, which draw where. A user asking only whether someone is
there should not have to train a classifier first to get a service.

`confidence` is the best box's score moved onto even odds at the threshold (logit(score) minus
logit(threshold), through a sigmoid): a photo scoring exactly the threshold is 0.5, and the answer is
the class over 0.5. It orders photos as the score does; it is not a calibrated probability.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.core.version import __version__
from imgclf.detection.boxes import logit
from imgclf.inference.predictor import Predictor
from imgclf.models import PERSON_DETECTOR
from imgclf.store.run_meta import Architecture, Decision, InputSpec, RunMeta

SCORE_EPS = 1e-4  # scores are clipped this far from 0 and 1 before their log-odds
USEFUL_BALANCED = 0.75  # the least balanced accuracy a threshold suggested on labelled folders must reach
RULE = "the detector's presence threshold (its best box's score), moved to even odds"


# How people name the folders of photos with and without what a detector finds (evaluation.elsewhere's
# match_classes takes a folder by one of these only when its name is not a class's own).
PERSON_NAMES = ("person", "persons", "people", "human", "humans", "pedestrian", "pedestrians")
NEGATIONS = ("no", "non", "not", "without")
NOTHING = ("empty", "background", "negative", "negatives", "neg", "none", "nothing", "absent")
SOMETHING = ("positive", "positives", "pos", "present")


class DetectorClassifier(Predictor):
    """A loaded Detector behind the classifier interface (inference.predictor): classes
    [no POSITIVE, POSITIVE], one answer per photo, the detector's presence rule."""

    not_explainable = (
        "a detector answers where with boxes, not a heat map: imgclf scan PHOTOS (the service: POST /scan, "
        "the page's Find button)"
    )

    def __init__(self, detector, path: Path | None = None):
        from imgclf.models.person import SIZE

        self.detector, self.name = detector, detector.name
        self.device = detector.device
        positive = detector.positive
        meta = RunMeta(
            kind="detector",
            imgclf_version=__version__,
            classes=[f"no {positive}", positive],
            architecture=Architecture(name=PERSON_DETECTOR, kwargs={"detector": detector.name}),
            input=InputSpec(size=SIZE, resize="squash", channels="RGB", dtype="uint8"),
            preprocessing=(
                f"decode to RGB (EXIF-rotated, alpha on white), resize 'squash' to {SIZE}x{SIZE}; the detector's "
                f"best '{positive}' box (the mirror image averaged in) against its threshold {detector.threshold:g}"
            ),
            pretrained={"detector": detector.name, **detector.source},
            decision=Decision(positive_class=positive, threshold=0.5, rule=RULE),
        )
        super().__init__(meta, path)

    @property
    def class_aliases(self) -> dict[str, tuple]:
        """Other names of the two answers, as folders of labelled photos carry them (evaluate matches
        DATA's folders by them, and says so): `human/` and `non-human/`, `people/` and `empty/`."""
        positive = self.detector.positive
        names = PERSON_NAMES if positive == "person" else (positive, positive + "s")
        nobody = ("nobody", "no one", "noone") if positive == "person" else ()
        return {
            f"no {positive}": (*(f"{no} {n}" for no in NEGATIONS for n in names), *NOTHING, *nobody),
            positive: (*names, *SOMETHING),
        }

    @property
    def backend(self) -> str:
        return getattr(self.detector, "backend", "torch")  # a torchvision detector (hub.py) runs in PyTorch

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 2) logits of uint8 RGB photos (N, 300, 300, 3): 0 for absent, and for present the
        best box's log-odds less those of the threshold the photo was answered at (Detector.detect_batch:
        an enlarged photo's is higher)."""
        from PIL import Image

        answers = self.detector.detect_batch([Image.fromarray(np.ascontiguousarray(x)) for x in images])
        present = [logit(a["score"], SCORE_EPS) - logit(a["threshold"], SCORE_EPS) for a in answers]
        return np.stack([np.zeros(len(present)), np.array(present, dtype=np.float64)], 1)

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """The best boxes' scores behind (N, 2) answers: predict_logits' move to even odds, undone at
        the detector's threshold (an enlarged photo's score comes back on the same scale: lower, as its
        threshold was higher)."""
        p = np.clip(np.asarray(probs, np.float64)[:, 1], SCORE_EPS, 1 - SCORE_EPS)
        return 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p) + logit(self.detector.threshold, SCORE_EPS))))


def missed_note(model: DetectorClassifier, metrics: dict, data) -> str:
    """What to do when the detector finds under half of the photos labelled as holding what it finds
    (measured: 0 of 100 of Daimler's 18x36 grey pedestrian crops): it finds people in scenes, so a
    close crop, a tiny or an odd photo is out of its reach, and a classifier trained on these folders
    is the answer; "" when it finds most."""
    positive = model.detector.positive
    seen = metrics.get("per_class", {}).get(positive, {})
    if not seen.get("support") or seen["recall"] >= 0.5:
        return ""
    return (
        f"the detector found '{positive}' in only {seen['recall']:.0%} of the {int(seen['support'])} photos labelled so: "
        f"it looks for them in whole scenes, so close crops, tiny or unusual photos are out of its reach; a "
        f"classifier trained on these folders answers them (imgclf train {data}), or fine-tune the detector "
        "on boxes (imgclf train BOXES/)"
    )


def folder_threshold(model: DetectorClassifier, labels: np.ndarray, probs: np.ndarray, data) -> tuple[dict, str]:
    """Presence on labelled folders as the box evaluation tells it (detection.metrics.presence, with the
    detector's own threshold as the prior it must beat by more than one photo): its figures, and the
    line naming the threshold these photos ask for ("" when the recorded one serves). A camera that
    sees people smaller, darker or farther than street photos show them needs a lower one; the user
    should not have to find it by hand."""
    from imgclf.detection.metrics import presence

    t = float(model.detector.threshold)
    found = presence(model.scores(probs), np.asarray(labels) == 1, prior=t)
    # Under 3 in 4 the threshold is no answer (Daimler's 18x36 crops: 0.515 at 0.03); missed_note's is.
    if found["roc_auc"] is None or found.get("kept_prior") or found["balanced_accuracy"] < USEFUL_BALANCED:
        return found, ""
    found["threshold"] = round(found["threshold"], 4)
    return found, (
        f"on these photos presence is told best at threshold {found['threshold']:.3g} (balanced accuracy "
        f"{found['balanced_accuracy']:.3f} against {found['prior']['balanced_accuracy']:.3f} at the detector's "
        f"{t:g}), chosen on them, so optimistic: imgclf scan PHOTOS --threshold {found['threshold']:.3g}, or "
        f"train a classifier on them: imgclf train {data}"
    )


def presence_model(
    detector: str | Path = "person", device: str = "auto", backend: str = "auto", loaded=None
) -> DetectorClassifier:
    """The pretrained person detector ('person') or a detector run folder as a two-class classifier;
    `loaded`: that detector already loaded (the service's /scan holds one)."""
    from imgclf.detection.detector import load_detector

    loaded = loaded or load_detector(detector, device, backend)
    return DetectorClassifier(loaded, Path(detector).expanduser() if is_detector_run(detector) else None)


def is_detector_run(path) -> bool:
    """Whether `path` is a folder `imgclf train BOXES/` made (a detector run, not a classifier's)."""
    return path is not None and (Path(path).expanduser() / "detector.json").is_file()

"""A second face descriptor for hard light: the light-normalised texture of models.texture (Tan &
Triggs' normalisation, then LBP histograms in a grid), and how much a gallery weighs it in.

Why a second descriptor: dlib's embedding was trained on faces in everyday light. Lit from one side,
half a face is black, the detector misses it and the embedding has little to go on; the normalised
texture of the same crop keeps the edges the light left. On a stand-in with Yale B's layout (one pose
a person, lit by 12 point lights; bench/faces.py's orl-yaleb) the texture alone names 0.94 of the
photos from five a person (nearest mean; 0.83 before its finer grid of 2026-11-28) where the embedding
names 0.55; on faces in everyday light it is far behind (ORL 0.91 against 1.00). So a gallery weighs it in only where its own enrolment photos say it helps
(choose_blend), and never on its own say-so.

The texture is read from a face crop whole (a collection of crops shares one framing, and Yale B's
crops are aligned); a face in a larger photo is cut as a crop would frame it (FRAME)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The descriptor itself lives with the models (imgclf train races it too); the gallery's names for it.
from imgclf.models.texture import DIM

# Where a face's detector box sits in the crop its texture is read from, for a face in a larger photo
# (shares of the crop's width and height): a crop from the eyebrows' top to below the chin, as dlib's
# boxes sit in face crops (on ORL the median box is x 7-92 %, y 26-97 %).
FRAME = (0.08, 0.25, 0.92, 0.97)


def region(img, box) -> np.ndarray:
    """The greyscale (uint8) face region of an RGB PIL image the texture is read from: a face crop
    (FACE_CROP px or smaller) whole; in a larger photo, the crop around the face's box (x1, y1, x2, y2
    px) that FRAME describes (outside the photo: black)."""
    from imgclf.models.face.model import FACE_CROP

    grey = img.convert("L")
    if max(grey.size) <= FACE_CROP:
        return np.asarray(grey)
    x1, y1, x2, y2 = box
    fx1, fy1, fx2, fy2 = FRAME
    width, height = (x2 - x1 + 1) / (fx2 - fx1), (y2 - y1 + 1) / (fy2 - fy1)
    left, top = x1 - fx1 * width, y1 - fy1 * height
    return np.asarray(grey.crop((round(left), round(top), round(left + width), round(top + height))))


def texture(grey) -> np.ndarray:
    """(DIM,) float32: models.texture's descriptor of one greyscale image (H, W). It is written in torch,
    which is loaded here, when a gallery first needs a texture, not when a gallery is opened."""
    from imgclf.models.texture import ops

    return ops.texture(grey)


def of_faces(img, faces) -> np.ndarray:
    """(len(faces), DIM) float32: each found face's texture (models.face.model.Face boxes)."""
    return np.stack([texture(region(img, f.box)) for f in faces]) if faces else np.zeros((0, DIM), np.float32)


# ---- how much the texture counts in a gallery ----
WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # the texture's shares tried against 0 (the embedding alone)
# The texture counts only when it names this much more of the enrolment photos (leave-one-out) than
# the embedding alone: on faces in everyday light it costs a little, and a tie is noise.
MIN_GAIN = 0.02
SPREAD_ROWS = 2000  # photos sampled to measure how different people's similarities spread


@dataclass
class Blend:
    """A gallery's mix of the two descriptors: the cosine similarity of two faces is
    shares[0] x their embeddings' + shares[1] x their centred textures'. Each share is the chosen
    weight over how widely different people's similarities spread in that descriptor, so a weight of
    0.5 is an even say. As one vector a face (vectors()), so the gallery's means, threshold and
    classifier work on it as they do on the embedding alone."""

    weight: float
    centre: np.ndarray  # (DIM,) the enrolment textures' mean: taken off, so textures spread around 0
    shares: tuple[float, float]

    def vectors(self, embeddings: np.ndarray, textures: np.ndarray) -> np.ndarray:
        a, b = self.shares
        return np.hstack([np.sqrt(a) * embeddings, np.sqrt(b) * _centred(textures, self.centre)]).astype(np.float32)

    def record(self) -> dict:
        return {"weight": self.weight, "shares": [round(float(s), 6) for s in self.shares]}

    def centred_on(self, textures: np.ndarray) -> Blend:
        """The same blend, its textures centred on these ones' mean."""
        return Blend(self.weight, textures.astype(np.float32).mean(axis=0), self.shares)


def choose_blend(embeddings: np.ndarray, textures: np.ndarray, owner: np.ndarray, people: int):
    """(Blend, or None for the embedding alone; {weight: leave-one-out accuracy} or {"why": ...}):
    each enrolment photo named by the nearest mean of everyone's other photos, under each weight."""
    counts = np.bincount(owner, minlength=people)
    if people < 2 or (counts >= 2).sum() < 2:
        return None, {"why": "two people with 2+ photos are needed to compare"}
    centre = textures.astype(np.float32).mean(axis=0)
    spread_e, spread_t = _stranger_spread(embeddings, owner), _stranger_spread(_centred(textures, centre), owner)
    scores, blends = {0.0: _leave_one_out(embeddings, owner, people)}, {}
    for w in WEIGHTS:
        a, b = (1 - w) / spread_e, w / spread_t
        blends[w] = Blend(w, centre, (a / (a + b), b / (a + b)))
        scores[w] = _leave_one_out(blends[w].vectors(embeddings, textures), owner, people)
    best = max(scores, key=lambda w: (scores[w], -w))
    scores = {str(w): round(s, 4) for w, s in scores.items()}
    if best == 0.0 or float(scores[str(best)]) < float(scores["0.0"]) + MIN_GAIN:
        return None, scores
    return blends[best], scores


def _centred(textures: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Textures less their centre, at unit length."""
    t = textures.astype(np.float32) - centre
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def _leave_one_out(v: np.ndarray, owner: np.ndarray, people: int) -> float:
    """Share of the photos of people with 2+ photos named right by the nearest mean, each photo's own
    person's mean taken without it (the others' means whole)."""
    sums = np.zeros((people, v.shape[1]), np.float64)
    np.add.at(sums, owner, v)
    counts = np.bincount(owner, minlength=people)
    means = sums / np.maximum(counts, 1)[:, None]
    sims = v @ (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).T
    own = sums[owner] - v
    sims[np.arange(len(v)), owner] = np.sum(v * own, axis=1) / np.maximum(np.linalg.norm(own, axis=1), 1e-12)
    judged = counts[owner] >= 2
    return float((np.argmax(sims[judged], axis=1) == owner[judged]).mean())


def _stranger_spread(v: np.ndarray, owner: np.ndarray) -> float:
    """Standard deviation of the cosine similarities of different people's photos (a seeded sample)."""
    rows = np.random.default_rng(0).permutation(len(v))[:SPREAD_ROWS]
    sims, who = v[rows] @ v[rows].T, owner[rows]
    return max(float(sims[who[:, None] != who[None, :]].std()), 1e-6)

"""A gallery: the enrolled people's face embeddings, how to name a face, and when to say "unknown".

One file, GALLERY/gallery.safetensors, holds everything (the embeddings, the classifier's numbers
and, in its metadata, the people, each embedding's source photo by name and SHA-256, the threshold
and how it was chosen), so a gallery is replaced in one atomic rename: an interrupted `add` or
`remove` leaves the old gallery whole. No absolute paths are stored, so the folder can be moved.
people.csv beside it is a readable summary, rewritten after each change.

Naming: each person is the mean of their unit-length embeddings ("nearest-mean"), or, when every
person has enough photos that cross-validation can tell, a logistic regression on the embeddings
if it names the held-out photos better ("logistic"). Either way a face is "unknown" when its cosine
similarity to the named person's mean is below the threshold. Where the enrolment photos say so
(faces lit hard: texture.choose_blend), each face is its embedding and its light-normalised texture
in one vector (texture.Blend), and all of the above works on that.

The threshold is chosen on the enrolment photos themselves: each person in turn plays a stranger
(their photos against everyone else's means: the most similar other person's similarity is what a
stranger would score), and the threshold lets through at most `far` of those strangers.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import NormalDist

import numpy as np

from imgclf.core.errors import UserError
from imgclf.faces.texture import Blend, choose_blend
from imgclf.models.texture import LEGACY
from imgclf.models.texture import record as texture_record
from imgclf.settings.faces import FAR  # declared with --far (settings.faces)

SCHEMA = 1  # gallery.safetensors' layout: another number is refused with one line, never misread
FILE = "gallery.safetensors"
MAX_RECENTRED = 50  # people who play the stranger where the vectors are recentred for each (a blend)
# Under FEW_STRANGERS trials the quantile runs low, twice over: a sample of a few has no tail, and a
# person playing the stranger meets k-1 means where a real stranger meets all k. On the embedding
# alone the threshold is then at least PRIOR_THRESHOLD, the least any large gallery of the bench's
# stand-ins chose (0.934-0.942 with 30-40 people). bench/faces_small.py on ORL, ORL lit hard and ORL
# in street scenes, 30 galleries of each size from 2 to 18 people x 2-5 photos (2026-12-02): strangers
# named 7-32 % -> 0.6-7.6 %, the enrolled people's other photos named right within 0.6 points. (It
# was 0.91, dlib's rule for one photo against another, distance 0.6: a person's mean is nearer every
# face than one photo is.)
# A texture blend's similarities lie on another scale: its own trials decide, their tail read from a
# normal fit where they are few (orl-shadow, 2 people x 3 photos: strangers named 32 % by the
# largest of 6 trials, 23 % by the fit; weak, but 0.91 there named 10 % of the people enrolled).
FEW_STRANGERS = 100
PRIOR_THRESHOLD = 0.93
CV_MIN_PHOTOS = 3  # a classifier is compared with nearest-mean only when every person has this many photos
CV_MARGIN = 0.005  # and replaces it only when it names this much more of the held-out photos
UNKNOWN = "unknown"


@dataclass
class Gallery:
    people: list[str]
    embeddings: np.ndarray  # (n, d) float32, unit length
    owner: np.ndarray  # (n,) int: index into people
    sources: list[dict]  # per embedding: {"file", "sha256", "box", "found"}
    model: dict  # the embedding model's name and weight hashes
    far: float = FAR
    threshold: float = PRIOR_THRESHOLD
    choice: dict = field(default_factory=dict)  # how the threshold and the method were chosen
    method: str = "nearest-mean"
    coef: np.ndarray | None = None  # logistic regression's (people, d) weights and (people,) bias
    intercept: np.ndarray | None = None
    crop_box: list | None = None  # where a face crop with no face found holds it (models.face.model.crop_box_of)
    textures: np.ndarray | None = None  # (n, texture.DIM): None in galleries written before 2026-11-27
    blend: Blend | None = None  # how the textures count (None: the embedding alone)
    vectors: np.ndarray = field(init=False, repr=False)  # what is compared: the embeddings, or the blend's
    means: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self._compared()

    def _compared(self) -> None:
        self.vectors = self.embeddings if self.blend is None else self.blend.vectors(self.embeddings, self.textures)
        self.means = _means(self.vectors, self.owner, len(self.people))

    # ---- naming ----
    def name(
        self, vectors: np.ndarray, threshold: float | None = None, textures: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """(name or "unknown", cosine similarity to the named person) for each unit-length embedding
        (and its texture, which a gallery that blends them needs: uses_texture)."""
        threshold = self.threshold if threshold is None else threshold
        vectors = np.atleast_2d(vectors)
        if not self.people:
            return [(UNKNOWN, 0.0)] * len(vectors)
        if self.blend is not None:
            vectors = self.blend.vectors(vectors, np.atleast_2d(textures))
        sims = vectors @ self.means.T
        if self.method == "logistic" and self.coef is not None:
            best = np.argmax(vectors @ self.coef.T + self.intercept, axis=1)
        else:
            best = np.argmax(sims, axis=1)
        out = []
        for i, j in enumerate(best):
            s = float(sims[i, j])
            out.append((self.people[j] if s >= threshold else UNKNOWN, round(s, 4)))
        return out

    @property
    def uses_texture(self) -> bool:
        return self.blend is not None

    def counts(self) -> dict[str, int]:
        return {p: int((self.owner == i).sum()) for i, p in enumerate(self.people)}

    # ---- changing ----
    def with_faces(self, name: str, vectors: np.ndarray, sources: list[dict], textures=None) -> Gallery:
        people = sorted(set(self.people) | {name})
        old = np.array([people.index(p) for p in self.people], dtype=np.int64)
        owner = np.concatenate(
            [old[self.owner] if len(self.owner) else self.owner, np.full(len(vectors), people.index(name))]
        )
        emb = np.concatenate([self.embeddings.reshape(-1, vectors.shape[1]), vectors]).astype(np.float32)
        # A gallery from before textures has none of its old faces': it stays without (re-enrol to get them).
        tex = None if textures is None or self.textures is None else np.concatenate([self.textures, textures])
        return self.rebuilt(people, emb, owner, self.sources + sources, textures=tex)

    def without(self, name: str) -> Gallery:
        if name not in self.people:
            raise UserError(f"no one called {name!r} is enrolled; enrolled: {', '.join(self.people) or 'no one'}")
        i = self.people.index(name)
        keep = self.owner != i
        people = [p for p in self.people if p != name]
        owner = np.where(self.owner[keep] > i, self.owner[keep] - 1, self.owner[keep])
        sources = [s for s, k in zip(self.sources, keep) if k]
        tex = None if self.textures is None else self.textures[keep]
        return self.rebuilt(people, self.embeddings[keep], owner, sources, textures=tex)

    def rebuilt(self, people, embeddings, owner, sources, far: float | None = None, textures=...) -> Gallery:
        """A gallery over these faces with its blend, threshold and method chosen afresh."""
        far = self.far if far is None else far
        textures = self.textures if textures is ... else textures
        g = Gallery(people, embeddings, owner, sources, self.model, far, crop_box=self.crop_box, textures=textures)
        g.choose()
        return g

    def choose(self) -> None:
        """Pick the blend, the naming method and the unknown threshold from the enrolled photos (see the docstring)."""
        people = len(self.people)
        self.blend, blend_scores = None, {"why": "no textures (a gallery enrolled before 2026-11-27)"}
        if self.textures is not None and len(self.textures) == len(self.embeddings):
            self.blend, blend_scores = choose_blend(self.embeddings, self.textures, self.owner, people)
        self._compared()
        # A blend's textures are centred on the enrolled photos' mean, which holds each enrolled person
        # and no stranger: a person playing the stranger is recentred without their own photos, or the
        # threshold lets ~4x the asked share of real strangers through (faces under point lights).
        without = None
        if self.blend is not None:
            blend, emb, tex, owner = self.blend, self.embeddings, self.textures, self.owner
            without = lambda p: blend.centred_on(tex[owner != p]).vectors(emb, tex)  # noqa: E731
        prior = PRIOR_THRESHOLD if self.blend is None else None  # a blend's similarities have no prior
        self.threshold, self.choice = choose_threshold(self.vectors, self.owner, people, self.far, without, prior)
        self.method, self.coef, self.intercept, scores = choose_method(self.vectors, self.owner, people)
        self.choice["method"] = scores
        self.choice["texture"] = {
            **(self.blend.record() if self.blend else {"weight": 0.0}),
            "leave_one_out": blend_scores,
        }

    # ---- files ----
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        from imgclf.core.files import atomic_path, write_text
        from imgclf.core.version import __version__

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        header = {
            "schema": SCHEMA,
            "imgclf": __version__,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "people": self.people,
            "sources": self.sources,
            "model": self.model,
            "far": self.far,
            "threshold": self.threshold,
            "choice": self.choice,
            "method": self.method,
            "crop_box": self.crop_box,
            "blend": self.blend.record() if self.blend else None,
            "texture": texture_record(),  # the descriptor the textures were read with
        }
        tensors = {"embeddings": self.embeddings.astype(np.float32), "owner": self.owner.astype(np.int64)}
        if self.textures is not None:  # as computed (float32): a loaded gallery names as the saved one did
            tensors["textures"] = self.textures.astype(np.float32)
        if self.blend is not None:
            tensors["texture_centre"] = self.blend.centre.astype(np.float32)
        if self.coef is not None:
            tensors.update(coef=self.coef.astype(np.float32), intercept=self.intercept.astype(np.float32))
        # safetensors.numpy writes an array's buffer as it lies: a column-major one (scikit-learn's
        # multinomial coef_ is) would come back transposed in place, and name everyone wrong.
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        with atomic_path(folder / FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"imgclf_gallery": json.dumps(header)})
        counts = self.counts()
        write_text(folder / "people.csv", "name,photos\n" + "".join(f"{_csv(p)},{n}\n" for p, n in counts.items()))
        return folder


def new_gallery(model, far: float = FAR) -> Gallery:
    from imgclf.faces.texture import DIM

    empty = np.zeros((0, 128), np.float32)
    return Gallery(
        [], empty, np.zeros(0, np.int64), [], _model_record(model), far, textures=np.zeros((0, DIM), np.float32)
    )


def _not_a_gallery(folder) -> UserError:
    return UserError(
        f"{folder} is not a face gallery (no {FILE}); make one with: imgclf faces enrol KNOWN/ --out {folder}"
    )


@contextlib.contextmanager
def changing(folder: str | Path):
    """The gallery in `folder` held for a change (add, remove) against another process's; a folder
    holding none is refused first, so that no lock file is made in a file's place or a new folder."""
    from imgclf.core.files import file_lock

    if not (Path(folder) / FILE).is_file():
        raise _not_a_gallery(folder)
    with file_lock(Path(folder) / ".lock"):
        yield


def load_gallery(folder: str | Path, model=None) -> Gallery:
    """The gallery in `folder`; one line (UserError) for a missing, damaged or foreign one. With `model`,
    also refuse a gallery whose embeddings another model made (they would not compare)."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / FILE
    if not path.is_file():
        raise _not_a_gallery(folder)
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = json.loads((f.metadata() or {})["imgclf_gallery"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise UserError(
            f"{path} is damaged ({type(e).__name__}); re-enrol with: imgclf faces enrol KNOWN/ --out {folder}"
        ) from None
    if header.get("schema") != SCHEMA:
        raise UserError(
            f"{path} is a gallery of schema {header.get('schema')} (written by imgclf {header.get('imgclf', '?')}); "
            f"this imgclf reads schema {SCHEMA}: re-enrol the people with this version (imgclf faces enrol)"
        )
    textures = tensors.get("textures")  # before 2026-11-27: none, and no blend
    if textures is not None and header.get("texture", LEGACY) != texture_record():
        # Read with another descriptor, they would not compare with a new photo's: the gallery goes on
        # with its embeddings alone where they never counted; where they did, its naming would change.
        if header.get("blend"):
            raise UserError(
                f"{folder} weighs in face textures read by an earlier imgclf (written by imgclf "
                f"{header.get('imgclf', '?')}), which this one reads differently: re-enrol the people "
                "(imgclf faces enrol KNOWN/ --out GALLERY)"
            )
        textures = None
    g = Gallery(
        header["people"],
        tensors["embeddings"],
        tensors["owner"],
        header["sources"],
        header["model"],
        header["far"],
        header["threshold"],
        header["choice"],
        header["method"],
        tensors.get("coef"),
        tensors.get("intercept"),
        header.get("crop_box"),  # galleries written before 2026-11-26 take a face crop whole
        textures,
        Blend(header["blend"]["weight"], tensors["texture_centre"], tuple(header["blend"]["shares"]))
        if header.get("blend")
        else None,
    )
    if model is not None and g.model != _model_record(model):
        raise UserError(
            f"{folder} holds embeddings of {g.model.get('name')} with other weights than this imgclf's "
            f"{model.name}: they do not compare; re-enrol the people (imgclf faces enrol)"
        )
    return g


def choose_threshold(
    emb: np.ndarray, owner: np.ndarray, people: int, far: float, without=None, prior: float | None = PRIOR_THRESHOLD
) -> tuple[float, dict]:
    """The similarity a face needs to be named, so that at most `far` of strangers pass (see the docstring).
    `without(p)`: the compared vectors as they would be had person p never been enrolled, where the
    gallery's vectors depend on who is (a blend centres the textures on the enrolled ones' mean).
    `prior`: the least threshold under FEW_STRANGERS trials (None: the trials alone, a blend's scale)."""
    strangers, same = [], []
    means = _means(emb, owner, people)
    # Recentring costs a pass over every photo a person: at most MAX_RECENTRED of them play the stranger.
    players = (
        range(people) if without is None else np.unique(np.linspace(0, people - 1, MAX_RECENTRED).round().astype(int))
    )
    for p in range(people):
        mine = owner == p
        if people > 1 and p in players:
            v = emb if without is None else without(p)
            others = np.delete(means if without is None else _means(v, owner, people), p, axis=0)
            strangers.extend((v[mine] @ others.T).max(axis=1))
        if mine.sum() > 1:  # leave-one-out: each photo against the mean of the person's other photos
            for i in np.flatnonzero(mine):
                rest = emb[mine & (np.arange(len(emb)) != i)].mean(axis=0)
                same.append(float(emb[i] @ rest / np.linalg.norm(rest)))
    strangers, same = np.asarray(strangers), np.asarray(same)
    recentred = "" if without is None else ", the textures recentred without them"
    trials = f"{len(strangers)} stranger trials (each person against the others, leave-one-person-out{recentred})"
    if len(strangers):
        # Past the last stranger seen, more photos could not lower the rate: stop just above it.
        t = min(float(np.quantile(strangers, 1 - far, method="higher")) + 1e-4, 1.0)
        how = f"lets through {far:.0%} of {trials}"
        if prior is None and 2 < len(strangers) < FEW_STRANGERS:  # a few trials have no tail: a normal one
            tail = float(strangers.mean() + NormalDist().inv_cdf(1 - far) * strangers.std(ddof=1))
            if tail > t:
                t, how = min(tail, 1.0), f"{how}, read from a normal fit: so few have no tail"
    if not len(strangers):  # one person: no stranger to learn from
        t, how = prior or PRIOR_THRESHOLD, "no stranger trials (one person enrolled): the embedding's prior"
    elif prior is not None and len(strangers) < FEW_STRANGERS and t < prior:
        how = f"at least {prior} under {FEW_STRANGERS} stranger trials: {trials} alone chose {t:.3f}, too few to trust"
        t = prior
    choice = {
        "threshold": round(t, 4),
        "how": how,
        "strangers": len(strangers),
        "strangers_passed": round(float((strangers >= t).mean()), 4) if len(strangers) else None,
        "same_person_trials": len(same),
        "same_person_named": round(float((same >= t).mean()), 4) if len(same) else None,
    }
    return round(t, 4), choice


def choose_method(emb: np.ndarray, owner: np.ndarray, people: int):
    """nearest-mean, or logistic regression when cross-validation says it names people better:
    (method, coef, intercept, {method: held-out accuracy})."""
    counts = np.bincount(owner, minlength=people) if people else np.zeros(0, int)
    if people < 2 or counts.min() < CV_MIN_PHOTOS:
        return "nearest-mean", None, None, {"why": f"every person needs {CV_MIN_PHOTOS}+ photos to compare methods"}
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=min(5, int(counts.min())), shuffle=True, random_state=0)
    right = {"nearest-mean": 0, "logistic": 0}
    for train, test in folds.split(emb, owner):
        means = _means(emb[train], owner[train], people)
        right["nearest-mean"] += int((np.argmax(emb[test] @ means.T, axis=1) == owner[test]).sum())
        lr = _logistic(emb[train], owner[train])
        right["logistic"] += int((lr.predict(emb[test]) == owner[test]).sum())
    scores = {k: round(v / len(emb), 4) for k, v in right.items()}
    if scores["logistic"] >= scores["nearest-mean"] + CV_MARGIN:
        lr = _logistic(emb, owner)
        coef, intercept = lr.coef_, lr.intercept_
        if people == 2:  # sklearn's binary form: one row for class 1; make it one row a person
            coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        return "logistic", coef.astype(np.float32), intercept.astype(np.float32), scores
    return "nearest-mean", None, None, scores


def _logistic(x, y):
    from sklearn.linear_model import LogisticRegression

    # Unit-length 128-d embeddings: a weak penalty (large C) lets the few dimensions that separate
    # two similar people count; lbfgs multinomial is sklearn's default and fast at this size.
    return LogisticRegression(C=10.0, max_iter=2000).fit(x, y)


def _means(emb: np.ndarray, owner: np.ndarray, people: int) -> np.ndarray:
    means = np.zeros((people, emb.shape[1] if emb.ndim == 2 else 128), np.float32)
    for p in range(people):
        if (owner == p).any():
            m = emb[owner == p].mean(axis=0)
            means[p] = m / np.linalg.norm(m)
    return means


def _model_record(model) -> dict:
    return {"name": model.name, "weights": model.weights}


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text

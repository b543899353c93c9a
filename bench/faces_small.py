"""Small face galleries: how many strangers they name, with the unknown threshold as it is chosen now
(at least the embedding's prior under 100 stranger trials) and as it was (dlib's 0.91 under 20).

    .venv/bin/python bench/faces_small.py [--work /tmp/facebench] [--sets orl,orl-light,orl-scenes,orl-shadow]

A user starts with a few people and a few photos each ("our 4 employees, 3 photos each"), where a
gallery has few stranger trials to choose its threshold from (faces/gallery.py). Each set is built
and embedded as bench/faces.py does (its stand-ins); then, per gallery size (people x photos a
person), seeded draws of the enrolled people among the 40: a Gallery is made of their photos and
chooses its blend, method and threshold as `imgclf faces enrol` does. Scored on every other photo:
of the people never enrolled, the share named (as someone: a false accept); of the enrolled people's
other photos, the share named right. "before": the same gallery with the rule it had until
2026-12-02 (0.91 under 20 stranger trials, else their quantile alone).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import tables  # bench/tables.py
from faces import SHARED, _draw, _rows, build, embed

SIZES = ((2, 3), (4, 3), (6, 3), (10, 2), (10, 5), (18, 5), (30, 5))  # people x photos a person
BEFORE_FALLBACK, BEFORE_MIN_STRANGERS = 0.91, 20  # the rule until 2026-12-02


def score(emb, tex, owner, found, people: int, photos: int, draws: int, far: float) -> dict:
    from imgclf.faces import gallery as G

    rows = []
    for d in range(draws):
        rng = np.random.default_rng(1000 + d)
        known = np.sort(rng.choice(np.unique(owner), people, replace=False))
        enrol = _draw(owner, found, photos, rng, known)
        remap = {p: i for i, p in enumerate(known)}
        g = G.Gallery(
            [str(p) for p in known],
            emb[enrol],
            np.array([remap[o] for o in owner[enrol]]),
            [{}] * int(enrol.sum()),
            {},
            far,
            textures=_rows(tex, enrol),
        )
        before = _rule_before(g)
        g.choose()
        trials = g.choice["strangers"]
        stranger = ~np.isin(owner, known)
        rest = ~enrol
        truth = [str(o) for o in owner[rest]]
        row = [trials, before, g.threshold]
        for t in (before, g.threshold):
            answers = g.name(emb[rest], t, _rows(tex, rest))
            named = np.array([n != G.UNKNOWN for n, _ in answers])
            right = np.array([n == o for (n, _), o in zip(answers, truth)])
            row += [named[stranger[rest]].mean(), right[~stranger[rest]].mean()]
        rows.append(row)
    keys = ("trials", "t before", "t now", "strangers before", "named before", "strangers now", "named now")
    return dict(zip(keys, np.mean(rows, axis=0)))


def _rule_before(g) -> float:
    """The threshold the rule until 2026-12-02 gave `g`: its stranger trials' quantile alone (no prior,
    no normal tail: under FEW_STRANGERS = 0 neither applies), and 0.91 under 20 trials."""
    from imgclf.faces import gallery as G

    few, G.FEW_STRANGERS = G.FEW_STRANGERS, 0
    try:
        g.choose()
    finally:
        G.FEW_STRANGERS = few
    return BEFORE_FALLBACK if g.choice["strangers"] < BEFORE_MIN_STRANGERS else g.threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/facebench", help="where the sets are unpacked and built")
    ap.add_argument("--sets", default="orl,orl-light,orl-scenes,orl-shadow", help="bench/faces.py's sets")
    ap.add_argument("--draws", type=int, default=30, help="seeded galleries per size")
    ap.add_argument("--far", type=float, default=0.05, help="the galleries' target false-accept rate")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"bench/faces_small.py: skipped, {SHARED} is absent (it holds the ORL faces)")
        return
    from imgclf.faces import FaceModel

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = FaceModel()
    print(f"{date.today()} · python {sys.version.split()[0]} · {model.describe()}")
    out = []
    for name in args.sets.split(","):
        emb, owner, found, stats = embed(build(name, work), model)
        for people, photos in SIZES:
            s = score(emb, stats.get("textures"), owner, found, people, photos, args.draws, args.far)
            out.append(
                [
                    name,
                    f"{people} x {photos}",
                    tables.V(s["trials"], ".0f"),
                    f"{s['t before']:.3f} -> {s['t now']:.3f}",
                    f"{s['strangers before']:.3f} -> {s['strangers now']:.3f}",
                    f"{s['named before']:.3f} -> {s['named now']:.3f}",
                ]
            )
        print(f"{name}: done", flush=True)
    tables.emit(
        "faces-small",
        ["set", "people x photos", "stranger trials", "threshold", "strangers named", "enrolled named right"],
        out,
        title=f"\nsmall galleries, --far {args.far}, {args.draws} draws each (before -> now):",
    )


if __name__ == "__main__":
    main()

"""What enrol, add and remove say about a gallery they wrote: the people and photos, what was
skipped, and how its threshold, naming method and texture blend were chosen (gallery.Gallery.choose),
with a warning where the threshold names few of the enrolled people's own photos, or where no photo
showed the detector a face."""

from __future__ import annotations

import shlex

from imgclf.faces.gallery import Gallery
from imgclf.models.face.model import WHOLE

WEAK_NAMING = 0.5  # below this share of a person's own photos named at the threshold, enrolment warns


def summarize(g: Gallery, out, report, verbose, verb) -> dict:
    """What enrol, add and remove return (and print, `verbose`): the people, the photos, what was
    skipped, and how the threshold and the naming were chosen; a warning when the threshold names
    few of the enrolled people's own photos."""
    counts = g.counts()
    summary = {
        "gallery": str(out),
        "people": counts,
        "photos": int(sum(counts.values())),
        "skipped": report["skipped"],
        "threshold": g.threshold,
        "far": g.far,
        "method": g.method,
        "choice": g.choice,
        "warnings": [],
    }
    c = g.choice
    share = c.get("same_person_named")
    if share is not None and share < WEAK_NAMING:
        summary["warnings"].append(
            f"at this threshold only {share:.0%} of the enrolled people's own photos are named (the rest come "
            "back unknown): these faces look alike to the embedding (hard light, tiny or turned faces). A higher "
            f"--far (a gallery of a few people: identify --threshold under {g.threshold:g}) names more and lets "
            "more strangers through; with many photos a person, a network trained on them (imgclf train) may do better"
        )
    if g.sources and all(src.get("found") == WHOLE for src in g.sources):
        # Face crops defeat the detector often (hard light: a face found in 21-26 % of Yale B's), never
        # all of them: a small photo of something else is read whole, too, and embeds as some face.
        summary["warnings"].append(
            f"no face was detected in any of the {len(g.sources)} photos: each was read whole as a face crop "
            "(photos of 300 px or less are). If they are not photos of faces, or the faces are small in them, "
            "this gallery names no one reliably: crop the faces, or enrol photos where they are larger"
        )
    if verbose:
        named = f", {share:.0%} of same-person trials named" if share is not None else ""
        print(
            f"{verb} {len(counts)} people, {summary['photos']} photos ({len(report['skipped'])} skipped) -> {out}\n"
            f"threshold {g.threshold:.3f}: {c['how']}{named}\n"
            f"naming: {g.method} ({_method_scores(c['method'])})\n"
            f"texture: {_texture_line(c.get('texture', {}))}"
        )
        for w in summary["warnings"]:
            print(f"warning: {w}")
        if verb == "enrolled":
            print(f"next: imgclf faces identify {shlex.quote(str(out))} PHOTOS --out OUT")
    return summary


def _method_scores(scores: dict) -> str:
    """choose_method's scores as a reader wants them: each method's held-out accuracy, or why none."""
    if "why" in scores:
        return f"not compared: {scores['why']}"
    return "held-out accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())


def _texture_line(texture: dict) -> str:
    """How the light-normalised texture counts (texture.choose_blend), and the leave-one-out numbers why."""
    scores = texture.get("leave_one_out", {})
    if "why" in scores:
        return f"not used ({scores['why']})"
    alone = f"leave-one-out top-1 {scores.get('0.0', 0):.3f} with the embedding alone"
    if not texture.get("weight"):
        best = max((v for k, v in scores.items() if k != "0.0"), default=0.0)
        return f"not used ({alone}, {best:.3f} at best with the texture)"
    w = texture["weight"]
    return f"weight {w} (0: the embedding alone, 1: the texture alone), for hard light ({alone}, {scores[str(w)]:.3f} with it)"

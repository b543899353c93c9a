"""Champion/challenger: is model B good enough to replace model A?

Both predict the same images: A's frozen test split and, optionally, a labeled folder of new data.
Per slice: accuracy with paired bootstrap CIs, McNemar's exact test on the images where exactly one
is right, per-class recall, ECE, and the images whose prediction changed. A promotion rule turns
that into promote / keep with reasons and one plain-language paragraph.

    compare("registry/production", "runs/photos-7", data="new_photos/")["verdict"]["promote"]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from imgclf.core.errors import UserError
from imgclf.core.files import output_file, write_json
from imgclf.evaluation.calibration import expected_calibration_error
from imgclf.evaluation.elsewhere import labelled, listed, match_classes, own_images, seen_warning
from imgclf.settings.improve import ALPHA, TOLERANCE, CompareSettings
from imgclf.store.runs import test_split

# min_diff: the least B - A accuracy allowed (0: at least as good); min_discordant: the fewest images
# that changed verdict for McNemar's test to count (below that it has too little power to decide on).
# The rule's tolerance and alpha are the user's options, declared in settings.improve.CompareSettings.
DEFAULT_RULE = {"min_diff": 0.0, "tolerance": TOLERANCE, "alpha": ALPHA, "min_discordant": 10}


# ---- statistics on arrays (pure, testable) ------------------------------------------------------


def bootstrap_accuracy(
    correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Accuracy of A and B and B - A with percentile CIs; each resample draws the same images for both
    (paired), so the difference's CI is much tighter than two independent ones would suggest."""
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    n = len(a)
    if n == 0:
        raise UserError("no images to compare on (every file was unreadable, or the slice is empty)")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    ra, rb = a[idx].mean(1), b[idx].mean(1)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def est(point, samples):
        lo, hi = np.percentile(samples, q)
        return {"value": float(point), "ci": [float(lo), float(hi)]}

    return {"a": est(a.mean(), ra), "b": est(b.mean(), rb), "diff": est(b.mean() - a.mean(), rb - ra)}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar: under 'equally good', the discordant images split 50/50 between fixed and broken.
    b01 = fixed (A wrong, B right), b10 = broken (A right, B wrong)."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b01, b10 = int((~a & b).sum()), int((a & ~b).sum())
    p = binomtest(b10, b01 + b10, 0.5).pvalue if b01 + b10 else 1.0
    return {"b01": b01, "b10": b10, "discordant": b01 + b10, "p_value": float(p)}


def per_class_recall(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, classes: list[str]) -> dict:
    """{class: {n, a, b, diff}}; a class absent from the slice has no recall and is left out."""
    out = {}
    for k, name in enumerate(classes):
        sel = labels == k
        if sel.any():
            ra, rb = float((pred_a[sel] == k).mean()), float((pred_b[sel] == k).mean())
            out[name] = {"n": int(sel.sum()), "a": ra, "b": rb, "diff": rb - ra}
    return out


def slice_stats(
    labels, pred_a, pred_b, classes: list[str], paths=None, n_boot: int = 1000, seed: int = 0, n_a: int | None = None
) -> dict:
    """Everything the rule and the report need about one evaluation slice. Predictions are indices into
    `classes` (A's first: `n_a` of them, default all); -1 for a class only B knows (always wrong here)."""
    labels, pred_a, pred_b = map(np.asarray, (labels, pred_a, pred_b))
    ca, cb = pred_a == labels, pred_b == labels
    known = labels < (len(classes) if n_a is None else n_a)
    name = lambda k: classes[k] if k >= 0 else "(other)"  # noqa: E731
    changed = [
        {
            "path": str(paths[i]) if paths is not None else i,
            "true": name(labels[i]),
            "a": name(pred_a[i]),
            "b": name(pred_b[i]),
            "change": "fixed" if cb[i] else "broken" if ca[i] else "still wrong",
        }
        for i in np.flatnonzero(pred_a != pred_b)
    ]
    return {
        "n": int(len(labels)),
        "accuracy": bootstrap_accuracy(ca, cb, n_boot, seed),
        "mcnemar": mcnemar(ca, cb),
        "per_class": per_class_recall(labels, pred_a, pred_b, classes),
        "changed": changed,
        "a_on_known": {"n": int(known.sum()), "correct": int(ca[known].sum())},
    }


# ---- the promotion rule ---------------------------------------------------------------------------


def promotion_verdict(slices: dict[str, dict], rule: dict | None = None, leaks: list[str] = ()) -> dict:
    """B is promoted when, on every slice: its accuracy is at least A's + `min_diff`; no class's recall
    drops by more than `tolerance` and more than one image (with a tolerance above 0); and, where at least `min_discordant` images changed verdict, it is
    not significantly worse (McNemar p < alpha). `leaks`: warnings about slices holding a model's own
    images, which end the paragraph as notes. Returns {promote, reasons, warnings, paragraph}."""
    rule = {**DEFAULT_RULE, **(rule or {})}
    reasons, notes, promote = [], [], True
    for where, s in slices.items():
        acc, mc = s["accuracy"], s["mcnemar"]
        a, b, d = acc["a"]["value"], acc["b"]["value"], acc["diff"]["value"]
        tested = mc["discordant"] >= rule["min_discordant"]
        significant = tested and mc["p_value"] < rule["alpha"]
        if d < rule["min_diff"] or (d < 0 and significant):
            promote = False
            reasons.append(
                f"{where}: accuracy falls from {a:.1%} to {b:.1%}"
                + (f" (significant, McNemar p={mc['p_value']:.3g})" if significant else "")
            )
        elif d < 0:
            notes.append(
                f"{where}: accuracy {a:.1%} -> {b:.1%}, within the allowed {-rule['min_diff']:.1%} "
                f"and not significant (McNemar p={mc['p_value']:.3g})"
            )
        dropped = {c: r for c, r in s["per_class"].items() if r["diff"] < -rule["tolerance"]}
        for c, r in dropped.items():
            # The counts show how much evidence a drop rests on: one photo of six is 16.7 points.
            n = r["n"]
            counts = f"{round(r['a'] * n)} -> {round(r['b'] * n)} of {n} images"
            if rule["tolerance"] > 0 and round((r["a"] - r["b"]) * n) <= 1:
                # One image is the finest step a class of fewer than 1/tolerance test images can show:
                # counted, any retraining that moved one photo of a small class would be refused (an
                # update with 67 % more photos, flowers: 14 -> 13 of 15 daisies). --tolerance 0: not one.
                notes.append(f"{where}: recall of '{c}' {r['a']:.1%} -> {r['b']:.1%} ({counts}: one image)")
                continue
            promote = False
            reasons.append(
                f"{where}: recall of '{c}' drops from {r['a']:.1%} to {r['b']:.1%} ({counts}; more than the "
                f"{rule['tolerance']:.1%} tolerance)"
            )
        if d == 0 and not s["changed"]:
            notes.append(f"{where}: no difference (both predict the same on all {s['n']} images)")
        elif d == 0:
            notes.append(f"{where}: equal accuracy {a:.1%} ({mc['b01']} fixed, {mc['b10']} broken)")
        elif d > 0:
            sig = (
                f"significant, McNemar p={mc['p_value']:.3g}"
                if significant
                else f"not significant, McNemar p={mc['p_value']:.3g}"
                if tested
                else f"too few changed images ({mc['discordant']}) to test significance"
            )
            notes.append(f"{where}: accuracy rises from {a:.1%} to {b:.1%} ({sig})")
        if "ece" in s and s["changed"]:
            notes.append(f"{where}: calibration error (ECE) {s['ece']['a']:.3f} -> {s['ece']['b']:.3f}")
    warnings = label_warnings(slices, rule["alpha"]) + list(leaks)
    verdict = {"promote": promote, "reasons": reasons or notes, "warnings": warnings}
    verdict["paragraph"] = _paragraph(promote, reasons, notes, rule) + "".join(f" Note: {w}." for w in warnings)
    return verdict


def label_warnings(slices: dict[str, dict], alpha: float = 0.05) -> list[str]:
    """Slices of new data on which A disagrees with the labels of its own classes far more than its
    error on its test split predicts (one-sided binomial test). Measured on flowers5 (bench/update.py):
    shuffled labels put v1 at 35% there against 80% on its frozen test split, while the candidate's
    changes on such a slice only score it against the noise."""
    base = slices.get("test split", {}).get("accuracy", {}).get("a", {}).get("value")
    out = []
    for where, s in slices.items():
        k = s.get("a_on_known") or {"n": 0}
        if where == "test split" or base is None or not k["n"]:
            continue
        p = binomtest(k["correct"], k["n"], base, alternative="less").pvalue
        if p < alpha:
            out.append(
                f"on the {where} the current model agrees with only {k['correct'] / k['n']:.1%} of the "
                f"labels of classes it knows ({k['n']} images), against {base:.1%} right on its test split "
                f"(binomial p={p:.2g}): check those labels for errors (new images unlike the old ones, "
                "another camera or season, also do this)"
            )
    return out


def _paragraph(promote: bool, reasons: list[str], notes: list[str], rule: dict) -> str:
    if not promote:
        return (
            "Keep the current model: the challenger fails the promotion rule because "
            + "; ".join(reasons)
            + ". Production stays as it is."
        )
    if all("no difference" in n for n in notes):
        return (
            "Promote is allowed but changes nothing: there is no difference between the two models; "
            + "; ".join(notes)
            + "."
        )
    return (
        "Promote the challenger: it passes the promotion rule on every slice (accuracy, and no class "
        f"loses more than {rule['tolerance']:.1%} recall and more than one image); " + "; ".join(notes) + "."
    )


def promote_anyway(result: dict, registry) -> str | None:
    """For a refused update that adds classes, the line that says what else it brings and how to
    serve it all the same: the rule refuses it for old classes now shared with the new ones (roses
    newly called tulip, bench/update.py), while production cannot answer the new classes at all."""
    if not (names := result.get("new_classes")):
        return None
    return (
        f"the candidate also answers {len(names)} class(es) production cannot ({', '.join(names)}); "
        f"to serve it all the same, at the cost above: {promote_command(result['version'], registry)}"
    )


def promote_command(version: int, registry) -> str:
    """The command that points production at `version` (--registry only where it is not the default)."""
    flag = "" if Path(registry) == Path("registry") else f" --registry {registry}"
    return f"imgclf registry promote {version}{flag}"


# ---- models and data ------------------------------------------------------------------------------


def compare(a, b, data=None, *, rule: dict | None = None, **given) -> dict:
    """Compare run A (champion) with run B (challenger) on A's test split and, with `data` (a labeled
    folder, or (path, label) pairs), new images. `given`: settings.improve.CompareSettings' settings
    but data, checked as declared: `out` is where the result goes as JSON (default
    B/compare-<A name>.json), `data_root` where A's data folder is now, when it moved since A was
    trained. `rule` may add the promotion rule's min_diff and min_discordant."""
    from imgclf.inference.load import load_model
    from imgclf.inference.model import Model

    unknown = sorted(set(rule or {}) - set(DEFAULT_RULE))
    if unknown:  # a misspelt key would leave the rule it meant at its default, silently
        raise UserError(f"unknown rule key(s) {', '.join(unknown)}; the rule takes: {', '.join(DEFAULT_RULE)}")
    s = CompareSettings.of(given)
    tolerance, alpha, n_boot, seed, out, data_root = s.tolerance, s.alpha, s.n_boot, s.seed, s.out, s.data_root
    if out is not None:
        out = output_file(out, "--out", "compare.json")
    ma, mb = (m if isinstance(m, Model) else load_model(m) for m in (a, b))  # load_model resolves REGISTRY/ALIAS
    missing = [c for c in ma.classes if c not in mb.classes]
    if missing:
        raise UserError(
            f"{mb.path} does not know {len(missing)} of {ma.path}'s classes: {', '.join(missing)}; "
            "compare models trained on the same classes"
        )
    rule = {**DEFAULT_RULE, "tolerance": tolerance, "alpha": alpha, **(rule or {})}
    # A's classes first, then those only B knows (an update that added classes): A is always wrong on those.
    classes = ma.classes + [c for c in mb.classes if c not in ma.classes]
    test = test_split(ma, "compare on", data_root)
    slices = {"test split": _slice(ma, mb, *test, n_boot, seed, classes)}
    # A model scored on images it trained on looks better than it is: B trained on some of A's test
    # split (two runs split apart), or the new data holds either's training images.
    seen = [_seen("test split", test[0], mb, "the challenger (B)")]
    if data is not None:
        left: dict[str, list[str]] = {}
        new = _labeled(data, classes, left)
        slices["new data"] = _slice(ma, mb, *new, n_boot, seed, classes)
        if left:  # as evaluate does: neither can name them, so they would only count as both one's mistakes
            slices["new data"]["left_out"] = {folder: len(paths) for folder, paths in left.items()}
        seen += [
            _seen("new data", new[0], m, who) for m, who in ((ma, "the current model (A)"), (mb, "the challenger (B)"))
        ]
    result = {
        "a": str(ma.path),
        "b": str(mb.path),
        "classes": classes,
        "rule": rule,
        "slices": slices,
        "verdict": promotion_verdict(slices, rule, [line for line in seen if line]),
    }
    out = Path(out) if out else Path(mb.path) / f"compare-{Path(ma.path).name}.json"
    write_json(out, result)
    result["path"] = str(out)
    return result


def _slice(ma, mb, paths: list[str], labels: np.ndarray, n_boot: int, seed: int, classes: list[str]) -> dict:
    from imgclf.data.cache import build_cache

    caches, bad = {}, {}
    for m in (ma, mb):  # decoded once per input size; a file unreadable for one is dropped for both
        key = (m.img_size, m.resize_mode)
        if key not in caches:
            caches[key] = build_cache(paths, *key, progress=False)
            bad.update(caches[key].bad)
    keep = np.array([i for i in range(len(paths)) if i not in bad], dtype=np.int64)
    pa = ma.predict_proba(caches[(ma.img_size, ma.resize_mode)].images[keep])
    pb = mb.predict_proba(caches[(mb.img_size, mb.resize_mode)].images[keep])
    y = labels[keep]
    to_all = np.array([classes.index(c) for c in mb.classes])  # A's indices are already those of `classes`
    yb = np.array([mb.classes.index(classes[k]) for k in y], dtype=np.int64)
    stats = slice_stats(
        y,
        pa.argmax(1),
        to_all[pb.argmax(1)],
        classes,
        paths=[paths[i] for i in keep],
        n_boot=n_boot,
        seed=seed,
        n_a=len(ma.classes),
    )
    stats["ece"] = {"a": expected_calibration_error(pa, y), "b": expected_calibration_error(pb, yb)}
    stats["skipped"] = {paths[i]: r for i, r in sorted(bad.items())}
    return stats


def _seen(where: str, paths: list[str], model, who: str) -> str:
    """A warning when the `where` slice holds images `model` trained or chose its epoch on (or
    near-copies of them), else ""."""
    from imgclf.data.cache import build_cache

    cache = build_cache(paths, model.img_size, model.resize_mode, progress=False)  # _slice's: read, not decoded
    own, near = own_images(model, paths, cache.images, cache.bad)
    so = f"scores on them favour {who}"
    return seen_warning(own, len(paths), so, whose=f"{who}'s", of=f"the {where}'s", near=near)


def _labeled(data, classes: list[str], left: dict | None = None) -> tuple[list[str], np.ndarray]:
    """The new data's test split when it has one, else all its images; a folder's classes neither model
    knows are left out, by folder in `left`. `data` may also be a list of (path, label) pairs:
    `imgclf update`'s new test slice, which can hold a single class."""
    if not isinstance(data, (list, tuple)):
        paths, labels, _ = labelled(data, classes, "neither model knows", "their classes", leave_out=left)
        return paths, labels
    paths, names = [str(p) for p, _ in data], [str(label) for _, label in data]
    named, unknown = match_classes(sorted(set(names)), classes)
    if unknown:
        raise UserError(
            f"the new data has classes neither model knows: {listed(unknown)} (their classes: {listed(classes)})"
        )
    return paths, np.array([classes.index(named[n]) for n in names], dtype=np.int64)

"""The report's evaluation sections: test metrics, confusion, ROC/PR, calibration, thresholds,
prediction galleries and label-issue suspects. Each function returns one <section>."""

from __future__ import annotations

import numpy as np

from imgclf.reporting import plots as plots
from imgclf.reporting.data import (
    Facts,
    calibrated,
    calibrated_word,
    coverage_curve,
    gallery_picks,
    one_vs_rest,
    png_uri,
    thumbnail,
)
from imgclf.reporting.html import esc, figure, num, section, table
from imgclf.store.run_meta import Rejection

GALLERY = 24  # sample predictions shown
MISTAKES = 16  # most confident mistakes shown
CONFUSED_PAIRS = 10


def evaluation_sections(f: Facts) -> str:
    """The sections on f.test, in the page's order (the run report's middle; an evaluation's whole):
    metrics, confusion, ROC/PR, calibration, thresholds, sample predictions, mistakes."""
    per_class_curves, micro = curves(f)
    pred, mistakes = gallery_sections(f)
    return "".join(
        [
            metrics_section(f, per_class_curves),
            confusion_section(f),
            roc_pr_section(f, per_class_curves, micro),
            reliability_section(f),
            thresholds_section(f),
            pred,
            mistakes,
        ]
    )


def _where(f: Facts) -> str:
    """Where the sections' numbers come from: "test split", or an evaluation's "images in DATA"."""
    return (f.metrics or {}).get("evaluated_on", "test split")


def _images(f: Facts) -> str:
    """What the sections' images are: the run's test images, or an evaluation's ("images")."""
    return f.extra.get("images", "test images")


def curves(f: Facts) -> tuple[list, dict | None]:
    return one_vs_rest(f.test.labels, f.test.probs) if f.test is not None else ([], None)


def metrics_title(f: Facts) -> str:
    return "Test metrics" if _where(f).endswith("test split") else "Metrics"


def other_classes_section(f: Facts) -> str:
    """An evaluation's images of classes the model does not know (metrics "other_classes", from
    evaluation.elsewhere): left out of the scores, and what the model answered for them."""
    other = (f.metrics or {}).get("other_classes")
    if not other:
        return ""
    rows = [
        [
            esc(name),
            num(r["images"]),
            esc(", ".join(f"{a} {n:,}" for a, n in r["answers"].items())),
            num(r["median_confidence"], 2),
        ]
        for name, r in other.items()
    ]
    return section(
        "other-classes",
        "Classes it does not know",
        f"<p>{sum(r['images'] for r in other.values()):,} images in {len(other):,} folder(s) that match none of the "
        "model's classes are left out of every number above: it cannot name them, so each would count as its "
        "mistake. What it answers for them is what it will answer in use"
        + (
            " (below its rejection threshold the answer is <code>unknown</code>)."
            if _rejection(f)
            else "; it always names one of its classes"
            + (
                " (train with <code>--target-accuracy A</code> for <code>unknown</code> answers)."
                if len(f.meta.classes) > 2
                else "."
            )
        )
        + " Each image's answer is in predictions.csv, its <code>correct</code> cell empty.</p>"
        + table(["folder", "images", "answered", "median confidence"], rows, numeric=(1, 3)),
    )


def metrics_section(f: Facts, per_class_curves: list) -> str:
    m = f.metrics
    if not m:
        return section("metrics", "Test metrics", "<p>No metrics.json in this run (training did not finish).</p>")
    top = ", ".join(f"top-{k} {v:.4f}" for k, v in m.get("top_k_accuracy", {}).items())
    intro = (
        f"<p>On the {esc(m.get('evaluated_on', 'test split'))} ({m['n']:,} images): accuracy "
        f"<b>{m['accuracy']:.4f}</b>{', ' + top if top else ''}, log-loss {m['log_loss']:.4f}. "
        "Precision, recall and F1 are argmax-based; ROC-AUC and average precision (AP) rank each class "
        "against the rest.</p>"
    )
    # The bottom tenth of classes by F1, when they really lag (below the median class).
    f1s = {c: r["f1-score"] for c, r in m["per_class"].items()}
    median = float(np.median(list(f1s.values())))
    cut = sorted(f1s.values())[max(1, len(f1s) // 10) - 1]
    worst = [c for c in f1s if f1s[c] <= cut and f1s[c] < median]
    rows, classes = [], []
    for i, (name, r) in enumerate(m["per_class"].items()):
        c = per_class_curves[i] if i < len(per_class_curves) else None
        f1 = r["f1-score"]
        rows.append(
            [
                esc(name),
                num(r["precision"], 3),
                num(r["recall"], 3),
                (num(f1, 3), f'class="num bar{" low" if name in worst else ""}" style="--w:{f1 * 100:.0f}%"'),
                num(int(r["support"])),
                num(c["roc_auc"] if c else None, 3),
                num(c["ap"] if c else None, 3),
            ]
        )
        classes.append("")
    for key, label in (("macro_avg", "macro average"), ("weighted_avg", "weighted average")):
        a = m[key]
        rows.append(
            [label, num(a["precision"], 3), num(a["recall"], 3), num(a["f1-score"], 3), num(int(a["support"])), "", ""]
        )
        classes.append("total")
    note = f'<p class="note">Red: the lowest F1 ({len(worst)} class(es)).</p>' if worst else ""
    return section(
        "metrics",
        metrics_title(f),
        intro
        + table(
            ["class", "precision", "recall", "F1", "support", "ROC-AUC", "AP"],
            rows,
            numeric=range(1, 7),
            classes=classes,
            scroll_over=60,
        )
        + note,
    )


def confusion_section(f: Facts) -> str:
    m = f.metrics
    if not m:
        return section("confusion", "Confusion matrix", "<p>No test metrics.</p>")
    cm, classes = np.asarray(m["confusion_matrix"]), m["classes"]
    # Side by side while half the page width still holds every number; else one under the
    # other at full width, so every class name stays readable.
    pair = len(classes) <= 12
    counts, norm = (
        figure(
            png_uri(plots.confusion(cm, classes, normalized=n, half_width=pair)),
            f"confusion matrix, {'normalised' if n else 'counts'}",
        )
        for n in (False, True)
    )
    body = f'<div class="pair">{counts}{norm}</div>' if pair else counts + norm
    if len(classes) > plots.CELL_TEXT_MAX:
        body = (
            f'<p class="note">{len(classes)} classes: cells carry no numbers; the table below lists the most '
            "frequent confusions.</p>"
        ) + body
    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = [(i, j) for i, j in zip(*np.unravel_index(np.argsort(-off, axis=None), off.shape)) if off[i, j] > 0]
    if pairs:
        rows = [
            [esc(classes[i]), esc(classes[j]), num(int(cm[i, j])), f"{cm[i, j] / max(1, cm[i].sum()):.1%}"]
            for i, j in pairs[:CONFUSED_PAIRS]
        ]
        body += "<h3>Most frequent confusions</h3>" + table(
            ["true class", "predicted as", "images", "share of true class"], rows, numeric=(2, 3)
        )
    else:
        body += f"<p>No {_images(f)[:-1]} was confused.</p>"
    return section("confusion", "Confusion matrix", body)


def roc_pr_section(f: Facts, per_class_curves: list, micro: dict | None) -> str:
    if f.test is None or micro is None:
        return section("roc-pr", "ROC and precision-recall curves", "<p>No test split to draw them from.</p>")
    png = plots.roc_pr(per_class_curves, f.meta.classes, micro)
    cap = (
        f"Each class against all others, from the {calibrated_word(f.meta)}probabilities on the {_images(f)}. Micro-average: "
        "every (image, class) pair pooled."
    )
    return section("roc-pr", "ROC and precision-recall curves", figure(png_uri(png), "ROC and PR curves", cap))


def reliability_section(f: Facts) -> str:
    c = (f.metrics or {}).get("calibration")
    if not c:
        return section("reliability", "Calibration", "<p>No calibration recorded.</p>")
    fit = f.meta.calibration
    png = plots.reliability(c["reliability"], c.get("ece_before"), c.get("ece_after") if calibrated(c) else None)
    rows = [["expected calibration error (15 bins)", "ece"], ["log-loss", "log_loss"]]
    # An uncalibrated run's "before" and "after" would repeat one number: one column then.
    cols = ["before", "after"] if calibrated(c) else ["before"]
    cells = [[name] + [num(c.get(f"{key}_{col}")) for col in cols] for name, key in rows]
    facts = table(["", *cols] if calibrated(c) else ["", _images(f)], cells, numeric=(1, 2))
    why = f": {esc(fit.skipped)}" if fit and fit.skipped else ""
    said = (
        f"calibrated by one softmax temperature, T = {c['temperature']:.3f}, fitted on {fit.n if fit else '?'} "
        "validation images (T &gt; 1 softens over-confident outputs, T &lt; 1 sharpens under-confident ones)"
        if calibrated(c)
        else f"<b>not calibrated</b>: no softmax temperature was fitted{why}; the confidences are the model's own"
    )
    text = f"<p>Confidence is {said}. A well-calibrated model that says 0.8 is right 8 times in 10.</p>"
    return section(
        "reliability",
        "Calibration",
        text + f'<div class="row">{figure(png_uri(png), "reliability diagram")}<div>{facts}</div></div>',
    )


def thresholds_section(f: Facts) -> str:
    parts = []
    d = (f.metrics or {}).get("decision")
    pos = f.meta.classes.index(d["positive_class"]) if d else None
    # A test split of one class (a tiny set) has no precision-recall curve to draw.
    if d and f.test is not None and 0 < (f.test.labels == pos).sum() < len(f.test.labels):
        png = plots.decision(f.test.probs[:, pos], f.test.labels == pos, d["threshold"], d["positive_class"])
        predicted = d["tp"] + d["fp"]
        parts.append(
            f'<div id="thresholds-decision"><h3>Two-class decision</h3><p>The answer is <b>{esc(d["positive_class"])}</b> '
            f"when its {calibrated_word(f.meta)}probability is at least <b>{d['threshold']:.3f}</b> ({esc(d['rule'])}). On the "
            f"{esc(_where(f))} that gives recall <b>{d['recall']:.3f}</b> at precision <b>{d['precision']:.3f}</b>: "
            f"{d['fp']:,} false alarm(s) among {predicted:,} positive answers and {d['fn']:,} missed of "
            f"{d['tp'] + d['fn']:,}. ROC-AUC {num(d.get('roc_auc'))}, PR-AUC {num(d.get('pr_auc'))}.</p>"
            + figure(
                png_uri(png),
                "decision threshold",
                "Left: the price in precision of each recall; the dot "
                "is the stored threshold. Right: both against the threshold.",
            )
            + "</div>"
        )
    parts.append(_coverage(f))
    return section("thresholds", "Thresholds and coverage", "".join(parts))


def _rejection(f: Facts) -> Rejection | None:
    """The run's open-set rejection (model.json "rejection": threshold, rule, validation numbers), if any."""
    chosen = f.meta.rejection
    return chosen if chosen is not None and chosen.threshold is not None else None


def _coverage(f: Facts) -> str:
    if f.test is None:
        return '<div id="thresholds-coverage"><p>No test split.</p></div>'
    cov, acc, conf = coverage_curve(f.test.probs, f.test.labels)
    rej = _rejection(f)
    point = None
    if rej:
        k = max(1, int((conf >= rej.threshold).sum()))
        point = (cov[k - 1], acc[k - 1], f"rejection threshold {rej.threshold:.3f}")
    rows = []
    for target in (0.9, 0.95, 0.99):
        ok = np.flatnonzero(acc >= target)
        rows.append(
            [
                f"{target:.0%}",
                f"{cov[ok.max()]:.1%}" if len(ok) else "unreachable",
                f"{conf[ok.max()]:.3f}" if len(ok) else "–",
            ]
        )
    # Read as: to be right this often, answer this share of images, those with confidence >= this.
    aurc = ((f.metrics or {}).get("selective") or {}).get("aurc")
    html = (
        '<div id="thresholds-coverage"><h3>Accuracy vs coverage</h3><p>Answering only when confident trades '
        f"coverage for accuracy: the curve answers the most confident {_images(f)} first"
        + (f" (area under the risk-coverage curve {aurc:.4f}; lower is better)" if aurc is not None else "")
        + ".</p>"
        f'<div class="row">{figure(png_uri(plots.coverage(cov, acc, point)), "coverage curve")}<div>'
        + table(["accuracy on answered", "answers", "when confidence ≥"], rows, numeric=(1, 2))
        + f'<p class="note">Read from the {_images(f)} themselves: an optimistic guide for choosing a threshold.</p>'
        + "</div></div></div>"
    )
    if rej:
        # With its test numbers (metrics.json "rejection": coverage, accuracy_accepted, ...).
        html += _rejection_table(rej, (f.metrics or {}).get("rejection") or {}, float(acc[-1]), _where(f))
    elif len(f.meta.classes) > 2:
        html += (
            '<div id="thresholds-rejection"><h3>Rejection</h3><p>Not configured: the model always names one of '
            "its classes, even for an image of none of them. To answer <code>unknown</code> when unsure, train "
            "with <code>--target-accuracy A</code> or <code>--target-coverage C</code>.</p></div>"
        )
    return html


def _rejection_table(rej: Rejection, test: dict, accuracy_all: float, where: str) -> str:
    val = rej.validation or {}
    rows = [
        [
            split,
            num(d.get("coverage"), 3),
            num(d.get("accepted")),
            num(d.get("rejected")),
            num(d.get("accuracy_accepted"), 3),
        ]
        for split, d in (("validation", val), ("test" if where.endswith("test split") else esc(where), test))
        if d
    ]
    return (
        '<div id="thresholds-rejection"><h3>Rejection</h3><p>Below confidence '
        f"<b>{rej.threshold:.3f}</b> the model answers <code>unknown</code> ({esc(rej.rule or '')}). "
        f"Answering everything, accuracy on the {esc(where)} would be {accuracy_all:.3f}.</p>"
        + table(["split", "coverage", "answered", "unknown", "accuracy on answered"], rows, numeric=(1, 2, 3, 4))
        + "</div>"
    )


def _pred_card(f: Facts, i: int, with_true_p: bool = False) -> str:
    t, classes = f.test, f.meta.classes
    pred = int(t.pred[i])
    kind = "unknown" if pred < 0 else "ok" if pred == t.labels[i] else "wrong"
    answer = esc(classes[pred]) if pred >= 0 else "unknown"
    uri = thumbnail(t.paths[i], 110) or ""
    extra = f"<div>p(true) {t.probs[i, t.labels[i]]:.2f}</div>" if with_true_p else ""
    return (
        f'<div class="pred {kind}" title="{esc(t.paths[i])}"><img src="{uri}" alt="">'
        f"<div>true: {esc(classes[t.labels[i]])}</div>"
        f"<div><b>{answer}</b> {t.probs[i].max() if pred < 0 else t.probs[i, pred]:.2f}</div>{extra}</div>"
    )


def gallery_sections(f: Facts) -> tuple[str, str]:
    if f.test is None:
        none = "<p>No test split.</p>"
        return section("predictions", "Sample predictions", none), section("mistakes", "Most confident mistakes", none)
    sample, wrong = gallery_picks(f.test, GALLERY, MISTAKES)
    cards = "".join(_pred_card(f, i) for i in sample)
    pred = section(
        "predictions",
        "Sample predictions",
        f'<p class="note">{_images(f).capitalize()} spread over the classes: true label, then the answer and its '
        f"{calibrated_word(f.meta)}confidence (green: right, red: wrong{', grey: answered unknown' if f.meta.rejection else ''})."
        f'</p><div class="gallery">{cards}</div>',
    )
    if len(wrong):
        cards = "".join(_pred_card(f, i, with_true_p=True) for i in wrong)
        answered_wrong = int(((f.test.pred != f.test.labels) & (f.test.pred >= 0)).sum())
        body = (
            f'<p class="note">{answered_wrong:,} of {len(f.test.labels):,} {_images(f)} get a wrong answer; the '
            f"{len(wrong)} most confident are below. Confident mistakes are often label errors, "
            f'near-duplicates of another class, or a class the data under-represents.</p><div class="gallery">{cards}</div>'
        )
    else:
        body = f"<p>The model made no mistake on the {_images(f)}.</p>"
    return pred, section("mistakes", "Most confident mistakes", body)


def label_issues_section(f: Facts) -> str:
    found = f.label_issues
    suspects = found.get("suspects", found.get("issues", [])) if isinstance(found, dict) else found
    if not suspects:
        how = (
            "<p>No label check recorded for this run. <code>imgclf check DATA --labels</code> finds images whose "
            "label is probably wrong (out-of-fold predictions, confident-learning style); put its "
            "<code>label_issues.json</code> in the run folder and rebuild this page with "
            "<code>imgclf report RUN</code>.</p>"
        )
        return section("label-issues", "Label-issue suspects", how if found is None else "<p>No suspects found.</p>")
    rows = []
    for s in suspects[:48]:
        given = s.get("given", s.get("label", s.get("given_label", "")))
        suggested = s.get("suggested", s.get("suggested_label", s.get("predicted", "")))
        score = s.get("score", s.get("quality", s.get("label_quality")))
        uri = thumbnail(s["path"], 64) if s.get("path") else None
        rows.append(
            [
                f'<img src="{uri}" alt="" width="64" height="64">' if uri else "",
                esc(given),
                esc(suggested),
                num(score, 3),
                (esc(s.get("path", "")), 'class="path"'),
            ]
        )
    return section(
        "label-issues",
        "Label-issue suspects",
        f"<p>{len(suspects):,} image(s) whose label looks wrong, most suspicious first"
        f"{' (first 48 shown)' if len(suspects) > 48 else ''}.</p>"
        + table(["image", "given", "suggested", "label quality", "path"], rows, numeric=(3,), scroll_over=60),
    )

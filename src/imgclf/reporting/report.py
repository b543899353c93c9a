"""runs/<name>/report.html: one self-contained page a user can hand around with the run.

    imgclf report runs/photos-1        # or imgclf.report("runs/photos-1"); train writes it too

Sections, in order, each a <section> with a stable id (SECTIONS): the data, the model, every
setting, training, the test evaluation, galleries, label suspects, timings and a model card.
"""

from __future__ import annotations

import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgclf.core.cpus import usable_cpus
from imgclf.core.files import write_text
from imgclf.reporting import evaluation as ev
from imgclf.reporting import plots as plots
from imgclf.reporting.card import model_card_section
from imgclf.reporting.compare import comparison_section
from imgclf.reporting.data import Facts, calibrated, ece_card, gather, png_uri, samples_per_class, thumbnail
from imgclf.reporting.explain import explanations_section
from imgclf.reporting.html import esc, figure, kv, num, page, section, si, table
from imgclf.reporting.monitor import monitoring_section
from imgclf.reporting.stages import leaderboard_html, stages_html
from imgclf.reporting.tuning import tuning_section

SECTIONS = {
    "dataset": "Data",
    "model": "Model",
    "settings": "Settings",
    "learning-curves": "Training",
    "tuning": "Tuning",
    "comparison": "Comparison",
    "metrics": "Test metrics",
    "confusion": "Confusion",
    "roc-pr": "ROC / PR",
    "reliability": "Calibration",
    "thresholds": "Thresholds",
    "predictions": "Predictions",
    "mistakes": "Mistakes",
    "explanations": "Explanations",
    "label-issues": "Label issues",
    "timings": "Timings",
    "model-card": "Model card",
}
SAMPLE_THUMBS = 160  # the per-class sample grid's total budget, for any number of classes


def write_report(model, progress: bool = False, data_root=None) -> Path:
    """Gather the run's facts, build the page and write it atomically; returns its path.
    `data_root`: where the run's data folder is now, when it moved since training."""
    started = time.perf_counter()
    f = gather(model, progress, data_root)
    body = "".join(
        [
            dataset_section(f),
            model_section(f),
            settings_section(f),
            learning_section(f),
            tuning_section(f.path),
            comparison_section(f.path),
            ev.evaluation_sections(f),
            explanations_section(f, model),
            ev.label_issues_section(f),
            monitoring_section(f.path),
            timings_section(f, time.perf_counter() - started),
            model_card_section(f),
        ]
    )
    name = f.path.name
    out = f.path / "report.html"
    footer = (
        f"Written by imgclf {esc(f.meta.imgclf_version or '')} on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Rebuild with <code>imgclf report {esc(f.path)}</code>."
    )
    write_text(out, page(f"imgclf report: {name}", _header(f), list(SECTIONS.items()), body, footer))
    return out


EVALUATION_SECTIONS = ("metrics", "confusion", "roc-pr", "reliability", "thresholds", "predictions", "mistakes")


def write_evaluation(
    model, metrics: dict, paths: list[str], labels, probs, others: list, data, out: Path, note: str = ""
) -> Path:
    """An evaluation of a run on other labelled images, as a folder to hand around: report.html (the
    run report's evaluation sections, on these images), metrics.json, and predictions.csv (one row
    an image: its label, the answer predict gives, that answer's calibrated probability, right or
    not; `others`, the (path, folder, answer, confidence) of images of classes the model does not
    know, follow with `correct` empty). `note`: a warning the page opens with (images the run
    trained on). Returns out/report.html."""
    import csv

    from imgclf.core.files import atomic_path, read_json, write_json
    from imgclf.reporting.data import Test, deployed_labels

    run = Path(model.path or model.name)  # a detector as a classifier ("person") has no run folder
    test = Test(list(paths), np.asarray(labels), probs, deployed_labels(probs, model.meta))
    f = Facts(run, model.meta, {}, {**metrics, "evaluated_on": f"images in {data}"}, [], {}, [], test)
    f.extra["images"] = "images"  # not "test images": photos from elsewhere
    body = ev.evaluation_sections(f) + ev.other_classes_section(f)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", f.metrics)
    classes = model.classes
    with atomic_path(out / "predictions.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "answer", "confidence", "correct"])
        for path, y, p, a in zip(test.paths, test.labels, probs, test.pred):
            answer = classes[a] if a >= 0 else "unknown"
            w.writerow([path, classes[y], answer, f"{p[a] if a >= 0 else p.max():.4f}", int(a == y)])
        w.writerows([path, folder, answer, f"{confidence:.4f}", ""] for path, folder, answer, confidence in others)
    m = f.metrics
    cards = [(f"{m['accuracy']:.1%}", "accuracy"), (f"{m['macro_avg']['f1-score']:.3f}", "macro F1")]
    cards += [(f"{m['n']:,}", "images"), ece_card(m["calibration"])]
    own = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else None
    own = own if own and "accuracy" in own else None  # a detector run's metrics are AP, not accuracy
    # Beside its own test split's accuracy, a drop on new photos is the news (another camera, a season).
    versus = f"; on its own held-out test split: {own['accuracy']:.1%} of {own['n']:,}" if own else ""
    header = (
        f"<h1>{esc(run.name)} on {esc(Path(str(data)).name or str(data))}</h1><p>The model of <code>{esc(run)}</code> "
        f"({esc(model.meta.architecture_name)}) evaluated on <code>{esc(data)}</code>{esc(versus)}</p>"
        + '<div class="cards">'
        + "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in cards)
        + "</div>"
        + (f'<p class="low">Warning: {esc(note)}</p>' if note else "")
    )
    footer = (
        f"Written by imgclf {esc(model.meta.imgclf_version or '')} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} "
        f"UTC by <code>imgclf evaluate {esc(run)} {esc(data)}</code>; every image's answer is in predictions.csv."
    )
    nav = [(k, ev.metrics_title(f) if k == "metrics" else SECTIONS[k]) for k in EVALUATION_SECTIONS]
    nav += [("other-classes", "Other classes")] if "other_classes" in m else []
    write_text(out / "report.html", page(f"imgclf evaluation: {run.name} on {data}", header, nav, body, footer))
    return out / "report.html"


def _header(f: Facts) -> str:
    m, t = f.metrics or {}, f.meta.training
    cards = [(f"{m['accuracy']:.1%}", "test accuracy")] if m else []
    if m:
        cards += [(f"{m['macro_avg']['f1-score']:.3f}", "macro F1"), (f"{m['n']:,}", "test images")]
        if c := m.get("calibration"):
            cards.append(ece_card(c))
    parameters = f.meta.architecture.parameters if f.meta.architecture else None
    cards += [(str(len(f.meta.classes)), "classes"), (si(parameters), "parameters")]
    if t is not None:
        cards.append((_duration(t.train_seconds), f"training on {t.device or '?'}"))
    html = "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in cards)
    return (
        f"<h1>{esc(f.path.name)}</h1><p>{esc(f.meta.architecture_name)} trained on "
        f'<code>{esc(f.config.get("data", f.data.get("root", "?")))}</code></p><div class="cards">{html}</div>'
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def dataset_section(f: Facts) -> str:
    d, classes = f.data, f.meta.classes
    counts = d.get("counts") or {}
    totals = {s: sum(v.values()) for s, v in counts.items()}
    body = (
        f"<p>{len(classes)} classes, {sum(totals.values()):,} usable images ({esc(d.get('layout', '?'))} layout: "
        + ", ".join(f"{s} {n:,}" for s, n in totals.items())
        + f") from <code>{esc(d.get('root', '?'))}</code>.</p>"
    )
    if counts:
        body += figure(png_uri(plots.class_counts(counts, classes)), "images per class and split")
    k = max(1, min(8, SAMPLE_THUMBS // max(1, len(classes))))
    cards = []
    for c, paths in samples_per_class(f.rows, classes, k).items():
        n = sum(counts.get(s, {}).get(c, 0) for s in counts)
        imgs = "".join(f'<img src="{uri}" alt="" title="{esc(p)}">' for p in paths if (uri := thumbnail(p, 64)))
        cards.append(
            f'<div class="cls"><div class="name" title="{esc(c)}">{esc(c)} <span>{n:,}</span></div>'
            f'<div class="thumbs">{imgs}</div></div>'
        )
    body += (
        f'<h3 id="dataset-samples">Samples per class (training images)</h3><div class="classes">{"".join(cards)}</div>'
    )
    body += _skipped(d) + _doctor(f)
    return section("dataset", "Data", body)


def _skipped(d: dict) -> str:
    skipped, ignored = d.get("skipped", []), d.get("ignored_non_images", [])
    html = '<h3 id="dataset-skipped">Skipped files</h3>'
    if skipped:
        html += table(["file", "reason"], [[(esc(s["path"]), 'class="path"'), esc(s["reason"])] for s in skipped])
    else:
        html += "<p>Every image file could be decoded.</p>"
    if ignored:
        html += f'<p class="note">{len(ignored):,} non-image file(s) ignored, e.g. <code>{esc(ignored[0])}</code>.</p>'
    return html


def _doctor(f: Facts) -> str:
    from imgclf.data.doctor import duplicate_kinds, example

    html = '<h3 id="dataset-doctor">Data doctor</h3>'
    removed = f.data.get("deduplicated") or []
    if removed:
        html += (
            f"<p>Training removed {len(removed):,} duplicate file(s) (<code>--dedupe</code>), e.g. "
            f"<code>{esc(removed[0])}</code>.</p>"
        )
    if grouping := f.data.get("groups"):
        from imgclf.data.groups import summary_line

        html += f"<p>Split (<code>--group-by {esc(grouping['by'])}</code>): {esc(summary_line(grouping))}.</p>"
    counts = f.data.get("counts", {}).get("train", {})
    if counts and min(counts.values()) > 0:
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        ratio = counts[big] / counts[small]
        html += (
            f"<p>Class balance (training): largest <b>{esc(big)}</b> {counts[big]:,}, smallest <b>{esc(small)}</b> "
            f"{counts[small]:,} ({ratio:.1f}×{', imbalanced' if ratio >= 3 else ''}).</p>"
            if ratio > 1
            else f"<p>Class balance (training): every class has {counts[big]:,} images.</p>"
        )
    grey = f.data.get("greyscale_by_class") or {}
    if grey.get("greyer"):  # training's warning (training.prepare.class_warnings), kept for the reader
        from imgclf.data.doctor_classes import greyest

        shares = ", ".join(f"{esc(c)} {v:.0%}" for c, v in greyest(grey))
        html += (
            f"<p><b>Greyscale gathers in some classes</b> of the training photos ({shares}): the network can learn "
            "grey against colour instead of the classes, unless that is what tells them apart.</p>"
        )
    if f.doctor is None:
        return html + "<p>The run's image files are no longer on disk: no duplicate check.</p>"
    kinds = duplicate_kinds(f.doctor["exact_duplicates"])
    rows = [
        [label, num(len(kinds[k])), esc("; ".join(example(g, f.doctor.get("root")) for g in kinds[k][:3]) or "–")]
        for k, label in (
            ("conflicting_labels", "identical files with different labels"),
            ("within_class", "identical files within one class"),
            ("leakage", "identical files in more than one split"),
        )
    ]
    return (
        html
        + table(["finding", "sets", "examples"], rows, numeric=(1,))
        + '<p class="note">Identical files found by content hash over the images this run used. '
        "<code>imgclf check DATA</code> also finds near-duplicates and size, shape and colour outliers.</p>"
    )


def model_section(f: Facts) -> str:
    a, inp, tta = f.meta.architecture, f.meta.input, f.meta.tta
    views = {"none": 1, "flip": 2, "crop": 3, "flip-crop": 6}.get(tta, 1)
    flops = si(f.flops, "FLOPs") + (
        f" × {views} views (TTA) = {si(f.flops * views, 'FLOPs')}" if f.flops and views > 1 else ""
    )
    norm = f.meta.normalization
    pairs = [
        ("architecture", f"<code>{esc(a.name)}</code>"),
        ("settings", ", ".join(f"{esc(k)}=<code>{_setting(v)}</code>" for k, v in a.kwargs.items()) or "–"),
        ("parameters", f"{a.parameters or 0:,}"),
        ("compute per image", flops + f" (forward pass at {inp.size} px; a multiply-add counts 2)"),
        (
            "input",
            f"{inp.size}×{inp.size} {esc(inp.channels or 'RGB')}, resize <code>{esc(inp.resize)}</code>",
        ),
        ("normalisation", f"mean {esc(norm.mean)}, std {esc(norm.std)}" if norm else "–"),
        ("preprocessing", esc(f.meta.preprocessing or "")),
        ("test-time augmentation", f"<code>{esc(tta)}</code>"),
        (
            "calibration",
            f"temperature {f.meta.temperature:.3f}"
            if calibrated(f.meta)
            else "none (temperature 1)" + (f": {esc(c.skipped)}" if (c := f.meta.calibration) and c.skipped else ""),
        ),
    ]
    if d := f.meta.decision:
        pairs.append(("decision", f"'{esc(d.positive_class)}' when p ≥ {d.threshold:.3f}"))
    body = kv(pairs)
    if f.modules:
        rows = [[esc(n), esc(t), num(p), si(fl) if fl is not None else "–"] for n, t, p, fl in f.modules]
        body += "<h3>Layers (top level)</h3>" + table(["module", "type", "parameters", "FLOPs"], rows, numeric=(2, 3))
    return section("model", "Model", body)


def settings_section(f: Facts) -> str:
    def value(v) -> str:
        if isinstance(v, dict):  # a nested setting (augment, model_kwargs): one wrapped line
            return ", ".join(f"{esc(k)}=<code>{_setting(x)}</code>" for k, x in v.items()) or "{}"
        return f"<code>{_setting(v)}</code>" if v is not None else '<span class="muted">auto / none</span>'

    given = set((f.choices or {}).get("given", []))
    rows = [[f"<code>{esc(k)}</code>" + (" (given)" if k in given else ""), value(v)] for k, v in f.config.items()]
    note = (
        '<p class="note">Every setting as resolved for this run (<code>config.yaml</code>); '
        "<code>imgclf train --config config.yaml</code> reproduces it."
        + (" Settings given by the user are marked (given); the others were chosen as below." if f.choices else "")
        + "</p>"
    )
    why = (f.choices or {}).get("defaults") or []
    chosen = (
        "<h3>How the defaults were chosen</h3><ul>" + "".join(f"<li>{esc(line)}</li>" for line in why) + "</ul>"
        if why
        else ""
    )
    half = (len(rows) + 1) // 2  # two columns: forty short rows read better side by side
    return section(
        "settings",
        "Settings",
        note
        + '<div class="pair">'
        + table(["setting", "value"], rows[:half])
        + table(["setting", "value"], rows[half:])
        + "</div>"
        + chosen,
    )


def _setting(v) -> str:
    # Six significant digits: 0.0014142135623730952 reads as 0.00141421, and nothing real is lost.
    return esc(f"{v:.6g}" if isinstance(v, float) else v)


def learning_section(f: Facts) -> str:
    if (
        not f.history
    ):  # no epochs: a probe, the face embedding or the texture was kept before any (the leaderboard says)
        return section(
            "learning-curves", "Training", "<p>No epochs were trained (no history.csv).</p>" + leaderboard_html(f)
        )
    t = f.meta.training_record
    best = t.best_epoch if f.meta.training else None
    text = (
        f"<p>{len(f.history)} epoch(s); the weights kept are from epoch {best} (validation "
        f"{t.criterion} "
        # A budgeted run's plan says below how it ended (a plateau, the time, the epoch cap).
        f"{num(t.best_val_acc)}){', training stopped early' if t.stopped_early and not t.plan else ''}.</p>"
    )
    return section(
        "learning-curves",
        "Training",
        text
        + figure(png_uri(plots.learning_curves(f.history, best)), "learning curves")
        + leaderboard_html(f)
        + stages_html(f),
    )


def timings_section(f: Facts, report_seconds: float) -> str:
    import torch

    t, h = f.meta.training, f.history
    secs = [float(r["seconds"]) for r in h]
    speed = [float(r["images_per_s"]) for r in h if not math.isnan(float(r["images_per_s"]))]
    pairs = [
        ("training device", esc(t and t.device or "?")),
        ("preset", esc(t and t.preset or "none")),
        ("training time", f"{num(t and t.train_seconds, 1)} s (training steps only)"),
        ("first step", f"{num(t and t.first_step_seconds, 2)} s (includes compilation and warm-up)"),
        (
            "epochs",
            f"{len(h)}, {np.mean(secs):.1f} s each on average (median {np.median(secs):.1f} s)" if secs else "–",
        ),
        ("throughput", f"{np.median(speed):,.0f} training images/s (median over epochs)" if speed else "–"),
    ]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    here = [
        ("machine", esc(f"{platform.system()} {platform.machine()}, {usable_cpus()} CPU core(s), GPU: {gpu}")),
        ("software", esc(f"Python {platform.python_version()}, torch {torch.__version__}")),
        ("report built in", f"{report_seconds:.1f} s"),
    ]
    return section("timings", "Timings and hardware", kv(pairs) + "<h3>This report was built on</h3>" + kv(here))

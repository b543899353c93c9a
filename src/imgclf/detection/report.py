"""A detector run's report: RUN/report.html (one self-contained page: the test metrics against the
pretrained start, the validation curve, the precision-recall curve, a few annotated test photos),
RUN/pr_curve.png and RUN/test_photos/."""

from __future__ import annotations

import html
from pathlib import Path

from imgclf.core.files import write_text
from imgclf.store.run_meta import DetectorMeta

SHOWN = 6  # annotated test photos in the report


def write_report(run: Path, meta: DetectorMeta, photos: list, answers: list[dict]) -> Path:
    from imgclf.core.figures import data_uri, jpeg_bytes
    from imgclf.data.images import read_rgb
    from imgclf.inference.box_files import draw_boxes

    m = meta.metrics
    pr = pr_curve(
        run / "pr_curve.png",
        [
            (m["test"]["pr"], f"fine-tuned (AP@0.5 {m['test']['ap50']:.3f})", "-"),
            (m["pretrained_test"]["pr"], f"pretrained start ({m['pretrained_test']['ap50']:.3f})", "--"),
        ],
        "Test photos, IoU 0.5",
    )
    shown = []
    (run / "test_photos").mkdir(exist_ok=True)
    for p, a in list(zip(photos, answers))[:SHOWN]:
        jpeg = jpeg_bytes(draw_boxes(read_rgb(p.path), a["boxes"]), 480)
        (run / "test_photos" / f"{Path(p.path).stem}.jpg").write_bytes(jpeg)
        shown.append((Path(p.path).name, len(p.boxes), a["count"], data_uri(jpeg)))
    rows = "".join(
        f"<tr><td>{name}</td><td>{m[k]['ap50']:.3f}</td><td>{m[k]['ap50_at_threshold']:.3f}</td>"
        f"<td>{m[k]['map']:.3f}</td></tr>"
        for name, k in (("fine-tuned", "test"), ("pretrained start", "pretrained_test"))
    )
    pres = m["test_presence"]
    photos_html = "".join(
        f'<figure><img src="{uri}" alt="{html.escape(n)}">'
        f"<figcaption>{html.escape(n)}: {truth} labelled, {found} found</figcaption></figure>"
        for n, truth, found, uri in shown
    )
    curve, kept = validation_curve(run / "history.csv"), m.get("kept_epoch")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(run.name)}: detector</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
td,th{{padding:.2rem .6rem;text-align:right}} figure{{display:inline-block;margin:.4rem}} img{{max-width:100%}}</style></head>
<body><h1>{html.escape(run.name)}: a detector for {html.escape(", ".join(meta.classes))}</h1>
<p>Fine-tuned from the pretrained SSDLite person detector on {html.escape(meta.data)} ({meta.annotations} boxes;
split: {html.escape(meta.split or "70/15/15")}).
Presence threshold {meta.threshold:.3f} ({html.escape(meta.threshold_from)}).</p>
<h2>Test photos</h2><table><tr><th></th><th>AP@0.5</th><th>AP@0.5, boxes over the threshold</th><th>mAP@[.5:.95]</th></tr>{rows}</table>
<p>Presence on {pres["photos"]} test photos ({pres["with"]} with '{html.escape(meta.positive)}'):
ROC-AUC {pres["roc_auc"] if pres["roc_auc"] is not None else "n/a (one kind of photo only)"},
balanced accuracy at the threshold {pres["balanced_accuracy_at_threshold"] if pres["balanced_accuracy_at_threshold"] is not None else "n/a"}.</p>
<img src="{pr}" alt="precision-recall curve">
<h2>Validation, epoch by epoch</h2>
<p>The weights are epoch {kept["epoch"] if kept else "?"}'s (epoch 0 is the pretrained start): the best mean of
validation AP@0.5 and mAP@[.5:.95].</p>{curve}
<h2>A few test photos</h2>{photos_html}
</body></html>"""
    write_text(run / "report.html", page)
    return run / "report.html"


def validation_curve(history: Path) -> str:
    """history.csv as a small table: each epoch's validation AP@0.5 and mAP."""
    import csv

    if not history.is_file():
        return ""
    with open(history, newline="") as f:
        rows = list(csv.DictReader(f))
    body = "".join(
        f"<tr><td>{html.escape(r['epoch'])}</td><td>{float(r['val_ap50']):.3f}</td><td>{float(r['val_map']):.3f}</td></tr>"
        for r in rows
    )
    return f"<table><tr><th>epoch</th><th>val AP@0.5</th><th>val mAP@[.5:.95]</th></tr>{body}</table>"


def evaluation_page(folder: Path, m: dict, pr, shown: list) -> Path:
    """folder/report.html of `imgclf evaluate DETECTOR BOXES/` (detection.evaluate): the numbers, the
    precision-recall curve at IoU 0.5, and `shown` (photo, answer, threshold) with the labelled boxes
    in green and the boxes found at the threshold in the detector's colour."""
    from PIL import ImageDraw

    from imgclf.core.figures import data_uri, jpeg_bytes
    from imgclf.data.images import read_rgb
    from imgclf.inference.box_files import draw_boxes

    pr_png = pr_curve(folder / "pr_curve.png", [(pr, f"AP@0.5 {m['ap50']:.3f}", "-")], "Every box, IoU 0.5")
    figures = []
    for p, a, t in shown:
        img = read_rgb(p.path)
        pen = ImageDraw.Draw(img)
        for box in p.boxes.tolist():  # the labelled ones: an outline, no score
            pen.rectangle(box, outline=(40, 200, 80), width=max(2, round(min(img.size) / 200)))
        uri = data_uri(jpeg_bytes(draw_boxes(img, [b for b in a["boxes"] if b["score"] >= t]), 480))
        found = sum(b["score"] >= t for b in a["boxes"])
        figures.append(
            f'<figure><img src="{uri}" alt="">'
            f"<figcaption>{html.escape(Path(p.path).name)}: {len(p.boxes)} labelled, {found} found</figcaption></figure>"
        )
    pres, count = m["presence"], m["count"]
    na = "n/a (every photo holds one, or none does)"
    rows = [
        ("photos", f"{m['photos']:,}" + (f" ({len(m['unreadable'])} unreadable, left out)" if m["unreadable"] else "")),
        ("AP@0.5, the boxes a scan reports", f"{m['ap50_at_threshold']:.3f}"),
        ("AP@0.5, every box", f"{m['ap50']:.3f}"),
        ("mAP@[.5:.95]", f"{m['map']:.3f}"),
        (f"presence ROC-AUC ({pres['with']} of {pres['photos']} photos with '{m['positive']}')", pres["roc_auc"] or na),
        ("presence balanced accuracy at the threshold", pres["balanced_accuracy_at_threshold"] or na),
        *([("a threshold these photos suggest", better)] if (better := better_threshold(m)) else []),
        ("photos whose count is right", f"{count['right']:.1%} (mean error {count['mean_abs_error']:.2f})"),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(m["detector"])} on {html.escape(m["data"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
td,th{{padding:.2rem .6rem;text-align:left}} figure{{display:inline-block;margin:.4rem}} img{{max-width:100%}}</style></head>
<body><h1>{html.escape(m["detector"])} on {html.escape(Path(m["data"]).name or m["data"])}</h1>
<p>The detector as it is, on the photos with boxes in <code>{html.escape(m["data"])}</code>; a scan reports the
boxes scoring at least {m["threshold"]:.3g}. To adapt it to these photos: <code>imgclf train {html.escape(m["data"])}</code>.</p>
<table>{table}</table><img src="{pr_png}" alt="precision-recall curve">
<h2>The photos it got most wrong</h2><p>Green: the labelled boxes; the others: found at the threshold.</p>{"".join(figures)}
</body></html>"""
    write_text(folder / "report.html", page)
    return folder / "report.html"


def pr_curve(path: Path, curves: list, title: str) -> str:
    """Precision-recall curves ((recall, precision), label, line style) drawn to `path` (PNG), returned
    as a data URI for the page."""
    from imgclf.core.figures import data_uri, pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(5, 4))
    for (recall, precision), label, style in curves:
        ax.plot(recall, precision, style, label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left")
    save_png(fig, path)
    return data_uri(path.read_bytes(), "image/png")


def better_threshold(m: dict) -> str:
    """A presence threshold that tells these photos apart better than the recorded one by more than
    one photo (metrics.presence's rule), as a line; "" when there is none."""
    p = m["presence"]
    if p["roc_auc"] is None or p.get("kept_prior"):
        return ""
    return (
        f"on these photos presence is told best at threshold {p['threshold']:.3g} (balanced accuracy "
        f"{p['balanced_accuracy']:.3f} against {p['balanced_accuracy_at_threshold']:.3f}), chosen on them, so "
        f"optimistic: scan with --threshold {p['threshold']:.3g}, or fine-tune on them: imgclf train {m['data']}"
    )

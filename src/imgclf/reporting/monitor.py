"""OUT/monitor.html: the monitoring verdict on one self-contained page, in the run report's style
(inline CSS, plots and thumbnails as data URIs, no scripts, nothing fetched).

Sections: the verdict, the statistics table, reference-vs-live plots (predicted classes, confidence,
brightness), confidence over time when the log spans time, and the gallery of images to label next.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgclf.core.files import write_text
from imgclf.evaluation.drift import side_value
from imgclf.reporting.data import png_uri, thumbnail
from imgclf.reporting.html import esc, figure, num, page, section, table
from imgclf.reporting.plots import PALETTE, _figure, short

REF_COLOR, LIVE_COLOR = PALETTE[0], PALETTE[1]
STATUS = {"drift": ("Drift", "low"), "no_drift": ("No drift", ""), "too_few": ("Too few predictions to tell", "")}
# (key in statistics, row name, how a side's value is shown)
ROWS = [
    ("predicted_class", "predicted class mix", None),
    ("confidence", "confidence (median)", "median"),
    ("margin", "margin top-1 - top-2 (median)", "median"),
    ("low_confidence", "answers below the low-confidence line", "rate"),
    ("unknown", "answers 'unknown'", "rate"),
    ("brightness", "brightness 0-255 (mean)", "mean"),
    ("image_area", "image size (median w x h)", "size"),
    ("colour_mode", "colour mode mix", None),
]


def write_monitor_report(result: dict, ref: dict, live: list[dict], path: Path) -> Path:
    s = result["statistics"]
    title, cls = STATUS[result["status"]]
    span = result["span"]
    when = f"{span[0][:19]} to {span[1][:19]} UTC" if span else "no times"
    header = (
        f"<h1>Monitoring: {esc(result['model'])}</h1><p>{result['n_live']:,} logged predictions ({esc(when)}) vs "
        f"{result['n_reference']:,} test images"
        + (f" &middot; registry version {result['version']}" if result["version"] is not None else "")
        + "</p>"
    )
    parts = [
        ("verdict", "Verdict", _verdict(result, title, cls)),
        ("statistics", "Statistics", _stats_table(s, result)),
        ("plots", "Test set vs live", _plots(s, ref, live, result["low_confidence"]["threshold"])),
    ]
    series = _time_series(live, ref, result["low_confidence"]["threshold"])
    if series:
        parts.append(("time", "Over time", series))
    parts.append(("to-label", "Label these next", _gallery(result)))
    body = "".join(section(sid, t, html) for sid, t, html in parts)
    html = page(
        f"imgclf monitor {result['model']}",
        header,
        [(sid, t) for sid, t, _ in parts],
        body,
        f"written by imgclf monitor &middot; log {esc(result['log'])} &middot; run {esc(result['run'])}",
    )
    write_text(path, html)
    return path


def _verdict(result: dict, title: str, cls: str) -> str:
    left = result["left_out"]
    notes = [
        f"{left['other_models']:,} records of other models left out" if left["other_models"] else "",
        f"{left['before_since']:,} before --since left out" if left["before_since"] else "",
        f"{left['unreadable_lines']:,} unreadable log lines skipped" if left["unreadable_lines"] else "",
    ]
    notes = "; ".join(n for n in notes if n)
    _, _, words = result["verdict"].partition(": ")
    return (
        f'<p style="font-size:17px"><b class="{cls}">{esc(title)}:</b> {esc(words)}</p>'
        f'<p class="note">PSI {esc(result["rules"]["psi"])}; a shift is {esc(result["rules"]["shift"])}. '
        f"Low-confidence line {result['low_confidence']['threshold']:.3g} ({esc(result['low_confidence']['why'])})."
        f"{' ' + esc(notes) + '.' if notes else ''}</p>"
    )


def _side(st: dict, how: str | None, side: str) -> str:
    v = side_value(st, how, side, counts=True)
    return esc(v) if v is not None else "–"


def _stats_table(s: dict, result: dict) -> str:
    rows, classes = [], []
    for key, name, how in ROWS:
        st = s.get(key)
        if st is None:
            continue
        psi = st.get("psi")
        p = st.get("p_value")
        rows.append(
            [
                esc(name),
                _side(st, how, "ref"),
                _side(st, how, "live"),
                num(psi, 3) if psi is not None else "–",
                num(st.get("psi_noise"), 3) if st.get("psi_noise") is not None else "–",
                esc(st.get("severity", "–")) if psi is not None else "–",
                f"{p:.2g}" if p is not None else "–",
                esc(st.get("test", "")),
                '<b class="low">shifted</b>' if st["shifted"] else "–",
            ]
        )
        classes.append("")
    note = (
        '<p class="note">PSI noise: the PSI two samples of these sizes show on average with no drift at all '
        "((bins - 1) x (1/n<sub>test</sub> + 1/n<sub>live</sub>)); a PSI near it is sampling noise. "
        "Image size is compared on log<sub>2</sub>(width x height).</p>"
    )
    return (
        table(
            ["statistic", "test set", "live", "PSI", "PSI noise", "PSI level", "p-value", "test", ""],
            rows,
            numeric=(1, 2, 3, 4, 6),
        )
        + note
    )


def _plots(s: dict, ref: dict, live: list[dict], low: float) -> str:
    out = []
    pc = s["predicted_class"]
    if pc.get("psi") is not None:
        out.append(figure(png_uri(_class_bars(pc)), "predicted classes", "share of answers per predicted class"))
    row = []
    conf_l = [r["confidence"] for r in live]
    if conf_l:
        row.append(
            figure(
                png_uri(
                    _hist(
                        ref["confidence"],
                        conf_l,
                        (0, 1),
                        "calibrated confidence",
                        low,
                        f"low-confidence line {low:.2g}",
                    )
                ),
                "confidence histograms",
            )
        )
    bright_r = [b for b in ref["brightness"] if b is not None]
    bright_l = [r["brightness"] for r in live if isinstance(r.get("brightness"), (int, float))]
    if bright_r and bright_l:
        row.append(
            figure(
                png_uri(_hist(bright_r, bright_l, (0, 255), "brightness (mean grey level)")), "brightness histograms"
            )
        )
    if row:
        out.append('<div class="pair">' + "".join(f"<div>{f}</div>" for f in row) + "</div>")
    return "".join(out) or '<p class="muted">No logged predictions to plot.</p>'


def _class_bars(pc: dict) -> bytes:
    cats = pc["categories"]
    ref = np.array([pc["ref"][c] for c in cats])
    live = np.array([pc["live"][c] for c in cats])
    n = len(cats)
    height = min(14.0, 1.4 + 0.32 * n)
    with _figure(figsize=(8, height)) as (fig, ax, out):
        y = np.arange(n)
        ax.barh(y - 0.2, ref, height=0.4, color=REF_COLOR, label=f"test set (n={pc['n_ref']:,})")
        ax.barh(y + 0.2, live, height=0.4, color=LIVE_COLOR, label=f"live (n={pc['n_live']:,})")
        ax.set_yticks(y, [short(c) for c in cats], fontsize=max(6.5, min(10, 72 * (height - 1) / max(n, 1) * 0.6)))
        ax.invert_yaxis()
        ax.set_xlabel("share of answers")
        ax.grid(axis="y", alpha=0)
        ax.legend(loc="lower right", bbox_to_anchor=(1, 1.0), ncols=2)
    return out[0]


def _hist(ref, live, span: tuple[float, float], xlabel: str, line: float | None = None, line_label: str = "") -> bytes:
    edges = np.linspace(span[0], span[1], 26)
    with _figure(figsize=(5.6, 3.6)) as (fig, ax, out):
        for values, color, name in ((ref, REF_COLOR, "test set"), (live, LIVE_COLOR, "live")):
            v = np.clip(np.asarray(values, float), span[0], span[1])
            w = np.full(len(v), 1 / max(len(v), 1))
            ax.hist(v, bins=edges, weights=w, color=color, alpha=0.45, label=f"{name} (n={len(v):,})")
            ax.hist(v, bins=edges, weights=w, color=color, histtype="step", lw=1.4)
        if line is not None:
            ax.axvline(line, color="#666", ls="--", lw=1, label=line_label)
        ax.set(xlabel=xlabel, ylabel="share of images", xlim=span)
        ax.legend(loc="best")
        fig.tight_layout()
    return out[0]


# Time buckets: the smallest that leaves at most MAX_BUCKETS over the log's span.
BUCKETS = [
    (60, "minute"),
    (600, "10 minutes"),
    (3600, "hour"),
    (6 * 3600, "6 hours"),
    (86400, "day"),
    (7 * 86400, "week"),
]
MAX_BUCKETS = 60


def _time_series(live: list[dict], ref: dict, low: float) -> str:
    from imgclf.store.predlog import parse_time

    points = [(t.timestamp(), r["confidence"]) for r in live if (t := parse_time(r.get("time"))) is not None]
    if len(points) < 2:
        return ""
    t = np.array([p[0] for p in points])
    c = np.array([p[1] for p in points])
    span = t.max() - t.min()
    size, name = next(((s, n) for s, n in BUCKETS if span / s <= MAX_BUCKETS), BUCKETS[-1])
    bucket = np.floor(t / size).astype(np.int64)
    keys = np.unique(bucket)
    if len(keys) < 2:
        return ""
    med = np.array([np.median(c[bucket == k]) for k in keys])
    low_share = np.array([(c[bucket == k] < low).mean() for k in keys])
    count = np.array([(bucket == k).sum() for k in keys])
    x = [datetime.fromtimestamp(k * size, tz=timezone.utc) for k in keys]
    ref_med = float(np.median(ref["confidence"]))
    with _figure(2, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}) as (fig, (ax, bx), out):
        ax.plot(x, med, marker="o", ms=3, color=LIVE_COLOR, label="live: median confidence")
        ax.plot(x, low_share, marker="o", ms=3, color=PALETTE[3], label=f"live: share below {low:.2g}")
        ax.axhline(ref_med, color=REF_COLOR, ls="--", lw=1.2, label=f"test set: median confidence {ref_med:.2f}")
        ax.set(ylim=(0, 1.02), title=f"per {name} (UTC)")
        ax.legend(loc="lower left")
        bx.bar(x, count, width=size / 86400 * 0.8, color="#888")
        bx.set_ylabel("predictions")
        fig.autofmt_xdate()
        fig.tight_layout()
    return figure(png_uri(out[0]), "confidence over time")


def _gallery(result: dict) -> str:
    picks = result["to_label"]
    if not picks:
        hashed = result["n_live"] and not result["images_kept"]
        why = (
            "the log keeps no images (served with --log-images hash)" if hashed else "no logged image is left to label"
        )
        return f'<p class="muted">Nothing to list: {esc(why)}.</p>'
    cards = []
    for i, p in enumerate(picks, 1):
        uri = thumbnail(p["logged_image"], 110) or ""
        margin = f"{p['margin']:.3f}" if isinstance(p["margin"], (int, float)) else "–"
        cards.append(
            f'<div class="pred unknown"><img src="{uri}" alt="{esc(p["sha256"][:12])}" '
            f'title="{esc(p["image"])}"><div>#{i} <b>{esc(p["label"])}</b></div>'
            f"<div>confidence {p['confidence']:.3f}</div><div>margin {margin}</div>"
            f'<div class="muted">{esc((p["time"] or "")[5:16].replace("T", " "))}</div></div>'
        )
    return (
        f"<p>The {len(picks)} logged images the model was least sure about (smallest confidence, then margin; one "
        f"per image). Copies are in <code>{esc(result['paths']['to_label'])}</code> and listed in "
        f"<code>{esc(result['paths']['to_label_csv'])}</code>: move each into a folder named after its true class "
        f"(<code>to_label/&lt;class&gt;/</code>), then run <code>{esc(result['import_command'])}</code> and "
        f'<code>imgclf update</code>.</p><div class="gallery">{"".join(cards)}</div>'
    )


HISTORY_SHOWN = 10


def monitoring_section(run: Path) -> str:
    """The run report's Monitoring section: each `imgclf monitor` of this run (RUN/monitoring.json,
    newest first) with its verdict and a link to its monitor.html."""
    import os

    from imgclf.core.files import read_json

    path = Path(run) / "monitoring.json"
    if not path.is_file():
        return section(
            "monitoring",
            "Monitoring",
            "<p>Not monitored yet. Serve the model with "
            "<code>--log-predictions DIR</code>, then <code>imgclf monitor RUN --log DIR</code> compares "
            "that traffic with this test split and lists it here.</p>",
        )
    rows = []
    for m in reversed(read_json(path)["checks"][-HISTORY_SHOWN:]):
        title, cls = STATUS[m["status"]]
        _, _, words = m["verdict"].partition(": ")
        href = Path(os.path.relpath(m["html"], Path(run).resolve())).as_posix()
        rows.append(
            [
                esc(m["time"][:16].replace("T", " ")),
                f'<b class="{cls}">{esc(title)}</b>',
                num(m["n_live"]),
                esc(words),
                f'<a href="{esc(href)}">monitor.html</a>',
            ]
        )
    return section(
        "monitoring",
        "Monitoring",
        "<p>Live traffic against this test split, newest first "
        "(<code>imgclf monitor</code>).</p>"
        + table(["when (UTC)", "verdict", "predictions", "why", "page"], rows, numeric=[2]),
    )

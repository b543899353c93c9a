"""The report's figures as PNG bytes, sized for 2 to a few hundred classes.

Every plot takes plain arrays (no run folder, no model) so it can be checked on its own. Rules that
keep many-class plots readable: class names are shortened, tick labels are thinned once a font
would drop below MIN_FONT, per-cell numbers only appear while cells are big enough to hold them,
and legends name only the few classes worth a look.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np

DPI = 100
MIN_FONT = 6.5  # pt: below this a label is unreadable at 100 % zoom
MAX_NAME = 18  # characters of a class name shown on an axis
CELL_TEXT_MAX = 25  # classes up to which confusion-matrix cells carry their number
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
SPLIT_COLORS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.dpi": DPI,
}


@contextmanager
def _figure(*args, **kwargs):
    """A styled figure, rendered to PNG bytes into the yielded list on exit (global matplotlib
    state is left as it was: the report may run inside a user's notebook)."""
    from imgclf.core.figures import pyplot

    plt = pyplot()
    out: list[bytes] = []
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(*args, **kwargs)
        try:
            yield fig, axes, out
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.12)
            out.append(buf.getvalue())
        finally:
            plt.close(fig)


def short(name: str, limit: int = MAX_NAME) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _class_ticks(ax, axis: str, classes: list[str], inches: float) -> None:
    """Class names along an axis `inches` long: the biggest font that fits, thinned to every k-th
    name when even MIN_FONT would overlap."""
    n = len(classes)
    font = min(10.0, 72 * inches / max(n, 1) * 0.8)
    step = 1 if font >= MIN_FONT else int(np.ceil(MIN_FONT / font))
    pos = np.arange(0, n, step)
    names = [short(classes[i]) for i in pos]
    size = max(font, MIN_FONT)
    if axis == "x":
        ax.set_xticks(pos, names, rotation=90 if n > 6 or max(map(len, names)) > 8 else 0, fontsize=size)
    else:
        ax.set_yticks(pos, names, fontsize=size)


def class_counts(counts: dict[str, dict[str, int]], classes: list[str]) -> bytes:
    """Images per class, stacked by split: horizontal bars with every name up to 20 classes;
    beyond, one compact row of columns, largest class first (names thinned when they cannot all
    fit): with many classes the shape of the imbalance is the point."""
    splits = [s for s in ("train", "val", "test") if s in counts]
    n = len(classes)
    table = np.array([[counts[s].get(c, 0) for c in classes] for s in splits], dtype=float)
    if n <= 20:
        height = min(14.0, 1.2 + 0.24 * n)
        with _figure(figsize=(8, height)) as (fig, ax, out):
            left = np.zeros(n)
            for s, row in zip(splits, table):
                ax.barh(np.arange(n), row, left=left, color=SPLIT_COLORS[s], label=s, height=0.75)
                left += row
            _class_ticks(ax, "y", classes, height - 1.0)
            ax.invert_yaxis()
            ax.set_xlabel("images")
            ax.grid(axis="y", alpha=0)
            ax.legend(ncols=len(splits), loc="lower right", bbox_to_anchor=(1, 1.0))
        return out[0]
    order = np.argsort(-table.sum(0), kind="stable")
    with _figure(figsize=(12, 4)) as (fig, ax, out):
        bottom = np.zeros(n)
        for s, row in zip(splits, table[:, order]):
            ax.bar(np.arange(n), row, bottom=bottom, color=SPLIT_COLORS[s], label=s, width=0.85)
            bottom += row
        _class_ticks(ax, "x", [classes[i] for i in order], 11)
        ax.set_ylabel("images")
        ax.set_xlim(-1, n)
        ax.grid(axis="x", alpha=0)
        ax.set_title("images per class, largest first", loc="left")
        ax.legend(ncols=len(splits), loc="lower right", bbox_to_anchor=(1, 1.0))
    return out[0]


def learning_curves(history: list[dict], best_epoch: int | None) -> bytes:
    """Loss, accuracy and learning rate per epoch; the kept (best) epoch marked."""
    epochs = [int(r["epoch"]) for r in history]
    with _figure(1, 3, figsize=(13, 3.6)) as (fig, axes, out):
        for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
            for split, color in (("train", SPLIT_COLORS["train"]), ("val", SPLIT_COLORS["val"])):
                ax.plot(
                    epochs,
                    [float(r[f"{split}_{key}"]) for r in history],
                    color=color,
                    label=split,
                    marker="o" if len(epochs) <= 15 else None,
                    ms=3,
                )
            ax.set_title(title)
        axes[2].plot(epochs, [float(r["lr"]) for r in history], color="#555")
        axes[2].set_title("learning rate (end of epoch)")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        from matplotlib.ticker import MaxNLocator

        # Fine-tuning: the head-only stage shaded (it ends where stage 2's schedule restarts).
        head_only = [e for e, r in zip(epochs, history) if int(r.get("stage", 1)) == 1]
        shade = head_only and len(head_only) < len(epochs)
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if best_epoch:
                ax.axvline(best_epoch, color="#999", ls="--", lw=1)
            if shade:
                ax.axvspan(min(head_only) - 0.5, max(head_only) + 0.5, color="#f2c94c", alpha=0.2, lw=0)
        if shade:
            axes[1].fill_between([], [], color="#f2c94c", alpha=0.35, label="stage 1: head only")
        if best_epoch:
            axes[1].plot([], [], color="#999", ls="--", lw=1, label=f"kept: epoch {best_epoch}")
        axes[1].legend(loc="lower right")
        fig.tight_layout()
    return out[0]


def confusion(cm: np.ndarray, classes: list[str], normalized: bool, half_width: bool = False) -> bytes:
    """Rows are true classes, columns predictions; normalised rows are each class's recall.
    `half_width`: sized to sit beside its twin at readable scale (names thinned as needed)."""
    cm = np.asarray(cm, dtype=float)
    n = len(classes)
    shown = cm / np.maximum(1, cm.sum(1, keepdims=True)) if normalized else cm
    side = 4.4 if half_width else float(np.clip(2.2 + 0.32 * n, 4.5, 9.5))
    with _figure(figsize=(side + 1.2, side)) as (fig, ax, out):
        im = ax.imshow(
            shown, cmap="Blues", vmin=0, vmax=1 if normalized else max(1.0, shown.max()), interpolation="nearest"
        )
        ax.grid(False)
        _class_ticks(ax, "x", classes, side)
        _class_ticks(ax, "y", classes, side)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("normalised by true class (recall on the diagonal)" if normalized else "counts")
        if n <= CELL_TEXT_MAX:
            font = float(np.clip(72 * side / n * 0.32, 6, 10))
            top = shown.max() or 1
            for i, j in zip(*np.nonzero(cm)):
                text = f"{shown[i, j]:.2f}".lstrip("0") if normalized else f"{int(cm[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if shown[i, j] > 0.55 * top else "#222",
                )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    return out[0]


def roc_pr(curves: list[dict], classes: list[str], micro: dict | None) -> bytes:
    """One-vs-rest ROC and precision-recall curves. Up to 10 classes each gets a coloured line;
    above, every class is a faint grey line, the micro-average is bold and the 5 worst classes
    (lowest ROC-AUC) are coloured, so the legend stays short and points at trouble. The one
    legend sits outside the plots: inside it would cover the curves it explains."""
    n = len(classes)
    valid = [i for i, c in enumerate(curves) if c is not None]
    named = valid if n <= 10 else sorted(valid, key=lambda i: curves[i]["roc_auc"])[:5]
    with _figure(1, 2, figsize=(9, 4.2)) as (fig, (roc, pr), out):
        # Grey lines first, so the named ones are drawn on top; named ones in legend order.
        for c in (curves[i] for i in valid if i not in named):
            roc.plot(c["fpr"], c["tpr"], color="#bbb", lw=0.7, alpha=0.6)
            pr.plot(c["recall"], c["precision"], color="#bbb", lw=0.7, alpha=0.6)
        for k, i in enumerate(named):
            c, color = curves[i], PALETTE[k % len(PALETTE)]
            roc.plot(
                c["fpr"],
                c["tpr"],
                color=color,
                lw=1.5,
                label=f"{short(classes[i])}  {c['roc_auc']:.3f} / {c['ap']:.3f}",
            )
            pr.plot(c["recall"], c["precision"], color=color, lw=1.5)
        if n > 10:
            roc.plot([], [], color="#bbb", lw=0.7, label=f"the other {len(valid) - len(named)} classes")
        if micro is not None:
            roc.plot(
                micro["fpr"],
                micro["tpr"],
                color="black",
                lw=2.2,
                label=f"micro-average  {micro['roc_auc']:.3f} / {micro['ap']:.3f}",
            )
            pr.plot(micro["recall"], micro["precision"], color="black", lw=2.2)
        roc.plot([0, 1], [0, 1], ls=":", color="#888", lw=1)
        roc.set(
            xlabel="false positive rate",
            ylabel="true positive rate (recall)",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title="ROC, one class vs the rest",
        )
        pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall")
        fig.tight_layout()
        fig.legend(
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            alignment="left",
            title="ROC-AUC / average precision" if n <= 10 else "5 lowest ROC-AUC\nROC-AUC / average precision",
        )
    return out[0]


def reliability(rel: dict, ece_before: float | None, ece_after: float | None) -> bytes:
    """Accuracy per confidence bin against the diagonal, with the share of images per bin below:
    a bin far off the diagonal matters only if images land in it."""
    edges = np.asarray(rel["edges"])
    count = np.asarray(rel["count"], dtype=float)
    acc, conf = np.asarray(rel["accuracy"]), np.asarray(rel["confidence"])
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    used = count > 0
    with _figure(2, 1, figsize=(5.6, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}) as (
        fig,
        (ax, hist),
        out,
    ):
        ax.bar(centers[used], acc[used], width=width * 0.92, color=PALETTE[0], label="accuracy in bin")
        ax.bar(
            centers[used],
            conf[used] - acc[used],
            bottom=acc[used],
            width=width * 0.92,
            color="none",
            edgecolor=PALETTE[3],
            hatch="///",
            lw=0,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "--", color="#666", lw=1, label="perfect calibration")
        ax.set(ylim=(0, 1), ylabel="accuracy", xlim=(0, 1))
        # ece_after None: no temperature was fitted, so the confidences are the model's own.
        title = "calibrated confidence vs accuracy" if ece_after is not None else "confidence vs accuracy"
        if ece_after is not None:
            title += f"\nECE {ece_before:.3f} before, {ece_after:.3f} after temperature scaling"
        elif ece_before is not None:
            title += f"\nECE {ece_before:.3f}"
        ax.set_title(title)
        ax.legend(loc="upper left")
        hist.bar(centers, count / max(1, count.sum()), width=width * 0.92, color="#888")
        hist.set(xlabel="confidence", ylabel="share of images")
        fig.tight_layout()
    return out[0]


def coverage(cov: np.ndarray, acc: np.ndarray, point: tuple[float, float, str] | None) -> bytes:
    """Selective classification: accuracy on the answered images when only the most confident
    fraction (coverage) is answered. `point` marks the configured rejection threshold."""
    with _figure(figsize=(6.4, 4.2)) as (fig, ax, out):
        ax.plot(cov, acc, color=PALETTE[0], lw=2)
        ax.set(
            xlabel="coverage (share of test images answered)",
            ylabel="accuracy on answered images",
            xlim=(0, 1.01),
            title="accuracy vs coverage (most confident first)",
        )
        if point is not None:
            x, y, label = point
            ax.plot([x], [y], "o", color=PALETTE[3], ms=8, zorder=3)
            _annotate(ax, label, x, y)
        fig.tight_layout()
    return out[0]


def decision(p_pos: np.ndarray, is_pos: np.ndarray, threshold: float, positive: str) -> bytes:
    """Two classes: the positive class's precision-recall curve with the operating point, and
    precision and recall against the threshold — what the chosen recall costs in precision."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(is_pos, p_pos)
    pred = p_pos >= threshold
    p_at = (pred & is_pos).sum() / max(1, pred.sum())
    r_at = (pred & is_pos).sum() / max(1, is_pos.sum())
    with _figure(1, 2, figsize=(12, 4.4)) as (fig, (ax, th), out):
        ax.plot(recall, precision, color=PALETTE[0], lw=2)
        ax.plot([r_at], [p_at], "o", color=PALETTE[3], ms=8, zorder=3)
        _annotate(ax, f"threshold {threshold:.3f}\nprecision {p_at:.3f}, recall {r_at:.3f}", r_at, p_at)
        ax.set(
            xlabel=f"recall of '{short(positive)}'",
            ylabel="precision",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            title="precision-recall",
        )
        th.plot(thresholds, precision[:-1], color=PALETTE[0], label="precision")
        th.plot(thresholds, recall[:-1], color=PALETTE[1], label="recall")
        th.axvline(threshold, color="#666", ls="--", lw=1, label=f"chosen threshold {threshold:.3f}")
        th.set(
            xlabel=f"threshold on p('{short(positive)}')", ylim=(0, 1.02), xlim=(0, 1), title="against the threshold"
        )
        th.legend(loc="lower left")
        fig.tight_layout()
    return out[0]


def _annotate(ax, text: str, x: float, y: float) -> None:
    """A label for a marked point, placed below it towards the middle of the axes so it never
    runs off the left or right edge."""
    right = x < 0.5
    ax.annotate(
        text,
        (x, y),
        xytext=(14 if right else -14, -36),
        textcoords="offset points",
        ha="left" if right else "right",
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#ccc"},
        arrowprops={"arrowstyle": "-", "color": "#888"},
    )

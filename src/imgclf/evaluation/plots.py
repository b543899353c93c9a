"""PNG plots for the run folder. Matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.core.figures import pyplot, save_png


def plot_history(history: list[dict], path: Path) -> None:
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", ax1), ("acc", ax2)):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if key == "acc" else "loss")
        ax.grid(alpha=0.3)
        if stage2 := [r["epoch"] for r in history if int(r.get("stage", 1)) == 2]:
            ax.axvline(min(stage2) - 0.5, color="#999", ls=":", label="all layers train from here")
        ax.legend()
    fig.suptitle("Learning curves")
    fig.tight_layout()
    save_png(fig, path)


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path) -> None:
    plt = pyplot()
    cm = np.asarray(cm)
    n = len(classes)
    size = min(20, max(5, 0.45 * n + 3))
    fig, ax = plt.subplots(figsize=(size, size))
    # Row-normalised colours (recall per true class) stay readable with uneven classes; counts are printed.
    norm = cm / np.maximum(1, cm.sum(1, keepdims=True))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    save_png(fig, path)


def plot_reliability(rel: dict, path: Path) -> None:
    """Reliability diagram: accuracy vs confidence per bin; the diagonal is perfect calibration."""
    plt = pyplot()
    edges = np.asarray(rel["edges"])
    count = np.asarray(rel["count"])
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(5, 5))
    shown = count > 0
    ax.bar(centers[shown], np.asarray(rel["accuracy"])[shown], width=width * 0.9, color="#4c72b0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (calibrated)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (test)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_png(fig, path)


def plot_coverage(curve: dict, operating: dict | None, path: Path) -> None:
    """Selective classification: accuracy on the answered images vs the share answered (the most
    confident first), with the run's rejection threshold marked when it has one."""
    plt = pyplot()
    cov, acc = np.asarray(curve["coverage"]), np.asarray(curve["accuracy"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(cov, acc, color="#4c72b0", lw=2, label=f"test (AURC {curve['aurc']:.3f})" if len(cov) else "test")
    if len(acc):
        ax.axhline(acc[-1], ls="--", color="grey", lw=1, label=f"no rejection: accuracy {acc[-1]:.3f}")
    low = min([*acc, (operating or {}).get("accuracy_accepted") or 1.0, 0.9])
    if operating and operating.get("accuracy_accepted") is not None:
        c, a = operating["coverage"], operating["accuracy_accepted"]
        ax.plot(
            [c],
            [a],
            "o",
            ms=9,
            color="#c44e52",
            zorder=3,
            label=f"threshold {operating['threshold']:.3f}: coverage {c:.3f}, accuracy {a:.3f}",
        )
        ax.axvline(c, ls=":", color="#c44e52", lw=1)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(max(0.0, low - 0.05 * (1 - low) - 0.01), 1.005)
    ax.set_xlabel("coverage (share of images answered, most confident first)")
    ax.set_ylabel("accuracy on answered images")
    ax.set_title("Coverage vs accuracy (test)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)

"""Matplotlib for PNG files: the Agg backend (no display needed), written atomically."""

from __future__ import annotations

from pathlib import Path

from imgclf.core.files import atomic_path


def pyplot():
    # Imported on first use: matplotlib costs ~0.5 s at start-up, and most commands never draw.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

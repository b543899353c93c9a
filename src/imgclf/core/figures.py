"""Matplotlib for PNG files: the Agg backend (no display needed), written atomically."""

from __future__ import annotations

from pathlib import Path

from imgclf.core.files import atomic_path, user_temp_folder, writable_folder


def pyplot():
    # Imported on first use: matplotlib costs ~0.5 s at start-up, and most commands never draw.
    import warnings

    _writable_config_dir()
    import matplotlib

    # A class name in a script the installed fonts lack (Chinese names where only DejaVu Sans is
    # installed) is drawn as boxes; matplotlib says so once per glyph and figure, a screenful of
    # warnings in the middle of a run's output for a label the figure still shows.
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _writable_config_dir() -> None:
    """MPLCONFIGDIR set to a per-user temp folder where matplotlib's own (~/.config/matplotlib) cannot
    be written (a read-only or missing home): matplotlib would log two lines about it on every run,
    and build its font cache again in a new temp folder each time."""
    import os

    if os.environ.get("MPLCONFIGDIR"):
        return
    try:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        writable_folder((Path(xdg) if xdg else Path.home() / ".config") / "matplotlib")
    except (OSError, RuntimeError):  # RuntimeError: no home directory at all
        os.environ["MPLCONFIGDIR"] = str(user_temp_folder("imgclf-matplotlib"))


def save_png(fig, path: Path) -> None:
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def jpeg_bytes(img, side: int) -> bytes:
    """A copy of the RGB PIL image shrunk to fit side x side, as JPEG (quality 85): a report's photo."""
    import io

    img = img.copy()
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    """`data` inline in a page that must open without its folder (a report mailed on its own)."""
    import base64

    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")

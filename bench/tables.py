"""Shared by the bench/ scripts: print a result table as before and also write it as a CSV file.

    import tables
    tables.add_csv_dir(ap)                                  # the script's argparse: --csv-dir DIR
    tables.emit("speed", ["model", "img/s"], [["resnet", tables.V(1234.5, ",.0f")]])

prints the markdown table (`| model | img/s |`, `|---|---|`, `| resnet | 1,234 |`) and writes
bench/results/SCRIPT-speed.csv (SCRIPT: the calling script's file name, e.g. `export`) with the same
header and rows, atomically (a temporary file in the same folder, then os.replace). A `V` cell is
printed formatted and written unformatted (1234.5); any other cell is written as printed.

- `Table(name, header, align=...)`: the same, a row at a time (`.add(row)` prints the row and
  rewrites the CSV), for tables whose rows come minutes apart;
- `save(name, header, rows)`: the CSV only, for a script that prints its table its own way.

`--csv-dir DIR` (every bench script accepts it; default bench/results) moves the CSV files.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "results"
CSV_DIR = DEFAULT_DIR  # --csv-dir sets it


class V:
    """A number (or any value) printed as `spec` formats it and written to the CSV unformatted.
    `spec` is a format spec (`".1f"`, `",.0f"`, `".1%"`) or a template with `{}` (`"{:.2f}x"`)."""

    __slots__ = ("spec", "value")

    def __init__(self, value, spec: str = ""):
        self.value, self.spec = value, spec

    def __str__(self) -> str:
        return self.spec.format(self.value) if "{" in self.spec else format(self.value, self.spec)

    def __repr__(self) -> str:
        return f"V({self.value!r}, {self.spec!r})"


class _SetCsvDir(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        global CSV_DIR
        CSV_DIR = Path(values)
        setattr(namespace, self.dest, CSV_DIR)


def add_csv_dir(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a script's parser `--csv-dir DIR`: where its tables are written as CSV."""
    ap.add_argument(
        "--csv-dir",
        metavar="DIR",
        action=_SetCsvDir,
        default=CSV_DIR,
        help="also write each result table here as SCRIPT-TABLE.csv [default: bench/results]",
    )
    return ap


def _caller_script() -> str:
    """The file name (without .py) of the nearest caller outside this module."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    file = frame.f_globals.get("__file__") if frame is not None else None
    return Path(file).stem if file else "bench"


def csv_path(name: str, script: str | None = None, csv_dir: str | Path | None = None) -> Path:
    return Path(csv_dir if csv_dir is not None else CSV_DIR) / f"{script or _caller_script()}-{name}.csv"


def _raw(cell):
    return cell.value if isinstance(cell, V) else cell


def save(
    name: str,
    header: Sequence,
    rows: Iterable[Sequence],
    *,
    script: str | None = None,
    csv_dir: str | Path | None = None,
) -> Path:
    """Write header + rows to CSV_DIR/SCRIPT-NAME.csv atomically; the path written."""
    path = csv_path(name, script, csv_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([str(h) for h in header])
            w.writerows([_raw(c) for c in row] for row in rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def markdown_row(cells: Iterable) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


class Table:
    """A markdown table printed a row at a time, its CSV rewritten after each row."""

    def __init__(
        self,
        name: str,
        header: Sequence,
        *,
        align: Sequence[str] | None = None,
        title: str | None = None,
        script: str | None = None,
        csv_dir: str | Path | None = None,
    ):
        self.name, self.header, self.rows = name, list(header), []
        self.script, self.csv_dir = script or _caller_script(), csv_dir
        if title is not None:
            print(title)
        print(markdown_row(self.header))
        print("|" + "|".join(align or ["---"] * len(self.header)) + "|", flush=True)

    def add(self, row: Sequence, *, write: bool = True) -> None:
        self.rows.append(list(row))
        print(markdown_row(row), flush=True)
        if write:
            self.save()

    def save(self) -> Path:
        return save(self.name, self.header, self.rows, script=self.script, csv_dir=self.csv_dir)


def emit(
    name: str,
    header: Sequence,
    rows: Iterable[Sequence],
    *,
    align: Sequence[str] | None = None,
    title: str | None = None,
    script: str | None = None,
    csv_dir: str | Path | None = None,
) -> Path:
    """Print `title` (if given) and the markdown table, and write it as CSV; the CSV's path."""
    table = Table(name, header, align=align, title=title, script=script, csv_dir=csv_dir)
    for row in rows:
        table.add(row, write=False)
    return table.save()

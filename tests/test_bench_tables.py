"""bench/tables.py: each bench script's tables are printed as before and written as CSV."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import tables  # noqa: E402 - bench/ is on sys.path only from here


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_emit_prints_the_markdown_table_and_writes_the_csv(tmp_path, capsys):
    header = ["model", "img/s", "share", "note"]
    rows = [
        ["resnet | fast", tables.V(1234.5678, ",.0f"), tables.V(0.25, ".1%"), "a, b"],
        ["simple_cnn", tables.V(2.0, "{:.2f}x"), 3, None],
    ]
    path = tables.emit(
        "speed", header, rows, align=["---", "---:", "---:", "---"], title="", script="demo", csv_dir=tmp_path / "out"
    )
    assert path == tmp_path / "out" / "demo-speed.csv"
    assert read(path) == [header, ["resnet | fast", "1234.5678", "0.25", "a, b"], ["simple_cnn", "2.0", "3", ""]]
    assert capsys.readouterr().out == (
        "\n| model | img/s | share | note |\n|---|---:|---:|---|\n"
        "| resnet | fast | 1,235 | 25.0% | a, b |\n| simple_cnn | 2.00x | 3 | None |\n"
    )
    assert [p.name for p in path.parent.iterdir()] == ["demo-speed.csv"]  # no temporary file left


def test_table_rewrites_its_csv_a_row_at_a_time_and_names_it_after_the_caller(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tables, "CSV_DIR", tmp_path)
    t = tables.Table("rows", ["a", "b"])
    t.add(["x", tables.V(1.5, ".0f")])
    path = tmp_path / "test_bench_tables-rows.csv"
    assert read(path) == [["a", "b"], ["x", "1.5"]]
    t.add(["y", 2])
    assert read(path) == [["a", "b"], ["x", "1.5"], ["y", "2"]]
    assert capsys.readouterr().out == "| a | b |\n|---|---|\n| x | 2 |\n| y | 2 |\n"


def test_csv_dir_option(tmp_path, monkeypatch):
    import argparse

    monkeypatch.setattr(tables, "CSV_DIR", tables.DEFAULT_DIR)
    ap = tables.add_csv_dir(argparse.ArgumentParser())
    assert ap.parse_args([]).csv_dir == tables.DEFAULT_DIR and tables.CSV_DIR == tables.DEFAULT_DIR
    ap.parse_args(["--csv-dir", str(tmp_path)])
    assert tables.save("t", ["k", "v"], [("n", 1)], script="s") == tmp_path / "s-t.csv"


def test_every_bench_script_writes_its_tables_through_the_helper():
    # scripts: what runs as `python bench/x.py`; modules they import (tables.py, int8_models.py) print nothing
    scripts = sorted(p for p in BENCH.glob("*.py") if "__main__" in p.read_text(encoding="utf-8"))
    assert len(scripts) >= 13
    missing = [
        p.name
        for p in scripts
        if "import tables" not in (text := p.read_text(encoding="utf-8"))
        or "tables.add_csv_dir(ap)" not in text
        or not any(f"tables.{f}(" in text for f in ("emit", "Table", "save"))
    ]
    assert not missing, f"bench scripts not writing their tables as CSV (bench/tables.py): {missing}"

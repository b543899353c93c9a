"""A data manifest: every file of a training set with its content hash, label and split.

    path,sha256,label,split
    /data/photos/cat/1.jpg,9f86d08...,cat,train

It is a CSV manifest `imgclf train` reads as it is (path,label,split; the hash column is ignored), so
`imgclf train registry/versions/3/manifest.csv` rebuilds version 3's exact training set, and the
hashes tell whether any file changed since. That is why its paths stay absolute, unlike a run's
splits.csv: the data root they were under is recorded beside them (version.json) instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imgclf.core.files import open_regular, write_text

MISSING = "missing"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the file's bytes, or "missing" when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open_regular(path) as f:  # a FIFO listed in a manifest must not hang the hashing
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return MISSING
    return h.hexdigest()


def write_manifest(rows: list[dict], out: Path, root: str | None = None) -> dict:
    """Hash every file of a run's splits (rows of path, label, split, as runs.read_splits gives them)
    into `out`; return a summary, with `root`: the data folder the files were found under.

    Paths are made absolute so the manifest trains from anywhere; a data folder that moves later is
    followed by rebasing them from `root` (registry.read_manifest). A file that is gone is recorded
    as "missing", not an error: the record of what the run was trained on matters most when the
    data has since changed.
    """
    paths = [os.path.abspath(r["path"]) for r in rows]
    # Hashing is disk-bound and hashlib releases the GIL, so threads overlap the reads.
    with ThreadPoolExecutor(8) as pool:
        hashes = list(pool.map(file_sha256, paths))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "sha256", "label", "split"])
    splits: dict[str, int] = {}
    for p, h, r in zip(paths, hashes, rows):
        w.writerow([p, h, r["label"], r["split"]])
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    text = buf.getvalue()
    write_text(out, text)
    return {
        "files": len(rows),
        "splits": splits,
        "missing": hashes.count(MISSING),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "root": root,
    }

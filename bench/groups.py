"""Benchmark: does the data doctor find the INRIA person crops' mirror pairs by pHash alone, and
what do near-duplicate groups cost at train time?

    python bench/groups.py [--inria ../shared/datasets/inria-person-crops.tar.gz]
                           [--cifar ../shared/datasets/cifar10-jpg.tar.gz]

INRIA: every crop has its mirror image beside it, named cropNNNNNNa/b, c/d, ... (1,208 pairs; the
prefix names the source photo). Recall = named pairs whose two files fall in one doctor group
(near-duplicates with mirrored copies: pHash within phash.NEAR_DISTANCE bits, confirmed by the
thumbnails), with and without the mirror check. bench/duplicates.py measures precision and recall.
Purity = groups holding crops of one source photo only. CIFAR-10 (60k): seconds to hash the files
(the doctor's decode at 32 px) against hashing the training cache's rows (what `train` does).
Prints markdown tables. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import tables  # bench/tables.py: the tables printed and written as CSV

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgclf.data.cache import build_cache  # noqa: E402
from imgclf.data.discover import discover  # noqa: E402
from imgclf.data.doctor import NEAR_DISTANCE, _scan  # noqa: E402
from imgclf.data.groups import cache_prints, describe, near_duplicate_ids, regroup  # noqa: E402
from imgclf.data.phash import Prints  # noqa: E402
from imgclf.data.spec import DatasetSpec, files_under  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"


def unpack(archive: Path, dest: Path, name: str) -> Path:
    if not (dest / name).exists():
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    return dest / name


def inria(folder: Path) -> None:
    paths = [str(p) for p in files_under(folder / "person") if p.suffix == ".png"]
    started = time.perf_counter()
    bad, digests, found, _, _ = _scan(paths, None, False)
    scan_s = time.perf_counter() - started
    ok = np.ones(len(paths), bool)
    ok[list(bad)] = False
    names = [Path(p).stem for p in paths]
    by_photo = defaultdict(list)
    for i, n in sorted(enumerate(names), key=lambda t: t[1]):
        by_photo[n[:-1]].append(i)
    # a/b, c/d, ... (one photo skips a letter: a/b, d/e): consecutive letters of a photo are a pair
    pairs = [(m[k], m[k + 1]) for m in by_photo.values() for k in range(0, len(m) - 1, 2)]
    source = np.array([n[:-1] for n in names])  # cropNNNNNN, person_NNN, ...: the source photo
    print(
        f"INRIA person crops: {len(paths):,} files, {len(pairs):,} named mirror pairs, "
        f"{len(set(source)):,} source photos; hashed in {scan_s:.1f}s\n"
    )
    table = tables.Table(
        "inria",
        ["grouping", "groups (>1 file)", "largest", "named pairs together", "recall", "groups of one source photo"],
        align=["---"] + ["---:"] * 5,
    )
    # Without the mirror: each image's own hash stands in for its mirror image's.
    unmirrored = Prints(found.hashes, found.hashes, found.textured, found.grey, found.colourless)
    for label, prints in (("pHash only (before)", unmirrored), ("pHash + mirror (doctor now)", found)):
        ids = near_duplicate_ids(prints, ok, NEAR_DISTANCE)
        together = sum(ids[i] == ids[j] for i, j in pairs)
        members = defaultdict(list)
        for k, g in enumerate(ids):
            members[g].append(k)
        multi = [m for m in members.values() if len(m) > 1]
        pure = sum(len(set(source[m])) == 1 for m in multi)
        table.add(
            [
                label,
                tables.V(len(multi), ","),
                max(map(len, multi), default=0),
                f"{together:,} / {len(pairs):,}",
                tables.V(together / len(pairs), ".1%"),
                f"{pure:,} / {len(multi):,}",
            ]
        )


class Timer:
    """Wall seconds and CPU seconds (this process and its finished worker processes): on a shared
    machine the CPU time is the steadier number."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __str__(self) -> str:
        return f"{self.wall:.1f} | {self.cpu:.1f}"


def cifar(folder: Path) -> None:
    spec: DatasetSpec = discover(folder, 0.1, 0.1, 0)
    with Timer() as files_s:
        _scan(spec.paths, None, False)
    with tempfile.TemporaryDirectory() as cache_dir:
        with Timer() as cache_t:
            cache = build_cache(spec.paths, 32, "squash", cache_dir=Path(cache_dir), progress=False)
        usable = np.ones(len(spec.paths), bool)
        with Timer() as cache_s:
            ids = near_duplicate_ids(cache_prints(cache.images, usable), usable, NEAR_DISTANCE)
    regroup(spec, ids, 0.1, 0.1, 0)  # as train does: val is carved from train/ with groups whole
    info = describe(spec, ids, "near-duplicates")
    print(f"\nCIFAR-10 ({len(spec.paths):,} images): near-duplicate groups at train time\n")
    tables.emit(
        "cifar",
        ["step", "wall s", "CPU s"],
        [
            [step, tables.V(t.wall, ".1f"), tables.V(t.cpu, ".1f")]
            for step, t in (
                ("decode the training cache at 32 px (train does this anyway)", cache_t),
                ("hash the files again (doctor: decode at 32 px + sha256 + pHash + mirror)", files_s),
                ("hash the cache rows + their mirrors, group (train, group_by auto)", cache_s),
            )
        ],
        align=["---", "---:", "---:"],
    )
    print(
        f"\n{info['groups']:,} groups of near-duplicates ({info['images']:,} images, largest {info['largest']}); "
        f"{info['straddling']:,} straddle the given train/test split"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inria", type=Path, default=SHARED / "inria-person-crops.tar.gz")
    ap.add_argument("--cifar", type=Path, default=SHARED / "cifar10-jpg.tar.gz")
    ap.add_argument("--skip-cifar", action="store_true")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    with tempfile.TemporaryDirectory() as tmp:
        inria(unpack(args.inria, Path(tmp), "inria-person"))
        if not args.skip_cifar:
            cifar(unpack(args.cifar, Path(tmp), "cifar10"))


if __name__ == "__main__":
    main()

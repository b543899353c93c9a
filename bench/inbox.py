"""Benchmark: the feedback inbox and MLflow logging, on real photos.

1. `imgclf feedback import` of flowers5 (4,317 JPEGs in 5 label folders) into an empty inbox
   (each image fully decoded, hashed, written with fsync, one feedback line), then again (nothing
   new: hash, decode check, one line each), then `summary()`.
2. With --mlflow: a real `mlflow server` (sqlite) is started, and `tracking.log_run` of a tiny
   run and `log_registry_event` for add + promote are timed (the cost a training pays).
Not a test: nothing is asserted; prints one markdown table.

    python bench/inbox.py [--mlflow]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import tables  # bench/tables.py: the table printed and written as CSV

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgclf.store import inbox  # noqa: E402

ARCHIVE = ROOT.parent / "shared" / "datasets" / "flowers5.tar.gz"


def bench_import(tmp: Path) -> list[tuple[str, str, str]]:
    with tarfile.open(ARCHIVE) as tf:
        tf.extractall(tmp / "data", filter="data")
    folder = next(p for p in (tmp / "data").rglob("*") if p.is_dir() and (p / "rose").is_dir())
    rows = []
    for what in ("import into an empty inbox", "import again (all already there)"):
        t = time.perf_counter()
        r = inbox.import_folder(folder, tmp / "inbox")
        s = time.perf_counter() - t
        n = r["added"] + r["already there"] + r["relabelled"]
        rows.append(
            (
                what,
                f"{n} images ({r['added']} added, {r['relabelled']} relabelled, {len(r['skipped'])} skipped)",
                f"{s:.1f} s = {n / s:.0f} img/s",
            )
        )
    t = time.perf_counter()
    s = inbox.summary(tmp / "inbox")
    rows.append(("summary()", f"{s['images']} images, {s['feedback']} records", f"{time.perf_counter() - t:.2f} s"))
    return rows


def bench_mlflow(tmp: Path) -> list[tuple[str, str, str]]:
    import imgclf
    from imgclf.lifecycle import tracking
    from imgclf.store import registry

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_shapes_dataset

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp / 'mlflow.db'}",
            "--default-artifact-root",
            (tmp / "art").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        run = imgclf.train(
            make_shapes_dataset(tmp / "shapes", per_class=12, size=16),
            out=tmp / "runs" / "r1",
            model="simple_cnn",
            epochs=2,
            img_size=16,
            verbose=False,
        ).path
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        rows = []
        t = time.perf_counter()
        tracking.log_run(run, uri, verbose=False)
        rows.append(
            (
                "log_run (params, 24 metrics, 2 epochs of history, 10 files)",
                "tiny run",
                f"{time.perf_counter() - t:.2f} s",
            )
        )
        t = time.perf_counter()
        tracking.log_registry_event(
            tmp / "registry", registry.add(run, tmp / "registry", alias="candidate"), uri, verbose=False
        )
        tracking.log_registry_event(
            tmp / "registry", registry.promote(tmp / "registry", "candidate"), uri, verbose=False
        )
        rows.append(
            ("log_registry_event x2 (add, promote)", "1 version, 2 aliases", f"{time.perf_counter() - t:.2f} s")
        )
        return rows
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlflow", action="store_true", help="also time MLflow logging against a local server")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-inbox-") as d:
        rows = bench_import(Path(d))
        if args.mlflow:
            rows += bench_mlflow(Path(d))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    tables.emit("steps", ["step", "data", "time"], rows)


if __name__ == "__main__":
    main()

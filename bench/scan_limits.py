"""Scan limits (issue 37): how long a 640 x 480 photo takes through POST /scan with the default crop
model and with the pretrained detector, how fast an over-limit scan is refused, how fast a service
stops on SIGTERM in the middle of its longest allowed scan, and how fast `imgclf scan` answers a
20000 x 1 PNG. Each against the issue's target.

    python bench/scan_limits.py                     # trains the default crop model (lite0) on a few crops
    python bench/scan_limits.py --run runs/crops-1  # a crop run of your own (a class named like person)

The crop run is `imgclf train` with no model flags (the ImageNet Lite0 backbone, 1 epoch on generated
person/background crops: its accuracy does not matter here, its cost per window does). The service
runs as `imgclf serve` in a subprocess on a free localhost port with its default limits; the photo is
noise, so no window fires and the time is the scan's alone.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tables  # bench/tables.py: the table written as CSV
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "imgclf.cli"]


def png(width: int, height: int, seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()


def crop_run(tmp: Path) -> Path:
    """The default model trained for one epoch on 40 generated 64 x 96 crops per class."""
    import imgclf

    rng = np.random.default_rng(0)
    for cls in ("person", "background"):
        (tmp / "crops" / cls).mkdir(parents=True)
        for i in range(40):
            img = rng.integers(0, 256, (96, 64, 3), np.uint8)
            if cls == "person":
                img[20:90, 20:44] = (200, 40, 40)
            Image.fromarray(img).save(tmp / "crops" / cls / f"{i:03d}.png")
    return imgclf.train(tmp / "crops", out=tmp / "run", epochs=1, verbose=False).path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(run: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([*CLI, "serve", str(run), "--port", str(port), *extra], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the service did not start")


def timed_post(url: str, query: str, data: bytes) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    r = httpx.post(f"{url}/scan?{query}", content=data, headers={"Content-Type": "image/png"}, timeout=600)
    return time.monotonic() - start, r


def longest_allowed(url: str, data: bytes) -> tuple[float, int, str]:
    """(seconds, min_size, the answer) of the longest scan the service allows for this photo: the smallest
    min_size in the pyramid's steps that is not refused."""
    size = 8
    while True:
        took, r = timed_post(url, f"min_size={size}", data)
        if r.status_code == 200:
            return took, size, f"200, estimated {r.json()['estimated_seconds']:.2f} s"
        size = -(-size * 5 // 4)  # the pyramid's 1.25x steps, rounded up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a crop run with a class to find [default: the default model, trained here]")
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scan-limits-"))
    run = Path(args.run) if args.run else crop_run(tmp)
    vga, rows = png(640, 480), []

    proc, url = serve(run)
    try:
        info = httpx.get(f"{url}/model").json()
        print(f"/model: scan_cost {info.get('scan_cost')}, limit {info['service']['max_scan_seconds']} s")
        httpx.post(f"{url}/scan?detector=person", content=png(64, 48), headers={"Content-Type": "image/png"})
        for what, query, target in (
            ("POST /scan 640x480, default crop model", "", 10),
            ("POST /scan 640x480, pretrained detector", "detector=person", 1),
            ("POST /scan 640x480, min_size=8 (over the limit)", "min_size=8", 1),
        ):
            took, r = timed_post(url, query, vga)
            note = r.status_code
            if r.status_code == 200 and "min_size" in r.json():
                note = f"200, min_size {r.json()['min_size']}, estimated {r.json()['estimated_seconds']:.2f} s"
            rows.append([what, tables.V(took, ".2f"), f"< {target}", note])
        longest, size, estimate = longest_allowed(url, vga)
        rows.append(
            [f"POST /scan 640x480, min_size={size} (the longest allowed)", tables.V(longest, ".2f"), "", estimate]
        )
    finally:
        proc.kill()
        proc.wait()

    # SIGTERM in the middle of the longest scan the limit allows.
    proc, url = serve(run)
    try:
        worker = threading.Thread(target=lambda: timed_post(url, f"min_size={size}", vga), daemon=True)
        worker.start()
        time.sleep(max(0.5, longest / 2))
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        proc.wait(60)
        took = time.monotonic() - start
        rows.append(
            [f"kill -TERM {longest / 2:.1f} s into that scan: the service exits", tables.V(took, ".2f"), "< 5", ""]
        )
    finally:
        if proc.poll() is None:
            proc.kill()

    strip = tmp / "wide.png"
    Image.fromarray(np.full((1, 20000, 3), 128, np.uint8)).save(strip, optimize=True)
    start = time.monotonic()
    p = subprocess.run([*CLI, "scan", str(run), str(strip)], capture_output=True, text=True)
    rows.append(
        [
            "imgclf scan RUN 20000x1.png (whole command)",
            tables.V(time.monotonic() - start, ".2f"),
            "< 5",
            f"exit {p.returncode}, {len(p.stderr.splitlines())} line",
        ]
    )
    tables.emit(
        "limits",
        ["what", "seconds", "target", "answer"],
        rows,
        align=["---", "---:", "---:", "---"],
        title=f"Scan limits, {os.cpu_count()} cores, run {run.name}",
        script="scan_limits",
    )


if __name__ == "__main__":
    main()
